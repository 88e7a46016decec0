"""PostgreSQL-only behaviour, against a live server: killed sessions,
rollback of a failed or cancelled call, privileges, concurrent `--unique`,
OUT/INOUT types, overloads and names, notices and progress.

They run in the throwaway database that conftest's `pg_database` creates
for the run (admin DSN from JOBCTL_TEST_PG_ADMIN_DSN). Without a reachable
server they skip with the reason; with CI=true they fail instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

if os.environ.get("CI") == "true":
    import psycopg  # CI runs the PostgreSQL tests: a missing driver is a failure
else:
    psycopg = pytest.importorskip("psycopg", reason="psycopg not installed: pip install 'jobctl[postgresql]'")

ROOT = Path(__file__).resolve().parent.parent
from pghelp import cli, isolate, run_sql, status, submit, wait_for  # noqa: E402

ADMIN_DSN = os.environ.get("JOBCTL_TEST_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def _with_db(dsn: str, dbname: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(dsn)._replace(path="/" + dbname, query="").geturl()


def _with_user(dsn: str, user: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(dsn)
    host = parts.netloc.rsplit("@", 1)[-1]
    return parts._replace(netloc=f"{user}@{host}").geturl()


def _admin_connect():
    return psycopg.connect(ADMIN_DSN, autocommit=True, connect_timeout=3)


@pytest.fixture(scope="module")
def pg(pg_database, tmp_path_factory):
    """The run's throwaway database (conftest's `pg_database`: created with
    `db init --examples`, dropped at the end; skipped without a server unless
    CI=true), with jobctl isolated from the user's config and fast timings."""
    dsn = pg_database
    tmp = tmp_path_factory.mktemp("pg")
    mp = pytest.MonkeyPatch()
    isolate(mp, tmp, lost_after="5")
    roles: list[str] = []
    try:
        yield {"dsn": dsn, "dbname": dsn.rsplit("/", 1)[1], "roles": roles}
    finally:
        mp.undo()
        if roles:
            with _admin_connect() as admin:
                for role in roles:
                    # its grants live in the run's database; revoke them there first
                    run_sql(dsn, f'DROP OWNED BY "{role}"')
                    admin.execute(f'DROP ROLE IF EXISTS "{role}"')












def wait_job(dsn: str, job_id: str, timeout: str = "30s"):
    res = cli(dsn, "wait", job_id, "--timeout", timeout)
    return res.exit_code, status(dsn, job_id)


def rows_in_async_jobs(dsn: str) -> int:
    return run_sql(dsn, "SELECT count(*) FROM async_jobs")[0][0]


# -- a worker whose session dies -----------------------------------------------------

