"""A queue's lock kept by a session that went quiet (a stopped process, a
host cut off mid-claim) on PostgreSQL: reading commands and submit do not
wait for it, a pool keeps its running jobs alive and serves its other
queues, and the server itself ends a jobctl claim whose client fell silent,
so the lock is not kept until the network gives up on it."""

from __future__ import annotations

import threading
import time

import pytest

from jobctl import store
from jobctl.backends import get_backend
from jobctl.config import parse_dsn
from jobctl.model import utcnow
from jobctl.store import claims
from test_pool import Pool, pools  # noqa: F401 - pools: the fixture
from test_queues import note_run, runs


@pytest.fixture
def pg_env(env):
    if env.backend != "postgresql":
        pytest.skip("the queue's row lock and server sessions: PostgreSQL")
    return env


class QueueLock:
    """Another session holding JOB_QUEUES' row of `queue` FOR UPDATE, as a
    claim does, and then doing nothing (the test's own connection)."""

    def __init__(self, env, queue: str):
        self.backend = get_backend(parse_dsn(env.dsn))
        self.conn = self.backend.connect()
        row = self.backend.execute(self.conn, "SELECT queue_name FROM job_queues "
                                   "WHERE queue_name = :q FOR UPDATE", {"q": queue}).fetchone()
        assert row is not None, f"queue {queue} has no JOB_QUEUES row"

    def release(self) -> None:
        self.conn.rollback()
        self.conn.close()


def timed(env, *args: str) -> tuple[object, float]:
    t0 = time.monotonic()
    done = env.sh(*args, timeout=60)
    return done, time.monotonic() - t0


def test_submit_status_and_list_do_not_wait_for_a_queue_lock_another_session_keeps(pg_env):
    env = pg_env
    proc = note_run(env)
    assert env.cli("queue", "set", "qlock", "--max-running", "2").exit_code == 0
    held = QueueLock(env, "qlock")
    try:
        done, took_submit = timed(env, "submit", proc, "-p", "n=1", "--queue", "qlock")
        assert done.returncode == 0, done.stderr
        job_id = done.stdout.strip()
        done, took_status = timed(env, "status", job_id, "--format", "json")
        assert done.returncode == 0, done.stderr
        done, took_list = timed(env, "list", "--queue", "qlock")
        assert done.returncode == 0, done.stderr
        # ten times what they take (about half a second each): before, they
        # waited as long as the lock was kept
        assert max(took_submit, took_status, took_list) < 10, (took_submit, took_status, took_list)
        # no worker could reserve a slot: the job waits, nothing ran
        row = env.rows(f"job_id = '{job_id}'")[0]
        assert row["status"] == "queued" and row["claim_token"] is None, row
        assert runs(env) == []
    finally:
        held.release()
    # the next reading command starts its worker
    env.sh("status", job_id)
    assert env.wait_for(job_id, lambda j: j["status"] == "completed", timeout=60)["attempt"] == 1
    assert runs(env) == [1]
    print(f"\n[queue lock] kept by another session: submit {took_submit:.2f}s, status "
          f"{took_status:.2f}s, list {took_list:.2f}s; the job ran once the lock was free")


def test_a_pool_keeps_its_jobs_alive_and_serves_its_other_queue_while_one_queues_lock_is_kept(
        pg_env, pools):
    env = pg_env
    proc = note_run(env)
    for queue in ("qheld", "qfree"):
        assert env.cli("queue", "set", queue, "--max-running", "2").exit_code == 0
    pool = Pool(env, "--queue", "qheld", "--queue", "qfree", "--concurrency", "3")
    pools.append(pool)
    held = QueueLock(env, "qheld")
    try:
        waiting = env.submit(proc, "-p", "n=1", "--queue", "qheld")
        # runs for twice lost_after: its heartbeats must not queue behind the
        # pool's claim of qheld
        long = env.submit(proc, "-p", "n=2", "-p", "seconds=4", "--queue", "qfree")
        job = env.wait_for(long, lambda j: j["status"] not in ("queued", "running"), timeout=60)
        assert job["status"] == "completed" and job["worker_pid"] == pool.pid, job
        short = env.submit(proc, "-p", "n=3", "--queue", "qfree")
        assert env.wait_for(short, lambda j: j["status"] == "completed", timeout=30)["worker_pid"] == pool.pid
        assert env.status(waiting)["status"] == "queued"
        assert pool.row()["state"] == "running"
    finally:
        held.release()
    assert env.wait_for(waiting, lambda j: j["status"] == "completed", timeout=30)["worker_pid"] == pool.pid
    assert runs(env) == [1, 2, 3]
    assert pool.stop() == 0


def test_the_server_ends_a_claim_whose_client_falls_silent_and_frees_the_queue(pg_env, monkeypatch):
    """The claim of a client stopped (or cut off) while it holds its queue's
    lock: the server ends its session after the bound, so other hosts'
    claims go on. The pause is injected into the claim, between taking the
    lock and its next statement; the database is the real one."""
    env = pg_env
    assert env.cli("queue", "set", "qsilent", "--max-running", "2").exit_code == 0
    backend = get_backend(parse_dsn(env.dsn))
    locked, resume = threading.Event(), threading.Event()
    real_queue_row = claims.queue_row

    def queue_row_then_silence(*args, **kwargs):
        found = real_queue_row(*args, **kwargs)
        locked.set()
        resume.wait(60)
        return found

    monkeypatch.setattr(claims, "queue_row", queue_row_then_silence)
    outcome: dict = {}

    def claim() -> None:
        conn = backend.connect()
        try:
            outcome["claimed"] = store.claim_next(
                backend, conn, "qsilent", now=utcnow(),
                host="silent-host", pid=1, token="t",
                bounds=store.LockBounds(wait_s=0.1, silent_s=1.0))
        except Exception as exc:  # noqa: BLE001 - what the silent client meets on waking
            outcome["error"] = exc
        finally:
            conn.close()

    claimer = threading.Thread(target=claim)
    claimer.start()
    try:
        assert locked.wait(30), "the claim never took the queue's lock"
        other = backend.connect()
        t0 = time.monotonic()
        backend.execute(other, "SET lock_timeout = '30s'")
        backend.execute(other, "SELECT 1 FROM job_queues WHERE queue_name = 'qsilent' FOR UPDATE").fetchall()
        freed_after = time.monotonic() - t0
        other.rollback()
        other.close()
    finally:
        resume.set()
        claimer.join(60)
    # a second or so (the bound) rather than the 60 s the client stayed silent
    assert freed_after < 10, freed_after
    error = outcome.get("error")
    assert error is not None and backend.is_transient(error), outcome
    print(f"\n[queue lock] a claim silent inside its transaction: the server ended its session, "
          f"the lock free to others after {freed_after:.2f}s (bound 1 s)")
