"""Budget: a no-op job on SQLite is `running` within 0.5 s of `submit` starting.

Measured from just before `jobctl submit` is started to the worker's claim
(START_TIME written when the job turns running), and to its end.

`--postgresql`: the same on a throwaway PostgreSQL database, and what the
server-side check of the values (Procedures.check_values: every value cast
to its declared type, READ ONLY, one round trip) adds to a submit: the
submit path (resolve, bind, check) timed in-process with and without it."""

from __future__ import annotations

import datetime as dt
import json
import statistics
import subprocess
import time

import sys

from _common import jobctl_cmd, pg_database, scratch_env


def check_cost(dsn: str, runs: int = 200) -> None:
    """Median of the submit's checks (resolve + bind [+ check_values]) on one
    connection, each in its own transaction, as submit runs them."""
    from jobctl import params
    from jobctl.api import Jobctl
    from jobctl.config import resolve_settings

    given = {"vA": "1", "vB": "2"}
    with Jobctl(resolve_settings(dsn=dsn)) as jc:
        backend, conn = jc.backend, jc.conn
        for label, check in (("without the check", False), ("with the check", True),
                             ("without the check", False), ("with the check", True)):
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                sig = jc.lookup.resolve_for_submit(conn, "SUMA_SIMPLE", [given])
                values = params.bind(sig, given)
                if check:
                    backend.check_values(conn, sig, values)
                conn.commit()
                times.append(time.perf_counter() - t0)
            print(f"resolve + bind {label:18s} median {statistics.median(times) * 1000:6.2f} ms")


def main(runs: int = 15) -> None:
    env = scratch_env()
    if "--postgresql" in sys.argv:
        with pg_database(env) as dsn:
            subprocess.run(jobctl_cmd() + ["db", "init", "--examples"], env=env,
                           capture_output=True, check=True)
            measure(env, runs)
            check_cost(dsn)
        return
    measure(env, runs)


def measure(env: dict[str, str], runs: int) -> None:
    cmd = jobctl_cmd()
    to_running, to_done, submit_wall = [], [], []
    for _ in range(runs):
        t0 = dt.datetime.now(dt.timezone.utc)
        p0 = time.perf_counter()
        job_id = subprocess.run(cmd + ["submit", "SUMA_SIMPLE", "-p", "vA=1"], env=env,
                                capture_output=True, text=True, check=True).stdout.strip()
        submit_wall.append(time.perf_counter() - p0)
        subprocess.run(cmd + ["wait", job_id], env={**env, "JOBCTL_POLL": "0.05"},
                       capture_output=True, check=True)
        job = json.loads(subprocess.run(cmd + ["status", job_id, "-f", "json"], env=env,
                                        capture_output=True, text=True, check=True).stdout)
        started = dt.datetime.fromisoformat(job["start_time"])
        ended = dt.datetime.fromisoformat(job["end_time"])
        to_running.append((started - t0).total_seconds())
        to_done.append((ended - t0).total_seconds())
    print(f"runs: {runs}")
    print(f"submit command wall      median {statistics.median(submit_wall) * 1000:6.1f} ms")
    print(f"submit start -> running  median {statistics.median(to_running) * 1000:6.1f} ms   "
          f"max {max(to_running) * 1000:6.1f} ms")
    print(f"submit start -> completed median {statistics.median(to_done) * 1000:6.1f} ms")


if __name__ == "__main__":
    main()
