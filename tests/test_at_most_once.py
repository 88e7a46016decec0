"""At most once, and one meaning for `lost`: killed and frozen workers,
orphaned server sessions, rows written by another application, and a SQLite
job whose own transaction blocks its heartbeat row."""

from __future__ import annotations

import os
import signal
import sqlite3
import textwrap
import time
import uuid

import pytest

from jobctl.lifecycle import pid_alive

FINISHED = {"completed", "failed", "cancelled", "timed_out", "lost"}

LOCAL_PROCS = textwrap.dedent('''
    import time
    from jobctl.local import procedure

    @procedure("SLEEP_THEN_WRITE")
    def sleep_then_write(ctx, p_note: str, p_seconds: float = 3):
        # deaf to cancel on purpose: only the guarded final write can keep
        # this work from committing once the job is no longer ours
        deadline = time.monotonic() + float(p_seconds)
        while time.monotonic() < deadline:
            try:
                time.sleep(0.05)
            except Exception:
                pass
        for _ in range(100):  # an interrupt aborts a statement: insist
            try:
                ctx.connection.execute("INSERT INTO work (note) VALUES (?)", (p_note,))
                break
            except Exception:
                pass
        return {}

    @procedure("WRITE_THEN_SLEEP")
    def write_then_sleep(ctx, p_note: str, p_seconds: float = 4):
        ctx.connection.execute("INSERT INTO work (note) VALUES (?)", (p_note,))
        ctx.sleep(float(p_seconds))  # holding the write lock all along
        return {}

    @procedure("COMMIT_INSIDE")
    def commit_inside(ctx, p_note: str):
        ctx.connection.execute("INSERT INTO work (note) VALUES (?)", (p_note,))
        ctx.connection.commit()
        raise RuntimeError("failing after my own commit")
''')

PG_PROCS = """
CREATE TABLE IF NOT EXISTS amo_work (note text);
CREATE OR REPLACE PROCEDURE amo_write_then_sleep(p_note text, p_seconds numeric DEFAULT 1)
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO amo_work VALUES (p_note);
    RAISE NOTICE 'inserted %', p_note;
    PERFORM pg_sleep(p_seconds);
END $$;
CREATE OR REPLACE PROCEDURE amo_silent_sleep(p_seconds numeric)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_sleep(p_seconds);
END $$;
CREATE OR REPLACE PROCEDURE amo_deaf_sleep(p_seconds numeric)
LANGUAGE plpgsql AS $$
BEGIN
    LOOP
        BEGIN
            PERFORM pg_sleep(p_seconds);
            EXIT;
        EXCEPTION WHEN query_canceled THEN
            RAISE NOTICE 'ignoring a cancel';
        END;
    END LOOP;
END $$;
CREATE OR REPLACE PROCEDURE amo_commit_inside(p_note text)
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO amo_work VALUES (p_note);
    COMMIT;
END $$;
"""


def finished(job):
    return job["status"] in FINISHED


def _local_procs(env):
    path = env.tmp / "amo_procs.py"
    path.write_text(LOCAL_PROCS)
    config = env.tmp / "config" / "jobctl" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f'modules = ["{path}"]\n')
    db = sqlite3.connect(env.dsn.removeprefix("sqlite:///"))
    db.execute("CREATE TABLE IF NOT EXISTS work (note TEXT)")
    db.commit()
    db.close()


def _work(env) -> list[str]:
    if env.backend == "sqlite":
        db = sqlite3.connect(env.dsn.removeprefix("sqlite:///"))
        try:
            return [r[0] for r in db.execute("SELECT note FROM work")]
        finally:
            db.close()
    return [str(r["note"]) for r in _select(env, "SELECT note FROM amo_work")]


def _select(env, query: str) -> list[dict]:
    from jobctl.backends import get_backend
    from jobctl.config import parse_dsn

    backend = get_backend(parse_dsn(env.dsn))
    conn = backend.connect()
    try:
        cur = backend.execute(conn, query)
        names = [d[0].lower() for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]
    finally:
        conn.close()


def _pg_procs(env):
    env.sql(PG_PROCS)
    env.sql("DELETE FROM amo_work")


