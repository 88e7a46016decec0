"""Daemon-free draining: N no-op jobs through `submit --params-file` into a
queue of limit 4, on SQLite and PostgreSQL: jobs/s from submit to the last
outcome, peak worker processes, peak database sessions; and the batch insert
rate of --params-file (into a paused queue, so only the insert is timed).

    .venv/bin/python bench/queue_drain.py [--jobs 200] [--insert 5000] [--backend sqlite|postgresql|both]

PostgreSQL: a throwaway database on JOBCTL_TEST_PG_ADMIN_DSN (default
postgresql://postgres@127.0.0.1:5432/test), dropped afterwards."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import threading
import time
import uuid

from _common import jobctl_cmd, scratch_env

PG_ADMIN = os.environ.get("JOBCTL_TEST_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def tagged_pids(tag: str) -> list[int]:
    """Worker processes of this run (they inherit the tag variable); not the
    launchers, which lead their new session and exit at once."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as fh:
                if f"JOBCTL_BENCH_TAG={tag}".encode() not in fh.read():
                    continue
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                if b"jobctl.runner" not in fh.read():
                    continue
            with open(f"/proc/{name}/stat", "rb") as fh:
                state, _, _, session = fh.read().rsplit(b")", 1)[1].split()[:4]
            if state != b"Z" and int(session) != int(name):
                out.append(int(name))
        except (OSError, IndexError, ValueError):
            pass
    return out


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


def wait_by_sql(backend: str, dsn: str, db_path: str, jobs: int) -> None:
    """Wait for the outcomes without jobctl (whose reading commands may start
    workers themselves), polling the table."""
    sql = "SELECT count(*) FROM async_jobs WHERE status NOT IN ('queued', 'running')"
    if backend == "postgresql":
        import psycopg

        conn = psycopg.connect(dsn, autocommit=True)
        done = lambda: conn.execute(sql).fetchone()[0]  # noqa: E731
    else:
        import sqlite3

        conn = sqlite3.connect(db_path)
        done = lambda: conn.execute(sql).fetchone()[0]  # noqa: E731
    while done() < jobs:
        time.sleep(0.02)
    conn.close()


def run(backend: str, jobs: int, insert: int) -> None:
    env = scratch_env()
    tag = uuid.uuid4().hex
    env["JOBCTL_BENCH_TAG"] = tag
    admin = db_name = None
    if backend == "postgresql":
        import psycopg

        db_name = f"jobctl_bench_{tag[:10]}"
        admin = psycopg.connect(PG_ADMIN, autocommit=True)
        admin.execute(f'CREATE DATABASE "{db_name}"')
        env["JOBCTL_DSN"] = PG_ADMIN.rsplit("/", 1)[0] + "/" + db_name
    db_path = env["JOBCTL_DSN"].removeprefix("sqlite:///")
    cmd = jobctl_cmd()
    try:
        subprocess.run(cmd + ["db", "init", "--examples"], env=env, check=True, capture_output=True)
        subprocess.run(cmd + ["queue", "set", "bench", "--max-running", "4"], env=env, check=True,
                       capture_output=True)
        lines = "".join(json.dumps({"vA": i, "vB": 1}) + "\n" for i in range(jobs))
        peak = {"procs": 0, "sessions": 0}
        stop = threading.Event()

        def sample() -> None:
            conn = psycopg.connect(env["JOBCTL_DSN"], autocommit=True) if backend == "postgresql" else None
            while not stop.is_set():
                pids = tagged_pids(tag)
                peak["procs"] = max(peak["procs"], len(pids))
                if conn is not None:
                    n = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                                     "current_database() AND application_name LIKE 'jobctl:%'"
                                     ).fetchone()[0]
                else:
                    n = sqlite_sessions(pids, db_path)
                peak["sessions"] = max(peak["sessions"], n)
                time.sleep(0.01)
            if conn is not None:
                conn.close()

        sampler = threading.Thread(target=sample)
        sampler.start()
        t0 = time.perf_counter()
        ids = subprocess.run(cmd + ["submit", "SUMA_SIMPLE", "--params-file", "-", "--queue", "bench"],
                             env=env, input=lines, capture_output=True, text=True, check=True).stdout.split()
        submitted = time.perf_counter() - t0
        if os.environ.get("BENCH_WAIT_BY_SQL"):
            wait_by_sql(backend, env["JOBCTL_DSN"], db_path, jobs)
        else:
            subprocess.run(cmd + ["wait", *ids], env={**env, "JOBCTL_POLL": "0.05"}, check=True,
                           capture_output=True)
        drained = time.perf_counter() - t0
        stop.set()
        sampler.join()
        rows = json.loads(subprocess.run(cmd + ["list", "--queue", "bench", "-n", str(jobs), "-f", "json"],
                                         env=env, capture_output=True, text=True, check=True).stdout)
        completed = sum(r["status"] == "completed" for r in rows)
        print(f"{backend}: {jobs} no-op jobs via --params-file into a queue of limit 4: "
              f"{completed} completed in {drained:.2f} s = {jobs / drained:.0f} jobs/s "
              f"(submit command {submitted * 1000:.0f} ms); peak worker processes "
              f"{peak['procs']}, peak worker sessions {peak['sessions']}")

        subprocess.run(cmd + ["queue", "pause", "ins"], env=env, check=True, capture_output=True)
        lines = "".join(json.dumps({"vA": i, "vB": 1}) + "\n" for i in range(insert))
        t0 = time.perf_counter()
        subprocess.run(cmd + ["submit", "SUMA_SIMPLE", "--params-file", "-", "--queue", "ins"],
                       env=env, input=lines, capture_output=True, text=True, check=True)
        wall = time.perf_counter() - t0
        print(f"{backend}: --params-file batch insert of {insert} jobs: {wall:.2f} s wall "
              f"(whole command) = {insert / wall:.0f} jobs/s")
    finally:
        if admin is not None:
            admin.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
            admin.close()


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