def test_killed_worker_session_ends_failed_not_running(pg):
    dsn = pg["dsn"]
    job_id = submit(dsn, "demo_sleep", "p_seconds=30")
    app_name = f"jobctl:{job_id}"
    wait_for(lambda: run_sql(dsn, "SELECT 1 FROM pg_stat_activity WHERE application_name = %s "
                                  "AND query ILIKE '%%CALL%%' AND state = 'active'", (app_name,)))
    killed = run_sql(dsn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE application_name = %s", (app_name,))
    assert killed and all(r[0] for r in killed)

    code, job = wait_job(dsn, job_id, "20s")
    assert code == 1
    assert job["status"] in ("failed", "lost")
    assert job["status"] != "running"
    stored = run_sql(dsn, "SELECT status, error_msg FROM async_jobs WHERE job_id = %s", (job_id,))
    assert stored[0][0] in ("failed", "lost")
    assert "terminat" in (stored[0][1] or "").lower() or stored[0][0] == "lost"


# -- the procedure's own work is rolled back when it does not complete ---------------

WORK_SQL = """
CREATE TABLE IF NOT EXISTS jobctl_test_work (note text);
CREATE OR REPLACE PROCEDURE work_then_fail(p_note text)
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO jobctl_test_work VALUES (p_note);
    RAISE EXCEPTION 'failing after insert of %', p_note;
END $$;
CREATE OR REPLACE PROCEDURE work_then_sleep(p_note text, p_seconds numeric DEFAULT 30)
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO jobctl_test_work VALUES (p_note);
    RAISE NOTICE 'inserted %', p_note;
    PERFORM pg_sleep(p_seconds);
END $$;
CREATE OR REPLACE PROCEDURE work_then_succeed(p_note text)
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO jobctl_test_work VALUES (p_note);
END $$;
"""


def _work_notes(dsn: str) -> list[str]:
    return [r[0] for r in run_sql(dsn, "SELECT note FROM jobctl_test_work ORDER BY note")]


def test_failed_procedure_work_is_rolled_back(pg):
    dsn = pg["dsn"]
    run_sql(dsn, WORK_SQL)
    job_id = submit(dsn, "work_then_fail", "p_note=fail-1")
    code, job = wait_job(dsn, job_id)
    assert code == 1 and job["status"] == "failed"
    # as psql prints it with VERBOSITY verbose: the SQLSTATE first
    assert job["error_msg"] == "ERROR:  P0001: failing after insert of fail-1"
    assert job["db_error_code"] == "P0001" and job["committed_inside"] is False
    assert "fail-1" not in _work_notes(dsn)


def test_cancelled_and_timed_out_procedure_work_is_rolled_back(pg):
    dsn = pg["dsn"]
    run_sql(dsn, WORK_SQL)
    cancelled = submit(dsn, "work_then_sleep", "p_note=cancel-1")
    wait_for(lambda: "inserted cancel-1" in (status(dsn, cancelled).get("output") or ""))
    res = cli(dsn, "cancel", cancelled)
    assert res.exit_code == 0, res.output
    timed = submit(dsn, "work_then_sleep", "p_note=timeout-1", extra=("--timeout", "1s"))

    code, job = wait_job(dsn, cancelled, "20s")
    assert code == 1 and job["status"] == "cancelled", job
    code, job = wait_job(dsn, timed, "20s")
    assert code == 1 and job["status"] == "timed_out", job
    notes = _work_notes(dsn)
    assert "cancel-1" not in notes and "timeout-1" not in notes
    # no session of either job stays behind on the server
    wait_for(lambda: run_sql(dsn, "SELECT count(*) FROM pg_stat_activity "
                                  "WHERE application_name IN (%s, %s)",
                             (f"jobctl:{cancelled}", f"jobctl:{timed}"))[0][0] == 0, timeout=5)

    ok = submit(dsn, "work_then_succeed", "p_note=ok-1")
    code, job = wait_job(dsn, ok)
    assert code == 0 and job["status"] == "completed"
    assert "ok-1" in _work_notes(dsn)


# -- privileges ----------------------------------------------------------------------

def test_submit_without_execute_privilege_exits_4_and_writes_nothing(pg):
    dsn = pg["dsn"]
    role = f"jobctl_noexec_{uuid.uuid4().hex[:8]}"
    pg["roles"].append(role)
    run_sql(dsn, f"""
        CREATE ROLE {role} LOGIN;
        GRANT USAGE ON SCHEMA public TO {role};
        GRANT SELECT, INSERT, UPDATE, DELETE ON async_jobs TO {role};
        GRANT SELECT, INSERT, UPDATE ON job_queues TO {role};
        CREATE OR REPLACE PROCEDURE secret_proc(p_x numeric) LANGUAGE plpgsql AS $$ BEGIN END $$;
        REVOKE EXECUTE ON PROCEDURE secret_proc(numeric) FROM PUBLIC;
    """)
    before = rows_in_async_jobs(dsn)
    role_dsn = _with_user(dsn, role)
    res = cli(role_dsn, "submit", "secret_proc", "-p", "p_x=1")
    assert res.exit_code == 4, res.output
    assert res.stdout == ""
    assert "permission denied" in res.stderr and "EXECUTE" in res.stderr
    assert rows_in_async_jobs(dsn) == before

    # the same role may run what it was granted
    run_sql(dsn, f"GRANT EXECUTE ON PROCEDURE secret_proc(numeric) TO {role}")
    res = cli(role_dsn, "submit", "secret_proc", "-p", "p_x=1", "--wait")
    assert res.exit_code == 0, res.output


# -- --unique under real concurrency ---------------------------------------------------

def test_unique_submit_from_ten_shells_creates_one_job(pg):
    dsn = pg["dsn"]
    cmd = [sys.executable, "-m", "jobctl", "--dsn", dsn, "submit", "demo_sleep",
           "-p", "p_seconds=4", "--unique"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=ROOT) for _ in range(10)]
    outs = [p.communicate(timeout=60) for p in procs]
    codes = [p.returncode for p in procs]
    assert codes == [0] * 10, [e for _, e in outs]
    ids = {o.strip() for o, _ in outs}
    assert len(ids) == 1, ids
    (job_id,) = ids
    rows = run_sql(dsn, "SELECT job_id FROM async_jobs WHERE procedure_name = 'demo_sleep' "
                        "AND unique_key IS NOT NULL")
    assert [r[0] for r in rows] == [job_id]
    cli(dsn, "cancel", job_id)
    wait_job(dsn, job_id, "20s")


