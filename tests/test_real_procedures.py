"""Procedures in the shapes DBAs run from cron, run as psql runs them
(issue 23), against the live PostgreSQL server: COMMIT inside, the outcome
in the procedure's last transaction, a clean session per job, the
database's own error code, what --retries retries.

They run in conftest's throwaway database (`pg_database`); without a
reachable server they skip (with CI=true they fail).
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from pathlib import Path

import pytest

if os.environ.get("CI") == "true":
    import psycopg
else:
    psycopg = pytest.importorskip("psycopg", reason="psycopg not installed")

ROOT = Path(__file__).resolve().parent.parent

PROCS = """
CREATE TABLE IF NOT EXISTS rp_rows (id int PRIMARY KEY, note text);
CREATE TABLE IF NOT EXISTS rp_purged (id int, batch int);
CREATE OR REPLACE PROCEDURE rp_purge(p_batch integer, p_pause numeric DEFAULT 0,
                                     INOUT p_deleted integer DEFAULT 0)
LANGUAGE plpgsql AS $$
DECLARE
    v_rows integer;
    v_batch integer := 0;
BEGIN
    p_deleted := 0;
    LOOP
        v_batch := v_batch + 1;
        WITH gone AS (
            DELETE FROM rp_rows WHERE id IN (SELECT id FROM rp_rows ORDER BY id LIMIT p_batch)
            RETURNING id)
        INSERT INTO rp_purged SELECT id, v_batch FROM gone;
        GET DIAGNOSTICS v_rows = ROW_COUNT;
        p_deleted := p_deleted + v_rows;
        RAISE NOTICE 'batch % deleted % rows', v_batch, v_rows;
        PERFORM pg_sleep(p_pause);  -- the batch is deleted, not yet committed
        EXIT WHEN v_rows < p_batch;
        COMMIT;
    END LOOP;
END $$;
CREATE OR REPLACE PROCEDURE rp_commit_then_fail(p_note text)
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO rp_rows VALUES (1000, p_note);
    COMMIT;
    INSERT INTO rp_rows VALUES (1001, p_note);
    RAISE EXCEPTION 'failing after a commit of %', p_note USING ERRCODE = 'JC042',
        DETAIL = 'row 1000 stays', HINT = 'look at rp_rows';
END $$;
CREATE OR REPLACE PROCEDURE rp_fail_once(p_note text)
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO rp_rows VALUES (2000 + (SELECT count(*) FROM rp_purged WHERE batch = -1), p_note);
    INSERT INTO rp_purged VALUES (0, -1);
    COMMIT;
    IF (SELECT count(*) FROM rp_purged WHERE batch = -1) < 2 THEN
        RAISE EXCEPTION 'first attempt fails';
    END IF;
END $$;
CREATE OR REPLACE PROCEDURE rp_fail_clean(p_note text)
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO rp_rows VALUES (3000, p_note);
    RAISE EXCEPTION 'nothing committed' USING ERRCODE = 'JC043';
END $$;
CREATE OR REPLACE PROCEDURE rp_leave_state(p_key bigint, OUT p_seen text)
LANGUAGE plpgsql AS $$
BEGIN
    -- what the previous job on this session left, if anything
    p_seen := concat_ws(',',
        CASE WHEN to_regclass('pg_temp.rp_scratch') IS NOT NULL THEN 'temp' END,
        CASE WHEN EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory'
                          AND pid = pg_backend_pid()) THEN 'lock' END,
        CASE WHEN current_setting('search_path') LIKE 'rp_other%' THEN 'search_path' END);
    CREATE TEMP TABLE rp_scratch (x int);
    PERFORM pg_advisory_lock(p_key);
    PERFORM set_config('search_path', 'rp_other, public', false);
END $$;
CREATE OR REPLACE PROCEDURE rp_settings(p_sleep numeric, OUT p_name text,
                                        OUT p_tz text, OUT p_work_mem text)
LANGUAGE plpgsql AS $$
BEGIN
    p_name := current_setting('application_name');
    p_tz := current_setting('TimeZone');
    p_work_mem := current_setting('work_mem');
    PERFORM pg_sleep(p_sleep);
END $$;
CREATE OR REPLACE PROCEDURE rp_types(OUT p_iv interval, OUT p_num numeric, OUT p_rec rp_rows)
LANGUAGE plpgsql AS $$
BEGIN
    p_iv := interval '1 day 2 hours';
    p_num := 12345678901234567890.123456789012345678;
    p_rec := ROW(7, 'ñandú')::rp_rows;
