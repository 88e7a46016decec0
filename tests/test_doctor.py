"""`jobctl doctor` against real databases: a healthy one, one without
ASYNC_JOBS, one with the original (pre-jobctl) table shape, a role that may
only read, and an Oracle address where nothing listens.

Doctor runs real demo jobs through real detached workers; each test checks
that it leaves no row behind.
"""

from __future__ import annotations

import json
import socket
import sys
import uuid
from urllib.parse import urlsplit

import pytest
from typer.testing import CliRunner

from jobctl.backends import get_backend
from jobctl.cli import app
from jobctl.config import parse_dsn
from jobctl.doctor import COMMON_CHECKS, EXACT_SUM, RESULTS

ORIGINAL_SHAPE = """CREATE TABLE ASYNC_JOBS (
    JOB_ID VARCHAR(32) NOT NULL PRIMARY KEY, STATUS VARCHAR(20) NOT NULL,
    PROCEDURE_NAME VARCHAR(200) NOT NULL, START_TIME TIMESTAMP NOT NULL, END_TIME TIMESTAMP,
    DURATION VARCHAR(50), RESULT TEXT, ERROR_MSG TEXT, PROGRESS NUMERIC DEFAULT 0,
    CREATED_AT TIMESTAMP DEFAULT CURRENT_TIMESTAMP)"""
JOBCTL_COLUMNS = ("PARAMS", "ELAPSED_S", "OUTPUT", "WORKER_HOST", "HEARTBEAT_AT", "SIGNATURE",
                  "CLAIM_TOKEN", "DB_SESSION")


def doctor(*args: str):
    """Run `jobctl [args] doctor --format json`: (exit code, report, stderr)."""
    result = CliRunner().invoke(app, [*args, "doctor", "--format", "json"])
    assert result.stdout, result.stderr
    return result.exit_code, json.loads(result.stdout), result.stderr


def by_name(report) -> dict[str, dict]:
    return {c["name"]: c for c in report["checks"]}