# -- OUT / INOUT values of every supported type -----------------------------------------

TYPES_SQL = """
CREATE OR REPLACE PROCEDURE types_roundtrip(
    p_n numeric, p_i integer, p_t text, p_d date, p_ts timestamp, p_tz timestamptz,
    p_b boolean, p_j jsonb, p_arr integer[], p_tarr text[],
    OUT o_n numeric, OUT o_i bigint, OUT o_t varchar, OUT o_d date, OUT o_ts timestamp,
    OUT o_tz timestamptz, OUT o_b boolean, OUT o_j jsonb, OUT o_js json,
    OUT o_arr integer[], OUT o_tarr text[], OUT o_null text,
    INOUT io_n numeric DEFAULT 41)
LANGUAGE plpgsql AS $$
BEGIN
    o_n := p_n * 2;
    o_i := p_i + 1;
    o_t := upper(p_t);
    o_d := p_d + 1;
    o_ts := p_ts + interval '1 hour';
    o_tz := p_tz;
    o_b := NOT p_b;
    o_j := p_j || '{"added": true}'::jsonb;
    o_js := '[1, "two", null]'::json;
    o_arr := p_arr || 4;
    o_tarr := array_append(p_tarr, 'z');
    o_null := NULL;
    io_n := io_n + 1;
END $$;
"""


def test_out_and_inout_values_come_back_typed_in_result(pg):
    dsn = pg["dsn"]
    run_sql(dsn, TYPES_SQL)
    job_id = submit(dsn, "types_roundtrip",
                    "p_n=1.25", "p_i=41", "p_t=abc", "p_d=2024-02-28", "p_ts=2024-01-02 03:04:05",
                    "p_tz=2024-01-02T03:04:05+02:00", "p_b=true", 'p_j={"a": [1, 2]}',
                    "p_arr=[1, 2, 3]", 'p_tarr=["x", "y"]')
    code, job = wait_job(dsn, job_id)
    assert code == 0, job
    assert job["result"] == {
        "o_n": 2.5, "o_i": 42, "o_t": "ABC", "o_d": "2024-02-29",
        "o_ts": "2024-01-02T04:04:05", "o_tz": "2024-01-02T01:04:05+00:00",
        "o_b": False, "o_j": {"a": [1, 2], "added": True}, "o_js": [1, "two", None],
        "o_arr": [1, 2, 3, 4], "o_tarr": ["x", "y", "z"], "o_null": None, "io_n": 42,
    }
    assert job["params"]["p_arr"] == [1, 2, 3]

    # suma_simple's OUT vResult comes back lower-case
    job_id = submit(dsn, "SUMA_SIMPLE", "vA=10", "vB=5")
    code, job = wait_job(dsn, job_id)
    assert code == 0 and job["result"] == {"vresult": 15}


def test_bad_value_for_declared_type_exits_2_and_writes_nothing(pg):
    dsn = pg["dsn"]
    run_sql(dsn, TYPES_SQL)
    before = rows_in_async_jobs(dsn)
    res = cli(dsn, "submit", "suma_simple", "-p", "va=ten")
    assert res.exit_code == 2 and "va" in res.stderr
    res = cli(dsn, "submit", "types_roundtrip", "-p", "p_n=1", "-p", "p_i=1", "-p", "p_t=x",
              "-p", "p_d=2024-13-01", "-p", "p_ts=2024-01-01", "-p", "p_tz=2024-01-01",
              "-p", "p_b=true", "-p", "p_j={}", "-p", "p_arr=[]", "-p", "p_tarr=[]")
    assert res.exit_code == 2 and "p_d" in res.stderr
    assert rows_in_async_jobs(dsn) == before


