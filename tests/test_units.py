"""Pure pieces, no database: DSNs and secrets, durations, coercion, rendering,
script splitting."""

from __future__ import annotations

import datetime as dt
import json
import os
from decimal import Decimal

import pytest

from jobctl import render
from jobctl.config import mask_dsn, parse_dsn, resolve_settings
from jobctl.errors import UsageError
from jobctl.model import (BOOLEAN, DATE, INTEGER, NUMBER, TEXT, TIMESTAMP, Job, JobStatus, Param,
                          Signature, format_duration, parse_duration)
from jobctl.params import bind, coerce, parse_assignments
from jobctl.sqlfiles import read_sql, split_script


@pytest.mark.parametrize("dsn, masked", [
    ("postgresql://app:s3cret@db1:5432/prod", "postgresql://app:***@db1:5432/prod"),
    ("oracle://scott:tiger@db1:1521/ORCLPDB1", "oracle://scott:***@db1:1521/ORCLPDB1"),
    ("oracle://scott@prod_alias", "oracle://scott@prod_alias"),
    ("sqlite:////var/lib/jobs.db", "sqlite:////var/lib/jobs.db"),
])
def test_passwords_are_masked_in_every_printed_dsn(dsn, masked):
    assert mask_dsn(dsn) == masked
    settings = parse_dsn(dsn)
    assert settings.display == masked
    assert "s3cret" not in repr(settings) and "tiger" not in repr(settings)
    assert "s3cret" not in settings.dsn and "tiger" not in settings.dsn


def test_password_from_url_is_kept_out_of_the_stored_dsn():
    s = parse_dsn("postgresql://app:p%40ss@db1/prod")
    assert s.password == "p@ss" and "p%40ss" not in s.dsn and s.user == "app"
    assert s.display == "postgresql://app:***@db1/prod"
    assert parse_dsn("postgresql://app@db1/prod").with_password("x").display == "postgresql://app:***@db1/prod"


