"""Budget: `list` and `stats --since 7d` on a 1,000,000-row ASYNC_JOBS answer
from indexes, not full scans. Prints wall times and SQLite's query plans.

Usage: python bench/big_table.py [ROWS]   (default 1,000,000; takes ~1 minute)
"""

from __future__ import annotations

import datetime as dt
import random
import sqlite3
import subprocess
import sys
import time

from _common import jobctl_cmd, scratch_env

PROCS = [f"PKG_{i:02d}.PROC_{j}" for i in range(20) for j in range(5)]
STATUSES = ["completed"] * 90 + ["failed"] * 7 + ["cancelled", "timed_out", "lost"]


#: the columns `rows()` fills, in its order
FILL_COLUMNS = ("JOB_ID", "STATUS", "PROCEDURE_NAME", "START_TIME", "ELAPSED_S", "PROGRESS",
                "PARAMS", "ATTEMPT", "MAX_ATTEMPTS")


def rows(count: int, now: dt.datetime | None = None):
    """`count` finished jobs over the last year, newest first, as FILL_COLUMNS
    tuples (START_TIME a datetime in UTC; the same rows on every run)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    span = 365 * 86400
    rnd = random.Random(7)
    for i in range(count):
        start = now - dt.timedelta(seconds=span * (i / count))
        secs = rnd.lognormvariate(2, 1)
        yield (f"{i:032x}", rnd.choice(STATUSES), rnd.choice(PROCS), start, round(secs, 3), 100,
               '{"x": 1}', 1, 1)


def fill(path: str, count: int) -> None:
    conn = sqlite3.connect(path)

    def gen():
        for row in rows(count):
            yield row[:3] + (row[3].strftime("%Y-%m-%d %H:%M:%S.%f"),) + row[4:]

    conn.executemany(f"INSERT INTO ASYNC_JOBS ({', '.join(FILL_COLUMNS)}) "
                     "VALUES (?,?,?,?,?,?,?,?,?)", gen())
    conn.commit()
    conn.execute("ANALYZE")
    conn.close()


def plan(path: str, sql: str, binds: dict) -> list[str]:
    conn = sqlite3.connect(path)
    return [r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, binds)]


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    env = scratch_env()
    cmd = jobctl_cmd()
    path = env["JOBCTL_DSN"].removeprefix("sqlite:///")
    subprocess.run(cmd + ["db", "init"], env=env, check=True, capture_output=True)
    t0 = time.perf_counter()
    fill(path, rows)
    print(f"filled {rows:,} rows in {time.perf_counter() - t0:.1f} s")
    for label, args in (("list (24h, 50 rows)", ["list", "-f", "json"]),
                        ("list --status failed --since 7d", ["list", "--status", "failed", "--since", "7d", "-f", "json"]),
                        ("list --procedure P --since 30d", ["list", "--procedure", PROCS[3], "--since", "30d", "-f", "json"]),
                        ("stats --since 7d", ["stats", "--since", "7d", "-f", "json"]),
                        ("stats --since 7d --procedure P", ["stats", "--since", "7d", "--procedure", PROCS[3], "-f", "json"])):
        times = []
        for _ in range(5):
            t = time.perf_counter()
            subprocess.run(cmd + args, env=env, check=True, capture_output=True)
            times.append(time.perf_counter() - t)
        print(f"{label:34s} median {sorted(times)[2] * 1000:7.1f} ms")
    since = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=7)).strftime("%Y-%m-%d %H:%M:%S.%f")
    print("plan list:  ", plan(path, "SELECT * FROM ASYNC_JOBS WHERE start_time >= :s ORDER BY start_time DESC LIMIT 50", {"s": since}))
    print("plan stats: ", plan(path, "SELECT procedure_name, COUNT(*) FROM ASYNC_JOBS WHERE start_time >= :s GROUP BY procedure_name", {"s": since}))
    print("plan stats -P:", plan(path, "SELECT COUNT(*) FROM ASYNC_JOBS WHERE start_time >= :s AND procedure_name = :p", {"s": since, "p": PROCS[3]}))


if __name__ == "__main__":
    main()
