"""Issue 9, security and robustness: planted code, secrets, file modes, timing
knobs, zombies, the default database's repair and SQLite's write lock."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_bad_input import assert_one_line_error

FINISHED = {"completed", "failed", "cancelled", "timed_out", "lost"}


def finished(job: dict) -> bool:
    return job["status"] in FINISHED


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def console_script() -> str:
    """The installed `jobctl`: unlike `python -m jobctl`, it does not import
    from the current directory itself, as a user's shell would run it."""
    script = os.path.join(os.path.dirname(sys.executable), "jobctl")
    if not os.path.exists(script):
        pytest.skip("jobctl console script not installed next to this Python")
    return script


# -- S1: planted code -------------------------------------------------------------------

def test_worker_never_imports_a_jobctl_planted_in_the_callers_directory(env):
    shared = env.tmp / "shared"
    marker = env.tmp / "planted-code-ran"
    (shared / "jobctl").mkdir(parents=True)
    planted = f"open({str(marker)!r}, 'w').write('ran as the submitter')\n"
    (shared / "jobctl" / "__init__.py").write_text(planted)
    (shared / "jobctl" / "runner.py").write_text(planted)
    out = subprocess.run([console_script(), "submit", env.proc["suma"], "-p", "vA=20", "-p", "vB=22",
                          "--wait"], cwd=shared, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "JOBCTL_START_TIMEOUT": "5"})
    assert not marker.exists(), "the worker imported code from the submitter's directory"
    assert out.returncode == 0, out.stderr
    assert env.status(out.stdout.strip())["result"] == {"vresult": 42}


PROC_MODULE = '''
from jobctl.local import procedure

@procedure("PLANTED_DIR_DOUBLE", outputs={"doubled": int})
def double(ctx, x: int):
    return {"doubled": 2 * x}
'''


def test_procedure_module_given_by_relative_path_still_loads_in_the_worker(sqlite_env):
    here = sqlite_env.tmp / "work"
    here.mkdir()
    (here / "myprocs.py").write_text(PROC_MODULE)
    out = subprocess.run([console_script(), "submit", "PLANTED_DIR_DOUBLE", "-p", "x=21", "--wait"],
                         cwd=here, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "JOBCTL_MODULES": "myprocs.py"})
    assert out.returncode == 0, out.stderr
    assert sqlite_env.status(out.stdout.strip())["result"] == {"doubled": 42}


# -- S3: file modes -----------------------------------------------------------------------

@pytest.fixture
def default_db(sqlite_env, monkeypatch):
    """The SQLite default database (no DSN), under a permissive umask as many
    systems have."""
    monkeypatch.delenv("JOBCTL_DSN")
    old = os.umask(0o022)
    yield sqlite_env.tmp / "data" / "jobctl" / "jobs.db"
    os.umask(old)


def test_default_database_and_its_wal_files_are_private(sqlite_env, default_db):
    job_id = sqlite_env.submit("DEMO_SLEEP", "-p", "p_seconds=30")
    sqlite_env.wait_for(job_id, lambda j: j["status"] == "running")
    # the worker holds the database open, so its -wal and -shm exist now
    for path in (default_db, Path(f"{default_db}-wal"), Path(f"{default_db}-shm")):
        assert mode(path) == 0o600, (path, oct(mode(path)))
    assert mode(default_db.parent) == 0o700
    assert sqlite_env.cli("cancel", job_id).exit_code == 0
    assert sqlite_env.wait_for(job_id, finished)["status"] == "cancelled"


def test_a_database_the_python_api_creates_is_private_too(sqlite_env, default_db):
    from jobctl.api import Jobctl
    from jobctl.config import resolve_settings

    with Jobctl(resolve_settings()) as api:  # no CLI, so no umask of jobctl's
        assert api.list_jobs() == []
    assert mode(default_db) == 0o600 and mode(default_db.parent) == 0o700


def test_worker_log_is_private(sqlite_env, monkeypatch):
    from jobctl import detached
    from jobctl.api import Jobctl
    from jobctl.config import resolve_settings

    old = os.umask(0o022)
    try:
        api = Jobctl(resolve_settings())
        real_spawn = detached.spawn
        monkeypatch.setattr(detached, "spawn", lambda settings, job_id, token=None: None)
        job_id = api.submit("SUMA_SIMPLE", {"vA": 1}).job_id
        api.cancel([job_id])
        api.close()
        real_spawn(resolve_settings(), job_id)  # finds nothing to claim, and logs that
        log = sqlite_env.tmp / "state" / "jobctl" / "worker.log"
        deadline = time.monotonic() + 20
        while not log.exists() or "not claimed" not in log.read_text():
            assert time.monotonic() < deadline, "the worker wrote no log line"
            time.sleep(0.05)
    finally:
        os.umask(old)
    assert mode(log) == 0o600 and mode(log.parent) == 0o700


