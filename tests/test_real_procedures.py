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
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

if os.environ.get("CI") == "true":
    import psycopg
else:
    psycopg = pytest.importorskip("psycopg", reason="psycopg not installed")

ROOT = Path(__file__).resolve().parent.parent

from pghelp import cli, isolate, run_sql, status, submit  # noqa: E402
from pghelp import wait_for as _wait_for  # noqa: E402


def wait_for(predicate, timeout: float = 20.0, step: float = 0.05):
    return _wait_for(predicate, timeout, step)

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
CREATE OR REPLACE PROCEDURE rp_note(p_id integer, p_note text, p_sleep numeric DEFAULT 0)
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO rp_rows VALUES (p_id, p_note);
    PERFORM pg_sleep(p_sleep);
END $$;
CREATE OR REPLACE FUNCTION rp_refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status = 'queued' AND NEW.status = 'running' AND NEW.params::text LIKE '%poison%' THEN
        RAISE EXCEPTION 'this claim is refused' USING ERRCODE = 'JC099';
    END IF;
    RETURN NEW;
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
CREATE OR REPLACE PROCEDURE rp_leave_state(p_key bigint, p_sleep numeric, OUT p_seen text)
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
    PERFORM pg_sleep(p_sleep);
END $$;
CREATE OR REPLACE PROCEDURE rp_leave_more(p_leave boolean, OUT p_seen text)
LANGUAGE plpgsql AS $$
BEGIN
    -- what the short way (no COMMIT in the body) must not carry to the next job
    p_seen := concat_ws(',',
        CASE WHEN EXISTS (SELECT 1 FROM pg_listening_channels()) THEN 'listen' END,
        CASE WHEN EXISTS (SELECT 1 FROM pg_prepared_statements WHERE name = 'rp_stmt')
             THEN 'prepared' END,
        CASE WHEN current_setting('work_mem') = '7MB' THEN 'work_mem' END,
        CASE WHEN current_user <> session_user THEN 'role' END);
    IF p_leave THEN
        LISTEN rp_channel;
        EXECUTE 'PREPARE rp_stmt AS SELECT 1';
        PERFORM set_config('work_mem', '7MB', false);
        SET ROLE pg_monitor;
    END IF;
END $$;
CREATE OR REPLACE PROCEDURE rp_inner_commit() LANGUAGE plpgsql AS $$
BEGIN
    COMMIT;
END $$;
CREATE OR REPLACE PROCEDURE rp_hidden_commit() LANGUAGE plpgsql AS $$
BEGIN
    -- no transaction word in the body: jobctl takes the short way
    EXECUTE 'CA' || 'LL rp_inner_commit()';
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
    isolate(mp, tmp, lost_after="3")
    run_sql(dsn, PROCS)
    try:
        yield dsn
    finally:
        mp.undo()










def wait_job(dsn: str, job_id: str, timeout: str = "30s") -> dict:
    cli(dsn, "wait", job_id, "--timeout", timeout)
    return status(dsn, job_id)




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


# -- a clean session, named for its job, on every path ----------------------------------