def run_sql(dsn: str, *statements: str):
    backend = get_backend(parse_dsn(dsn))
    conn = backend.connect()
    try:
        rows = None
        for statement in statements:
            cur = backend.execute(conn, statement)
            rows = cur.fetchall() if cur.description else None
        conn.commit()
        return rows
    finally:
        conn.close()


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_one_error_line(stderr: str, *names: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jobctl: error: doctor:"), stderr
    assert "Traceback" not in stderr
    for name in names:
        assert name in lines[0]


def test_doctor_passes_a_healthy_database_and_leaves_no_rows(env):
    env.submit(env.proc["suma"], "-p", "vA=1")          # a user's job, which must survive
    before = env.rows()

    code, report, stderr = doctor()

    checks = by_name(report)
    expected = list(COMMON_CHECKS)
    if env.backend == "oracle":
        from jobctl.backends.oracle.checks import CHECKS

        expected = ["oracle_driver", *expected, *CHECKS]
    assert list(checks) == expected
    assert all(c["result"] in RESULTS and c["detail"] for c in report["checks"])
    for name in ("connect", "time_zone", "table", "indexes", "privileges", "demo_procedures",
                 "round_trip", "cancel"):
        assert checks[name]["result"] == "ok", checks[name]
    assert checks["progress_output"]["result"] in ("ok", "warn"), checks["progress_output"]
    assert "slept" in checks["progress_output"]["detail"]
    # helper objects are warned about, never failed: jobctl works without them
    assert checks["helper_objects"]["result"] in ("ok", "warn")
    # the exact round trip ran and says what it got; its `ok` is asserted in
    # test_doctor_round_trip_is_exact
    assert checks["exact_values"]["result"] in ("ok", "fail")
    assert str(EXACT_SUM) in checks["exact_values"]["detail"]

    failed = [c["name"] for c in report["checks"] if c["result"] == "fail"]
    assert report["ok"] is (not failed)
    assert code == (1 if failed else 0)
    if failed:
        assert_one_error_line(stderr, *failed)

    if env.backend == "oracle":   # what the real database says about each documented fact
        assert all(checks[n]["result"] in ("ok", "warn") for n in CHECKS), report

    ctx = report["context"]
    settings = parse_dsn(env.dsn)
    assert ctx["backend"] == env.backend and ctx["dsn"] == settings.display
    assert ctx["profile"] is None
    assert ctx["password_source"] == ("dsn" if settings.password is not None else None)
    assert ctx["config_file"] == str(env.tmp / "config" / "jobctl" / "config.toml")
    # doctor's demo jobs are gone, the user's job is untouched
    assert [r["job_id"] for r in env.rows()] == [r["job_id"] for r in before]


def test_doctor_round_trip_is_exact(sqlite_env):
    code, report, _ = doctor()
    check = by_name(report)["exact_values"]
    assert check["result"] == "ok", check
    assert code == 0


def test_doctor_fails_without_the_table_and_says_db_init(env, empty_dsn):
    result = CliRunner().invoke(app, ["--dsn", empty_dsn, "doctor"])

    assert result.exit_code == 1
    assert_one_error_line(result.stderr, "table")
    lines = result.stdout.splitlines()
    table_line = next(i for i, ln in enumerate(lines) if ln.split()[1:2] == ["table"])
    assert lines[table_line].startswith("fail") and "ASYNC_JOBS not found" in lines[table_line]
    assert "fix: run `jobctl db init`" in lines[table_line + 1]
    for name in ("privileges", "round_trip", "cancel"):
        assert any(ln.startswith("skip") and ln.split()[1] == name for ln in lines), name

    code, report, _ = doctor("--dsn", empty_dsn)
    assert code == 1 and by_name(report)["table"]["result"] == "fail"
    assert "jobctl db init" in by_name(report)["table"]["remedy"]
    with pytest.raises(Exception) as missing:   # doctor created nothing
        run_sql(empty_dsn, "SELECT COUNT(*) FROM ASYNC_JOBS")
    assert get_backend(parse_dsn(empty_dsn)).is_missing_table(missing.value)


def test_doctor_names_the_columns_an_old_table_lacks(env, empty_dsn):
    run_sql(empty_dsn, ORIGINAL_SHAPE)

    code, report, stderr = doctor("--dsn", empty_dsn)

    checks = by_name(report)
    assert code == 1
    assert_one_error_line(stderr, "table")
    assert checks["table"]["result"] == "fail"
    for column in JOBCTL_COLUMNS:
        assert column in checks["table"]["detail"]
    for column in ("JOB_ID", "STATUS", "PROGRESS", "CREATED_AT"):
        assert column not in checks["table"]["detail"].split(": ", 1)[1].split(", ")
    assert "jobctl db init" in checks["table"]["remedy"]
    assert checks["privileges"]["result"] == "skip"
    assert run_sql(empty_dsn, "SELECT COUNT(*) FROM ASYNC_JOBS")[0][0] == 0


@pytest.fixture
def read_only_role(env):
    """A PostgreSQL login role that may only SELECT from async_jobs; dropped after."""
    if env.backend != "postgresql":
        pytest.skip("roles and grants: PostgreSQL")
    import psycopg

    role = f"jobctl_doctor_ro_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect(env.dsn, autocommit=True)
    try:
        admin.execute(f"CREATE ROLE {role} LOGIN")
        admin.execute(f"GRANT SELECT ON async_jobs TO {role}")
        parts = urlsplit(env.dsn)
        yield role, parts._replace(netloc=f"{role}@{parts.netloc.rsplit('@', 1)[-1]}").geturl()
    finally:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                      (role,))
        admin.execute(f"REVOKE ALL ON async_jobs FROM {role}")
        admin.execute(f"DROP ROLE IF EXISTS {role}")
        admin.close()