def write_config(tmp_path, text):
    path = tmp_path / "config" / "jobctl" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_dsn_precedence_flag_env_profile_default(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    for k in ("JOBCTL_DSN", "JOBCTL_PROFILE", "JOBCTL_PASSWORD"):
        monkeypatch.delenv(k, raising=False)
    write_config(tmp_path, '[profiles.prod]\ndsn = "postgresql://app@db1/prod"\n')
    default = resolve_settings()
    assert default.connection.is_default
    assert default.connection.database == str(tmp_path / "data" / "jobctl" / "jobs.db")
    assert resolve_settings(profile="prod").connection.host == "db1"
    monkeypatch.setenv("JOBCTL_DSN", "sqlite:////tmp/env.db")
    assert resolve_settings(profile="prod").connection.database == "/tmp/env.db"
    assert resolve_settings(dsn="sqlite:////tmp/flag.db").connection.database == "/tmp/flag.db"


def test_password_sources_and_file_mode(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for k in ("JOBCTL_DSN", "JOBCTL_PROFILE", "JOBCTL_PASSWORD"):
        monkeypatch.delenv(k, raising=False)
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    write_config(tmp_path, f'[profiles.f]\ndsn = "oracle://scott@db/x"\npassword_file = "{secret}"\n'
                           '[profiles.e]\ndsn = "oracle://scott@db/x"\npassword_env = "MY_PW"\n')
    os.chmod(secret, 0o644)
    with pytest.raises(UsageError, match="chmod 600"):
        resolve_settings(profile="f")
    os.chmod(secret, 0o600)
    assert resolve_settings(profile="f").connection.password == "from-file"
    with pytest.raises(UsageError, match="MY_PW"):
        resolve_settings(profile="e")
    monkeypatch.setenv("MY_PW", "from-env")
    assert resolve_settings(profile="e").connection.password == "from-env"
    monkeypatch.setenv("JOBCTL_PASSWORD", "override")
    assert resolve_settings(profile="e").connection.password == "override"


def test_worker_payload_round_trips_without_argv():
    s = parse_dsn("postgresql://app:pw@db1:5433/prod", options={"connect_timeout": 3})
    back = type(s).from_payload(json.loads(json.dumps(s.to_payload())))
    assert (back.host, back.port, back.database, back.password) == ("db1", 5433, "prod", "pw")


@pytest.mark.parametrize("text, seconds", [("90", 90), ("30s", 30), ("1m30s", 90), ("2h", 7200),
                                           ("7d", 604800), ("1.5h", 5400), ("250ms", 0.25)])
def test_durations_parse(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "5x", "-3", "1m-2s", "nan", "inf"])
def test_bad_durations_are_refused(text):
    with pytest.raises(UsageError):
        parse_duration(text)


def test_duration_human_form():
    assert format_duration(0.25) == "0.25s"
    assert format_duration(90.25) == "1m30.25s"
    assert format_duration(7503) == "2h05m03.00s"


@pytest.mark.parametrize("kind, raw, value", [
    (NUMBER, "10", 10), (NUMBER, "2.50", Decimal("2.50")), (NUMBER, "-1e3", Decimal("-1E+3")),
    (INTEGER, "7", 7), (TEXT, "x=y", "x=y"), (BOOLEAN, "0", False), (BOOLEAN, "TRUE", True),
    (DATE, "2026-11-28", dt.date(2026, 11, 28)),
    (TIMESTAMP, "2026-11-28 10:00:00.123456", dt.datetime(2026, 11, 28, 10, 0, 0, 123456)),
])
def test_values_are_coerced_by_declared_type(kind, raw, value):
    assert coerce(Param("p", kind.upper(), kind), raw) == value


@pytest.mark.parametrize("kind, raw", [(NUMBER, "ten"), (NUMBER, True), (INTEGER, "1.5"),
                                       (BOOLEAN, "maybe"), (DATE, "28/11/2026"), (NUMBER, "NaN")])
def test_ill_typed_values_name_the_parameter(kind, raw):
    with pytest.raises(UsageError, match="parameter p"):
        coerce(Param("p", kind.upper(), kind), raw)


def test_assignments_are_case_insensitive_and_unique():
    sig = Signature("P", (Param("vA", "NUMBER", NUMBER),))
    assert bind(sig, parse_assignments(["VA=1"])) == {"vA": 1}
    # a repeated name collects its values (a VARIADIC's elements); a
    # parameter that is not an array refuses them when bound
    with pytest.raises(UsageError, match="twice"):
        bind(sig, parse_assignments(["va=1", "VA=2"]))


def make_job(**kw):
    base = dict(job_id="3f2a9c1e" + "0" * 24, status=JobStatus.RUNNING, procedure_name="SUMA_SIMPLE",
                start_time=dt.datetime(2026, 11, 28, 10, 0, tzinfo=dt.timezone.utc), progress=40)
    base.update(kw)
    return Job(**base)


def test_list_table_fits_80_columns_and_shows_short_ids():
    now = dt.datetime(2026, 11, 28, 10, 1, 30, tzinfo=dt.timezone.utc)
    jobs = [make_job(), make_job(job_id="a" * 32, status=JobStatus.COMPLETED, duration="1m30.25s",
                                 procedure_name="SCOTT.BILLING_PKG.RUN_MONTH_END")]
    text = render.plain_table(*render.jobs_rows(jobs, now), 80)
    lines = text.splitlines()
    assert lines[0].split() == ["ID", "PROCEDURE", "STATUS", "PROG", "STARTED", "DURATION"]
    assert lines[1].startswith("3f2a9c1e  SUMA_SIMPLE") and "running" in lines[1] and "40%" in lines[1]
    assert "1m30s" in lines[1]  # live duration of a running job, in the display form
    assert all(len(line) <= 80 for line in lines)


def test_rich_table_renders_at_80_columns():
    from rich.console import Console

    console = Console(width=80, record=True, color_system=None)
    console.print(render.rich_table(*render.jobs_rows([make_job()], dt.datetime.now(dt.timezone.utc)), 80))
    text = console.export_text()
    assert "3f2a9c1e" in text and "running" in text
    assert all(len(line) <= 80 for line in text.splitlines())


def test_machine_formats():
    rows = [{"job_id": "a", "status": "failed", "error_msg": "line1\nline2\tx"}]
    assert json.loads(render.records(rows, render.Format.json, ())) == rows
    assert json.loads(render.records(rows, render.Format.json, (), single=True)) == rows[0]
    assert json.loads(render.records(rows, render.Format.jsonl, ()).splitlines()[0]) == rows[0]
    csv_text = render.records(rows, render.Format.csv, ("job_id", "status", "error_msg"))
    assert csv_text.splitlines()[0] == "job_id,status,error_msg"
    tsv = render.records(rows, render.Format.tsv, ("job_id", "status", "error_msg")).splitlines()
    assert tsv[1] == "a\tfailed\tline1\\nline2\\tx"  # COPY text escapes: one record per line


def test_status_detail_lists_output_lines_indented():
    text = render.plain_pairs(render.detail_pairs(make_job(output="one\ntwo", params={"vA": 1}),
                                                  dt.datetime.now(dt.timezone.utc)))
    assert "params     {\"vA\": 1}" in text
    assert "output     one\n           two" in text


def test_sqlplus_and_semicolon_scripts_split_like_their_tools():
    pg = split_script("create table t(a int); create function f() returns int as $$ begin "
                      "return 1; end; $$ language plpgsql; insert into t values (';');", "semicolon")
    assert len(pg) == 3 and pg[1].endswith("language plpgsql")
    ora = split_script("SET ECHO OFF\nCREATE TABLE t (a NUMBER);\nCREATE OR REPLACE PROCEDURE p AS\n"
                       "BEGIN\n  NULL;\nEND;\n/\nBEGIN\n  EXECUTE IMMEDIATE 'x';\nEND;\n/\n", "sqlplus")
    assert ora == ["CREATE TABLE t (a NUMBER)", "CREATE OR REPLACE PROCEDURE p AS\nBEGIN\n  NULL;\nEND;",
                   "BEGIN\n  EXECUTE IMMEDIATE 'x';\nEND;"]


def test_sqlite_schema_file_has_every_column_and_index():
    stmts = split_script(read_sql("sqlite", "create_async_jobs_table.sql"), "semicolon")
    from jobctl.store import COLUMNS

    create = next(s for s in stmts if s.upper().startswith("CREATE TABLE"))
    for col in COLUMNS:
        assert col.upper() in create
    assert any("UNIQUE INDEX" in s and "WHERE STATUS IN ('queued', 'running')" in s for s in stmts)


def test_orphaned_and_external_jobs_read_as_such_in_tables():
    now = dt.datetime.now(dt.timezone.utc)
    external = make_job(worker_host=None, worker_pid=None, external=True)
    orphan = make_job(job_id="b" * 32, status=JobStatus.ORPHANED, db_session="4242:2026-11-28T10:00:00+00:00",
                      status_reason="worker pid 1 on h is gone; its server session 4242:... still runs the call")
    lines = render.plain_table(*render.jobs_rows([external, orphan], now)).splitlines()
    assert "running (external)" in lines[1] and "orphaned" in lines[2]
    detail = dict(render.detail_pairs(orphan, now))
    assert detail["status"] == "orphaned" and "still runs" in detail["why"]
    assert detail["session"].startswith("4242:")
    assert not JobStatus.ORPHANED.finished  # wait keeps waiting, cleanup never deletes it
    stats = [{"procedure": "P", "total": 3, "completed": 1, "failed": 1, "orphaned": 1,
              "success_pct": 50.0, "avg_s": None, "p50_s": None, "p95_s": None, "max_s": None}]
    assert render.stats_rows(stats)[1][0][4] == "1"  # OTHER counts the orphaned job


# -- exact JSON, what submit records -------------------------------------------------------

def test_json_numbers_are_written_from_the_decimal_text_and_read_back_identically():
    from jobctl import jsontext

    values = [12345678901234567890123456789012345678, Decimal("0.1"),
              Decimal("-0.000000000000000000001"), Decimal("1E+30"), Decimal("2.50")]
    text = jsontext.dumps({"v": values, "t": "Ñuñoa"})
    assert text == ('{"v": [12345678901234567890123456789012345678, 0.1, -1E-21, 1E+30, 2.50], '
                    '"t": "Ñuñoa"}')
    back = jsontext.loads(text)["v"]
    assert back == values and [str(v) for v in back] == [str(v) for v in values]
    json.loads(text)  # standard JSON for any other reader
    plain = {"a": [1, {"b": None, "c": True}], "d": "x", "e": []}
    assert jsontext.dumps(plain, indent=2) == json.dumps(plain, indent=2)
    for bad in (Decimal("NaN"), float("inf"), Decimal("-Infinity")):
        with pytest.raises(ValueError):
            jsontext.dumps({"v": bad})


@pytest.mark.parametrize("raw", ["1e400", "NaN", "Infinity", "-inf", "1" * 39, "1E+126",
                                 "1E-131", 10 ** 40 + 1])
def test_numbers_no_database_holds_are_refused_by_name(raw):
    with pytest.raises(UsageError, match="parameter p"):
        coerce(Param("p", "NUMBER", NUMBER), raw)


def test_stored_values_are_restored_typed_not_coerced_again():
    from jobctl.params import from_stored, params_json
    from jobctl import jsontext

    sig = Signature("P", (Param("n", "NUMBER", NUMBER), Param("d", "DATE", DATE),
                          Param("ts", "TIMESTAMP", TIMESTAMP), Param("t", "TEXT", TEXT)))
    bound = {"n": Decimal("1E+30"), "d": dt.date(2026, 11, 28),
             "ts": dt.datetime(2026, 11, 28, 10, 0, 0, 123456), "t": " 007 "}
    restored = from_stored(sig, jsontext.loads(params_json(bound)))
    assert restored == bound and str(restored["n"]) == "1E+30"


def test_the_fingerprint_follows_what_a_call_binds():
    one = Signature("P", (Param("a", "numeric", NUMBER),), overload="public.p(a numeric)")
    same = Signature("P", (Param("A", "numeric", NUMBER),), overload="public.p(a numeric)")
    other = Signature("P", (Param("a", "text", TEXT),), overload="public.p(a text)")
    assert one.fingerprint == same.fingerprint != other.fingerprint
    assert one.changes_since(one.record()) is None
    assert other.changes_since(one.record()) == (
        "procedure P changed since submit: overload was public.p(a numeric), now public.p(a text)")
    assert one.changes_since(None) is None  # rows submitted before SIGNATURE existed
