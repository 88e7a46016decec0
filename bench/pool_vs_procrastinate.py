"""Issue 10's figures on PostgreSQL, measured side by side in one run, in one
throwaway database (on JOBCTL_TEST_PG_ADMIN_DSN, default
postgresql://postgres@127.0.0.1:5432/test; dropped at the end):

1. N calls (default 1,000) of a no-op stored procedure, bench_noop(), through
   `jobctl worker --queue Q --concurrency 4` and through procrastinate's
   worker at concurrency 4 (goal: jobctl at least twice procrastinate's rate).
   Both sides enqueue every job first, then the worker process is started and
   timed from its start (interpreter start-up and imports included, on both
   sides) until every job has its outcome, polled by SQL (ASYNC_JOBS /
   procrastinate_jobs); then it gets SIGTERM.
   - jobctl: `submit bench_noop --params-file FILE` (N lines of `{}`) into a
     queue that is paused while jobs go in, so no detached worker drains
     them; it is unpaused by SQL, not `queue resume` (which would start
     detached workers for the free slots), just before the pool starts. Run
     twice: the queue's limit at 4 (a limit that holds across hosts: each
     claim locks the queue's row) and at 0, unlimited, where only
     --concurrency bounds the pool, as only --concurrency bounds
     procrastinate's worker (it has no cross-host limit).
   - procrastinate: the peer a Python user would pick, in its own venv
     (bench/.venv-procrastinate; never a dependency of jobctl). The task is
     async and runs `CALL bench_noop()` on a connection from the app's
     psycopg pool, committing when it hands the connection back, as jobctl
     commits with the call. The pool holds 5 connections (BENCH_POOL_SIZE):
     one per running task plus one for the worker's fetch/finish queries, so
     no task waits for a connection (the default pool of 4 would make it).
     Jobs go in with batch_defer, one statement; the worker is procrastinate's
     own CLI with LISTEN/NOTIFY on (its default).
   --without-reset adds the unlimited pool once more with each job's session
   reset (DISCARD ALL) replaced by a no-op (bench/_without_reset.py; the
   product has no such switch), and reports the reset's cost per job.
   --rounds R repeats part 1 R times, each round starting with the next
   side, and reports the medians. The worker process's CPU seconds per job
   are printed beside jobs/s: they move less with the machine's other load.
2. The same N jobs without the pool: `submit --params-file` into a queue of
   limit 4, where submit starts detached workers that drain the queue
   (bench/queue_drain.py's drain()): jobs/s, peak worker processes (the
   runner bootstrap's processes), peak jobctl sessions in pg_stat_activity.
3. The batch insert rate of --params-file, 5,000 lines, into a paused queue
   (goal: 2,000 jobs/s or more), the whole command timed.
4. Peak VmRSS of `jobctl worker` (its process and any children) at
   concurrency 1 and 8 while it drains --rss-jobs jobs.

    .venv/bin/python bench/pool_vs_procrastinate.py [--jobs 1000] [--insert 5000] [--rss-jobs 400] [--rounds 1]

Parts that cannot run say so and are skipped: the pool when `jobctl worker
--help` fails, procrastinate when its venv is missing. Make that venv with
    python3 -m venv bench/.venv-procrastinate
    bench/.venv-procrastinate/bin/pip install procrastinate 'psycopg[binary]'
The machine's other load moves every figure: compare figures of one run."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from _common import (PROBE_APP, Peaks, cpu_seconds, jobctl_cmd, pg_database, probe_connection, rss_kib,
                     scratch_env, tagged_pids, tree_pids)
from queue_drain import drain, insert_rate

HERE = Path(__file__).resolve().parent
PEER_PYTHON = HERE / ".venv-procrastinate" / "bin" / "python"
NOOP_SQL = "CREATE PROCEDURE bench_noop() LANGUAGE plpgsql AS $$ BEGIN END $$"
SESSIONS_SQL = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                f"AND application_name <> '{PROBE_APP}'")


def quiet(argv: list[str], env: dict[str, str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, check=True, capture_output=True, text=True, **kw)


def timed_worker(argv: list[str], env: dict[str, str], dsn: str, *, jobs: int, done_sql: str,
                 running_sql: str, status_sql: str, args: tuple[Any, ...]) -> dict[str, Any]:
    """Start the worker process `argv`, time it until `done_sql` counts
    `jobs`, SIGTERM it, and sample meanwhile: peak running jobs, database
    sessions (the probes' own left out), RSS of its process tree, and
    detached jobctl workers of this run (none expected beside a pool)."""
    tag = env.get("JOBCTL_BENCH_TAG", "-")
    log = tempfile.NamedTemporaryFile(prefix="jobctl-bench-worker-", suffix=".log", delete=False)
    with contextlib.ExitStack() as stack:
        poll, sample = probe_connection(dsn), probe_connection(dsn)
        stack.callback(poll.close)
        stack.callback(sample.close)
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        peaks = stack.enter_context(Peaks({
            "running": lambda: sample.execute(running_sql, args).fetchone()[0],
            "sessions": lambda: sample.execute(SESSIONS_SQL).fetchone()[0],
            "rss_kib": lambda: sum(rss_kib(p) for p in tree_pids(proc.pid)),
            "detached": lambda: len(tagged_pids(tag)),
        }, every=0.05))
        deadline = t0 + max(120.0, jobs / 5)
        done = 0
        while (done := poll.execute(done_sql, args).fetchone()[0]) < jobs:
            if proc.poll() is not None or time.perf_counter() > deadline:
                break
            time.sleep(0.02)
        seconds = time.perf_counter() - t0
        # less moved by the machine's other load than the wall time
        cpu = sum(cpu_seconds(p) for p in tree_pids(proc.pid))
    stop0 = time.perf_counter()
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    stop_s = time.perf_counter() - stop0
    with probe_connection(dsn) as conn:
        statuses = dict(conn.execute(status_sql, args).fetchall())
    out = {"jobs": jobs, "done": done, "seconds": seconds, "jobs_per_s": done / seconds,
           "cpu_s": cpu, "statuses": statuses, "exit": proc.returncode, "stop_s": stop_s, **peaks.peak}
    if done < jobs or proc.returncode != 0:
        with open(log.name, errors="replace") as fh:
            out["log_tail"] = fh.read()[-2000:]
    os.unlink(log.name)
    return out


def jobctl_pool(env: dict[str, str], dsn: str, queue: str, jobs: int, concurrency: int, *,
                limit: int, reset: bool = True) -> dict[str, Any]:
    cmd = jobctl_cmd()
    quiet(cmd + ["queue", "set", queue, "--max-running", str(limit)], env)  # creates it
    quiet(cmd + ["queue", "pause", queue], env)
    with tempfile.NamedTemporaryFile("w", prefix="jobctl-bench-", suffix=".jsonl") as fh:
        fh.write("{}\n" * jobs)
        fh.flush()
        ids = quiet(cmd + ["submit", "bench_noop", "--params-file", fh.name, "--queue", queue],
                    env).stdout.split()
    assert len(ids) == jobs, f"submitted {len(ids)} of {jobs}"
    with probe_connection(dsn) as conn:
        conn.execute("UPDATE job_queues SET paused = 0 WHERE queue_name = %s", (queue,))
    # without the reset: the same worker, its session reset replaced by a no-op
    # (bench/_without_reset.py), to measure what the reset costs per job
    worker = cmd if reset else [sys.executable, str(HERE / "_without_reset.py")]
    return timed_worker(
        worker + ["worker", "--queue", queue, "--concurrency", str(concurrency)], env, dsn, jobs=jobs,
        done_sql="SELECT count(*) FROM async_jobs WHERE queue = %s AND status NOT IN ('queued', 'running')",
        running_sql="SELECT count(*) FROM async_jobs WHERE queue = %s AND status = 'running'",
        status_sql="SELECT status, count(*) FROM async_jobs WHERE queue = %s GROUP BY status",
        args=(queue,))


def peer_env(dsn: str) -> dict[str, str]:
    return {**os.environ, "BENCH_PG_DSN": dsn, "PYTHONPATH": str(HERE)}


def procrastinate_worker(dsn: str, queue: str, jobs: int, concurrency: int) -> dict[str, Any]:
    env = peer_env(dsn)
    quiet([str(PEER_PYTHON), str(HERE / "_procrastinate_app.py"), "defer", str(jobs), queue], env)
    return timed_worker(
        [str(PEER_PYTHON.parent / "procrastinate"), "--app=_procrastinate_app.app", "worker",
         "--concurrency", str(concurrency), "--queues", queue], env, dsn, jobs=jobs,
        done_sql="SELECT count(*) FROM procrastinate_jobs WHERE queue_name = %s "
                 "AND status NOT IN ('todo', 'doing')",
        running_sql="SELECT count(*) FROM procrastinate_jobs WHERE queue_name = %s AND status = 'doing'",
        status_sql="SELECT status::text, count(*) FROM procrastinate_jobs WHERE queue_name = %s "
                   "GROUP BY status",
        args=(queue,))


def worker_available(env: dict[str, str]) -> bool:
    return subprocess.run(jobctl_cmd() + ["worker", "--help"], env=env, capture_output=True).returncode == 0


def describe(name: str, r: dict[str, Any]) -> str:
    line = (f"{name}: {r['done']}/{r['jobs']} done in {r['seconds']:.2f} s = {r['jobs_per_s']:.0f} jobs/s; "
            f"worker CPU {r['cpu_s']:.2f} s; statuses {r['statuses']}; peak running {r['running']}, peak sessions {r['sessions']}, "
            f"peak RSS {r['rss_kib'] / 1024:.1f} MiB, detached jobctl workers {r['detached']}; "
            f"SIGTERM -> exit {r['exit']} in {r['stop_s'] * 1000:.0f} ms")
    if "log_tail" in r:
        line += "\n  worker output (tail):\n  " + r["log_tail"].replace("\n", "\n  ")
    return line


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--insert", type=int, default=5000)
    ap.add_argument("--rss-jobs", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--without-reset", action="store_true",
                    help="also run the unlimited pool with each job's session reset (DISCARD ALL) "
                         "turned off, and report what the reset costs per job")
    args = ap.parse_args()

    env = scratch_env()
    env["JOBCTL_BENCH_TAG"] = uuid.uuid4().hex
    pool = worker_available(env)
    if not pool:
        print("skipped: the jobctl pool (`jobctl worker --help` fails: this jobctl has no worker "
              "command); parts 1 (jobctl side) and 4 need it", flush=True)
    peer = PEER_PYTHON.exists()
    if not peer:
        print(f"skipped: procrastinate ({PEER_PYTHON} is missing; see this script's docstring)",
              flush=True)
    table: list[tuple[str, str, str]] = []
    with pg_database(env) as dsn:
        quiet(jobctl_cmd() + ["db", "init"], env)
        with probe_connection(dsn) as conn:
            conn.execute(NOOP_SQL)
        if peer:
            quiet([str(PEER_PYTHON), str(HERE / "_procrastinate_app.py"), "schema"], peer_env(dsn))

        c = args.concurrency
        # jobctl twice: under its queue's limit of c (what holds across hosts;
        # every claim locks the queue's row) and unlimited, where only
        # --concurrency bounds it, as only --concurrency bounds procrastinate
        sides: dict[str, Callable[[str], dict[str, Any]]] = {}
        if pool:
            sides[f"jobctl worker -c {c}, queue limit {c}"] = \
                lambda q: jobctl_pool(env, dsn, q, args.jobs, c, limit=c)
            sides[f"jobctl worker -c {c}, queue unlimited"] = \
                lambda q: jobctl_pool(env, dsn, q, args.jobs, c, limit=0)
            if args.without_reset:
                sides[f"jobctl worker -c {c}, queue unlimited, without the session reset"] = \
                    lambda q: jobctl_pool(env, dsn, q, args.jobs, c, limit=0, reset=False)
        if peer:
            sides[f"procrastinate worker -c {c}"] = lambda q: procrastinate_worker(dsn, q, args.jobs, c)
        rates: dict[str, list[float]] = {name: [] for name in sides}
        cpu_ms: dict[str, list[float]] = {name: [] for name in sides}
        names = list(sides)
        for rnd in range(args.rounds):
            # each round starts with the next side, so none always runs first
            for k, name in enumerate(names[rnd % len(names):] + names[:rnd % len(names)]):
                r = sides[name](f"part1_{rnd}_{k}")
                print(describe(f"[1] {name}, {args.jobs} jobs", r), flush=True)
                rates[name].append(r["jobs_per_s"])
                cpu_ms[name].append(r["cpu_s"] * 1000 / max(r["done"], 1))
        for name in names:
            table.append((f"{name}, {args.jobs} no-op calls", f"{statistics.median(rates[name]):.0f} jobs/s", ""))
            table.append(("  its process's CPU per job", f"{statistics.median(cpu_ms[name]):.2f} ms", ""))
        peer_rate = [statistics.median(v) for k, v in rates.items() if k.startswith("procrastinate")]
        for name in names:
            if name.startswith("jobctl") and peer_rate:
                table.append((f"ratio: {name.removeprefix('jobctl worker ')} / procrastinate",
                              f"{statistics.median(rates[name]) / peer_rate[0]:.2f}x", ">= 2x"))
        with_reset = rates.get(f"jobctl worker -c {c}, queue unlimited")
        without = rates.get(f"jobctl worker -c {c}, queue unlimited, without the session reset")
        if with_reset and without:
            # per job of one slot: the wall time per job times the concurrency
            cost = c * (1 / statistics.median(with_reset) - 1 / statistics.median(without))
            table.append(("  the session reset's cost per job (one slot's time)",
                          f"{cost * 1000:.2f} ms", ""))

        d = drain(env, "bench_noop", ["{}"] * args.jobs, queue="free", by_sql=True)
        print(f"[2] daemon-free, {args.jobs} jobs via --params-file into a queue of limit 4: "
              f"{d['completed']}/{d['jobs']} completed in {d['seconds']:.2f} s = {d['jobs_per_s']:.0f} jobs/s "
              f"(submit command {d['submit_s'] * 1000:.0f} ms); peak worker processes {d['peak_procs']}, "
              f"peak jobctl sessions {d['peak_sessions']}", flush=True)
        table.append((f"daemon-free, limit 4, {args.jobs} no-op calls", f"{d['jobs_per_s']:.0f} jobs/s", ""))
        table.append(("  peak worker processes / sessions", f"{d['peak_procs']} / {d['peak_sessions']}", ""))

        i = insert_rate(env, "bench_noop", ["{}"] * args.insert, queue="ins")
        print(f"[3] --params-file batch insert of {args.insert} jobs: {i['seconds']:.2f} s wall "
              f"(whole command) = {i['jobs_per_s']:.0f} jobs/s", flush=True)
        table.append((f"--params-file insert, {args.insert} lines", f"{i['jobs_per_s']:.0f} jobs/s",
                      ">= 2000"))

        if pool:
            for conc in (1, 8):
                r = jobctl_pool(env, dsn, f"rss{conc}", args.rss_jobs, conc, limit=conc)
                print(describe(f"[4] jobctl worker --concurrency {conc}, {args.rss_jobs} jobs", r), flush=True)
                table.append((f"jobctl worker -c {conc}: peak RSS ({r['jobs_per_s']:.0f} jobs/s)",
                              f"{r['rss_kib'] / 1024:.1f} MiB", ""))

    width = max(len(row[0]) for row in table)
    print(f"\n{'figure':<{width}}  {'measured':>12}  goal")
    for name, value, goal in table:
        print(f"{name:<{width}}  {value:>12}  {goal}")
    print("(one run on a shared machine: other load moves these figures)")


if __name__ == "__main__":
    main()
