"""Issue 16 on the SQLite default: a reading command never waits for another
process's write lock, and a job's outcome survives a commit that meets a long
lock or a full disk."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

FINISHED = {"completed", "failed", "cancelled", "timed_out", "lost"}

# a read takes well under a second here; the lock is held ten times longer
# than the bound, and the busy timeout longer still, so a read that waited
# for the lock can only fail the bound
READ_BOUND_S = 10.0
BUSY_TIMEOUT_S = "30"

LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""


@pytest.fixture
def default_db(sqlite_env, monkeypatch) -> Path:
    """The SQLite default database (no DSN), as a first-time user has it."""
    monkeypatch.delenv("JOBCTL_DSN")
    return sqlite_env.tmp / "data" / "jobctl" / "jobs.db"


def jobctl(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jobctl", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "JOBCTL_BUSY_TIMEOUT": BUSY_TIMEOUT_S},
                          cwd="/")


def status(job_id: str) -> dict:
    out = jobctl("status", job_id, "--format", "json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def wait_until(job_id: str, wanted: set[str], timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = status(job_id)
        if job["status"] in wanted:
            return job
        assert time.monotonic() < deadline, f"job {job_id} stayed {job['status']}"
        time.sleep(0.1)


class Locker:
    """Another process holding SQLite's write lock (a DBA's sqlite3 session,
    a local procedure writing through ctx.connection)."""

    def __init__(self, db: Path, hold_s: float = 120):
        self.proc = subprocess.Popen([sys.executable, "-c", LOCKER, str(db), str(hold_s)],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "locked"

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def release(self) -> None:
        self.proc.kill()
        self.proc.wait()


def timed(*args: str) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    out = jobctl(*args)
    return out, time.monotonic() - started


def test_status_and_list_of_a_finished_job_never_wait_for_the_write_lock(default_db):
    submitted = jobctl("submit", "SUMA_SIMPLE", "-p", "vA=10", "--wait")
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    locker = Locker(default_db)
    try:
        for args in (("status", job_id, "--format", "json"), ("list", "--format", "json"),
                     ("status", job_id)):
            out, elapsed = timed(*args)
            assert out.returncode == 0, out.stderr
            assert elapsed < READ_BOUND_S and locker.alive, (args, elapsed)
            assert "waiting for the write lock" not in out.stderr
        job = json.loads(jobctl("status", job_id, "--format", "json").stdout)
        assert job["status"] == "completed" and job["result"] == {"vresult": 10}
    finally:
        locker.release()


def test_a_queued_jobs_status_leaves_starting_its_worker_to_the_next_command(default_db):
    """The read would reserve the job for a new worker (no worker serves its
    queue): with the lock taken it shows the job queued at once, and the
    next read after the lock is free starts the worker."""
    assert jobctl("queue", "pause", "night").returncode == 0
    submitted = jobctl("submit", "SUMA_SIMPLE", "-p", "vA=7", "--queue", "night")
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    with sqlite3.connect(default_db) as conn:  # resumed behind jobctl's back: no worker started
        conn.execute("UPDATE JOB_QUEUES SET PAUSED = 0 WHERE QUEUE_NAME = 'night'")
    locker = Locker(default_db)
    try:
        out, elapsed = timed("status", job_id, "--format", "json")
        assert out.returncode == 0, out.stderr
        assert elapsed < READ_BOUND_S and locker.alive, elapsed
        assert json.loads(out.stdout)["status"] == "queued"
        assert out.stderr == ""  # no notice: the lock is no failure of the read
        assert sqlite_rows(default_db, job_id)["status"] == "queued"  # nothing reserved
    finally:
        locker.release()
    job = wait_until(job_id, FINISHED)
    assert job["status"] == "completed" and job["result"] == {"vresult": 7}


def sqlite_rows(db: Path, job_id: str) -> dict:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        row = conn.execute("SELECT * FROM ASYNC_JOBS WHERE JOB_ID = ?", (job_id,)).fetchone()
    return {k.lower(): row[k] for k in row.keys()}