END $$;
"""


@pytest.fixture(scope="module")
def pg(pg_database, tmp_path_factory):
    dsn = pg_database
    tmp = tmp_path_factory.mktemp("rp")
    mp = pytest.MonkeyPatch()
    for var in ("JOBCTL_DSN", "JOBCTL_PROFILE", "JOBCTL_PASSWORD", "JOBCTL_MODULES"):
        mp.delenv(var, raising=False)
    mp.setenv("XDG_CONFIG_HOME", str(tmp / "config"))
    mp.setenv("XDG_STATE_HOME", str(tmp / "state"))
    mp.setenv("XDG_DATA_HOME", str(tmp / "data"))
    for key, value in {"JOBCTL_HEARTBEAT": "0.2", "JOBCTL_LOST_AFTER": "3", "JOBCTL_POLL": "0.1",
                       "JOBCTL_RETRY_BACKOFF": "0.1"}.items():
        mp.setenv(key, value)
    mp.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    run_sql(dsn, PROCS)
    try:
        yield dsn
    finally:
        mp.undo()


def run_sql(dsn: str, query: str, params=None) -> list[tuple]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def cli(dsn: str, *args: str):
    from typer.testing import CliRunner

    from jobctl.cli import app

    return CliRunner().invoke(app, ["--dsn", dsn, *args])


def submit(dsn: str, proc: str, *params: str, extra: tuple[str, ...] = ()) -> str:
    args = ["submit", proc, *extra]
    for p in params:
        args += ["-p", p]
    res = cli(dsn, *args)
    assert res.exit_code == 0, res.output + (res.stderr or "")
    return res.stdout.strip()


def status(dsn: str, job_id: str) -> dict:
    res = cli(dsn, "status", job_id, "--format", "json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    return data[0] if isinstance(data, list) else data


def wait_job(dsn: str, job_id: str, timeout: str = "30s") -> dict:
    cli(dsn, "wait", job_id, "--timeout", timeout)
    return status(dsn, job_id)


def wait_for(predicate, timeout: float = 20.0, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(step)


def fill(dsn: str, rows: int) -> None:
    run_sql(dsn, "TRUNCATE rp_rows, rp_purged")
    run_sql(dsn, f"INSERT INTO rp_rows SELECT g, 'r' || g FROM generate_series(1, {rows}) g")


# -- COMMIT inside a procedure ----------------------------------------------------------

def test_a_batch_purge_that_commits_between_batches_completes(pg):
    fill(pg, 25)
    job_id = submit(pg, "rp_purge", "p_batch=10")
    job = wait_job(pg, job_id)
    assert job["status"] == "completed", (job["error_msg"], job["output"])
    assert job["result"] == {"p_deleted": 25}
    assert job["committed_inside"] is True and job["db_error_code"] is None
    assert run_sql(pg, "SELECT count(*) FROM rp_rows")[0][0] == 0
    assert "batch 3 deleted 5 rows" in job["output"]
    assert job["duration"] and job["elapsed_s"] is not None and job["progress"] == 100


def test_a_procedure_that_never_commits_keeps_work_and_outcome_together(pg):
    fill(pg, 5)
    job_id = submit(pg, "rp_purge", "p_batch=10")
    job = wait_job(pg, job_id)
    assert job["status"] == "completed" and job["committed_inside"] is False, job
    assert job["result"] == {"p_deleted": 5}


def _session_of(dsn: str, job_id: str) -> tuple | None:
    """(pid, wait event, application_name) of the session that runs the call."""
    session = status(dsn, job_id)["db_session"]
    if not session:
        return None
    rows = run_sql(dsn, "SELECT pid, wait_event, application_name FROM pg_stat_activity"
                        " WHERE pid = %s", (int(session.split(":")[0]),))
    return rows[0] if rows else None


def _purged(dsn: str) -> tuple[int, int]:
    """(rows left, rows purged), as committed."""
    return (run_sql(dsn, "SELECT count(*) FROM rp_rows")[0][0],
            run_sql(dsn, "SELECT count(*) FROM rp_purged")[0][0])


def _in_third_batch_sleep(dsn: str, job_id: str) -> bool:
    """The purge sleeps after deleting its third batch (not committed yet)."""
    job = status(dsn, job_id)
    session = _session_of(dsn, job_id)
    return ("batch 3 deleted" in (job["output"] or "") and session is not None
            and session[1] == "PgSleep")


def test_kill_9_of_a_purge_keeps_the_committed_batches_and_never_reruns(pg):
    fill(pg, 100)
    job_id = submit(pg, "rp_purge", "p_batch=10", "p_pause=2", extra=("--retries", "2"))
    wait_for(lambda: _in_third_batch_sleep(pg, job_id), timeout=30)
    before = _purged(pg)
    assert before == (80, 20)  # two batches committed; the third deleted, not committed
    os.kill(status(pg, job_id)["worker_pid"], signal.SIGKILL)
    # the server notices its client is gone (client_connection_check_interval)
    # and rolls the last stretch back; the row then reads lost
    job = wait_for(lambda: (j := status(pg, job_id))["status"] == "lost" and j, timeout=30)
    assert job["committed_inside"] is True
    assert "stays committed" in job["status_reason"]
    assert _purged(pg) == before
    res = cli(pg, "cleanup", "--days", "7", "--format", "json")
    assert res.exit_code == 0 and json.loads(res.stdout)["marked_lost"] == 1
    row = run_sql(pg, "SELECT status, error_msg, committed_inside, attempt FROM async_jobs"
                      " WHERE job_id = %s", (job_id,))[0]
    assert row[0] == "lost" and "not re-run" in row[1] and "stays committed" in row[1]
    assert row[2] == 1 and row[3] == 1
    time.sleep(1.0)
    assert _purged(pg) == before  # nothing ran it again


def test_cancel_of_a_purge_keeps_the_committed_batches_and_says_so(pg):
    fill(pg, 100)
    job_id = submit(pg, "rp_purge", "p_batch=10", "p_pause=2", extra=("--retries", "2"))
    wait_for(lambda: _in_third_batch_sleep(pg, job_id), timeout=30)
    before = _purged(pg)
    assert before == (80, 20)
    assert cli(pg, "cancel", job_id).exit_code == 0
    job = wait_job(pg, job_id)
    assert job["status"] == "cancelled", job["error_msg"]
    assert job["committed_inside"] is True and job["attempt"] == 1
    assert job["error_msg"].startswith("cancelled by `jobctl cancel`")
    assert "stays committed" in job["error_msg"]
    assert _purged(pg) == before
    time.sleep(1.0)
    assert _purged(pg) == before


# -- the database's error, and what --retries retries -------------------------------------

def test_a_custom_sqlstate_is_kept_and_a_call_that_committed_is_not_retried(pg):
    run_sql(pg, "TRUNCATE rp_rows, rp_purged")
    job_id = submit(pg, "rp_commit_then_fail", "p_note=x", extra=("--retries", "2"))
    job = wait_job(pg, job_id)
    assert job["status"] == "failed"
    assert job["db_error_code"] == "JC042"
    assert job["error_msg"].startswith("ERROR:  JC042: failing after a commit of x "
                                       "(DETAIL: row 1000 stays) (HINT: look at rp_rows)")
    assert "stays committed" in job["error_msg"]
    assert job["committed_inside"] is True and job["attempt"] == 1  # never retried
    assert [r[0] for r in run_sql(pg, "SELECT id FROM rp_rows ORDER BY id")] == [1000]
    shown = cli(pg, "status", job_id)
    assert "JC042" in shown.stdout and "committed inside" in shown.stdout


def test_retries_rerun_only_a_call_that_committed_nothing(pg):
    run_sql(pg, "TRUNCATE rp_rows, rp_purged")
    clean = submit(pg, "rp_fail_clean", "p_note=y", extra=("--retries", "1"))
    job = wait_job(pg, clean)
    assert job["status"] == "failed" and job["attempt"] == 2, job
    assert job["db_error_code"] == "JC043" and job["committed_inside"] is False
    assert run_sql(pg, "SELECT count(*) FROM rp_rows")[0][0] == 0
    # the first attempt committed before it failed: not run again
    once = submit(pg, "rp_fail_once", "p_note=z", extra=("--retries", "3"))
    job = wait_job(pg, once)
    assert job["status"] == "failed" and job["attempt"] == 1 and job["committed_inside"] is True


def test_a_session_an_administrator_ends_fails_with_the_server_text_and_is_not_retried(pg):
    fill(pg, 100)
    job_id = submit(pg, "rp_purge", "p_batch=10", "p_pause=2", extra=("--retries", "2"))
    wait_for(lambda: _in_third_batch_sleep(pg, job_id), timeout=30)
    pid = _session_of(pg, job_id)[0]
    run_sql(pg, "SELECT pg_terminate_backend(%s)", (pid,))
    job = wait_job(pg, job_id)
    assert job["status"] == "failed" and job["attempt"] == 1, job
    assert job["db_error_code"] == "57P01"
    assert "terminating connection due to administrator command" in job["error_msg"]
    assert job["committed_inside"] is True and _purged(pg) == (80, 20)


def test_atomic_refuses_a_commit_and_names_the_option(pg):
    fill(pg, 25)
    job_id = submit(pg, "rp_purge", "p_batch=10", extra=("--atomic",))
    job = wait_job(pg, job_id)
    assert job["status"] == "failed" and job["atomic"] is True
    assert job["db_error_code"] == "2D000" and "--atomic" in job["error_msg"]
    assert job["committed_inside"] is False and _purged(pg) == (25, 0)
    # resubmit keeps the mode unless told otherwise
    res = cli(pg, "resubmit", job_id, "--no-atomic")
    assert res.exit_code == 0, res.stderr
    job = wait_job(pg, res.stdout.strip())
    assert job["status"] == "completed" and job["atomic"] is False
    res = cli(pg, "resubmit", job_id)
    assert status(pg, res.stdout.strip())["atomic"] is True


def test_jobctl_own_cleanup_procedure_runs(pg):
    job_id = submit(pg, "cleanup_old_async_jobs", "p_days_old=3650")
    job = wait_job(pg, job_id)
    assert job["status"] == "completed", job["error_msg"]
    assert "job(s) deleted" in job["output"]
