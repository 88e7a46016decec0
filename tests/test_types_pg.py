"""Every value a DBA passes on PostgreSQL, and every value it gets back
(issue 24), against a live server.

Each row of the type table (docs/types.md) is submitted with --wait to a
procedure that echoes it through an INOUT parameter, RESULT is parsed and
compared, then the job is resubmitted and compared again. Each bad value is
exit 2 naming the parameter, with no row in ASYNC_JOBS. Overloads: picked by
a signature form (quoted schema names too), by values, an ambiguous call
listing the forms; describe lists every overload.

The tests run in a database of their own (created and dropped here), so
counting ASYNC_JOBS rows sees only these tests' jobs.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import uuid
from decimal import Decimal
from pathlib import Path

import pytest

if os.environ.get("CI") == "true":
    import psycopg
else:
    psycopg = pytest.importorskip("psycopg", reason="psycopg not installed")

from jobctl import jsontext

ROOT = Path(__file__).resolve().parent.parent
ADMIN_DSN = os.environ.get("JOBCTL_TEST_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/test")

SCHEMA_SQL = r"""
CREATE SCHEMA typ;
CREATE SCHEMA "Nightly Jobs";
CREATE TABLE typ.t1(a integer);
CREATE TYPE typ.mood AS ENUM ('happy', 'sad');
CREATE DOMAIN typ.posint AS integer CHECK (VALUE > 0);
CREATE DOMAIN typ.code5 AS varchar(5);
CREATE TYPE typ.pair AS (n integer, label text, span interval);
CREATE PROCEDURE typ.touch(a integer, INOUT r text DEFAULT NULL)
    LANGUAGE plpgsql AS $$ BEGIN r := 'integer ' || a; END $$;
CREATE PROCEDURE typ.touch(a date, INOUT r text DEFAULT NULL)
    LANGUAGE plpgsql AS $$ BEGIN r := 'date ' || a; END $$;
CREATE PROCEDURE typ.same(a integer, INOUT r text DEFAULT NULL)
    LANGUAGE plpgsql AS $$ BEGIN r := 'integer ' || a; END $$;
CREATE PROCEDURE typ.same(a text, INOUT r text DEFAULT NULL)
    LANGUAGE plpgsql AS $$ BEGIN r := 'text ' || a; END $$;
CREATE PROCEDURE "Nightly Jobs".purge(tbl regclass, keep interval, INOUT r text DEFAULT NULL)
    LANGUAGE plpgsql AS $$ BEGIN r := 'purge ' || tbl::text || ' keep ' || keep::text; END $$;
CREATE PROCEDURE "Nightly Jobs".purge(tbl regclass, INOUT r text DEFAULT NULL)
    LANGUAGE plpgsql AS $$ BEGIN r := 'purge all of ' || tbl::text; END $$;
CREATE PROCEDURE typ.pos(integer, text, INOUT r text DEFAULT NULL)
    LANGUAGE plpgsql AS $$ BEGIN r := $1 || ':' || $2; END $$;
CREATE PROCEDURE typ.vari(INOUT r text, VARIADIC vals text[])
    LANGUAGE plpgsql AS $$ BEGIN r := array_to_string(vals, '|'); END $$;
CREATE PROCEDURE typ.rec(d date, OUT s typ.pair, OUT r record)
    LANGUAGE plpgsql AS $$
BEGIN
    s := ROW(100, 'day ' || d, '1 mon 3 hours')::typ.pair;
    SELECT 1 AS n, 'a b'::text AS label INTO r;
END $$;
CREATE PROCEDURE typ.checked(v_int integer DEFAULT NULL, v_small smallint DEFAULT NULL,
                             v_mood typ.mood DEFAULT NULL, v_uuid uuid DEFAULT NULL,
                             v_pos typ.posint DEFAULT NULL, v_code typ.code5 DEFAULT NULL,
                             v_tbl regclass DEFAULT NULL, v_text text DEFAULT NULL)
    LANGUAGE plpgsql AS $$ BEGIN END $$;
