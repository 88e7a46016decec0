"""`jobctl worker`: the pool, driven as a service manager would drive it — a
real foreground process, SIGTERM, kill -9, its database sessions terminated —
against SQLite and PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from test_queues import (count, note_run, runs, submit_from_shells, tagged_workers,
                         wait_all_finished)


class Pool:
    """One `jobctl worker` process."""

    def __init__(self, env, *args: str, tag: str | None = None):
        self.env = env
        # a pool serves only queues that exist: create those it names (limit
        # untouched when a test set one first)
        known = {q["name"] for q in env.json("queue", "list")}
        for flag, queue in zip(args, args[1:]):
            if flag == "--queue" and queue not in known:
                assert env.cli("queue", "set", queue, "--max-running", "4").exit_code == 0
        extra = {"JOBCTL_TEST_TAG": tag} if tag else {}
        self.proc = subprocess.Popen([sys.executable, "-m", "jobctl", "worker", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, **extra})
        self.wait_registered()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def row(self) -> dict | None:
        rows = [w for w in self.env.json("worker", "list") if w["pid"] == self.pid]
        return rows[0] if rows else None

    def wait_registered(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.row() is None:
            assert self.proc.poll() is None, self.proc.communicate()
            assert time.monotonic() < deadline, "the pool never showed up in worker list"
            time.sleep(0.05)

    def stop(self, sig: int | None = signal.SIGTERM, timeout: float = 60) -> int:
        """Send `sig` (None: it was sent already) and wait for the exit."""
        if sig is not None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.proc.stdout.close()
            self.proc.stderr.close()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)
        self.proc.stdout.close()
        self.proc.stderr.close()


@pytest.fixture
def pools():
    started: list[Pool] = []
    yield started
    for pool in started:
        if pool.proc.poll() is None:
            pool.kill()


def test_a_pool_runs_the_jobs_of_its_queue_itself_and_leaves_on_sigterm(env, pools):
    tag = f"POOL_{os.getpid()}_{time.monotonic_ns()}"
    pool = Pool(env, "--queue", "p", "--concurrency", "2", tag=tag)
    pools.append(pool)
    row = pool.row()
    assert row["queues"] == "p" and row["concurrency"] == 2 and row["state"] == "running"
    assert row["host"] == os.uname().nodename and row["worker"]
    ids = [env.submit(env.proc["suma"], "-p", f"vA={n}", "-p", "vB=1", "--queue", "p")
           for n in range(5)]
    for n, job_id in enumerate(ids):
        job = env.wait_for(job_id, lambda j: j["status"] == "completed", timeout=30)
        assert job["result"] == {"vresult": n + 1}
        assert job["worker_pid"] == pool.pid  # run by the pool, not by a worker of its own
    # a queue a live pool serves starts no process per job
    assert tagged_workers(tag) == []
    assert pool.stop() == 0
    assert env.json("worker", "list") == []
    # with the pool gone, submit starts daemon-free workers again
    later = env.submit(env.proc["suma"], "-p", "vA=1", "--queue", "p")
    assert env.wait_for(later, lambda j: j["status"] == "completed", timeout=30)["worker_pid"] != pool.pid


def test_a_limit_lowered_while_a_pool_runs_holds_as_its_jobs_end(env, pools):
    """A slot hands itself over to the queue's next job in the commit that
    ends its job (the hand-over never adds to the queue's running jobs);
    after `queue set` lowers the limit, slots stop refilling until the
    running jobs are within it, and it then holds."""
    proc = note_run(env)
    assert env.cli("queue", "set", "low", "--max-running", "3").exit_code == 0
    pools.append(Pool(env, "--queue", "low", "--concurrency", "3"))
    for p in submit_from_shells(proc, "low", 1, 12, seconds=0.3, tag="low"):
        assert p.wait(timeout=60) == 0, p.stderr.read()
        p.stdout.close()
        p.stderr.close()
    deadline = time.monotonic() + 30
    while count(env, "queue = 'low' AND status = 'running'") < 3:
        assert time.monotonic() < deadline, "the pool never ran 3 jobs at once"
        time.sleep(0.02)
    assert env.cli("queue", "set", "low", "--max-running", "1").exit_code == 0
    within = [False]
    over = []

    def sample():
        running = count(env, "queue = 'low' AND status = 'running'")
        if within[0] and running > 1:
            over.append(running)
        within[0] = within[0] or running <= 1

    wait_all_finished(env, "queue = 'low'", 12, timeout=60, on_sample=sample)
    assert within[0] and over == []
    assert runs(env) == list(range(12))


def test_limit_holds_with_two_pools_and_ten_shells_and_every_job_runs_once(env, pools):
    proc = note_run(env)
    assert env.cli("queue", "set", "lim", "--max-running", "3").exit_code == 0
    tag = f"PLIM_{os.getpid()}_{time.monotonic_ns()}"
    pools.append(Pool(env, "--queue", "lim", "--concurrency", "3", tag=tag))
    pools.append(Pool(env, "--queue", "lim", "--concurrency", "3", tag=tag))
    shells, per_shell = 10, 10
    procs = submit_from_shells(proc, "lim", shells, per_shell, seconds=0.05, tag=tag)
    peak = [0]

    def sample():
        peak[0] = max(peak[0], count(env, "queue = 'lim' AND status = 'running'"))

    for p in procs:
        assert p.wait(timeout=60) == 0, p.stderr.read()
        p.stdout.close()
        p.stderr.close()
    wait_all_finished(env, "queue = 'lim'", shells * per_shell, timeout=180, on_sample=sample)
    rows = env.rows("queue = 'lim'")
    assert {r["status"] for r in rows} == {"completed"}, [r["error_msg"] for r in rows]
    assert 1 <= peak[0] <= 3, peak[0]  # two pools of 3 and ten shells: never a fourth
    assert {int(r["worker_pid"]) for r in rows} <= {p.pid for p in pools}
    assert tagged_workers(tag) == []  # the pools took every job: no process per job
    assert runs(env) == list(range(shells * per_shell))  # each exactly once


def test_sigterm_lets_a_running_job_finish_within_the_grace(env, pools):
    pool = Pool(env, "--queue", "g", "--concurrency", "1", "--grace", "30s")
    pools.append(pool)
    job_id = env.submit(env.proc["sleep"], "-p", "p_seconds=1.5", "--queue", "g")
    env.wait_for(job_id, lambda j: j["status"] == "running", timeout=30)
    pool.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    assert pool.row()["state"] == "stopping"  # still there, finishing its job
    assert pool.stop(None, timeout=60) == 0  # a second signal would cancel at once
    assert env.status(job_id)["status"] == "completed"


def test_sigterm_past_the_grace_cancels_the_job_and_exits_zero(env, pools):
    pool = Pool(env, "--queue", "g2", "--concurrency", "2", "--grace", "0.5s")
    pools.append(pool)
    job_id = env.submit(env.proc["sleep"], "-p", "p_seconds=60", "--queue", "g2")
    env.wait_for(job_id, lambda j: j["status"] == "running", timeout=30)
    assert pool.stop(timeout=60) == 0
    job = env.status(job_id)
    assert job["status"] == "cancelled", job
    assert "SIGTERM" in job["error_msg"] and "--grace of 0.5s" in job["error_msg"]
    assert env.json("worker", "list") == []


def test_kill_9_of_a_pool_loses_only_its_jobs_and_the_other_pool_carries_on(env, pools):
    first = Pool(env, "--queue", "k", "--concurrency", "1")
    pools.append(first)
    doomed = env.submit(env.proc["sleep"], "-p", "p_seconds=30", "--queue", "k")
    env.wait_for(doomed, lambda j: j["status"] == "running", timeout=30)
    second = Pool(env, "--queue", "k", "--concurrency", "1")
    pools.append(second)
    survivor = env.submit(env.proc["sleep"], "-p", "p_seconds=1", "--queue", "k")
    env.wait_for(survivor, lambda j: j["status"] == "running", timeout=30)
    first.kill()
    assert env.wait_for(doomed, lambda j: j["status"] == "lost", timeout=30)["worker_pid"] == first.pid
    assert env.wait_for(survivor, lambda j: j["status"] == "completed", timeout=30)["worker_pid"] == second.pid
    after = env.submit(env.proc["suma"], "-p", "vA=2", "--queue", "k")
    assert env.wait_for(after, lambda j: j["status"] == "completed", timeout=30)["worker_pid"] == second.pid
    states = {w["pid"]: w["state"] for w in env.json("worker", "list")}
    assert states == {first.pid: "gone", second.pid: "running"}
    assert env.cli("cleanup", "--days", "1").exit_code == 0
    lost = env.rows(f"job_id = '{doomed}'")[0]
    assert lost["status"] == "lost" and "not re-run" in lost["error_msg"]
    assert [w["pid"] for w in env.json("worker", "list")] == [second.pid]  # cleanup forgets the gone pool


def test_cancel_progress_and_output_work_the_same_for_pool_jobs(env, pools):
    pools.append(Pool(env, "--queue", "c", "--concurrency", "2"))
    job_id = env.submit(env.proc["sleep"], "-p", "p_seconds=30", "--queue", "c")
    job = env.wait_for(job_id, lambda j: (j["progress"] or 0) > 0 and j["output"], timeout=30)
    assert "slept 1" in job["output"]
    logs = env.cli("logs", job_id, "--tail", "1")
    assert logs.exit_code == 0 and "slept" in logs.stdout
    assert env.cli("cancel", job_id).exit_code == 0
    done = env.wait_for(job_id, lambda j: j["status"] == "cancelled", timeout=30)
    assert "cancel" in done["error_msg"]
    # the pool is still there and takes the next job
    after = env.submit(env.proc["suma"], "-p", "vA=3", "--queue", "c")
    assert env.wait_for(after, lambda j: j["status"] == "completed", timeout=30)["result"] == {"vresult": 3}


def test_a_pool_survives_its_sessions_being_terminated_and_runs_nothing_twice(env, pools):
    if env.backend != "postgresql":
        pytest.skip("server sessions: PostgreSQL")
    proc = note_run(env)
    pool = Pool(env, "--queue", "t", "--concurrency", "2")
    pools.append(pool)
    first = env.submit(proc, "-p", "n=1", "-p", "seconds=30", "--queue", "t")
    env.wait_for(first, lambda j: j["status"] == "running", timeout=30)
    dbname = env.dsn.rsplit("/", 1)[1].split("?")[0]
    # every session of this database but the one asking: the pool's bookkeeping
    # connection and its call connections alike
    env.sql(f"""SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = '{dbname}' AND pid <> pg_backend_pid()""")
    job = env.wait_for(first, lambda j: j["status"] not in ("running", "queued"), timeout=60)
    assert job["status"] == "failed" and "terminat" in job["error_msg"], job
    assert pool.proc.poll() is None  # still running, reconnected
    second = env.submit(proc, "-p", "n=2", "--queue", "t")
    assert env.wait_for(second, lambda j: j["status"] == "completed", timeout=60)["worker_pid"] == pool.pid
    assert runs(env) == [2]  # the first job's work rolled back with its session; nothing ran twice
    assert pool.row()["state"] == "running"
    assert pool.stop() == 0


@pytest.mark.parametrize("args, message", [
    (["--concurrency", "0"], "--concurrency must be from 1 to 256"),
    (["--concurrency", "100000"], "--concurrency must be from 1 to 256"),
    (["--grace", "soon"], "invalid --grace 'soon'"),
    (["--grace", "-5"], "invalid --grace"),
    (["--queue", "no such; queue"], "queue"),
])
def test_bad_worker_options_are_usage_errors_and_start_nothing(sqlite_env, args, message):
    result = sqlite_env.sh("worker", *args, timeout=30)
    assert result.returncode == 2, result
    assert message in result.stderr and result.stderr.count("\n") == 1
    assert sqlite_env.json("worker", "list") == []


def test_worker_on_an_unreachable_database_fails_at_once(sqlite_env):
    result = sqlite_env.sh("--dsn", "postgresql://nobody@127.0.0.1:1/none", "worker", timeout=60)
    assert result.returncode == 4, result
    assert result.stderr.startswith("jobctl: ") and result.stderr.count("\n") == 1


def test_worker_on_a_database_without_job_workers_says_db_init(sqlite_env):
    sqlite_env.sql("DROP TABLE JOB_WORKERS")
    for args in (["worker", "list"], ["worker"]):
        result = sqlite_env.sh(*args, timeout=30)
        assert result.returncode == 4, result
        assert "JOB_WORKERS is missing: run jobctl db init" in result.stderr
    assert sqlite_env.cli("db", "init").exit_code == 0
    assert sqlite_env.json("worker", "list") == []


PRINTER = '''
import time
from jobctl.local import procedure

@procedure("PRINTER")
def printer(ctx, tag: str):
    for i in range(5):
        print(f"{tag} line {i}")
        time.sleep(0.05)
'''


def test_print_of_local_procedures_running_side_by_side_stays_with_each_job(sqlite_env, pools):
    path = sqlite_env.tmp / "printer.py"
    path.write_text(PRINTER)
    config = sqlite_env.tmp / "config" / "jobctl" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f'modules = ["{path}"]\n')
    pools.append(Pool(sqlite_env, "--queue", "pr", "--concurrency", "3"))
    ids = {tag: sqlite_env.submit("PRINTER", "-p", f"tag={tag}", "--queue", "pr")
           for tag in ("alpha", "beta", "gamma")}
    for tag, job_id in ids.items():
        job = sqlite_env.wait_for(job_id, lambda j: j["status"] == "completed", timeout=30)
        assert job["output"].splitlines() == [f"{tag} line {i}" for i in range(5)], job["output"]


def test_pause_stops_a_pools_hand_over_and_resume_restarts_it(env, pools):
    env.cli("queue", "set", "hp", "--max-running", "4")
    env.cli("queue", "pause", "hp")
    ids = [env.submit(env.proc["sleep"], "-p", "p_seconds=0.3", "--queue", "hp") for _ in range(12)]
    pools.append(Pool(env, "--queue", "hp", "--concurrency", "2"))
    assert env.cli("queue", "resume", "hp").exit_code == 0
    deadline = time.monotonic() + 60
    while count(env, "queue = 'hp' AND status = 'completed'") < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert env.cli("queue", "pause", "hp").exit_code == 0
    paused_at = time.time()
    time.sleep(2.0)
    started_late = [r["job_id"] for r in env.rows("queue = 'hp' AND status <> 'queued'")
                    if _epoch(env.status(r["job_id"])["start_time"]) > paused_at + 1.0]
    assert started_late == []  # the jobs running at the pause finished; none took their slot
    assert count(env, "queue = 'hp' AND status = 'queued'") > 0
    assert env.cli("queue", "resume", "hp").exit_code == 0
    for job_id in ids:
        env.wait_for(job_id, lambda j: j["status"] == "completed", timeout=60)


def _epoch(iso: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(iso).timestamp()
