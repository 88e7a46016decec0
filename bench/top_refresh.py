"""Budget: one refresh of `jobctl top` on a 1,000,000-row ASYNC_JOBS takes
under 200 ms, on SQLite and on PostgreSQL.

The table is filled as bench/big_table.py fills it (a year of finished jobs,
100 procedures), plus what a busy screen shows: 3 queues with limits, 12
running jobs with output and progress, 300 queued jobs (some waiting for a
time, some for dependencies). A refresh is what `jobctl top` does every
second: `Jobctl.top_frame` (its one statement, read into a frame, running
jobs judged) and the frame laid out as text. Each figure is the median of
--rounds refreshes on one connection, as top keeps one, after one warm-up;
`top --once` is the whole command, start-up included. The statement's plan
is printed per backend (SQLite: EXPLAIN QUERY PLAN; PostgreSQL: EXPLAIN
ANALYZE, its buffers and time).

Usage: python bench/top_refresh.py [--rows N] [--rounds N] [--backend sqlite|postgresql|both]
(default 1,000,000 rows, 9 rounds, both; filling takes about a minute per backend)
"""

from __future__ import annotations

import argparse
import datetime as dt
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import jobctl_cmd, pg_database, scratch_env  # noqa: E402
from big_table import FILL_COLUMNS, fill, rows  # noqa: E402

from jobctl import topview  # noqa: E402
from jobctl.api import Jobctl  # noqa: E402
from jobctl.config import resolve_settings  # noqa: E402
from jobctl.store_overview import frame_sql  # noqa: E402

QUEUES = (("default", 4), ("nightly", 2), ("reports", 8))
ACTIVE_COLUMNS = ("JOB_ID", "STATUS", "PROCEDURE_NAME", "START_TIME", "PROGRESS", "PARAMS",
                  "QUEUE", "PRIORITY", "WORKER_HOST", "WORKER_PID", "HEARTBEAT_AT", "CLAIM_TOKEN",
                  "OUTPUT", "SIGNATURE", "NOT_BEFORE", "AFTER_JOBS", "ATTEMPT", "MAX_ATTEMPTS")


def active_rows(now: dt.datetime) -> list[tuple]:
    """12 running jobs (on another host, heartbeat fresh) and 300 queued ones."""
    out = []
    for i in range(12):
        queue = QUEUES[i % 3][0]
        output = "\n".join(f"step {k} of 40 done" for k in range(i * 3 + 1))
        out.append((f"f{i:031x}", "running", f"PKG_{i:02d}.PROC_0", now - dt.timedelta(minutes=i + 1),
                    (i * 8) % 100, "{}", queue, 0, "bench-host", 1000 + i, now, f"t{i:031x}",
                    output, '{"name": "x"}', None, None, 1, 1))
    for i in range(300):
        queue = QUEUES[i % 3][0]
        not_before = now + dt.timedelta(hours=1) if i % 10 == 0 else None
        after = "f" + "0" * 31 if i % 15 == 1 else None
        out.append((f"e{i:031x}", "queued", f"PKG_{i % 20:02d}.PROC_1", now - dt.timedelta(seconds=i),
                    0, "{}", queue, i % 3, None, None, None, None, None, '{"name": "x"}',
                    not_before, after, 0, 1))
    return out


def fill_sqlite(path: str, count: int) -> None:
    fill(path, count)
    conn = sqlite3.connect(path)
    fmt = "%Y-%m-%d %H:%M:%S.%f"
    now = dt.datetime.now(dt.timezone.utc)
    conn.executemany(
        f"INSERT INTO ASYNC_JOBS ({', '.join(ACTIVE_COLUMNS)}) VALUES ({', '.join('?' * len(ACTIVE_COLUMNS))})",
        [tuple(v.strftime(fmt) if isinstance(v, dt.datetime) else v for v in r) for r in active_rows(now)])
    conn.executemany("INSERT OR REPLACE INTO JOB_QUEUES (QUEUE_NAME, MAX_RUNNING, PAUSED) VALUES (?, ?, 0)",
                     QUEUES)
    conn.commit()
    conn.execute("ANALYZE")
    conn.close()


def fill_postgresql(dsn: str, count: int) -> None:
    import psycopg

    now = dt.datetime.now(dt.timezone.utc)
    with psycopg.connect(dsn) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        with conn.cursor() as cur:
            with cur.copy(f"COPY async_jobs ({', '.join(FILL_COLUMNS)}) FROM STDIN") as copy:
                for row in rows(count, now):
                    copy.write_row(row[:3] + (row[3].replace(tzinfo=None),) + row[4:])
            with cur.copy(f"COPY async_jobs ({', '.join(ACTIVE_COLUMNS)}) FROM STDIN") as copy:
                for row in active_rows(now):
                    copy.write_row(tuple(v.replace(tzinfo=None) if isinstance(v, dt.datetime) else v
                                         for v in row))
            cur.executemany("INSERT INTO job_queues (queue_name, max_running, paused) VALUES (%s, %s, 0) "
                            "ON CONFLICT (queue_name) DO UPDATE SET max_running = EXCLUDED.max_running",
                            QUEUES)
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE async_jobs")