"""

#: (name, declared type, value on the command line, RESULT expected back)
TYPES = [
    ("regclass", "regclass", "typ.t1", "typ.t1"),
    ("regproc", "regproc", "now", "now"),
    ("regtype", "regtype", "int4", "integer"),
    ("bytea", "bytea", r"\xdeadbeef", r"\xdeadbeef"),
    ("int4range", "int4range", "[1,10)", "[1,10)"),
    ("daterange", "daterange", "[2024-01-01,2024-02-01)", "[2024-01-01,2024-02-01)"),
    ("inet", "inet", "192.168.0.1/24", "192.168.0.1/24"),
    ("cidr", "cidr", "10.0.0.0/8", "10.0.0.0/8"),
    ("money", "money", "12.34", None),  # shown as lc_monetary writes it: checked apart
    ("interval_pg", "interval", "1 mon 2 days 03:04:05.5", "P1M2DT3H4M5.5S"),
    ("interval_iso", "interval", "P1Y2M3DT4H5M6.25S", "P1Y2M3DT4H5M6.25S"),
    ("interval_neg", "interval", "-1 years +3 days -04:00:00", "P-1Y3DT-4H"),
    ("enum", "typ.mood", "happy", "happy"),
    ("domain", "typ.posint", "5", 5),
    ("uuid", "uuid", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
    ("composite", "typ.pair", '(100,"a b",1 mon)', {"n": 100, "label": "a b", "span": "P1M"}),
    ("jsonb", "jsonb", '{"a": [1, 2.50], "b": "Ñuñoa"}', {"a": [1, Decimal("2.50")], "b": "Ñuñoa"}),
    ("numeric38", "numeric", "12345678901234567890.123456789012345678",
     Decimal("12345678901234567890.123456789012345678")),
    ("timestamptz", "timestamptz", "2024-03-02T10:00:00+02:00", None),  # an instant: checked apart
    ("date", "date", "2024-02-29", "2024-02-29"),
    ("text_array", "text[]", '["a", "b c", "Ñ"]', ["a", "b c", "Ñ"]),
    ("int_array", "integer[]", "[1, 2, 3]", [1, 2, 3]),
    ("enum_array", "typ.mood[]", '["happy", "sad"]', ["happy", "sad"]),
    ("interval_array", "interval[]", '["1 mon 2 days", "PT3H"]', ["P1M2D", "PT3H"]),
    ("text", "text", "x'); DROP TABLE typ.t1; --", "x'); DROP TABLE typ.t1; --"),
]


def _admin():
    return psycopg.connect(ADMIN_DSN, autocommit=True, connect_timeout=5)


@pytest.fixture(scope="module")
def pg(tmp_path_factory):
    try:
        admin = _admin()
    except psycopg.Error as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL not reachable but CI=true: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {ADMIN_DSN}: {exc}")
    name = f"jobctl_types_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    dsn = ADMIN_DSN.rsplit("/", 1)[0] + "/" + name
    tmp = tmp_path_factory.mktemp("types")
    mp = pytest.MonkeyPatch()
    for var in ("JOBCTL_PROFILE", "JOBCTL_PASSWORD", "JOBCTL_MODULES"):
        mp.delenv(var, raising=False)
    mp.setenv("JOBCTL_DSN", dsn)
    for var in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_DATA_HOME"):
        mp.setenv(var, str(tmp / var.lower()))
    for key, value in {"JOBCTL_HEARTBEAT": "0.2", "JOBCTL_LOST_AFTER": "5",
                       "JOBCTL_POLL": "0.1"}.items():
        mp.setenv(key, value)
    mp.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    try:
        assert cli("db", "init").exit_code == 0
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(SCHEMA_SQL)
            for key, type_sql, _, _ in TYPES:
                conn.execute(f"CREATE PROCEDURE typ.echo_{key}(INOUT v {type_sql}) "
                             "LANGUAGE plpgsql AS $$ BEGIN END $$")
        yield dsn
    finally:
        mp.undo()
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def cli(*args: str):
    from typer.testing import CliRunner

    from jobctl.cli import app

    return CliRunner().invoke(app, list(args))


def rows(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT count(*) FROM async_jobs").fetchone()[0]


def status(job_id: str) -> dict:
    res = cli("status", job_id, "--format", "json")
    assert res.exit_code == 0, res.stderr
    data = jsontext.loads(res.stdout)
    return data[0] if isinstance(data, list) else data


def run(*args: str) -> dict:
    """submit --wait; the job as `status -f json` reads it (numbers exact)."""
    res = cli("submit", *args, "--wait")
    assert res.exit_code == 0, res.stderr
    return status(res.stdout.strip())


def resubmitted(job_id: str) -> dict:
    res = cli("resubmit", job_id)
    assert res.exit_code == 0, res.stderr
    new_id = res.stdout.strip()
    assert cli("wait", new_id, "--timeout", "60s").exit_code == 0, status(new_id)
    return status(new_id)


# -- every type: echoed back, then resubmitted ---------------------------------------

@pytest.mark.parametrize("key,type_sql,value,expected", TYPES, ids=[t[0] for t in TYPES])
def test_each_type_is_echoed_through_inout_and_again_by_resubmit(pg, key, type_sql, value, expected):
    job = run(f"typ.echo_{key}", "-p", f"v={value}")
    assert job["status"] == "completed", job["error_msg"]
    again = resubmitted(job["job_id"])
    assert again["status"] == "completed", again["error_msg"]
    assert again["params"] == job["params"]
    got, got_again = job["result"]["v"], again["result"]["v"]
    if key == "timestamptz":
        instant = dt.datetime.fromisoformat(got)
        assert instant == dt.datetime(2024, 3, 2, 8, tzinfo=dt.timezone.utc)
    elif key == "money":
        assert "12.34" in got
    else:
        assert got == expected
    assert got_again == got
    # what came back is accepted as a value again (a script feeds RESULT on)
    if isinstance(got, str):
        echoed = run(f"typ.echo_{key}", "-p", f"v={got}")
        assert echoed["result"]["v"] == got
    if key == "text":
        with psycopg.connect(pg) as conn:  # the "injection" was a value, nothing more
            assert conn.execute("SELECT to_regclass('typ.t1') IS NOT NULL").fetchone()[0]


def test_values_given_in_params_json_are_typed_as_on_the_command_line(pg):
    job = run("typ.echo_jsonb", "--params", json.dumps({"v": {"k": [1, "x"]}}))
    assert job["result"]["v"] == {"k": [1, "x"]}
    job = run("typ.echo_int_array", "--params", '{"v": [4, 5]}')
    assert job["result"]["v"] == [4, 5]
    job = run("typ.echo_numeric38", "--params", '{"v": 0.100000000000000000000000000000000001}')
    assert job["result"]["v"] == Decimal("0.100000000000000000000000000000000001")


def test_composite_and_record_out_come_back_as_objects(pg):
    job = run("typ.rec", "-p", "d=2024-03-02")
    # the record keeps the names its SELECT gave its fields, and their types
    # (the CALL runs inside PL/pgSQL, whose to_jsonb sees them)
    assert job["result"] == {"s": {"n": 100, "label": "day 2024-03-02", "span": "P1MT3H"},
                             "r": {"n": 1, "label": "a b"}}


# -- positional and VARIADIC ------------------------------------------------------------

def test_unnamed_parameters_are_positional(pg):
    described = json.loads(cli("describe", "typ.pos", "-f", "json").stdout)
    assert [p["name"] for p in described["params"]] == ["$1", "$2", "r"]
    job = run("typ.pos", "-p", "1=5", "-p", "2=x")
    assert job["result"] == {"r": "5:x"} and job["params"] == {"$1": 5, "$2": "x"}
    assert resubmitted(job["job_id"])["result"] == {"r": "5:x"}
    job = run("typ.pos", "--params", '{"1": 6, "$2": "y"}')
    assert job["result"] == {"r": "6:y"}


def test_an_unnamed_integer_given_text_says_what_it_needs(pg):
    before = rows(pg)
    res = cli("submit", "typ.pos", "-p", "1=abc", "-p", "2=x")
    assert res.exit_code == 2
    assert "parameter $1 is integer: 'abc' is not an integer" in res.stderr
    assert "cannot pass" not in res.stderr
    assert rows(pg) == before


def test_variadic_takes_a_json_array_or_a_repeated_param(pg):
    res = cli("describe", "typ.vari")
    assert "VARIADIC text[]" in res.stdout
    listed = cli("procedures", "typ.vari").stdout
    assert "VARIADIC vals text[]" in listed
    job = run("typ.vari", "-p", "vals=a", "-p", "vals=b c", "-p", "r=")
    assert job["result"] == {"r": "a|b c"} and job["params"]["vals"] == ["a", "b c"]
    assert resubmitted(job["job_id"])["result"] == {"r": "a|b c"}
    job = run("typ.vari", "--params", '{"vals": ["x", "y"], "r": null}')
    assert job["result"] == {"r": "x|y"}
    job = run("typ.vari", "-p", "vals=single", "-p", "r=")
    assert job["result"] == {"r": "single"}


# -- bad values: exit 2, the parameter named, no row ------------------------------------

BAD = [
    ("v_int", "99999999999", "out of range"),
    ("v_int", "1); DROP TABLE typ.t1; --", "not an integer"),
    ("v_small", "40000", "smallint out of range"),
    ("v_mood", "angry", "invalid input value for enum"),
    ("v_uuid", "not-a-uuid", "invalid input syntax for type uuid"),
    ("v_pos", "0", "violates check constraint"),
    ("v_code", "abcdefg", "value too long"),
    ("v_tbl", "typ.no_such_table", "does not exist"),
]


@pytest.mark.parametrize("param,value,why", BAD, ids=[f"{b[0]}={b[1]}" for b in BAD])
def test_bad_value_exits_2_naming_the_parameter_and_writes_nothing(pg, param, value, why):
    before = rows(pg)
    res = cli("submit", "typ.checked", "-p", f"{param}={value}")
    assert res.exit_code == 2, res.stderr
    assert f"parameter {param}" in res.stderr and why in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert rows(pg) == before


def test_non_utf8_bytes_in_a_value_exit_2_naming_the_parameter(pg):
    """A real process: the shell passes the byte 0xD1 alone (Latin-1 Ñ)."""
    before = rows(pg)
    run_ = subprocess.run([os.fsencode(sys.executable), b"-m", b"jobctl", b"submit", b"typ.checked",
                           b"-p", b"v_text=\xd1uble"], capture_output=True, timeout=60)
    err = run_.stderr.decode(errors="replace")
    assert run_.returncode == 2, err
    assert "parameter v_text" in err and "UTF-8" in err and "0xd1" in err
    assert rows(pg) == before


def test_the_check_does_not_write(pg):
    """The server-side check runs READ ONLY: a good submit leaves no
    transaction open and writes only its row."""
    before = rows(pg)
    job = run("typ.checked", "-p", "v_mood=sad", "-p", "v_pos=3", "-p", "v_tbl=typ.t1")
    assert job["status"] == "completed"
    assert rows(pg) == before + 1


# -- overloads ----------------------------------------------------------------------------

def test_describe_lists_every_overload(pg):
    res = cli("describe", "typ.touch")
    assert res.exit_code == 0, res.stderr
    assert "typ.touch(integer, text)" in res.stdout and "typ.touch(date, text)" in res.stdout
    data = json.loads(cli("describe", "typ.touch", "-f", "json").stdout)
    assert [o["form"] for o in data["overloads"]] == ["typ.touch(integer, text)",
                                                       "typ.touch(date, text)"]
    assert data["overloads"][1]["params"][0] == {"name": "a", "type": "date", "mode": "IN",
                                                 "defaulted": False}
    one = json.loads(cli("describe", "typ.touch(date)", "-f", "json").stdout)
    assert one["form"] == "typ.touch(date, text)" and len(one["params"]) == 2
    quoted = json.loads(cli("describe", '"Nightly Jobs".purge', "-f", "json").stdout)
    assert [o["form"] for o in quoted["overloads"]] == [
        '"Nightly Jobs".purge(regclass, interval, text)', '"Nightly Jobs".purge(regclass, text)']


def test_an_overload_is_picked_by_its_form(pg):
    assert run("typ.same(integer)", "-p", "a=5")["result"] == {"r": "integer 5"}
    assert run("typ.same(text)", "-p", "a=5")["result"] == {"r": "text 5"}
    assert run("typ.same(INT4, text)", "-p", "a=6")["result"] == {"r": "integer 6"}
    job = run('"Nightly Jobs".purge(regclass, interval)', "-p", "tbl=typ.t1", "-p", "keep=P7D")
    assert job["result"] == {"r": "purge typ.t1 keep 7 days"}
    # the worker ran, and resubmit runs, the overload submit chose
    job = run("typ.same(text)", "-p", "a=7")
    assert job["signature"]["form"] == "typ.same(text, text)"
    assert resubmitted(job["job_id"])["result"] == {"r": "text 7"}


def test_an_overload_is_picked_by_names_then_by_values(pg):
    job = run('"Nightly Jobs".purge', "-p", "tbl=typ.t1")
    assert job["result"] == {"r": "purge all of typ.t1"}
    assert run("typ.touch", "-p", "a=5")["result"] == {"r": "integer 5"}
    assert run("typ.touch", "-p", "a=2024-01-31")["result"] == {"r": "date 2024-01-31"}


def test_an_ambiguous_call_lists_the_forms_to_type_and_writes_nothing(pg):
    before = rows(pg)
    res = cli("submit", "typ.same", "-p", "a=5")
    assert res.exit_code == 2
    assert "'typ.same(integer, text)'" in res.stderr and "'typ.same(text, text)'" in res.stderr
    res = cli("submit", "typ.touch", "-p", "a=not a date nor a number")
    assert res.exit_code == 2 and "their values none of them" in res.stderr
    res = cli("submit", "typ.touch(bigint)", "-p", "a=5")
    assert res.exit_code == 3 and "typ.touch(integer, text)" in res.stderr
    res = cli("submit", "typ.touch(integer", "-p", "a=5")
    assert res.exit_code == 2 and "invalid procedure form" in res.stderr
    assert rows(pg) == before


def test_completion_offers_the_forms_of_overloads(pg):
    from jobctl.api import Jobctl
    from jobctl.config import resolve_settings

    with Jobctl(resolve_settings(dsn=pg)) as jc:
        names = jc.procedure_names()
    assert "typ.touch(integer, text)" in names and "typ.touch(date, text)" in names
    assert "typ.touch" in names and "typ.pos" in names
    assert not any(n.startswith("typ.pos(") for n in names)  # one overload: its name only


def test_non_utf8_bytes_on_sqlite_exit_2_naming_the_parameter(tmp_path):
    env = {**os.environ, "JOBCTL_DSN": f"sqlite:///{tmp_path}/jobs.db",
           "XDG_CONFIG_HOME": str(tmp_path / "c"), "XDG_STATE_HOME": str(tmp_path / "s")}
    assert subprocess.run([sys.executable, "-m", "jobctl", "db", "init"], env=env,
                          capture_output=True).returncode == 0
    run_ = subprocess.run([os.fsencode(sys.executable), b"-m", b"jobctl", b"submit", b"DEMO_FAIL",
                           b"-p", b"p_message=\xd1"], capture_output=True, timeout=60, env=env)
    err = run_.stderr.decode(errors="replace")
    assert run_.returncode == 2 and "parameter p_message" in err and "UTF-8" in err, err
    listed = subprocess.run([sys.executable, "-m", "jobctl", "list", "-f", "json"], env=env,
                            capture_output=True, text=True)
    assert json.loads(listed.stdout) == []


# -- the pure parts: intervals, forms ----------------------------------------------

@pytest.mark.parametrize("text,iso", [
    ("1 mon 2 days 03:04:05.5", "P1M2DT3H4M5.5S"),
    ("00:00:00", "PT0S"),
    ("-1 years -2 mons +3 days -04:05:06.5", "P-1Y-2M3DT-4H-5M-6.5S"),
    ("1 day -01:00:00", "P1DT-1H"),
    ("100:00:00.000001", "PT100H0.000001S"),
    ("P1Y2M3DT4H5M6.25S", "P1Y2M3DT4H5M6.25S"),
    ("P2W", "P14D"),
])
def test_intervals_are_iso_8601_with_months_kept(text, iso):
    """As PostgreSQL's IntervalStyle iso_8601 writes them (checked by hand
    against the server for each row)."""
    from jobctl.intervals import iso_from_postgres

    assert iso_from_postgres(text) == iso
    assert iso_from_postgres(iso) == iso


def test_other_interval_styles_are_left_as_the_server_wrote_them():
    from jobctl.intervals import iso_from_postgres

    assert iso_from_postgres("@ 1 mon 2 days") is None
    assert iso_from_postgres("1-2 3 4:05:06") is None


def test_signature_forms_split_and_match():
    from jobctl.lookup import form_matches, split_form
    from jobctl.model import INTEGER, TEXT, Param, Signature

    assert split_form("ops.touch") == ("ops.touch", None)
    assert split_form("ops.touch()") == ("ops.touch", ())
    assert split_form('"odd(name)".p(numeric(10,2), "My Type"[])') == (
        '"odd(name)".p', ("numeric(10,2)", '"My Type"[]'))
    sig = Signature("ops.touch", (Param("a", "integer", INTEGER),
                                  Param("r", "text", TEXT, "IN/OUT", defaulted=True)))
    assert sig.form == "ops.touch(integer, text)"
    for typed in (("integer",), ("INT",), ("int4", "TEXT"), ("integer", "character varying")[:1]):
        assert form_matches(sig, typed), typed
    assert not form_matches(sig, ("bigint",))
    assert not form_matches(sig, ("integer", "text", "text"))