def test_a_default_database_readable_by_others_is_tightened_with_a_notice(sqlite_env, default_db):
    default_db.parent.mkdir(parents=True)
    sqlite3.connect(default_db).close()
    os.chmod(default_db, 0o644)
    os.chmod(default_db.parent, 0o755)
    result = sqlite_env.cli("list", "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "[]"
    notice = result.stderr.strip().splitlines()
    assert len(notice) == 1 and notice[0].startswith("jobctl: notice: ") and "private" in notice[0]
    assert mode(default_db) == 0o600 and mode(default_db.parent) == 0o700
    again = sqlite_env.cli("list")
    assert again.exit_code == 0 and again.stderr == ""


# -- S4: timing knobs -----------------------------------------------------------------------

@pytest.mark.parametrize("var, value", [
    ("JOBCTL_HEARTBEAT", "inf"), ("JOBCTL_HEARTBEAT", "nan"), ("JOBCTL_HEARTBEAT", "-1"),
    ("JOBCTL_HEARTBEAT", "0"), ("JOBCTL_HEARTBEAT", "soon"), ("JOBCTL_HEARTBEAT", "1e300"),
    ("JOBCTL_POLL", "nan"), ("JOBCTL_POLL", "0"), ("JOBCTL_LOST_AFTER", "inf"),
    ("JOBCTL_START_TIMEOUT", "-1"), ("JOBCTL_RETRY_BACKOFF", "nan"), ("JOBCTL_BUSY_TIMEOUT", "inf"),
    ("JOBCTL_BUSY_TIMEOUT", "0"), ("JOBCTL_OUTCOME_RETRY", "abc"), ("JOBCTL_OUTCOME_RETRY", "-5"),
    ("JOBCTL_OUTCOME_RETRY", "1e400"),
])
def test_a_bad_timing_knob_is_refused_at_start_naming_it(sqlite_env, monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    before = sqlite_env.rows()
    assert_one_line_error(sqlite_env.cli("submit", "SUMA_SIMPLE", "-p", "vA=1"), 2, var)
    assert_one_line_error(sqlite_env.cli("list"), 2, var)
    assert sqlite_env.rows() == before


@pytest.mark.parametrize("heartbeat, lost_after", [("2", "2"), ("3", "2"), ("1", "2.5")])
def test_a_heartbeat_not_well_under_lost_after_is_refused(sqlite_env, monkeypatch, heartbeat, lost_after):
    monkeypatch.setenv("JOBCTL_HEARTBEAT", heartbeat)
    monkeypatch.setenv("JOBCTL_LOST_AFTER", lost_after)
    before = sqlite_env.rows()
    assert_one_line_error(sqlite_env.cli("cleanup", "--days", "1"), 2, "JOBCTL_HEARTBEAT",
                          "JOBCTL_LOST_AFTER")
    assert sqlite_env.rows() == before


def test_a_bad_timing_key_in_a_profile_is_named(sqlite_env, monkeypatch):
    cfg = sqlite_env.tmp / "config" / "jobctl" / "config.toml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text(f'[profiles.t]\ndsn = "{sqlite_env.dsn}"\npoll_s = "nan"\n')
    monkeypatch.delenv("JOBCTL_POLL")
    assert_one_line_error(sqlite_env.cli("--profile", "t", "list"), 2, "poll_s")


# -- item 4: no zombies in a long-lived caller ---------------------------------------------------

def _children() -> set[int]:
    me = str(os.getpid())
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                ppid = fh.read().rsplit(b")", 1)[1].split()[1]
        except (OSError, IndexError):
            continue
        if ppid.decode() == me:
            found.add(int(entry))
    return found


def test_api_submit_leaves_no_child_or_zombie_in_the_caller(env):
    from jobctl.api import Jobctl
    from jobctl.config import resolve_settings

    before = _children()
    with Jobctl(resolve_settings()) as api:
        ids = [api.submit(env.proc["suma"], {"vA": i}).job_id for i in range(5)]
    assert _children() - before == set()
    for i, job_id in enumerate(ids):
        job = env.wait_for(job_id, finished)
        assert job["status"] == "completed" and job["result"] == {"vresult": i}
    assert _children() - before == set()  # none finished into a zombie either


def test_submit_to_running_stays_fast(sqlite_env):
    started = time.monotonic()
    job_id = sqlite_env.submit("DEMO_SLEEP", "-p", "p_seconds=2")
    sqlite_env.wait_for(job_id, lambda j: j["status"] != "queued", timeout=10)
    # budget 0.5 s (DESIGN); 10x for a loaded test machine
    assert time.monotonic() - started < 5.0


# -- item 5: the default database is repaired --------------------------------------------------

def test_an_empty_default_database_file_gets_its_schema(sqlite_env, default_db):
    default_db.parent.mkdir(parents=True, mode=0o700)
    default_db.touch(mode=0o600)  # what a full disk left behind
    job_id = sqlite_env.submit("SUMA_SIMPLE", "-p", "vA=3")
    assert sqlite_env.wait_for(job_id, finished)["result"] == {"vresult": 3}


def test_a_half_created_default_database_is_completed(sqlite_env, default_db):
    default_db.parent.mkdir(parents=True, mode=0o700)
    with sqlite3.connect(default_db) as conn:
        # the table of the first statement, none of the columns and indexes after it
        conn.execute("CREATE TABLE ASYNC_JOBS (JOB_ID VARCHAR(32) PRIMARY KEY, STATUS VARCHAR(20) "
                     "NOT NULL, PROCEDURE_NAME VARCHAR(200) NOT NULL, START_TIME TIMESTAMP NOT NULL, "
                     "END_TIME TIMESTAMP, DURATION VARCHAR(50), RESULT TEXT, ERROR_MSG TEXT, "
                     "PROGRESS NUMERIC DEFAULT 0, CREATED_AT TIMESTAMP DEFAULT CURRENT_TIMESTAMP)")
    os.chmod(default_db, 0o600)
    job_id = sqlite_env.submit("SUMA_SIMPLE", "-p", "vA=4", "--unique")
    assert sqlite_env.wait_for(job_id, finished)["result"] == {"vresult": 4}
    with sqlite3.connect(default_db) as conn:
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert "UX_ASYNC_JOBS_UNIQUE_ACTIVE" in indexes and journal == "wal"


# -- item 6: a command blocked by another writer -------------------------------------------------

def _hold_write_lock(db: str) -> sqlite3.Connection:
    conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN IMMEDIATE")
    return conn


def test_blocked_writer_says_what_it_waits_for_then_fails_with_exit_4(sqlite_env):
    before = sqlite_env.rows()
    holder = _hold_write_lock(sqlite_env.dsn.removeprefix("sqlite:///"))
    try:
        started = time.monotonic()
        out = sqlite_env.sh("submit", "SUMA_SIMPLE", "-p", "vA=1", env={"JOBCTL_BUSY_TIMEOUT": "4"})
        elapsed = time.monotonic() - started
    finally:
        holder.rollback()
        holder.close()
    assert out.returncode == 4, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 2, out.stderr
    assert lines[0].startswith("jobctl: waiting for the write lock on ")
    assert lines[1].startswith("jobctl: error: ") and "locked" in lines[1] and "JOBCTL_BUSY_TIMEOUT" in lines[1]
    assert out.stdout == ""
    assert 3.5 < elapsed < 40
    assert sqlite_env.rows() == before


def test_blocked_writer_goes_on_once_the_lock_is_released(sqlite_env):
    holder = _hold_write_lock(sqlite_env.dsn.removeprefix("sqlite:///"))
    proc = subprocess.Popen([sys.executable, "-m", "jobctl", "submit", "SUMA_SIMPLE", "-p", "vA=5", "--wait"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        notice = proc.stderr.readline()  # blocks until jobctl says what it waits for
    finally:
        holder.rollback()
        holder.close()
    out, err = proc.communicate(timeout=60)
    assert notice.startswith("jobctl: waiting for the write lock on "), notice + err
    assert proc.returncode == 0, err
    assert sqlite_env.status(out.strip())["result"] == {"vresult": 5}


# -- S2: a secret a driver reads from the environment ------------------------------------------

PEEK_MODULE = '''
import os
from jobctl.local import procedure

@procedure("ENV_PEEK", outputs={"in_memory": bool, "in_proc_environ": bool})
def peek(ctx, name: str):
    with open("/proc/self/environ", "rb") as fh:
        raw = fh.read()
    return {"in_memory": os.environ.get(name) == "sekret-pw-42", "in_proc_environ": b"sekret-pw-42" in raw}
'''


def test_secret_variables_reach_the_workers_memory_but_not_its_environ(sqlite_env, monkeypatch):
    """A driver that reads its own variable (PGPASSWORD, a wallet's password)
    still finds it in the worker, while /proc/PID/environ never shows it."""
    module = sqlite_env.tmp / "peek.py"
    module.write_text(PEEK_MODULE)
    cfg = sqlite_env.tmp / "config" / "jobctl" / "config.toml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text(f'[profiles.t]\ndsn = "{sqlite_env.dsn}"\npassword_env = "MY_DB_SECRET"\n'
                   f'modules = ["{module}"]\n')
    monkeypatch.setenv("MY_DB_SECRET", "sekret-pw-42")
    result = sqlite_env.cli("--profile", "t", "submit", "ENV_PEEK", "-p", "name=MY_DB_SECRET", "--wait")
    assert result.exit_code == 0, result.stderr
    job = sqlite_env.status(result.stdout.strip())
    assert job["result"] == {"in_memory": True, "in_proc_environ": False}


# -- item 7 through the Python API ----------------------------------------------------------------

@pytest.mark.parametrize("call", [
    lambda api: api.list_jobs(since_s=1e300),
    lambda api: api.list_jobs(since_s=float("nan")),
    lambda api: api.list_jobs(limit=10 ** 24),
    lambda api: api.stats(since_s=float("inf")),
    lambda api: api.cleanup(days=float("nan")),
    lambda api: api.submit("SUMA_SIMPLE", {"vA": 1}, timeout_s=float("inf")),
])
def test_overflowing_input_through_the_api_is_a_usage_error(sqlite_env, call):
    from jobctl.api import Jobctl
    from jobctl.config import resolve_settings
    from jobctl.errors import UsageError

    before = sqlite_env.rows()
    with Jobctl(resolve_settings()) as api, pytest.raises(UsageError):
        call(api)
    assert sqlite_env.rows() == before