def test_doctor_reports_a_missing_privilege_with_the_grant(env, read_only_role):
    role, dsn = read_only_role

    code, report, stderr = doctor("--dsn", dsn)

    checks = by_name(report)
    assert code == 1
    assert_one_error_line(stderr, "privileges")
    assert checks["table"]["result"] == "ok"
    assert checks["privileges"]["result"] == "fail"
    assert "INSERT" in checks["privileges"]["detail"]
    assert "permission denied" in checks["privileges"]["detail"]
    assert checks["privileges"]["remedy"] == f"as the table's owner: GRANT SELECT, INSERT, UPDATE, " \
                                             f"DELETE ON async_jobs TO {role}"
    assert checks["round_trip"]["result"] == "skip"
    assert env.rows() == []


def test_doctor_on_oracle_with_nothing_listening_fails_connect_in_one_line(tmp_path, monkeypatch):
    for key in ("JOBCTL_DSN", "JOBCTL_PROFILE", "JOBCTL_PASSWORD", "TNS_ADMIN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    secret_file = tmp_path / "secret"
    secret_file.write_text("s3cr3t-Pw\n")
    secret_file.chmod(0o600)
    config = tmp_path / "config" / "jobctl" / "config.toml"
    config.parent.mkdir(parents=True)
    dsn = f"oracle://scott@127.0.0.1:{closed_port()}/FREEPDB1"
    config.write_text(f'[profiles.ora]\ndsn = "{dsn}"\npassword_file = "{secret_file}"\n')

    result = CliRunner().invoke(app, ["--profile", "ora", "doctor", "--format", "json"])

    assert result.exit_code == 1
    assert_one_error_line(result.stderr, "connect")
    assert "s3cr3t" not in result.stdout + result.stderr
    report = json.loads(result.stdout)
    checks = by_name(report)
    assert checks["oracle_driver"]["result"] == "ok" and "thin mode" in checks["oracle_driver"]["detail"]
    assert checks["connect"]["result"] == "fail"
    assert "nothing is listening at 127.0.0.1" in checks["connect"]["detail"]
    assert "\n" not in checks["connect"]["detail"]
    assert checks["connect"]["remedy"]
    assert all(c["result"] == "skip" for n, c in checks.items() if n not in ("oracle_driver", "connect"))
    assert {"oracle_name_shadowing", "oracle_set_progress", "oracle_longops"} <= set(checks)
    assert report["context"] == {
        "jobctl_version": report["context"]["jobctl_version"], "backend": "oracle",
        "dsn": dsn.replace("scott@", "scott:***@"), "profile": "ora",
        "config_file": str(config), "config_file_exists": True,
        "password_source": f"password_file {secret_file}"}

    csv_out = CliRunner().invoke(app, ["--profile", "ora", "doctor", "--format", "csv"])
    assert csv_out.exit_code == 1
    assert csv_out.stdout.splitlines()[0] == "name,result,detail,remedy"
    assert any(line.startswith("connect,fail,") for line in csv_out.stdout.splitlines())


def test_doctor_reports_where_the_password_came_from(tmp_path, monkeypatch):
    for key in ("JOBCTL_DSN", "JOBCTL_PROFILE", "TNS_ADMIN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    port = closed_port()
    monkeypatch.setenv("JOBCTL_PASSWORD", "from-env")
    _, report, _ = doctor("--dsn", f"oracle://scott@127.0.0.1:{port}/X")
    assert report["context"]["password_source"] == "JOBCTL_PASSWORD"
    monkeypatch.delenv("JOBCTL_PASSWORD")
    _, report, _ = doctor("--dsn", f"oracle://scott:in-dsn@127.0.0.1:{port}/X")
    assert report["context"]["password_source"] == "dsn"
    assert report["context"]["dsn"] == f"oracle://scott:***@127.0.0.1:{port}/X"


# -- Oracle's checks, linted offline (no server here; ORACLE_NOTES "Testing
#    without a server"): each statement parses as Oracle SQL and binds exactly
#    what the code supplies --------------------------------------------------------

def _oracle_statements():
    from jobctl import doctor as d
    from jobctl.backends.oracle import checks as oc
    from jobctl.backends.oracle import checks_sessions as cs

    cat = oc.CATALOG
    return [(cat.identity_sql, set()), (cat.timezone_sql, set()), (cat.indexes_sql, set()),
            (cat.helpers_sql, set()), (oc.ARGUMENTS_SQL, {"owner"}), (oc.ECHO_TIMESTAMP_SQL, {"t"}),
            (oc.PROBE_TIME_MATCH_SQL, {"job_id", "t"}), (oc.PROBE_OUTPUT_SQL, {"output", "job_id"}),
            (oc.PROBE_READ_SQL, {"job_id"}), (oc.PROBE_DELETE_SQL, {"job_id"}),
            (oc.GV_LONGOPS_SQL, set()), (oc.V_LONGOPS_SQL, set()),
            (oc.SHADOWING_SQL, set()), (d.DELETE_JOB_SQL, {"job_id"})] + [
        (sql, set()) for sql in (cs.IDENTITY_SQL, cs.CURRENT_JOB_SQL, cs.ZONE_SQL,
                                 cs.NLS_DATE_FORMAT_SQL, cs.PROBE_LINE, *cs.VIEW_PROBES)]


def test_oracle_check_statements_parse_as_oracle_and_bind_what_is_supplied():
    import re

    import sqlglot
    from sqlglot import exp

    for sql, binds in _oracle_statements():
        tree = sqlglot.parse_one(sql, read="oracle")
        assert not isinstance(tree, exp.Command), sql
        assert {p.name for p in tree.find_all(exp.Placeholder)} == binds, sql
        # Oracle 12.2 has neither LIMIT, IF EXISTS, :: casts nor boolean literals
        assert not re.search(r"\bLIMIT\b|\bIF\s+(NOT\s+)?EXISTS\b|::|\b(TRUE|FALSE)\b", sql, re.I), sql


def test_oracle_check_plsql_blocks_bind_what_is_supplied():
    import re

    from jobctl.backends.oracle import checks as oc

    for block, names in ((oc.NAME_RESOLVE_SQL, {"name", "schema", "part1", "part2", "dblink",
                                                "part1_type", "object_number"}),
                         (oc.SET_PROGRESS_SQL, {"job_id", "pct"})):
        assert re.fullmatch(r"\s*BEGIN\b.*\bEND;\s*", block, re.DOTALL)
        assert set(re.findall(r"(?<![:\w]):(\w+)", block)) == names
    # the helper package's new name: a package named like a schema shadows it
    assert "JOBCTL_PROGRESS.SET_PROGRESS" in oc.SET_PROGRESS_SQL


# -- Oracle's checks interpret what Oracle answers ---------------------------------
# No Oracle server runs here. `Answers` stands in for a database only to feed
# oracle_checks the answers ORACLE_NOTES documents (NAME_RESOLVE parts, the
# ALL_ARGUMENTS rows of SUMA_SIMPLE, ORA-00942 for an ungranted view), so that
# the interpretation and the probe bookkeeping are exercised; the checks
# themselves are what a user runs against a real Oracle.

def _ora_error(message: str, code: int):
    from oracledb import errors as ora_errors

    err = ora_errors._Error(message, code=code)
    return err.exc_type(err)


class _Var:
    def __init__(self, *args):
        self.value = None

    def setvalue(self, pos, value):
        self.value = value

    def getvalue(self, pos=0):
        return self.value


class _Cursor:
    def __init__(self, db, session):
        self.db, self.session, self.rows, self.rowcount = db, session, [], 0

    def var(self, *args):
        return _Var()

    def execute(self, sql, binds=None):
        self.rows, self.rowcount = self.db.answer(sql, dict(binds or {}), self.session)
        return self

    def fetchone(self):
        return self.rows[0] if self.rows else None

    def fetchall(self):
        return self.rows

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class _Session:
    def __init__(self, db, client_identifier=None, module="jobctl"):
        self.db, self.client_identifier = db, client_identifier
        self.module, self.action = module, client_identifier and client_identifier[-32:]
        self.current_job, self.altered, self.killed = None, False, False

    def cursor(self):
        return _Cursor(self.db, self)

    def commit(self):
        self.db.committed = dict(self.db.rows)

    def rollback(self):
        self.db.rows = dict(self.db.committed)

    def close(self):
        pass


class Answers:
    """The oracle backend's surface as oracle_checks uses it, answering as
    the Oracle notes document."""

    def __init__(self, *, longops_granted=True, shadow=(), progress_package=True):
        self.rows, self.committed = {}, {}
        self.longops_granted, self.shadow = longops_granted, list(shadow)
        self.progress_package = progress_package
        self.settings = parse_dsn("oracle://scott@db:1521/svc")
        self.views_granted, self.kill_granted = True, True

    # backend surface
    def execute(self, conn, sql, binds=None):
        return conn.cursor().execute(sql, binds)

    def connect(self, *, job_id=None):
        if job_id is None:
            return _Session(self)
        return _Session(self, "jobctl-watch:" + job_id, "jobctl watch")   # the watch session's name

    # a job's session, as jobsession.py and the notes' "Second review" describe it
    def start_job_session(self, conn, job_id):
        conn.client_identifier, conn.module, conn.action = job_id, "jobctl", job_id

    def reset_job_session(self, conn):
        conn.current_job, conn.client_identifier, conn.action = None, None, "idle"
        kept, conn.altered = not conn.altered and self.views_granted, False
        return kept

    def session_id(self, conn):
        self.victim = conn
        return "7,8,@1"

    def end_session(self, conn, session):
        self.victim.killed = self.kill_granted
        return self.kill_granted

    def session_alive(self, conn, session):
        return not self.victim.killed      # a KILLED session is not alive

    def translate_error(self, exc):
        from jobctl.backends import get_backend

        return get_backend(self.settings).translate_error(exc)

    def to_db_time(self, value):
        return value.replace(tzinfo=None)

    def clock_sql(self):
        return "SYS_EXTRACT_UTC(SYSTIMESTAMP)"  # heartbeats carry the server's clock

    def announce_work(self, conn, queue):
        return None  # Oracle announces nothing: a pool polls (PolledCancel)

    def resolve(self, conn, name, given):
        from jobctl.model import NUMBER, TEXT, Param, Signature

        if name == "SUMA_SIMPLE":
            return Signature(name, (Param("VA", "NUMBER", NUMBER, "IN"),
                                    Param("VB", "NUMBER", NUMBER, "IN", defaulted=True),
                                    Param("VRESULT", "NUMBER", NUMBER, "OUT")))
        if name == "CLEANUP_OLD_ASYNC_JOBS":
            return Signature(name, (Param("P_DAYS_OLD", "NUMBER", NUMBER, "IN", defaulted=True),))
        return Signature(name, (Param("A", "VARCHAR2", TEXT, "IN"),))

    def call(self, conn, sig, values, ctx):
        from jobctl.errors import DatabaseError

        conn.current_job = ctx.job_id       # JOBCTL_PROGRESS.SET_JOB at the call's start
        if sig.name == "CLEANUP_OLD_ASYNC_JOBS":
            if ctx.atomic:                  # ALTER SESSION DISABLE COMMIT IN PROCEDURE
                raise DatabaseError("ORA-00034: cannot COMMIT in current PL/SQL session",
                                    code="ORA-00034")
            ctx.note_self_commit()          # its COMMIT changed the transaction id
            return {}
        ctx.log(values["A"])      # DBMS_OUTPUT read back after the call
        return {}

    # the database
    def answer(self, sql, binds, session):
        from jobctl.backends.oracle import checks as oc
        from jobctl.backends.oracle import checks_sessions as cs
        from jobctl.backends.oracle import jobsession
        from jobctl.backends.oracle.connect import client_time_zone

        if sql == oc.NAME_RESOLVE_SQL:
            parts = {"SUMA_SIMPLE": ("SCOTT", None, "SUMA_SIMPLE", 7),
                     "DBMS_OUTPUT.PUT_LINE": ("SYS", "DBMS_OUTPUT", "PUT_LINE", 9)}[binds["name"]]
            for key, value in zip(("schema", "part1", "part2", "part1_type"), parts):
                binds[key].setvalue(0, value)
            return [], 1
        if sql == oc.ARGUMENTS_SQL:
            return [("VA", 1, "NUMBER", "IN", "N", 0, None), ("VB", 2, "NUMBER", "IN", "Y", 0, None),
                    ("VRESULT", 3, "NUMBER", "OUT", "N", 0, None)], 3
        if sql == oc.ECHO_TIMESTAMP_SQL:
            return [(binds["t"],)], 1
        if sql.lstrip().startswith("INSERT INTO ASYNC_JOBS"):
            self.rows[binds["job_id"]] = {"start": binds["now"], "output": None, "progress": 0,
                                          "status": "queued"}
            return [], 1
        row = self.rows.get(binds.get("job_id"))
        if "SET status = :st_running" in sql and "claim_token = :token" in sql:
            row["status"] = "running"
            return [], 1
        if sql == oc.PROBE_TIME_MATCH_SQL:
            return [(int(row is not None and row["start"] == binds["t"]),)], 1
        if sql == oc.PROBE_OUTPUT_SQL:
            row["output"] = binds["output"]
            return [], 1
        if sql == oc.PROBE_READ_SQL:
            return [(row["output"], len(row["output"] or ""), row["progress"])], 1
        if sql == oc.PROBE_DELETE_SQL:
            self.rows.pop(binds["job_id"], None)
            return [], 1
        if sql == oc.SET_PROGRESS_SQL:
            if not self.progress_package:
                raise _ora_error("ORA-06550: line 1, column 7:\nPLS-00201: identifier "
                                 "'JOBCTL_PROGRESS.SET_PROGRESS' must be declared", 6550)
            # autonomous transaction: committed at once, keyed by the job SET_JOB named
            job_id = binds["job_id"]
            self.committed[job_id]["progress"] = self.rows[job_id]["progress"] = binds["pct"]
            return [], 1
        if session.killed:
            raise _ora_error("ORA-00028: your session has been killed", 28)
        if sql == cs.IDENTITY_SQL:
            return [(session.client_identifier, session.module, session.action)], 1
        if sql == jobsession.RESET_SQL:
            self.reset_job_session(session)
            return [], 1
        if sql == cs.CURRENT_JOB_SQL:
            if not self.progress_package:
                raise _ora_error("ORA-00904: invalid identifier", 904)
            return [(session.current_job,)], 1
        if sql == cs.ALTER_PROBE_SQL:
            session.altered = True
            return [], 1
        if sql == cs.ZONE_SQL:
            return [(client_time_zone().strip("'"),)], 1
        if sql == cs.NLS_DATE_FORMAT_SQL:
            return [("DD-MON-RR",)], 1
        if sql == cs.PROBE_LINE:
            return [(1,)], 1
        if sql in cs.VIEW_PROBES:
            if not self.views_granted:
                raise _ora_error("ORA-00942: table or view does not exist", 942)
            return [(1,)], 1
        if sql in (oc.GV_LONGOPS_SQL, oc.V_LONGOPS_SQL):
            if not self.longops_granted:
                raise _ora_error("ORA-00942: table or view does not exist", 942)
            return [(0,)], 1
        if sql == oc.SHADOWING_SQL:
            return self.shadow, len(self.shadow)
        raise AssertionError(f"unexpected SQL: {sql}")


def _run_oracle_checks(db):
    from jobctl.backends.oracle import checks as oc

    from jobctl.lifecycle import Lifecycle

    return {c.name: c for c in oc.run(db, _Session(db), jobs=Lifecycle(db), table_ok=True,
                                      demos_ok=True, tag="jobctl-doctor@test")}


def test_oracle_checks_read_documented_answers_as_ok_and_leave_no_probe_rows():
    db = Answers()
    checks = _run_oracle_checks(db)

    assert {n: c.result for n, c in checks.items() if c.result != "ok"} == {}, checks
    assert "the name is in part2" in checks["oracle_name_resolve_standalone"].detail
    assert "VB 2 IN NUMBER DEFAULTED" in checks["oracle_all_arguments"].detail
    assert "SET_PROGRESS(42)" in checks["oracle_set_progress"].detail
    assert db.rows == {} and db.committed == {}


def test_oracle_checks_warn_on_shadowing_old_package_and_ungranted_longops():
    db = Answers(longops_granted=False, shadow=[("PACKAGE", "JOBCTL")], progress_package=False)
    checks = _run_oracle_checks(db)

    shadow = checks["oracle_name_shadowing"]
    assert shadow.result == "warn" and "PACKAGE JOBCTL" in shadow.detail and "PLS-00302" in shadow.detail
    assert "DROP PACKAGE JOBCTL" in shadow.remedy
    assert checks["oracle_longops"].result == "warn"
    assert "GV_$SESSION_LONGOPS" in checks["oracle_longops"].remedy
    progress = checks["oracle_set_progress"]
    assert progress.result == "warn" and "PLS-00201" in progress.detail
    assert db.rows == {} and db.committed == {}


def test_oracle_session_checks_warn_without_v_views_and_skip_without_kill_privilege():
    """Issue 23: without SELECT on the V$ views every job gets a new
    connection (a warning with the grant that avoids it); without ALTER
    SYSTEM the kill check is skipped (cancel prints the statement instead)."""
    db = Answers()
    db.views_granted, db.kill_granted = False, False
    checks = _run_oracle_checks(db)
    reset = checks["oracle_session_reset"]
    assert reset.result == "warn" and "new connection" in reset.detail
    assert "SELECT_CATALOG_ROLE" in reset.remedy
    assert checks["oracle_killed_session"].result == "skip"
    assert checks["oracle_job_identity"].result == "ok"
    assert db.rows == {} and db.committed == {}


def test_doctor_says_when_the_database_driver_is_missing(tmp_path, monkeypatch):
    for key in ("JOBCTL_DSN", "JOBCTL_PROFILE", "JOBCTL_PASSWORD"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    # as if psycopg were not installed: importing the backend fails
    monkeypatch.setitem(sys.modules, "jobctl.backends.postgresql", None)

    code, report, stderr = doctor("--dsn", f"postgresql://etl@127.0.0.1:{closed_port()}/db")

    assert code == 1
    assert_one_error_line(stderr, "connect")
    connect = by_name(report)["connect"]
    assert connect["result"] == "fail" and "driver is not installed" in connect["detail"]
    assert "jobctl[postgresql]" in connect["remedy"]


def test_doctor_exits_0_on_a_database_without_the_demos_and_skips_the_round_trip(env, empty_dsn):
    if env.backend == "sqlite":
        pytest.skip("SQLite's demo procedures are built in")
    init = CliRunner().invoke(app, ["--dsn", empty_dsn, "db", "init"])
    assert init.exit_code == 0, init.stderr

    result = CliRunner().invoke(app, ["--dsn", empty_dsn, "doctor", "--format", "json"])

    assert result.exit_code == 0, result.stderr
    assert result.stderr.startswith("jobctl: doctor: no check failed (")
    checks = by_name(json.loads(result.stdout))
    assert checks["demo_procedures"]["result"] == "warn"
    assert "jobctl db init --examples" in checks["demo_procedures"]["remedy"]
    for name in ("round_trip", "exact_values", "progress_output", "cancel"):
        assert checks[name]["result"] == "skip", checks[name]
    for name in ("connect", "time_zone", "table", "indexes", "privileges"):
        assert checks[name]["result"] == "ok", checks[name]


def test_doctor_warns_about_a_missing_index_without_failing(sqlite_env):
    sqlite_env.sql("DROP INDEX UX_ASYNC_JOBS_UNIQUE_ACTIVE")

    _, report, _ = doctor()

    indexes = by_name(report)["indexes"]
    assert indexes["result"] == "warn"
    assert "UX_ASYNC_JOBS_UNIQUE_ACTIVE" in indexes["detail"] and "--unique" in indexes["detail"]
    assert "IX_ASYNC_JOBS_STATUS" not in indexes["detail"]
    assert "jobctl db init" in indexes["remedy"]