def _pool(dsn: str, queue: str) -> subprocess.Popen:
    cli(dsn, "queue", "set", queue, "--max-running", "0")  # a pool serves only a queue that exists
    proc = subprocess.Popen([sys.executable, "-m", "jobctl", "--dsn", dsn, "worker", "--queue", queue,
                             "--concurrency", "1"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_for(lambda: any(w["pid"] == proc.pid for w in json.loads(
        cli(dsn, "worker", "list", "--format", "json").stdout)), timeout=30)
    return proc


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()


def _lock_is_free(dsn: str, key: int) -> bool:
    with psycopg.connect(dsn, autocommit=True) as conn:
        took = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]
        if took:
            conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
        return took


def test_a_pool_job_leaves_nothing_to_the_next_and_is_named_in_pg_stat_activity(pg):
    queue = f"rp{uuid.uuid4().hex[:6]}"
    pool = _pool(pg, queue)
    try:
        key = 4242
        first = submit(pg, "rp_leave_state", f"p_key={key}", "p_sleep=0", extra=("--queue", queue))
        job = wait_job(pg, first)
        assert job["status"] == "completed" and job["result"] == {"p_seen": ""}, job
        # its session advisory lock is released once the slot finds no next
        # job (right after the commit that the row's status shows): cron's
        # psql may take it
        assert wait_for(lambda: _lock_is_free(pg, key), timeout=10)
        second = submit(pg, "rp_leave_state", f"p_key={key}", "p_sleep=0", extra=("--queue", queue))
        job2 = wait_job(pg, second)
        assert job2["status"] == "completed", job2["error_msg"]
        assert job2["result"] == {"p_seen": ""}  # no temp table, no lock, no search_path
        assert job2["db_session"] == job["db_session"]  # the same connection, reset
        # the call session names the job while it runs, and the procedure sees it
        third = submit(pg, "rp_settings", "p_sleep=1", extra=("--queue", queue))
        seen = wait_for(lambda: (s := _session_of(pg, third)) and s[2] == f"jobctl:{third}" and s)
        assert seen[2] == f"jobctl:{third}"
        job3 = wait_job(pg, third)
        assert job3["result"]["p_name"] == f"jobctl:{third}"
    finally:
        _stop(pool)


def test_a_procedure_that_cannot_commit_leaves_no_listen_statement_setting_or_role(pg):
    """rp_leave_more has no COMMIT in its body, so it is called inside
    jobctl's transaction (the short way), and whether it left anything is
    asked right after its call: a LISTEN (which takes effect only at
    commit), a prepared statement, a setting and a role are all cleared
    before the pool's next job on the same connection."""
    queue = f"rm{uuid.uuid4().hex[:6]}"
    pool = _pool(pg, queue)
    try:
        first = wait_job(pg, submit(pg, "rp_leave_more", "p_leave=true", extra=("--queue", queue)))
        assert first["status"] == "completed" and first["committed_inside"] is False, first
        second = wait_job(pg, submit(pg, "rp_leave_more", "p_leave=false", extra=("--queue", queue)))
        assert second["db_session"] == first["db_session"]  # the same connection, reset
        assert second["result"] == {"p_seen": ""}
        # a job that left nothing costs no reset, and the next still sees nothing
        third = wait_job(pg, submit(pg, "rp_leave_more", "p_leave=false", extra=("--queue", queue)))
        assert third["result"] == {"p_seen": ""} and third["db_session"] == first["db_session"]
    finally:
        _stop(pool)


def test_a_commit_hidden_from_the_short_way_runs_again_at_top_level_and_says_why(pg):
    """rp_hidden_commit's body names no COMMIT, ROLLBACK or CALL, so it is
    called inside jobctl's transaction; the COMMIT it reaches through a
    dynamic CALL ends that call with 2D000, all of it rolled back, and it
    runs again at top level, where PostgreSQL refuses a COMMIT under
    EXECUTE as well. What this proves: the fallback leaves the job one
    clean failure with the server's own words and code, one attempt,
    nothing committed (it cannot tell the two calls apart from outside)."""
    job = wait_job(pg, submit(pg, "rp_hidden_commit"))
    assert job["status"] == "failed", job
    assert job["db_error_code"] == "2D000"
    assert job["error_msg"].startswith("ERROR:  2D000: invalid transaction termination")
    assert job["attempt"] == 1 and job["committed_inside"] is False


def test_the_daemon_free_hand_over_leaves_nothing_to_the_next_job(pg):
    queue = f"rh{uuid.uuid4().hex[:6]}"
    assert cli(pg, "queue", "set", queue, "--max-running", "1").exit_code == 0
    key = 4343
    first = submit(pg, "rp_leave_state", f"p_key={key}", "p_sleep=1", extra=("--queue", queue))
    second = submit(pg, "rp_leave_state", f"p_key={key}", "p_sleep=0", extra=("--queue", queue))
    job, job2 = wait_job(pg, first), wait_job(pg, second)
    assert job["status"] == job2["status"] == "completed", (job["error_msg"], job2["error_msg"])
    assert job2["worker_pid"] == job["worker_pid"]  # handed over, not a new worker
    assert job2["db_session"] == job["db_session"]
    assert job2["result"] == {"p_seen": ""}
    assert _lock_is_free(pg, key)


def test_session_setup_runs_before_each_job_and_the_time_zone_is_the_users(pg):
    from urllib.parse import quote

    setup = quote("SET work_mem = '7MB'; SET search_path = public")
    job_id = submit(f"{pg}?session_setup={setup}", "rp_settings", "p_sleep=0")
    job = wait_job(pg, job_id)
    assert job["status"] == "completed", job["error_msg"]
    server_tz = run_sql(pg, "SELECT reset_val FROM pg_settings WHERE name = 'TimeZone'")[0][0]
    assert job["result"] == {"p_name": f"jobctl:{job_id}", "p_tz": server_tz, "p_work_mem": "7MB"}
    # a session_setup the server refuses is the job's failure, with its code
    bad = quote("SELECT 1/0")
    job_id = submit(f"{pg}?session_setup={bad}", "rp_settings", "p_sleep=0")
    job = wait_job(pg, job_id)
    assert job["status"] == "failed" and job["db_error_code"] == "22012"
    assert job["error_msg"].startswith("session_setup failed: ERROR:  22012: division by zero")


@pytest.mark.parametrize("setup, message", [
    ("  -- only a comment", "holds no SQL statement"),
    ("COMMIT", "is not allowed"),
    ("SET work_mem = '7MB'; ROLLBACK", "is not allowed"),
])
def test_a_bad_session_setup_is_exit_2_and_writes_nothing(pg, setup, message):
    from urllib.parse import quote

    before = run_sql(pg, "SELECT count(*) FROM async_jobs")[0][0]
    res = cli(f"{pg}?session_setup={quote(setup)}", "submit", "rp_settings", "-p", "p_sleep=0")
    assert res.exit_code == 2, res.stderr
    assert message in res.stderr and res.stderr.count("\n") == 1
    assert run_sql(pg, "SELECT count(*) FROM async_jobs")[0][0] == before


def test_a_bad_session_setup_in_a_profile_is_exit_2(pg, tmp_path, monkeypatch):
    config = tmp_path / "config" / "jobctl" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'[profiles.p]\ndsn = "{pg}"\nsession_setup = 42\n')
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    from typer.testing import CliRunner

    from jobctl.cli import app

    res = CliRunner().invoke(app, ["--profile", "p", "submit", "rp_settings", "-p", "p_sleep=0"])
    assert res.exit_code == 2 and "session_setup must be SQL text" in res.stderr


