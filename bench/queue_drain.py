"""Daemon-free draining: N no-op jobs through `submit --params-file` into a
queue of limit 4, on SQLite and PostgreSQL: jobs/s from submit to the last
outcome, peak worker processes, peak database sessions; and the batch insert
rate of --params-file (into a paused queue, so only the insert is timed).

    .venv/bin/python bench/queue_drain.py [--jobs 200] [--insert 5000] [--backend sqlite|postgresql|both]

PostgreSQL: a throwaway database on JOBCTL_TEST_PG_ADMIN_DSN (default
postgresql://postgres@127.0.0.1:5432/test), dropped afterwards.
bench/pool_vs_procrastinate.py reuses drain() and insert_rate()."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import time
import uuid
from typing import Any

from _common import Peaks, jobctl_cmd, pg_database, probe_connection, scratch_env, tagged_pids

DONE_SQL = "SELECT count(*) FROM async_jobs WHERE queue = %s AND status NOT IN ('queued', 'running')"


def sqlite_sessions(pids: list[int], db_path: str) -> int:
    """Open handles on the database file among the workers: one per connection."""
    n = 0
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == db_path:
                        n += 1
                except OSError:
                    pass
        except OSError:
            pass
    return n


def wait_by_sql(env: dict[str, str], queue: str, jobs: int) -> None:
    """Wait for the outcomes without jobctl (whose reading commands may start
    workers themselves), polling the table."""
    dsn = env["JOBCTL_DSN"]
    if dsn.startswith("sqlite:///"):
        import sqlite3

        conn: Any = sqlite3.connect(dsn.removeprefix("sqlite:///"))
        done = lambda: conn.execute(DONE_SQL.replace("%s", "?"), (queue,)).fetchone()[0]  # noqa: E731
    else:
        conn = probe_connection(dsn)
        done = lambda: conn.execute(DONE_SQL, (queue,)).fetchone()[0]  # noqa: E731
    while done() < jobs:
        time.sleep(0.02)
    conn.close()


def drain(env: dict[str, str], procedure: str, lines: list[str], *, queue: str = "bench",
          by_sql: bool = False) -> dict[str, Any]:
    """Submit `lines` with --params-file into `queue` (limit 4) and time until
    every job has its outcome. `env` carries JOBCTL_BENCH_TAG, which the
    detached workers inherit and the process count looks for."""
    cmd = jobctl_cmd()
    tag = env["JOBCTL_BENCH_TAG"]
    dsn = env["JOBCTL_DSN"]
    pg = not dsn.startswith("sqlite:///")
    subprocess.run(cmd + ["queue", "set", queue, "--max-running", "4"], env=env, check=True,
                   capture_output=True)
    with contextlib.ExitStack() as stack:
        if pg:
            conn = probe_connection(dsn)
            stack.callback(conn.close)
            sessions = lambda: conn.execute(  # noqa: E731
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND application_name LIKE 'jobctl:%'").fetchone()[0]
        else:
            sessions = lambda: sqlite_sessions(tagged_pids(tag), dsn.removeprefix("sqlite:///"))  # noqa: E731
        peaks = stack.enter_context(Peaks({"procs": lambda: len(tagged_pids(tag)), "sessions": sessions}))
        t0 = time.perf_counter()
        ids = subprocess.run(cmd + ["submit", procedure, "--params-file", "-", "--queue", queue],
                             env=env, input="".join(line + "\n" for line in lines),
                             capture_output=True, text=True, check=True).stdout.split()
        submitted = time.perf_counter() - t0
        if by_sql:
            wait_by_sql(env, queue, len(ids))
        else:
            subprocess.run(cmd + ["wait", *ids], env={**env, "JOBCTL_POLL": "0.05"}, check=True,
                           capture_output=True)
        drained = time.perf_counter() - t0
    rows = json.loads(subprocess.run(cmd + ["list", "--queue", queue, "-n", str(len(ids)), "-f", "json"],
                                     env=env, capture_output=True, text=True, check=True).stdout)
    return {"jobs": len(ids), "completed": sum(r["status"] == "completed" for r in rows),
            "seconds": drained, "jobs_per_s": len(ids) / drained, "submit_s": submitted,
            "peak_procs": peaks.peak["procs"], "peak_sessions": peaks.peak["sessions"]}


def insert_rate(env: dict[str, str], procedure: str, lines: list[str], *,
                queue: str = "ins") -> dict[str, Any]:
    """The whole `submit --params-file` command into a paused queue (so no
    worker starts and only the insert is timed)."""
    cmd = jobctl_cmd()
    subprocess.run(cmd + ["queue", "set", queue, "--max-running", "4"], env=env, check=True,
                   capture_output=True)  # submit and pause refuse a queue that does not exist
    subprocess.run(cmd + ["queue", "pause", queue], env=env, check=True, capture_output=True)
    t0 = time.perf_counter()
    subprocess.run(cmd + ["submit", procedure, "--params-file", "-", "--queue", queue],
                   env=env, input="".join(line + "\n" for line in lines), capture_output=True,
                   text=True, check=True)
    wall = time.perf_counter() - t0
    return {"jobs": len(lines), "seconds": wall, "jobs_per_s": len(lines) / wall}


def run(backend: str, jobs: int, insert: int) -> None:
    env = scratch_env()
    env["JOBCTL_BENCH_TAG"] = uuid.uuid4().hex
    with pg_database(env) if backend == "postgresql" else contextlib.nullcontext():
        subprocess.run(jobctl_cmd() + ["db", "init", "--examples"], env=env, check=True,
                       capture_output=True)
        d = drain(env, "SUMA_SIMPLE", [json.dumps({"vA": i, "vB": 1}) for i in range(jobs)],
                  by_sql=bool(os.environ.get("BENCH_WAIT_BY_SQL")))
        print(f"{backend}: {jobs} no-op jobs via --params-file into a queue of limit 4: "
              f"{d['completed']} completed in {d['seconds']:.2f} s = {d['jobs_per_s']:.0f} jobs/s "
              f"(submit command {d['submit_s'] * 1000:.0f} ms); peak worker processes "
              f"{d['peak_procs']}, peak worker sessions {d['peak_sessions']}")
        i = insert_rate(env, "SUMA_SIMPLE", [json.dumps({"vA": i, "vB": 1}) for i in range(insert)])
        print(f"{backend}: --params-file batch insert of {insert} jobs: {i['seconds']:.2f} s wall "
              f"(whole command) = {i['jobs_per_s']:.0f} jobs/s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--insert", type=int, default=5000)
    ap.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    args = ap.parse_args()
    for backend in (["sqlite", "postgresql"] if args.backend == "both" else [args.backend]):
        run(backend, args.jobs, args.insert)


if __name__ == "__main__":
    main()
