"""Budget: a no-op job on SQLite is `running` within 0.5 s of `submit` starting.

Measured from just before `jobctl submit` is started to the worker's claim
(START_TIME written when the job turns running), and to its end."""

from __future__ import annotations

import datetime as dt
import json
import statistics
import subprocess
import time

from _common import jobctl_cmd, scratch_env


def main(runs: int = 15) -> None:
    env = scratch_env()
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