# -- names: overloads, functions, schemas, case, injection --------------------------------

NAMES_SQL = """
CREATE OR REPLACE PROCEDURE ov_same(a integer) LANGUAGE plpgsql AS $$ BEGIN END $$;
CREATE OR REPLACE PROCEDURE ov_same(a text) LANGUAGE plpgsql AS $$ BEGIN END $$;
CREATE OR REPLACE PROCEDURE ov_named(a integer, INOUT picked text DEFAULT NULL)
    LANGUAGE plpgsql AS $$ BEGIN picked := 'by a'; END $$;
CREATE OR REPLACE PROCEDURE ov_named(b text, INOUT picked text DEFAULT NULL)
    LANGUAGE plpgsql AS $$ BEGIN picked := 'by b'; END $$;
CREATE OR REPLACE FUNCTION fn_not_proc(x integer) RETURNS integer
    LANGUAGE sql AS $$ SELECT x $$;
CREATE SCHEMA IF NOT EXISTS Sales;
CREATE OR REPLACE PROCEDURE Sales.Book_Order(P_Qty integer, INOUT booked integer DEFAULT NULL)
    LANGUAGE plpgsql AS $$ BEGIN booked := P_Qty; END $$;
CREATE OR REPLACE PROCEDURE "MixedCase"(INOUT answer text DEFAULT NULL)
    LANGUAGE plpgsql AS $$ BEGIN answer := 'quoted'; END $$;
"""


def test_overloads_the_given_names_cannot_separate_exit_2_listing_candidates(pg):
    dsn = pg["dsn"]
    run_sql(dsn, NAMES_SQL)
    before = rows_in_async_jobs(dsn)
    res = cli(dsn, "submit", "ov_same", "-p", "a=1")
    assert res.exit_code == 2, res.output
    # the forms to type, as psql's \df names them (the value 1 fits both types)
    assert "'ov_same(integer)'" in res.stderr and "'ov_same(text)'" in res.stderr
    assert rows_in_async_jobs(dsn) == before

    job_id = submit(dsn, "ov_named", "B=7")
    code, job = wait_job(dsn, job_id)
    assert code == 0 and job["result"] == {"picked": "by b"}


def test_a_function_is_refused_with_exit_2(pg):
    dsn = pg["dsn"]
    run_sql(dsn, NAMES_SQL)
    res = cli(dsn, "submit", "fn_not_proc", "-p", "x=1")
    assert res.exit_code == 2
    assert "is a function, not a procedure" in res.stderr
    res = cli(dsn, "submit", "no_such_proc")
    assert res.exit_code == 3 and "no_such_proc" in res.stderr


def test_schema_qualified_names_fold_case_like_postgresql(pg):
    dsn = pg["dsn"]
    run_sql(dsn, NAMES_SQL)
    job_id = submit(dsn, "SALES.BOOK_ORDER", "p_qty=3")
    code, job = wait_job(dsn, job_id)
    assert code == 0, job
    assert job["procedure_name"] == "sales.book_order"
    assert job["result"] == {"booked": 3}

    job_id = submit(dsn, '"MixedCase"')
    code, job = wait_job(dsn, job_id)
    assert code == 0 and job["result"] == {"answer": "quoted"}
    assert job["procedure_name"] == '"MixedCase"'
    assert cli(dsn, "submit", "MixedCase").exit_code == 3  # folds to mixedcase

    res = cli(dsn, "describe", "sales.book_order", "--format", "json")
    assert res.exit_code == 0, res.output
    described = json.loads(res.stdout)
    params = described["params"] if isinstance(described, dict) else described
    assert [(p["name"], p["mode"], p["defaulted"]) for p in params] == [
        ("p_qty", "IN", False), ("booked", "IN/OUT", True)]
    res = cli(dsn, "describe", "SUMA_SIMPLE", "--format", "json")
    described = json.loads(res.stdout)
    params = described["params"] if isinstance(described, dict) else described
    assert [(p["name"], p["mode"], p["defaulted"]) for p in params] == [
        ("va", "IN", False), ("vresult", "OUT", False), ("vb", "IN", True)]