def measure(label: str, env: dict[str, str], rounds: int) -> dict[str, float]:
    settings = resolve_settings(env["JOBCTL_DSN"], None)
    out: dict[str, float] = {}
    with Jobctl(settings, create=False) as jc:
        # the running jobs' workers are alive (a fresh heartbeat), as on a
        # healthy system: a frame then is its one statement, no session checks
        jc.backend.execute(jc.conn, "UPDATE ASYNC_JOBS SET heartbeat_at = :now WHERE status = 'running'",
                           {"now": jc.backend.to_db_time(dt.datetime.now(dt.timezone.utc))})
        jc.conn.commit()
        statements = count_statements(jc)
        jc.top_frame()  # warm-up: connection, caches
        query, whole = [], []
        for _ in range(rounds):
            t0 = time.perf_counter()
            frame = jc.top_frame()
            t1 = time.perf_counter()
            topview.frame_text(frame, width=120, height=None)
            t2 = time.perf_counter()
            query.append(t1 - t0)
            whole.append(t2 - t0)
        print(f"  {label}: {statements} statement(s) per refresh")
        out["top_frame (query + frame)"] = statistics.median(query)
        out["refresh (query + frame + text)"] = statistics.median(whole)
        print_plan(jc, label)
    cmd = jobctl_cmd() + ["top", "--once"]
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    times = []
    for _ in range(max(3, rounds // 2)):
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    out["jobctl top --once (process)"] = statistics.median(times)
    return out


def count_statements(jc: Jobctl) -> int:
    """How many statements one top_frame runs (the budget: one)."""
    calls = []
    execute = jc.backend.execute

    def counting(conn, sql, binds=None):
        calls.append(sql)
        return execute(conn, sql, binds)

    jc.backend.execute = counting  # type: ignore[method-assign]
    try:
        jc.top_frame()
    finally:
        del jc.backend.execute
    return len(calls)


def print_plan(jc: Jobctl, label: str) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    sql, binds = frame_sql(jc.backend, now=now, since=now - dt.timedelta(days=1), queue=None)
    conn = jc.conn
    if jc.backend.name == "sqlite":
        plan = [r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, binds)]
        print(f"  plan ({label}):")
        for line in plan:
            print(f"    {line}")
    else:
        cur = jc.backend.execute(conn, "EXPLAIN (ANALYZE, BUFFERS, SUMMARY) " + sql, binds)
        lines = [r[0] for r in cur.fetchall()]
        conn.rollback()
        print(f"  plan ({label}), nodes that scan:")
        for line in lines:
            if any(k in line for k in ("Scan", "Execution Time", "Planning Time")):
                print(f"    {line.strip()}")


def report(label: str, figures: dict[str, float]) -> None:
    for name, seconds in figures.items():
        budget = "  (budget 200 ms)" if name.startswith("refresh") else ""
        print(f"{label:11s} {name:34s} median {seconds * 1000:8.1f} ms{budget}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    args = parser.parse_args()
    results = []
    if args.backend in ("sqlite", "both"):
        env = scratch_env()
        subprocess.run(jobctl_cmd() + ["db", "init"], env=env, check=True, capture_output=True)
        t0 = time.perf_counter()
        fill_sqlite(env["JOBCTL_DSN"].removeprefix("sqlite:///"), args.rows)
        print(f"sqlite: filled {args.rows:,} rows in {time.perf_counter() - t0:.1f} s")
        results.append(("SQLite", measure("SQLite", env, args.rounds)))
    if args.backend in ("postgresql", "both"):
        env = scratch_env()
        try:
            with pg_database(env) as dsn:
                subprocess.run(jobctl_cmd() + ["db", "init"], env=env, check=True, capture_output=True)
                t0 = time.perf_counter()
                fill_postgresql(dsn, args.rows)
                print(f"postgresql: filled {args.rows:,} rows in {time.perf_counter() - t0:.1f} s")
                results.append(("PostgreSQL", measure("PostgreSQL", env, args.rounds)))
        except Exception as exc:  # noqa: BLE001 - no server: say so, keep SQLite's figures
            print(f"postgresql: skipped ({type(exc).__name__}: {exc})")
    print()
    for label, figures in results:
        report(label, figures)


if __name__ == "__main__":
    main()
