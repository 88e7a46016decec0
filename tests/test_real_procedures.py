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
        EXIT WHEN v_rows < p_batch;
        COMMIT;
        PERFORM pg_sleep(p_pause);
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
CREATE OR REPLACE PROCEDURE rp_app_name(OUT p_name text, OUT p_tz text)
LANGUAGE plpgsql AS $$
BEGIN
    p_name := current_setting('application_name');
    p_tz := current_setting('TimeZone');
    PERFORM pg_sleep(0.3);
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