def _gone(pid: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        assert time.monotonic() < deadline, f"worker {pid} still alive"
        time.sleep(0.1)


def _server_sessions(env, job_id: str) -> list[dict]:
    return _select(env, "SELECT pid, state FROM pg_stat_activity "
                        f"WHERE application_name = 'jobctl:{job_id}'")


# -- (a) one rule: every command says lost ---------------------------------------------

def test_killed_worker_reads_lost_in_status_list_stats_and_cleanup(env):
    job_id = env.sh("submit", env.proc["sleep"], "-p", "p_seconds=60").stdout.strip()
    job = env.wait_for(job_id, lambda j: j["status"] == "running" and j["worker_pid"])
    assert job["claim_token"] and len(job["claim_token"]) == 32
    os.kill(job["worker_pid"], signal.SIGKILL)
    # PostgreSQL: DEMO_SLEEP talks to its client every second, so the server
    # notices the dead worker and ends the session too
    job = env.wait_for(job_id, lambda j: j["status"] == "lost", timeout=20)
    assert "gone" in job["status_reason"]
    assert env.rows()[0]["status"] == "running"  # shown, not written
    assert [j["job_id"] for j in env.json("list", "--status", "lost")] == [job_id]
    assert env.json("list", "--status", "running") == []
    stats = env.json("stats")[0]
    assert (stats["lost"], stats["running"], stats["orphaned"]) == (1, 0, 0)
    assert stats["success_pct"] == 0.0
    assert env.json("cleanup", "--days", "7", "--dry-run")["marked_lost"] == 1
    assert env.json("cleanup", "--days", "7")["marked_lost"] == 1
    assert env.rows()[0]["status"] == "lost"
    assert env.json("stats")[0]["lost"] == 1


# -- (b) rows written by the original application ----------------------------------------

def test_running_row_without_a_worker_is_external_never_lost_nor_written(env):
    ext = "e" * 32
    env.sql("INSERT INTO ASYNC_JOBS (job_id, status, procedure_name, start_time, progress) "
            f"VALUES ('{ext}', 'running', 'NIGHTLY_LOAD', CURRENT_TIMESTAMP, 0)")
    time.sleep(2.5)  # longer than JOBCTL_LOST_AFTER: no heartbeat was ever written
    job = env.status(ext)
    assert job["status"] == "running" and job["external"] is True and not job["lost_detected"]
    table = env.cli("list")
    assert "running (external)" in table.stdout
    listed = env.json("list", "--status", "running")
    assert [(j["job_id"], j["external"]) for j in listed] == [(ext, True)]
    assert env.json("list", "--status", "lost") == []
    stats = env.json("stats")[0]
    assert (stats["running"], stats["lost"]) == (1, 0)
    before = env.rows()
    assert env.json("cleanup", "--days", "0")["marked_lost"] == 0
    cancel = env.cli("cancel", ext)
    assert cancel.exit_code == 0 and "external" in cancel.stderr
    assert env.rows() == before  # never written


# -- (c) the outcome commits with the work --------------------------------------------------

def test_frozen_worker_declared_lost_never_commits_its_work(env):
    if env.backend == "sqlite":
        _local_procs(env)
        job_id = env.sh("submit", "SLEEP_THEN_WRITE", "-p", "p_note=frozen-1", "-p", "p_seconds=5").stdout.strip()
        job = env.wait_for(job_id, lambda j: j["status"] == "running" and j["worker_pid"])
    elif env.backend == "postgresql":
        _pg_procs(env)
        # --atomic: the work waits, uncommitted, for the worker's own commit of
        # the outcome (by default the server writes the outcome itself at the
        # end of the call: see tests/test_real_procedures.py)
        job_id = env.sh("submit", "amo_write_then_sleep", "-p", "p_note=frozen-1",
                        "--atomic").stdout.strip()
        job = env.wait_for(job_id, lambda j: "inserted" in (j["output"] or ""))
    else:
        pytest.skip("needs a procedure that writes; the Oracle suite has its own")
    pid = job["worker_pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        job = env.wait_for(job_id, lambda j: j["status"] == "lost", timeout=30)
        assert "heartbeat" in job["status_reason"]
        assert env.json("cleanup", "--days", "7")["marked_lost"] == 1
    finally:
        os.kill(pid, signal.SIGCONT)
    _gone(pid)
    assert _work(env) == []  # the work did not commit after the job was declared lost
    log = (env.tmp / "state" / "jobctl" / "worker.log").read_text()
    assert "work rolled back" in log
    row = env.rows()[0]
    assert row["status"] == "lost" and "not re-run" in str(row["error_msg"])


def test_completed_job_commits_work_and_outcome_together(env):
    if env.backend == "sqlite":
        _local_procs(env)
        job_id = env.submit("SLEEP_THEN_WRITE", "-p", "p_note=ok-1", "-p", "p_seconds=0.1")
    elif env.backend == "postgresql":
        _pg_procs(env)
        job_id = env.submit("amo_write_then_sleep", "-p", "p_note=ok-1", "-p", "p_seconds=0")
    else:
        pytest.skip("needs a procedure that writes")
    job = env.wait_for(job_id, finished)
    assert job["status"] == "completed", job["error_msg"]
    assert _work(env) == ["ok-1"]
    assert env.rows()[0]["claim_token"] == job["claim_token"]


def test_a_procedure_that_commits_inside_itself(env):
    if env.backend == "sqlite":
        _local_procs(env)
        job_id = env.submit("COMMIT_INSIDE", "-p", "p_note=own-1")
        job = env.wait_for(job_id, finished)
        # the failure rolled back nothing: the procedure had committed, and status says so
        assert job["status"] == "failed" and _work(env) == ["own-1"]
        assert "committed inside its own transaction" in job["output"]
    elif env.backend == "postgresql":
        _pg_procs(env)
        job_id = env.submit("amo_commit_inside", "-p", "p_note=own-1")
        job = env.wait_for(job_id, finished)
        # the CALL runs at top level, as psql runs it: the COMMIT is allowed
        assert job["status"] == "completed", job["error_msg"]
        assert job["committed_inside"] is True and _work(env) == ["own-1"]
        # all or nothing on request: the COMMIT refused, the option named
        job_id = env.submit("amo_commit_inside", "-p", "p_note=own-2", "--atomic")
        job = env.wait_for(job_id, finished)
        assert job["status"] == "failed" and "invalid transaction termination" in job["error_msg"]
        assert "--atomic" in job["error_msg"] and job["db_error_code"] == "2D000"
        assert job["atomic"] is True and job["committed_inside"] is False
        assert _work(env) == ["own-1"]
    else:
        pytest.skip("Oracle: covered by the README, not by a local procedure")


# -- (e) SQLite: the job's own transaction blocks its heartbeat row ------------------------------

def test_sqlite_job_holding_the_write_lock_is_not_lost(sqlite_env):
    env = sqlite_env
    _local_procs(env)
    job_id = env.submit("WRITE_THEN_SLEEP", "-p", "p_note=locked-1", "-p", "p_seconds=5")
    env.wait_for(job_id, lambda j: j["status"] == "running")
    seen = set()
    deadline = time.monotonic() + 30
    while True:
        job = env.status(job_id)
        seen.add(job["status"])
        if finished(job) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert "lost" not in seen, seen
    assert job["status"] == "completed" and _work(env) == ["locked-1"]
    live = env.tmp / "jobs.db-live"
    assert live.is_dir() and oct(live.stat().st_mode & 0o777) == "0o700"
    assert not (live / job_id).exists()  # removed when the job ended


def test_sqlite_liveness_file_is_private_and_a_stopped_worker_still_goes_lost(sqlite_env):
    env = sqlite_env
    _local_procs(env)
    job_id = env.sh("submit", "WRITE_THEN_SLEEP", "-p", "p_note=stopped-1", "-p", "p_seconds=30").stdout.strip()
    job = env.wait_for(job_id, lambda j: j["status"] == "running" and j["worker_pid"])
    live = env.tmp / "jobs.db-live" / job_id
    deadline = time.monotonic() + 10
    while not live.exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert oct(live.stat().st_mode & 0o777) == "0o600"
    pid = job["worker_pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        job = env.wait_for(job_id, lambda j: j["status"] == "lost", timeout=30)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.kill(pid, signal.SIGCONT)
    _gone(pid)
    assert _work(env) == []


# -- (d) PostgreSQL: a dead worker's session that still runs the call -------------------------

def test_orphaned_session_is_active_for_unique_and_cancel_ends_it(env):
    if env.backend != "postgresql":
        pytest.skip("a server session that outlives its worker: PostgreSQL")
    import psycopg

    from conftest import PG_ADMIN_DSN

    _pg_procs(env)
    args = ("submit", "amo_silent_sleep", "-p", "p_seconds=120", "--unique")
    # jobctl asks the server to end a call whose client is gone
    # (client_connection_check_interval); a host cut off from the network
    # leaves its session running as this one does, with the check turned off
    from urllib.parse import quote

    setup = quote("SET client_connection_check_interval = 0")
    job_id = env.sh(*args, env={"JOBCTL_DSN": f"{env.dsn}?session_setup={setup}"}).stdout.strip()
    job = env.wait_for(job_id, lambda j: j["status"] == "running" and j["db_session"])
    deadline = time.monotonic() + 15
    while not any(s["state"] == "active" for s in _server_sessions(env, job_id)):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    session_pid = int(job["db_session"].split(":")[0])
    assert {s["pid"] for s in _server_sessions(env, job_id)} >= {session_pid}
    os.kill(job["worker_pid"], signal.SIGKILL)
    _gone(job["worker_pid"])
    time.sleep(2.5)  # past JOBCTL_LOST_AFTER too

    job = env.status(job_id)
    assert job["status"] == "orphaned", job
    assert job["db_session"] in job["status_reason"]
    assert [j["job_id"] for j in env.json("list", "--status", "orphaned")] == [job_id]
    assert env.json("list", "--status", "lost") == []
    assert env.json("stats")[0]["orphaned"] == 1
    assert env.json("cleanup", "--days", "0")["marked_lost"] == 0
    assert env.rows()[0]["status"] == "running"
    again = env.sh(*args)
    assert again.returncode == 0 and again.stdout.strip() == job_id  # still active
    assert len(env.rows()) == 1
    assert env.cli("wait", job_id, "--timeout", "0.3s").exit_code == 5  # not finished

    # a role that may see the session but not signal it gets the DBA's statement
    role = f"amo_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect(PG_ADMIN_DSN, autocommit=True)
    try:
        admin.execute(f'CREATE ROLE "{role}" LOGIN IN ROLE pg_read_all_stats')
        env.sql(f'GRANT SELECT, UPDATE ON ASYNC_JOBS TO "{role}"')
        scheme, rest = env.dsn.split("://", 1)
        role_dsn = f"{scheme}://{role}@{rest.split('@', 1)[1]}"
        refused = env.cli("--dsn", role_dsn, "cancel", job_id)
        assert refused.exit_code == 4, refused.stderr
        assert refused.stderr.count("\n") == 1 and "orphaned" in refused.stderr
        assert f"SELECT pg_terminate_backend({session_pid});" in refused.stderr
        assert session_pid in {s["pid"] for s in _server_sessions(env, job_id)}
        assert env.status(job_id)["status"] == "orphaned"
    finally:
        env.sql(f'DROP OWNED BY "{role}"')
        admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        admin.close()

    result = env.cli("cancel", job_id, "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert session_pid not in {s["pid"] for s in _server_sessions(env, job_id)}
    job = env.status(job_id)
    assert job["status"] == "cancelled" and "ended" in job["error_msg"]


def test_interrupt_that_does_not_take_names_the_session_and_the_statement(env):
    if env.backend != "postgresql":
        pytest.skip("a server statement that ignores its cancel: PostgreSQL")
    _pg_procs(env)
    job_id = env.submit("amo_deaf_sleep", "-p", "p_seconds=120", "--timeout", "1s")
    job = env.wait_for(job_id, finished, timeout=40)  # 1 s, then the 10 s grace
    assert job["status"] == "timed_out"
    session_pid = int(job["db_session"].split(":")[0])
    assert f"interrupt did not take; server session {job['db_session']} may still be running" \
        in job["error_msg"]
    statement = f"SELECT pg_terminate_backend({session_pid});"
    assert statement in job["error_msg"]
    # and it is true: the session still runs until a DBA runs the statement
    assert session_pid in {s["pid"] for s in _server_sessions(env, job_id)}
    env.sql(statement.rstrip(";"))
    deadline = time.monotonic() + 10
    while session_pid in {s["pid"] for s in _server_sessions(env, job_id)}:
        assert time.monotonic() < deadline
        time.sleep(0.1)
