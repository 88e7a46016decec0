"""Issue 16 on the SQLite default: a reading command never waits for another
process's write lock, and a job's outcome survives a commit that meets a long
lock or a full disk."""

from __future__ import annotations

import json
import os
import shutil
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
    assert jobctl("queue", "set", "night", "--max-running", "4").returncode == 0
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


# -- the outcome's commit meets a lock held past the busy timeout ------------------------------

def test_a_finished_jobs_outcome_waits_out_a_long_lock_and_reads_completed(default_db, monkeypatch):
    """The job ends while another process holds the write lock for longer than
    the busy timeout: the worker tries the same commit again (up to
    JOBCTL_OUTCOME_RETRY) and records `completed`, once, with its result."""
    monkeypatch.setenv("JOBCTL_LOST_AFTER", "60")  # the heartbeat is locked out too
    monkeypatch.setenv("JOBCTL_OUTCOME_RETRY", "60")
    busy = {"JOBCTL_BUSY_TIMEOUT": "1"}
    submitted = subprocess.run([sys.executable, "-m", "jobctl", "submit", "DEMO_SLEEP", "-p", "p_seconds=1"],
                               capture_output=True, text=True, timeout=60, env={**os.environ, **busy})
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    wait_until(job_id, {"running"} | FINISHED)
    locker = Locker(default_db)  # the job's 1 s ends under it
    try:
        time.sleep(5)  # five busy timeouts
        assert locker.alive
        assert sqlite_rows(default_db, job_id)["status"] == "running"
    finally:
        locker.release()
    job = wait_until(job_id, FINISHED)
    assert job["status"] == "completed", job
    assert job["error_msg"] is None and job["attempt"] == 1


def test_an_outcome_that_never_commits_is_failed_with_the_reason(default_db, monkeypatch):
    """The lock outlasts JOBCTL_OUTCOME_RETRY: the job reads `failed`, saying why."""
    monkeypatch.setenv("JOBCTL_LOST_AFTER", "60")
    monkeypatch.setenv("JOBCTL_OUTCOME_RETRY", "2")
    submitted = subprocess.run([sys.executable, "-m", "jobctl", "submit", "DEMO_SLEEP", "-p", "p_seconds=1"],
                               capture_output=True, text=True, timeout=60,
                               env={**os.environ, "JOBCTL_BUSY_TIMEOUT": "1"})
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    wait_until(job_id, {"running"} | FINISHED)
    locker = Locker(default_db)
    try:
        time.sleep(6)  # the job's second, the retry's two, and more
    finally:
        locker.release()
    job = wait_until(job_id, FINISHED)
    assert job["status"] == "failed", job
    assert "lock" in job["error_msg"], job


# -- the outcome's commit meets a full disk ------------------------------------------------------

FILL_MODULE = '''
import os
from jobctl.local import procedure

@procedure("WORK_THEN_FILL_DISK", outputs={"done": int})
def work_then_fill(ctx, marker: str, filler: str, in_db: int):
    with open(marker, "a") as fh:  # the job's work, outside the database: counts its runs
        fh.write("ran\\n")
    if in_db:  # or work in the database, committed with the outcome
        ctx.connection.execute("INSERT INTO loaded VALUES (?)", (os.urandom(256 * 1024),))
    with open(filler, "wb") as fh:  # then the filesystem fills up
        try:
            while True:
                fh.write(b"x" * 65536)
                fh.flush()
        except OSError:
            pass
    return {"done": 1}
'''

FULL_DISK_SCRIPT = '''
import json, os, sqlite3, subprocess, sys, time
where, module, marker, in_db = sys.argv[1:5]
db, filler = os.path.join(where, "jobs.db"), os.path.join(where, "filler")
env = {**os.environ, "JOBCTL_DSN": "sqlite:///" + db, "JOBCTL_MODULES": module,
       "JOBCTL_LOST_AFTER": "60", "JOBCTL_OUTCOME_RETRY": "60"}
def jobctl(*args):
    out = subprocess.run([sys.executable, "-m", "jobctl", *args], capture_output=True, text=True,
                         env=env, timeout=120, cwd="/")
    assert out.returncode == 0, out.stderr
    return out.stdout
jobctl("db", "init")
with sqlite3.connect(db) as conn:
    conn.execute("CREATE TABLE loaded (payload BLOB)")
job_id = jobctl("submit", "WORK_THEN_FILL_DISK", "-p", "marker=" + marker, "-p", "filler=" + filler,
                "-p", "in_db=" + in_db).strip()
deadline = time.monotonic() + 60
while not os.path.exists(filler) and time.monotonic() < deadline:
    time.sleep(0.05)
time.sleep(3)  # the disk stays full a while: the commit meets it
mid = json.loads(jobctl("status", job_id, "--format", "json"))["status"]
os.remove(filler)
while time.monotonic() < deadline:
    job = json.loads(jobctl("status", job_id, "--format", "json"))
    if job["status"] not in ("queued", "running"):
        break
    time.sleep(0.1)
with sqlite3.connect(db) as conn:
    rows = conn.execute("SELECT count(*) FROM loaded").fetchone()[0]
print(json.dumps({"mid": mid, "status": job["status"], "error": job["error_msg"],
                  "result": job["result"], "rows": rows}))
'''


def run_on_a_full_disk(tmp_path: Path, *, in_db: bool) -> tuple[dict, int]:
    """A filesystem of its own (a small tmpfs in a private mount namespace)
    fills up between the job's work and the commit of its outcome."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare for a small filesystem of the test's own")
    where = tmp_path / "small"
    where.mkdir()
    module = tmp_path / "fill.py"
    module.write_text(FILL_MODULE)
    script = tmp_path / "full_disk.py"
    script.write_text(FULL_DISK_SCRIPT)
    marker = tmp_path / "runs"
    mount = (f"mount -t tmpfs -o size=8m tmpfs {where} && "
             f"exec {sys.executable} {script} {where} {module} {marker} {int(in_db)}")
    out = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", mount],
                         capture_output=True, text=True, timeout=180)
    if out.returncode != 0 and "Traceback" not in out.stderr:
        pytest.skip(f"cannot mount a filesystem of the test's own here: {out.stderr.strip()}")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1]), marker.read_text().count("ran")


def test_an_outcome_commit_on_a_full_disk_is_completed_once_space_is_back(tmp_path):
    """The commit fails with SQLITE_FULL; the same outcome is written again
    until space is back: `completed`, the procedure run once."""
    seen, runs = run_on_a_full_disk(tmp_path, in_db=False)
    assert seen["mid"] == "running", seen  # not failed while the disk was full
    assert seen["status"] == "completed", seen
    assert seen["error"] is None and seen["result"] == {"done": 1}
    assert runs == 1


def test_work_in_the_database_that_a_full_disk_rolled_back_is_failed_not_redone(tmp_path):
    """SQLite rolls back the whole transaction when COMMIT meets a full disk
    (seen here; it keeps it only after SQLITE_BUSY): the procedure's own
    writes are gone with it, so the job is `failed` with the reason, never run
    again, and nothing of it committed."""
    seen, runs = run_on_a_full_disk(tmp_path, in_db=True)
    assert seen["status"] == "failed", seen
    assert "full" in seen["error"] and "rolled back" in seen["error"], seen
    assert seen["rows"] == 0 and runs == 1
