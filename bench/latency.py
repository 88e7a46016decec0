"""How fast a running job reacts, with the heartbeat at its default 5 s.

Prints the median (and max) over n runs, on SQLite and on PostgreSQL, of:

- cancel → cancelled: from `cancel` committing to the worker's END_TIME
  (the call interrupted, its work rolled back, the outcome written);
- timeout overshoot: END_TIME - START_TIME - the timeout, for `--timeout 1s`
  (includes the worker reading the signature before the call starts);
- progress → visible: from the procedure reporting a new percentage (it logs
  the time it did, in the same breath) to a reader polling the row every
  10 ms seeing it.

PostgreSQL runs in a throwaway database of the server at
JOBCTL_BENCH_PG_ADMIN_DSN (default postgresql://postgres@127.0.0.1:5432/test),
dropped afterwards; skipped when the server cannot be reached.

    .venv/bin/python bench/latency.py [n]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from jobctl import api as jobctl_api
from jobctl.config import resolve_settings
from jobctl.model import JobStatus

PG_ADMIN_DSN = os.environ.get("JOBCTL_BENCH_PG_ADMIN_DSN",
                              "postgresql://postgres@127.0.0.1:5432/test")

STEP_S = 1.3     # between two progress reports: longer than the 1 s coalescing window
STEPS = 8

SQLITE_MODULE = f'''
import time
from jobctl.local import procedure


@procedure("BENCH_PROGRESS")
def bench_progress(ctx):
    for i in range(1, {STEPS} + 1):
        time.sleep({STEP_S})
        ctx.progress(i * 100 / {STEPS})
        ctx.log(f"t={{time.time()!r}}")
    return {{}}
'''

PG_PROCEDURE = f"""
CREATE OR REPLACE PROCEDURE bench_progress()
LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. {STEPS} LOOP
        PERFORM pg_sleep({STEP_S});
        RAISE NOTICE 'jobctl:progress=%', i * 100.0 / {STEPS};
        RAISE NOTICE 't=%', extract(epoch FROM clock_timestamp());
    END LOOP;
END;
$$
"""


def _until(check, timeout: float = 30.0, every: float = 0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise RuntimeError("the job never got there")


def _running(jc, job_id: str):
    return _until(lambda: jc.get(job_id).status is JobStatus.RUNNING)


def _finished(jc, job_id: str):
    return _until(lambda: (j := jc.get(job_id)).status.finished and j)


def measure(dsn: str, runs: int, sleep_name: str, progress_name: str) -> dict[str, list[float]]:
    os.environ["JOBCTL_DSN"] = dsn
    for knob in ("JOBCTL_HEARTBEAT", "JOBCTL_CANCEL_POLL", "JOBCTL_LOST_AFTER"):
        os.environ.pop(knob, None)   # the defaults: heartbeat 5 s, cancel poll 1 s
    jc = jobctl_api.Jobctl(resolve_settings())
    out: dict[str, list[float]] = {"cancel": [], "timeout": [], "progress": []}
    try:
        for i in range(runs):
            job_id = jc.submit(sleep_name, {"p_seconds": "60"}).job_id
            _running(jc, job_id)
            time.sleep(0.2 + 0.9 * i / max(1, runs))   # spread over the poll's phase
            jc.cancel([job_id])
            asked = time.time()
            job = _finished(jc, job_id)
            assert job.status is JobStatus.CANCELLED, job
            out["cancel"].append(job.end_time.timestamp() - asked)

            job_id = jc.submit(sleep_name, {"p_seconds": "60"}, timeout_s=1.0).job_id
            job = _finished(jc, job_id)
            assert job.status is JobStatus.TIMED_OUT, job
            out["timeout"].append((job.end_time - job.start_time).total_seconds() - 1.0)

        job_id = jc.submit(progress_name, {}).job_id
        _running(jc, job_id)
        first_seen: dict[float, float] = {}   # each percentage: when a reader first saw it
        while True:
            job = jc.get(job_id)
            first_seen.setdefault(float(job.progress or 0), time.time())
            if job.status.finished:
                break
            time.sleep(0.01)
        # the procedure logs the time right after each report: the i-th line
        # dates the i-th percentage
        stamps = [float(line.split("=", 1)[1]) for line in (job.output or "").splitlines()
                  if line.startswith("t=")]
        for i, reported in enumerate(stamps, start=1):
            pct = float(i * 100 / STEPS)
            if pct in first_seen and pct != 100.0:   # 100 is also written by the completion
                out["progress"].append(first_seen[pct] - reported)
    finally:
        jc.close()
    return out


def show(backend: str, figures: dict[str, list[float]]) -> None:
    labels = {"cancel": "cancel -> cancelled", "timeout": "timeout overshoot",
              "progress": "progress -> visible"}
    for key, label in labels.items():
        values = figures[key]
        if values:
            print(f"{backend:10} {label:22} median {statistics.median(values) * 1000:7.1f} ms"
                  f"   max {max(values) * 1000:7.1f} ms   n={len(values)}")


def main(runs: int = 7) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="jobctl-bench-"))
    os.environ.update(XDG_CONFIG_HOME=str(tmp / "config"), XDG_STATE_HOME=str(tmp / "state"),
                      XDG_DATA_HOME=str(tmp / "data"))
    module = tmp / "bench_progress.py"
    module.write_text(SQLITE_MODULE)
    os.environ["JOBCTL_MODULES"] = str(module)
    dsn = f"sqlite:///{tmp / 'jobs.db'}"
    os.environ["JOBCTL_DSN"] = dsn
    jobctl_api.Jobctl(resolve_settings()).db_init()
    print(f"heartbeat 5 s (default), cancel poll 1 s (default), runs {runs}")
    show("sqlite", measure(dsn, runs, "DEMO_SLEEP", "BENCH_PROGRESS"))
    os.environ.pop("JOBCTL_MODULES")

    try:
        import psycopg

        admin = psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5)
    except Exception as exc:  # noqa: BLE001 - the bench still reports SQLite
        print(f"postgresql skipped: {exc}")
        return
    name = f"jobctl_bench_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        dsn = PG_ADMIN_DSN.rsplit("/", 1)[0] + "/" + name
        os.environ["JOBCTL_DSN"] = dsn
        jobctl_api.Jobctl(resolve_settings()).db_init(examples=True)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(PG_PROCEDURE)
        show("postgresql", measure(dsn, runs, "demo_sleep", "bench_progress"))
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 7)
