"""`jobctl` with the per-job session reset turned off, for
bench/pool_vs_procrastinate.py's `--without-reset` side only: what the reset
(PostgreSQL's DISCARD ALL after each job) costs per job. The product has no
such switch: a job's session is always cleared before the next job."""

import sys

from jobctl.backends.postgresql import sessions

sessions.PostgresSessions.reset_job_session = lambda self, conn: True  # type: ignore[method-assign]

if __name__ == "__main__":
    from jobctl.__main__ import main

    sys.argv[0] = "jobctl"
    main()