@pytest.mark.parametrize("name", [
    "demo_sleep; DROP TABLE ASYNC_JOBS",
    "demo_sleep(1); DROP TABLE async_jobs --",
    "public.demo_sleep.extra",
    '"demo_sleep""; DROP TABLE async_jobs; --',
    "demo sleep",
    "demo_sleep'--",
    "",
])
def test_injection_in_procedure_name_exits_2_and_writes_nothing(pg, name):
    dsn = pg["dsn"]
    before = rows_in_async_jobs(dsn)
    res = cli(dsn, "submit", name, "-p", "p_seconds=1")
    assert res.exit_code == 2, res.output
    assert rows_in_async_jobs(dsn) == before  # the table is still there, unchanged


def test_quoted_name_is_an_identifier_never_sql(pg):
    dsn = pg["dsn"]
    before = rows_in_async_jobs(dsn)
    res = cli(dsn, "submit", '"x); DROP TABLE async_jobs; --"')
    assert res.exit_code == 3, res.output  # a legal (odd) identifier, and no such procedure
    assert rows_in_async_jobs(dsn) == before


# -- notices and progress, live ---------------------------------------------------------

def test_notices_are_captured_and_progress_is_visible_while_running(pg):
    dsn = pg["dsn"]
    job_id = submit(dsn, "demo_sleep", "p_seconds=3")
    seen = wait_for(lambda: (lambda j: j if j["status"] == "running" and j["progress"] > 0
                             and "slept 1 of 3 s" in (j["output"] or "") else None)(status(dsn, job_id)))
    assert 0 < seen["progress"] < 100
    code, job = wait_job(dsn, job_id)
    assert code == 0 and job["status"] == "completed"
    assert job["progress"] == 100
    assert job["output"].splitlines() == ["slept 1 of 3 s", "slept 2 of 3 s", "slept 3 of 3 s"]
    # and its sessions go away with the worker
    wait_for(lambda: run_sql(dsn, "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                             (f"jobctl:{job_id}",))[0][0] == 0, timeout=5)


# -- schema: upgrade of an original-shaped table ------------------------------------------

def test_db_init_upgrades_an_original_async_jobs_table(pg):
    admin = _admin_connect()
    dbname = pg["dbname"] + "_orig"
    admin.execute(f'CREATE DATABASE "{dbname}"')
    dsn = _with_db(ADMIN_DSN, dbname)
    try:
        run_sql(dsn, """
            CREATE TABLE async_jobs (
                job_id VARCHAR(32) PRIMARY KEY, status VARCHAR(20) NOT NULL,
                procedure_name VARCHAR(200) NOT NULL, start_time TIMESTAMP NOT NULL,
                end_time TIMESTAMP, duration VARCHAR(50), result TEXT, error_msg TEXT,
                progress NUMERIC DEFAULT 0, created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP);
            INSERT INTO async_jobs (job_id, status, procedure_name, start_time, end_time, duration)
            VALUES ('0123456789abcdef0123456789abcdef', 'COMPLETED', 'OLD_PROC',
                    now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC', '1.00s');
        """)
        res = cli(dsn, "db", "init")
        assert res.exit_code == 0, res.output
        assert cli(dsn, "db", "init").exit_code == 0  # and again: idempotent
        columns = {r[0] for r in run_sql(dsn, "SELECT column_name FROM information_schema.columns "
                                              "WHERE table_name = 'async_jobs'")}
        assert {"params", "output", "heartbeat_at", "unique_key", "cancel_requested"} <= columns
        indexes = {r[0] for r in run_sql(dsn, "SELECT indexname FROM pg_indexes "
                                              "WHERE tablename = 'async_jobs'")}
        assert len(indexes) >= 5
        job = status(dsn, "01234567")
        assert job["status"] == "completed" and job["procedure_name"] == "OLD_PROC"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        admin.close()


def test_unreachable_server_is_one_line_exit_4_with_masked_dsn(pg):
    res = cli("postgresql://someone:s3cret@127.0.0.1:1/nowhere", "list")
    assert res.exit_code == 4
    assert "s3cret" not in res.stderr
    assert "cannot connect to postgresql://someone:***@127.0.0.1:1/nowhere" in res.stderr
    assert res.stderr.count("\n") == 1


# -- connection storms: the worker waits, says why, and fails with the reason ---------------

def _storm_role(pg) -> tuple[str, str]:
    """A role whose CONNECTION LIMIT the test turns down and up again (a
    superuser ignores limits, so not the admin)."""
    role = f"jobctl_storm_{uuid.uuid4().hex[:8]}"
    pg["roles"].append(role)
    run_sql(pg["dsn"], f"""
        CREATE ROLE {role} LOGIN;
        GRANT USAGE ON SCHEMA public TO {role};
        GRANT SELECT, INSERT, UPDATE, DELETE ON async_jobs TO {role};
        GRANT SELECT, INSERT, UPDATE ON job_queues TO {role};
    """)
    return role, _with_user(pg["dsn"], role)


def _submit_into_a_storm(pg, role: str, role_dsn: str) -> str:
    """Submit with a connection taken before the role's limit drops to 0, so
    the worker's own connections are refused."""
    from jobctl.api import Jobctl
    from jobctl.config import resolve_settings

    api = Jobctl(resolve_settings(dsn=role_dsn))
    assert api.conn is not None
    run_sql(pg["dsn"], f"ALTER ROLE {role} CONNECTION LIMIT 0")
    try:
        return api.submit("demo_sleep", {"p_seconds": "1"}).job_id
    finally:
        api.close()


def _row(dsn: str, job_id: str) -> tuple:
    return run_sql(dsn, "SELECT status, error_msg FROM async_jobs WHERE job_id = %s", (job_id,))[0]


def test_worker_waits_out_a_connection_storm_and_says_why_in_the_row(pg):
    dsn = pg["dsn"]
    role, role_dsn = _storm_role(pg)
    job_id = _submit_into_a_storm(pg, role, role_dsn)
    time.sleep(1.0)
    assert _row(dsn, job_id)[0] == "queued"
    # room for one connection: the worker gets its first and says what it waits for
    run_sql(dsn, f"ALTER ROLE {role} CONNECTION LIMIT 1")
    status_, error = wait_for(lambda: (r := _row(dsn, job_id))[1] and r, timeout=30)
    assert status_ == "queued"
    assert error.startswith("waiting for a connection: ") and "too many connections" in error
    shown = status(dsn, job_id)
    assert shown["status"] == "queued" and "too many connections" in shown["error_msg"]
    run_sql(dsn, f"ALTER ROLE {role} CONNECTION LIMIT -1")
    code, job = wait_job(dsn, job_id)
    assert code == 0 and job["status"] == "completed" and job["error_msg"] is None


def test_worker_that_never_gets_a_connection_ends_failed_with_the_reason(pg, monkeypatch):
    monkeypatch.setenv("JOBCTL_START_TIMEOUT", "2")
    dsn = pg["dsn"]
    role, role_dsn = _storm_role(pg)
    job_id = _submit_into_a_storm(pg, role, role_dsn)
    time.sleep(3.0)  # past start_timeout: the worker no longer starts the job
    assert _row(dsn, job_id)[0] == "queued"
    # the storm passes: the first connection that works records why the job never ran
    run_sql(dsn, f"ALTER ROLE {role} CONNECTION LIMIT -1")
    status_, error = wait_for(lambda: (r := _row(dsn, job_id))[0] != "queued" and r, timeout=60)
    assert status_ == "failed"
    assert "start_timeout" in error and "too many connections" in error
    assert run_sql(dsn, "SELECT count(*) FROM async_jobs WHERE job_id = %s AND end_time IS NOT NULL",
                   (job_id,))[0][0] == 1


def test_only_refusals_that_pass_are_waited_out(pg):
    """The worker retries a transient connect error until start_timeout: a
    storm yes, a database or role that does not exist no (it fails at once)."""
    from jobctl.backends import get_backend
    from jobctl.config import parse_dsn

    role, role_dsn = _storm_role(pg)
    run_sql(pg["dsn"], f"ALTER ROLE {role} CONNECTION LIMIT 0")
    cases = {role_dsn: True, _with_db(pg["dsn"], "jobctl_no_such_db"): False,
             _with_user(pg["dsn"], "jobctl_no_such_role"): False}
    for dsn, transient in cases.items():
        with pytest.raises(Exception) as info:
            get_backend(parse_dsn(dsn)).connect()
        assert info.value.exit_code == 4 and info.value.transient is transient, (dsn, info.value)