def test_stats_count_a_row_another_writer_finished_without_elapsed_s(pg):
    run_sql(pg, """INSERT INTO async_jobs (job_id, status, procedure_name, start_time, end_time)
                   VALUES (md5(random()::text), 'completed', 'rp_other_writer',
                           (now() AT TIME ZONE 'UTC') - interval '10 seconds',
                           (now() AT TIME ZONE 'UTC') - interval '7.5 seconds')""")
    res = cli(pg, "stats", "--procedure", "rp_other_writer", "--format", "json")
    assert res.exit_code == 0, res.stderr
    row = json.loads(res.stdout)[0]
    assert row["completed"] == 1 and row["avg_s"] == 2.5 and row["max_s"] == 2.5


def test_stats_on_sqlite_count_a_row_without_elapsed_s_too(sqlite_env):
    import sqlite3

    db = sqlite3.connect(sqlite_env.dsn.removeprefix("sqlite:///"))
    db.execute("""INSERT INTO ASYNC_JOBS (JOB_ID, STATUS, PROCEDURE_NAME, START_TIME, END_TIME)
                  VALUES ('rpstats1', 'completed', 'OTHER_WRITER',
                          strftime('%Y-%m-%d %H:%M:%f', 'now', '-10 seconds'),
                          strftime('%Y-%m-%d %H:%M:%f', 'now', '-6 seconds'))""")
    db.commit()
    db.close()
    row = sqlite_env.json("stats", "--procedure", "OTHER_WRITER")[0]
    assert row["completed"] == 1 and row["avg_s"] == 4.0


def test_out_values_come_back_as_json_a_script_can_use(pg):
    job_id = submit(pg, "rp_types")
    job = wait_job(pg, job_id)
    assert job["status"] == "completed", job["error_msg"]
    res = cli(pg, "status", job_id, "--format", "json")
    from jobctl import jsontext

    result = jsontext.loads(res.stdout)[0]["result"] if res.stdout.lstrip().startswith("[") \
        else jsontext.loads(res.stdout)["result"]
    from decimal import Decimal

    assert result["p_iv"] == "P1DT2H"  # ISO 8601
    assert result["p_num"] == Decimal("12345678901234567890.123456789012345678")  # exact
    assert result["p_rec"] == {"id": 7, "note": "ñandú"}  # a composite, by field name


def test_a_slot_whose_next_claim_fails_keeps_its_job_and_its_work(pg):
    """A pool's slot sends its job's outcome and the claim of the queue's
    next job to the server together (one pipeline). When that claim fails
    (a trigger refuses it here), the claim alone is undone (its savepoint),
    after the batch: the job before it stays completed, with its work, and
    the refused job stays queued, unclaimed, until it can be claimed."""
    queue = f"rc{uuid.uuid4().hex[:6]}"
    pool = _pool(pg, queue)
    run_sql(pg, "CREATE TRIGGER rp_refuse_poison BEFORE UPDATE ON async_jobs "
                "FOR EACH ROW EXECUTE FUNCTION rp_refuse_poison()")
    try:
        first = submit(pg, "rp_note", "p_id=5001", "p_note=kept", "p_sleep=1",
                       extra=("--queue", queue))
        # queued while the slot's only job runs: its hand-over is what claims it
        second = submit(pg, "rp_note", "p_id=5002", "p_note=poison", extra=("--queue", queue))
        job = wait_job(pg, first)
        assert job["status"] == "completed", job["error_msg"]
        assert run_sql(pg, "SELECT note FROM rp_rows WHERE id = 5001") == [("kept",)]
        time.sleep(1.0)  # the slot and the pool's loop try it meanwhile
        refused = status(pg, second)
        assert refused["status"] == "queued" and refused["claim_token"] is None, refused
        assert run_sql(pg, "SELECT count(*) FROM rp_rows WHERE id = 5002") == [(0,)]
        run_sql(pg, "DROP TRIGGER rp_refuse_poison ON async_jobs")
        job2 = wait_job(pg, second)
        assert job2["status"] == "completed", job2["error_msg"]
        assert job2["attempt"] == 1
        assert run_sql(pg, "SELECT note FROM rp_rows WHERE id = 5002") == [("poison",)]
    finally:
        run_sql(pg, "DROP TRIGGER IF EXISTS rp_refuse_poison ON async_jobs")
        _stop(pool)
