"""`jobctl db init`: idempotent, upgrades the original table, same files as the DBA's."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from jobctl.store import COLUMNS

ROOT = Path(__file__).resolve().parent.parent

ORIGINAL_TABLE = """CREATE TABLE ASYNC_JOBS (
    JOB_ID VARCHAR(32) PRIMARY KEY, STATUS VARCHAR(20) NOT NULL,
    PROCEDURE_NAME VARCHAR(200) NOT NULL, START_TIME TIMESTAMP NOT NULL, END_TIME TIMESTAMP,
    DURATION VARCHAR(50), RESULT TEXT, ERROR_MSG TEXT, PROGRESS NUMERIC DEFAULT 0,
    CREATED_AT TIMESTAMP DEFAULT CURRENT_TIMESTAMP)"""


def columns(env, dsn):
    from jobctl import store
    from jobctl.backends import get_backend
    from jobctl.config import parse_dsn

    backend = get_backend(parse_dsn(dsn))
    conn = backend.connect()
    try:
        return store.table_columns(backend, conn)
    finally:
        conn.close()


def test_db_init_is_idempotent(env):
    for _ in range(2):
        result = env.cli("db", "init")
        assert result.exit_code == 0, result.stderr
        assert "schema ready" in result.stderr
    assert columns(env, env.dsn) >= set(COLUMNS)


def test_db_init_upgrades_an_original_table_and_keeps_its_rows(env, empty_dsn):
    if env.backend == "oracle":
        pytest.skip("covered by the Oracle scripts' own upgrade blocks")
    env.dsn = empty_dsn
    env.sql(ORIGINAL_TABLE)
    env.sql("INSERT INTO ASYNC_JOBS (JOB_ID, STATUS, PROCEDURE_NAME, START_TIME, END_TIME, DURATION, "
            "RESULT, PROGRESS) VALUES ('0123456789abcdef0123456789abcdef', 'completed', 'OLD_PROC', "
            "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, '1m30.25s', '{\"vresult\": 3}', 100)")
    assert env.cli("--dsn", empty_dsn, "list").exit_code == 4  # jobctl's columns are missing
    result = env.cli("--dsn", empty_dsn, "db", "init")
    assert result.exit_code == 0, result.stderr
    assert columns(env, empty_dsn) >= set(COLUMNS)
    old = env.json("--dsn", empty_dsn, "status", "0123")
    assert old["procedure_name"] == "OLD_PROC" and old["result"] == {"vresult": 3}
    assert old["duration"] == "1m30.25s"
    assert env.cli("--dsn", empty_dsn, "db", "init").exit_code == 0


def test_db_init_print_shows_the_shipped_sql_without_connecting(env):
    result = env.cli("--dsn", "postgresql://nobody@127.0.0.1:1/x", "db", "init", "--print")
    assert result.exit_code == 0
    assert "CREATE TABLE IF NOT EXISTS" in result.stdout.upper()
    own = env.cli("db", "init", "--print")
    assert own.exit_code == 0 and "ASYNC_JOBS" in own.stdout.upper()


def test_wheel_ships_the_sql_files(tmp_path):
    pytest.importorskip("hatchling")
    subprocess.run([sys.executable, "-c", "import hatchling.build as b, sys; b.build_wheel(sys.argv[1])",
                    str(tmp_path)], cwd=ROOT, check=True, capture_output=True)
    wheel = next(tmp_path.glob("jobctl-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for backend in ("sqlite", "postgresql", "oracle"):
        assert f"jobctl/sql/{backend}/create_async_jobs_table.sql" in names, names
