"""PostgreSQL backend pieces that need no server: procedure names, bind
conversion, times and script files."""

from __future__ import annotations

import datetime as dt
import os

import pytest

if os.environ.get("CI") == "true":
    import psycopg  # CI runs the PostgreSQL tests: a missing driver is a failure
else:
    psycopg = pytest.importorskip("psycopg", reason="psycopg not installed: pip install 'jobctl[postgresql]'")

from jobctl.backends.postgresql import PostgresBackend, convert_binds, split_name  # noqa: E402
from jobctl.config import parse_dsn  # noqa: E402
from jobctl.errors import UsageError  # noqa: E402
from jobctl.sqlfiles import read_sql, split_script  # noqa: E402


@pytest.fixture
def backend():
    return PostgresBackend(parse_dsn("postgresql://app@db.example:5432/prod"))


@pytest.mark.parametrize("given, stored", [
    ("SUMA_SIMPLE", "suma_simple"),
    ("  demo_sleep ", "demo_sleep"),
    ("Sales.Book_Order", "sales.book_order"),
    ('"MixedCase"', '"MixedCase"'),
    ('"lower"', "lower"),
    ('Sales."Odd ""Name"""', 'sales."Odd ""Name"""'),
    ("a$b", "a$b"),
])
def test_names_fold_like_postgresql_and_normalising_twice_changes_nothing(backend, given, stored):
    assert backend.normalize_name(given) == stored
    assert backend.normalize_name(stored) == stored


@pytest.mark.parametrize("name", [
    "X; DROP TABLE ASYNC_JOBS", "demo_sleep()", "a.b.c", "1abc", "a .b", "", '""',
    '"unterminated', "demo-sleep", "demo_sleep --", "a" * 64,
])
def test_invalid_names_are_usage_errors(backend, name):
    with pytest.raises(UsageError):
        backend.normalize_name(name)


def test_split_name_keeps_quoted_parts_verbatim():
    assert split_name('Public."We""ird"') == ("public", 'We"ird')
    assert split_name("proc") == (None, "proc")


def test_binds_become_pyformat_outside_literals_casts_and_comments():
    sql = ("SELECT :a::text, ':a', \"col:a\", 5 % 2, $$ :a % $$ -- :a\n"
           "FROM t WHERE x = :b AND y = :a /* :b */ AND z := :unknown")
    out = convert_binds(sql, frozenset({"a", "b"}))
    assert out == ("SELECT %(a)s::text, ':a', \"col:a\", 5 %% 2, $$ :a %% $$ -- :a\n"
                   "FROM t WHERE x = %(b)s AND y = %(a)s /* :b */ AND z := :unknown")


def test_times_are_naive_utc_in_the_database_and_aware_utc_out(backend):
    aware = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert backend.to_db_time(aware) == dt.datetime(2024, 5, 1, 10, 0)
    back = backend.from_db_time(dt.datetime(2024, 5, 1, 10, 0))
    assert back == aware and back.tzinfo == dt.timezone.utc
    assert backend.from_db_time(None) is None


def test_sql_hooks(backend):
    assert backend.limit_clause("n") == "LIMIT :n"
    assert backend.percentile_sql(0.5, "x").startswith("PERCENTILE_CONT(0.5) WITHIN GROUP (ORDER BY")
    assert backend.schema_files(examples=False) == ["create_async_jobs_table.sql"]
    assert backend.schema_files(examples=True) == ["create_async_jobs_table.sql", "examples.sql"]


def test_schema_scripts_split_into_statements_with_dollar_quoted_bodies_whole():
    table = split_script(read_sql("postgresql", "create_async_jobs_table.sql"), "semicolon")
    assert any(s.startswith("CREATE TABLE IF NOT EXISTS async_jobs") for s in table)
    assert any("WHERE status IN ('queued', 'running')" in s for s in table)
    examples = split_script(read_sql("postgresql", "examples.sql"), "semicolon")
    procs = [s for s in examples if "CREATE OR REPLACE PROCEDURE" in s]
    assert len(procs) == 4 and all(s.rstrip().endswith("$$") for s in procs)


def test_the_cli_does_not_import_psycopg_for_sqlite():
    import subprocess
    import sys

    code = ("import sys, jobctl.cli, jobctl.api, jobctl.backends.sqlite; "
            "print('psycopg' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
