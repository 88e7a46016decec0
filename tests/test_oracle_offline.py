"""The Oracle backend, checked without an Oracle server.

What can honestly be checked offline (ORACLE_NOTES "Testing without a
server"): name validation, DSN handling, how values are bound, error
translation from the driver's own error objects, connection failures against
a closed loopback port, the text and bind names of every statement, and how
the sql/oracle scripts split. Resolution, privileges, DBMS_OUTPUT, LONGOPS,
cancel and time zones need a real database: the behavioural suite runs there
when JOBCTL_TEST_ORACLE_DSN is set.

The small fake cursors below stand in for a driver cursor only to record what
the backend asks of it (which variable types, which binds); no database
behaviour is imitated.
"""

from __future__ import annotations

import contextlib

import datetime as dt
import os
import re
import socket
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import oracledb
import pytest
import sqlglot
from oracledb import errors as ora_errors
from sqlglot import exp
from typer.testing import CliRunner

from jobctl import model, params, store
from jobctl.backends import get_backend
from jobctl.backends import oracle as ob
from jobctl.backends.base import CallContext
from jobctl.cli import app
from jobctl.config import parse_dsn
from jobctl.errors import DatabaseError, NotFound, SchemaMissing, UsageError
from jobctl.lifecycle import Lifecycle
from jobctl.model import JobStatus, Param, Signature
from jobctl.sqlfiles import read_sql, segments, split_script

UTC = dt.timezone.utc


def backend(dsn: str = "oracle://scott@dbhost:1521/FREEPDB1", **options) -> ob.OracleBackend:
    return get_backend(parse_dsn(dsn, options=options))


def closed_port() -> int:
    """A loopback port nobody listens on: bound, never listened, then freed."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ora_error(message: str, code: int) -> oracledb.Error:
    """A database error exactly as thin mode raises it
    (src/oracledb/impl/thin/messages/base.pyx `_check_and_raise_exception`)."""
    err = ora_errors._Error(message, code=code)
    return err.exc_type(err)


def dpy_error(num: int, cause: str | None = None, **args) -> oracledb.Error:
    """A driver error as the driver builds it (src/oracledb/errors.py)."""
    return ora_errors._create_exception(num, cause, **args)


@pytest.fixture(autouse=True)
def _no_ambient_config(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    for key in ("JOBCTL_DSN", "JOBCTL_PROFILE", "JOBCTL_PASSWORD", "TNS_ADMIN"):
        monkeypatch.delenv(key, raising=False)


# -- procedure names: refused before any connection ------------------------------------

@pytest.mark.parametrize("name, expected", [
    ("suma_simple", "SUMA_SIMPLE"),
    ("  pkg.proc ", "PKG.PROC"),
    ("scott.pkg.proc", "SCOTT.PKG.PROC"),
    ("Pkg_1$x#.P", "PKG_1$X#.P"),
])
def test_valid_procedure_names_are_upper_cased(name, expected):
    assert backend().normalize_name(name) == expected


@pytest.mark.parametrize("name", [
    "X; DROP TABLE ASYNC_JOBS",
    "X(1); DROP TABLE ASYNC_JOBS; --",
    "proc@remote_link",
    "a.b.c.d",
    '"MixedCase"',
    "1proc",
    "proc name",
    "",
    "pkg..proc",
    "x'||y",
    "begin null; end",
    "P" * 201,
])
def test_invalid_procedure_names_are_usage_errors(name):
    with pytest.raises(UsageError):
        backend().normalize_name(name)


@pytest.fixture
def no_connect(monkeypatch):
    """Fails the test if anything tries to reach a database."""
    calls = []

    def refuse(*args, **kwargs):
        calls.append(kwargs)
        raise AssertionError("tried to connect")

    monkeypatch.setattr(oracledb, "connect", refuse)
    return calls


@pytest.mark.parametrize("args", [
    ["submit", "X; DROP TABLE ASYNC_JOBS"],
    ["submit", "SUMA_SIMPLE@remote", "-p", "vA=1"],
    ["describe", "a.b.c.d"],
    ["list", "--procedure", "x);delete from async_jobs;--"],
    ["stats", "--procedure", "x y"],
])
def test_cli_refuses_bad_names_with_exit_2_and_never_connects(args, no_connect, monkeypatch):
    monkeypatch.setenv("JOBCTL_PASSWORD", "tiger")
    result = CliRunner().invoke(app, ["--dsn", "oracle://scott@127.0.0.1:1/x", *args])
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith("jobctl: error: ") and result.stderr.count("\n") == 1
    assert no_connect == []


def test_parameter_names_are_checked_before_callproc_pastes_them():
    kw = ob.OracleBackend._keyword
    assert kw("VA") == "VA"
    assert kw("P_SECONDS") == "P_SECONDS"
    assert kw("vA") == '"vA"'            # declared quoted: only a quoted name matches
    # anything else becomes one quoted identifier, which cannot break out
    assert kw("X => 1); DROP TABLE T; --") == '"X => 1); DROP TABLE T; --"'
    for bad in ('A" => 1); DROP TABLE T; --', '"VA"', ""):
        with pytest.raises(UsageError):
            kw(bad)


# -- DSNs ----------------------------------------------------------------------------

@pytest.mark.parametrize("dsn, connect_dsn, host, port, service", [
    ("oracle://scott@dbhost:1522/FREEPDB1", "dbhost:1522/FREEPDB1", "dbhost", 1522, "FREEPDB1"),
    ("oracle://scott@dbhost/orclpdb1", "dbhost/orclpdb1", "dbhost", 1521, "orclpdb1"),
    ("oracle://scott:tiger@[::1]:1521/FREEPDB1", "[::1]:1521/FREEPDB1", "::1", 1521, "FREEPDB1"),
])
def test_url_dsn_becomes_easy_connect(dsn, connect_dsn, host, port, service):
    b = backend(dsn)
    assert b.connect_dsn() == connect_dsn
    params = oracledb.ConnectParams()
    params.parse_connect_string(b.connect_dsn())
    assert (params.host, params.port, params.service_name) == (host, port, service)


def test_url_without_port_or_service_is_a_tns_alias_read_from_config_dir(tmp_path):
    (tmp_path / "tnsnames.ora").write_text(
        "SALES_PRD = (DESCRIPTION=(ADDRESS=(PROTOCOL=TCP)(HOST=db9)(PORT=1599))"
        "(CONNECT_DATA=(SERVICE_NAME=sales.example)))\n")
    b = backend("oracle://scott@SALES_PRD", config_dir=str(tmp_path))
    kwargs = b.connect_params()
    # the URL parser lower-cases the host part; tnsnames lookups are
    # case-insensitive (src/oracledb/impl/base/parsers.pyx upper-cases keys)
    assert kwargs["dsn"].upper() == "SALES_PRD"
    assert kwargs["config_dir"] == str(tmp_path)
    params = oracledb.ConnectParams(config_dir=str(tmp_path))
    params.parse_connect_string(kwargs["dsn"])
    assert (params.host, params.port, params.service_name) == ("db9", 1599, "sales.example")


def test_connect_params_take_profile_options_and_never_the_password(monkeypatch):
    monkeypatch.setenv("MY_WALLET_PW", "wallet-secret")
    b = backend("oracle://scott:tiger@dbhost:1521/FREEPDB1?tcp_connect_timeout=3.5",
                wallet_location="~/wallet", wallet_password_env="MY_WALLET_PW")
    kwargs = b.connect_params()
    assert kwargs == {"user": "scott", "dsn": "dbhost:1521/FREEPDB1",
                      "wallet_location": os.path.expanduser("~/wallet"),
                      "tcp_connect_timeout": 3.5, "wallet_password": "wallet-secret",
                      "expire_time": ob.DEFAULT_EXPIRE_TIME_MIN}
    assert "tiger" not in b.settings.display


def test_plain_wallet_password_is_refused_and_file_must_be_private(tmp_path):
    with pytest.raises(UsageError, match="wallet_password_env"):
        backend(wallet_password="secret").connect_params()
    pw = tmp_path / "wallet.pw"
    pw.write_text("s3cret\n")
    pw.chmod(0o644)
    with pytest.raises(UsageError, match="chmod 600"):
        backend(wallet_password_file=str(pw)).connect_params()
    pw.chmod(0o600)
    assert backend(wallet_password_file=str(pw)).connect_params()["wallet_password"] == "s3cret"


def test_password_is_masked_in_every_printed_dsn():
    b = backend("oracle://scott:tiger@127.0.0.1:1/FREEPDB1")
    assert b.settings.display == "oracle://scott:***@127.0.0.1:1/FREEPDB1"
    err = b.translate_error(ora_error("ORA-01017: invalid credential or not authorized; logon denied", 1017))
    assert "tiger" not in err.message and "oracle://scott:***@127.0.0.1:1/FREEPDB1" in err.message
    with pytest.raises(DatabaseError) as info:
        b.connect()
    assert "tiger" not in info.value.message


def test_connection_refused_is_one_line_exit_4_through_the_cli(monkeypatch):
    port = closed_port()
    dsn = f"oracle://scott@127.0.0.1:{port}/FREEPDB1"
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "jobctl", "--dsn", dsn, "list"],
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "JOBCTL_PASSWORD": "tiger"}, stdin=subprocess.DEVNULL)
    elapsed = time.monotonic() - started
    assert out.returncode == 4, out.stderr
    assert elapsed < 5
    assert out.stdout == ""
    line = out.stderr.strip()
    assert "\n" not in line and line.startswith("jobctl: error: cannot connect to ")
    assert f"nothing is listening at 127.0.0.1:{port}" in line
    assert "tiger" not in out.stderr


def test_real_driver_errors_for_closed_port_and_unknown_alias(tmp_path):
    b = backend(f"oracle://scott:tiger@127.0.0.1:{closed_port()}/FREEPDB1")
    with pytest.raises(DatabaseError) as info:
        b.connect()
    assert info.value.exit_code == 4 and info.value.transient
    assert "nothing is listening" in info.value.message

    (tmp_path / "tnsnames.ora").write_text("OTHER = (DESCRIPTION=(ADDRESS=(PROTOCOL=TCP)"
                                           "(HOST=127.0.0.1)(PORT=1))(CONNECT_DATA=(SERVICE_NAME=x)))\n")
    b = backend("oracle://scott:tiger@nosuchalias", config_dir=str(tmp_path))
    with pytest.raises(DatabaseError, match="unknown TNS alias") as info:
        b.connect()
    assert info.value.exit_code == 4

    b = backend("oracle://scott:tiger@other", config_dir=str(tmp_path))
    with pytest.raises(DatabaseError, match="nothing is listening at the address of TNS alias other"):
        b.connect()

    b = backend("oracle://scott:tiger@nosuchalias", config_dir=str(tmp_path / "missing"))
    with pytest.raises(DatabaseError, match="tnsnames.ora") as info:
        b.connect()
    assert info.value.exit_code == 4


def test_without_password_or_terminal_the_error_says_where_a_password_comes_from():
    # the driver refuses before any network I/O: DPY-4001 (no stdin terminal here)
    b = backend(f"oracle://scott@127.0.0.1:{closed_port()}/FREEPDB1")
    with pytest.raises(DatabaseError) as info:
        b.connect()
    assert info.value.message.endswith("or run on a terminal to be asked")


# -- errors --------------------------------------------------------------------------

PLS_201 = ("ORA-06550: line 1, column 7:\nPLS-00201: identifier 'SCOTT.NOPE' must be declared\n"
           "ORA-06550: line 1, column 7:\nPL/SQL: Statement ignored")


@pytest.mark.parametrize("exc, kind, exit_code, text", [
    (ora_error("ORA-00942: table or view does not exist", 942), SchemaMissing, 4, "jobctl db init"),
    (ora_error('ORA-00942: table or view "SCOTT"."ASYNC_JOBS" does not exist', 942), SchemaMissing, 4,
     "jobctl db init"),
    (ora_error(PLS_201, 6550), NotFound, 3, "procedure not found, or this user may not execute it"),
    (ora_error("ORA-06564: object NOPE does not exist", 6564), NotFound, 3, "not found"),
    (ora_error("ORA-01017: invalid username/password; logon denied", 1017), DatabaseError, 4,
     "invalid username or password"),
    (ora_error("ORA-12541: TNS:no listener", 12541), DatabaseError, 4, "nothing is listening"),
    (dpy_error(ora_errors.ERR_CONNECTION_FAILED, "[Errno 111] Connection refused", connection_id="x"),
     DatabaseError, 4, "nothing is listening at dbhost:1521 ([Errno 111] Connection refused)"),
    (dpy_error(ora_errors.ERR_INVALID_SERVICE_NAME, service_name="NOPE", host="dbhost", port=1521),
     DatabaseError, 4, 'unknown service: Service "NOPE" is not registered'),
    (dpy_error(ora_errors.ERR_TNS_ENTRY_NOT_FOUND, name="sales", file_name="/etc/tnsnames.ora"),
     DatabaseError, 4, 'unknown TNS alias: unable to find "sales"'),
    (dpy_error(ora_errors.ERR_NO_CONFIG_DIR), DatabaseError, 4, "TNS_ADMIN"),
    (ora_error("ORA-03113: end-of-file on communication channel", 3113), DatabaseError, 4,
     "closed the connection"),
    (ora_error("ORA-01013: user requested cancel of current operation", 1013), DatabaseError, 4,
     "cancelled"),
    (ora_error("ORA-01031: insufficient privileges", 1031), DatabaseError, 4, "insufficient privileges"),
])
def test_driver_errors_translate_to_one_line_and_exit_code(exc, kind, exit_code, text):
    err = backend().translate_error(exc)
    assert type(err) is kind
    assert err.exit_code == exit_code
    assert text in err.message
    assert "\n" not in err.message and "Help:" not in err.message


def test_missing_other_table_is_not_reported_as_missing_schema():
    exc = ora_error('ORA-00942: table or view "HR"."EMPLOYEES" does not exist', 942)
    err = backend().translate_error(exc)
    assert not isinstance(err, SchemaMissing) and "EMPLOYEES" in err.message


def test_error_predicates_on_real_error_objects():
    b = backend()
    assert b.is_missing_table(ora_error("ORA-00942: table or view does not exist", 942))
    assert b.is_unique_violation(ora_error("ORA-00001: unique constraint (S.UX) violated", 1))
    for code in (955, 1430, 1408, 2260, 2275):
        assert b.is_already_exists(ora_error(f"ORA-{code:05}: exists", code))
    assert not b.is_already_exists(ora_error("ORA-00942: table or view does not exist", 942))
    assert b.is_transient(ora_error("ORA-00060: deadlock detected while waiting for resource", 60))
    assert b.is_transient(ora_error("ORA-03113: end-of-file on communication channel", 3113))
    assert b.is_transient(dpy_error(ora_errors.ERR_CONNECTION_FAILED, "timed out", connection_id="x"))
    assert not b.is_transient(ora_error("ORA-20001: demo failure", 20001))
    assert not b.is_transient(ValueError("not a driver error"))


def test_a_connection_storm_is_transient_so_the_worker_waits_it_out():
    b = backend()
    assert b.is_transient(ora_error("ORA-00018: maximum number of sessions exceeded", 18))
    assert b.is_transient(ora_error("ORA-00020: maximum number of processes (150) exceeded", 20))
    for code in (12516, 12519, 12520):
        assert b.is_transient(dpy_error(ora_errors.ERR_LISTENER_REFUSED_CONNECTION, error_code=code))
    # an unknown service is a mistake to report at once, not a storm to wait out
    assert not b.is_transient(dpy_error(ora_errors.ERR_LISTENER_REFUSED_CONNECTION, error_code=12514))
    assert not b.is_transient(ora_error("ORA-01017: invalid username/password; logon denied", 1017))
    err = b.translate_error(ora_error("ORA-00018: maximum number of sessions exceeded", 18))
    assert err.exit_code == 4 and err.transient and "ORA-00018" in err.message


def test_job_errors_keep_the_database_text_without_help_urls():
    b = backend()
    exc = ora_error('ORA-20001: boom\nORA-06512: at "SCOTT.DEMO_FAIL", line 3\nORA-06512: at line 1', 20001)
    err = b._job_error(exc, "DEMO_FAIL")
    assert err.message.startswith("ORA-20001: boom\nORA-06512")
    exc = ora_error("ORA-01476: divisor is equal to zero", 1476)
    assert b._job_error(exc, "P").message == "ORA-01476: divisor is equal to zero"
    assert isinstance(b._job_error(ora_error(PLS_201, 6550), "NOPE"), NotFound)


def test_compilation_warning_is_raised_naming_the_object():
    class Cur(FakeCursor):
        def execute(self, sql, binds=None, **kw):
            super().execute(sql, binds, **kw)
            if sql.lstrip().upper().startswith("CREATE"):
                self.warning = ora_errors._Error("ORA-24344: success with compilation error",
                                                 code=24344, iswarning=True)
            else:
                self.rows = [(3, 5, "PLS-00103: Encountered the symbol \"END\"")]

    conn = FakeConn(Cur)
    with pytest.raises(DatabaseError) as info:
        backend().execute(conn, "CREATE OR REPLACE PACKAGE BODY JOBCTL AS\nBEGIN x END;")
    assert info.value.message.startswith("PACKAGE BODY JOBCTL was created with compilation errors: line 3:5 PLS-00103")
    assert conn.cursors[1].executed[0][1] == {"name": "JOBCTL", "type": "PACKAGE BODY"}


# -- how values are bound ---------------------------------------------------------------

class FakeVar:
    def __init__(self, typ, size=0, arraysize=None):
        self.type, self.size, self.arraysize = typ, size, arraysize
        self.values = {}

    def setvalue(self, pos, value):
        self.values[pos] = value

    def getvalue(self, pos=0):
        return self.values.get(pos)


class FakeCursor:
    """Records what the backend asks of a driver cursor."""

    def __init__(self):
        self.vars, self.executed, self.calls, self.sizes = [], [], [], {}
        self.warning = None
        self.rows = []
        self.description = None
        self.rowcount = 1

    def var(self, typ, size=0):
        v = FakeVar(typ, size)
        self.vars.append(v)
        return v

    def arrayvar(self, typ, value, size=0):
        v = FakeVar(typ, size, value)
        self.vars.append(v)
        return v

    def setinputsizes(self, **sizes):
        self.sizes.update(sizes)

    def execute(self, sql, binds=None, **kw):
        self.executed.append((sql, binds, kw))

    def callproc(self, name, parameters=None, keyword_parameters=None):
        self.calls.append((name, keyword_parameters))

    def fetchall(self):
        return self.rows

    def fetchone(self):
        return self.rows[0] if self.rows else None

    def __iter__(self):
        return iter(self.rows)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class FakeConn:
    def __init__(self, cursor_class=FakeCursor):
        self.cursor_class = cursor_class
        self.cursors = []

    def cursor(self):
        cur = self.cursor_class()
        self.cursors.append(cur)
        return cur


@pytest.mark.parametrize("data_type, pls_type, kind", [
    ("NUMBER", "NUMBER", model.NUMBER), ("FLOAT", None, model.NUMBER),
    ("BINARY_DOUBLE", None, model.NUMBER), ("BINARY_FLOAT", None, model.NUMBER),
    ("NUMBER", "INTEGER", model.INTEGER), ("PLS_INTEGER", None, model.INTEGER),
    ("BINARY_INTEGER", None, model.INTEGER), ("PL/SQL PLS INTEGER", None, model.INTEGER),
    ("VARCHAR2", None, model.TEXT), ("CHAR", None, model.TEXT), ("NVARCHAR2", None, model.TEXT),
    ("CLOB", None, model.TEXT),
    ("DATE", None, model.TIMESTAMP), ("TIMESTAMP", None, model.TIMESTAMP),
    ("TIMESTAMP WITH TIME ZONE", None, model.TIMESTAMP),
    ("PL/SQL BOOLEAN", None, model.BOOLEAN), ("BOOLEAN", None, model.BOOLEAN),
    ("JSON", None, model.JSON),
    ("PL/SQL RECORD", None, model.UNSUPPORTED), ("TABLE", None, model.UNSUPPORTED),
    ("REF CURSOR", None, model.UNSUPPORTED), ("OBJECT", None, model.UNSUPPORTED),
    ("VARRAY", None, model.UNSUPPORTED), ("BFILE", None, model.UNSUPPORTED),
    # written as text (ISO 8601, hex) and turned into the driver's objects by the backend
    ("BLOB", None, model.TEXT), ("RAW", None, model.TEXT),
    ("INTERVAL DAY TO SECOND", None, model.TEXT), ("INTERVAL DAY(2) TO SECOND(6)", None, model.TEXT),
    ("INTERVAL YEAR TO MONTH", None, model.TEXT),
    ("TIMESTAMP WITH LOCAL TIME ZONE", None, model.TIMESTAMP),
])
def test_oracle_types_map_to_families(data_type, pls_type, kind):
    assert ob.type_kind(data_type, pls_type) == kind


def _p(name, data_type, mode="IN", pls_type=None, defaulted=False):
    row = {"argument_name": name, "data_type": data_type, "pls_type": pls_type, "type_owner": None,
           "type_name": None, "type_subname": None, "in_out": mode, "defaulted": "Y" if defaulted else "N"}
    return ob.OracleBackend._param(row), data_type


def test_input_binds_by_type():
    b, cur = backend(), FakeCursor()

    p, t = _p("N", "NUMBER")
    assert b._in_bind(cur, p, t, params.coerce(p, "10")) == 10          # plain NUMBER bind
    assert b._in_bind(cur, p, t, params.coerce(p, "1.50")) == Decimal("1.50")
    null = b._in_bind(cur, p, t, None)                                   # None would bind as VARCHAR
    assert isinstance(null, FakeVar) and null.type is oracledb.DB_TYPE_NUMBER and null.getvalue() is None

    p, t = _p("TS", "TIMESTAMP")
    var = b._in_bind(cur, p, t, params.coerce(p, "2024-05-01 13:30:15.123456"))
    assert var.type is oracledb.DB_TYPE_TIMESTAMP                        # keeps fractional seconds
    assert var.getvalue() == dt.datetime(2024, 5, 1, 13, 30, 15, 123456)

    p, t = _p("TZ", "TIMESTAMP WITH TIME ZONE")
    var = b._in_bind(cur, p, t, params.coerce(p, "2024-05-01T15:30:00+02:00"))
    assert var.type is oracledb.DB_TYPE_TIMESTAMP_TZ
    assert var.getvalue() == dt.datetime(2024, 5, 1, 13, 30)            # UTC wall time

    p, t = _p("D", "DATE")
    assert b._in_bind(cur, p, t, params.coerce(p, "2024-05-01")) == dt.datetime(2024, 5, 1)
    assert b._in_bind(cur, p, t, None).type is oracledb.DB_TYPE_DATE

    p, t = _p("C", "CLOB")
    var = b._in_bind(cur, p, t, "x" * 50000)
    assert var.type is oracledb.DB_TYPE_CLOB and len(var.getvalue()) == 50000

    p, t = _p("S", "VARCHAR2")
    assert b._in_bind(cur, p, t, "text") == "text" and b._in_bind(cur, p, t, None) is None

    p, t = _p("B", "PL/SQL BOOLEAN")
    for raw in ("0", "false", "no", "off"):
        assert b._in_bind(cur, p, t, params.coerce(p, raw)) is False     # not Python truthiness
    assert b._in_bind(cur, p, t, params.coerce(p, "1")) is True
    assert b._in_bind(cur, p, t, None).type is oracledb.DB_TYPE_BOOLEAN


def test_output_variables_by_type():
    b, cur = backend(), FakeCursor()
    cases = {"NUMBER": (Decimal, 0), "VARCHAR2": (str, 32767), "CHAR": (str, 32767),
             "CLOB": (oracledb.DB_TYPE_CLOB, 0), "TIMESTAMP": (oracledb.DB_TYPE_TIMESTAMP, 0),
             "DATE": (oracledb.DB_TYPE_DATE, 0), "PL/SQL BOOLEAN": (oracledb.DB_TYPE_BOOLEAN, 0),
             "PLS_INTEGER": (int, 0)}
    for data_type, (typ, size) in cases.items():
        p, t = _p("O", data_type, "OUT")
        var = b._out_var(cur, p, t)
        assert (var.type, var.size) == (typ, size), data_type
    p, t = _p("RC", "REF CURSOR", "OUT")
    assert b._out_var(cur, p, t).type is oracledb.DB_TYPE_CURSOR      # rows come back (issue 24)
    p, t = _p("R", "PL/SQL RECORD", "OUT")
    with pytest.raises(UsageError, match="PL/SQL RECORD"):
        b._out_var(cur, p, t)


def test_call_binds_by_name_reads_dbms_output_and_returns_lower_case_json():
    class Cur(FakeCursor):
        def callproc(self, name, parameters=None, keyword_parameters=None):
            super().callproc(name, parameters, keyword_parameters)
            self.note_in = keyword_parameters["NOTE"].getvalue()
            keyword_parameters["VRESULT"].setvalue(0, Decimal("12.5"))
            keyword_parameters["NOTE"].setvalue(0, "IN OUT came back")

        def execute(self, sql, binds=None, **kw):
            super().execute(sql, binds, **kw)
            if "GET_LINES" in sql:        # one full chunk, then two lines, then done
                n = len([e for e in self.executed if "GET_LINES" in e[0]])
                lines = [f"line {i}" for i in range(100)] if n == 1 else ["last", None]
                for i, line in enumerate(lines):
                    binds["lines"].setvalue(i, line)
                binds["lines"].getvalue = lambda pos=0, _l=lines: _l
                binds["num_lines"].setvalue(0, len(lines))

    sig = Signature("SUMA_SIMPLE", (
        _p("VA", "NUMBER")[0], _p("VB", "NUMBER", defaulted=True)[0],
        _p("VRESULT", "NUMBER", "OUT")[0], _p("NOTE", "VARCHAR2", "IN/OUT")[0]),
        extra={"call_name": "SCOTT.SUMA_SIMPLE",
               "types": {"VA": "NUMBER", "VB": "NUMBER", "VRESULT": "NUMBER", "NOTE": "VARCHAR2"}})
    conn, ctx = FakeConn(Cur), CallContext("f" * 32)
    result = backend().call(conn, sig, {"VA": 10, "NOTE": "hi"}, ctx)
    assert result == {"vresult": 12.5, "note": "IN OUT came back"}
    cur = conn.cursors[0]
    # the first round trip on a cursor of its own, before the call
    assert conn.cursors[1].executed[0][0].startswith(ob.CALL_START_SQL[:-len("END;")])
    name, kw = cur.calls[0]
    assert name == "SCOTT.SUMA_SIMPLE"
    assert set(kw) == {"VA", "VRESULT", "NOTE"}      # VB left out: its DEFAULT applies
    assert kw["VA"] == 10 and cur.note_in == "hi"
    assert (kw["NOTE"].type, kw["NOTE"].size) == (str, 32767)
    output = ctx.snapshot()[1].split("\n")
    assert len(output) == 102 and output[0] == "line 0" and output[-2:] == ["last", ""]


def test_call_refuses_out_parameters_it_cannot_receive():
    sig = Signature("P", (_p("RC", "REF CURSOR", "IN/OUT")[0],), extra={"types": {"RC": "REF CURSOR"}})
    with pytest.raises(UsageError, match="REF CURSOR"):
        backend().call(FakeConn(), sig, {}, CallContext("x"))


def test_overloads_are_chosen_by_the_given_names():
    one = Signature("PKG.P", (_p("A", "NUMBER")[0],), overload="1")
    two = Signature("PKG.P", (_p("A", "NUMBER")[0], _p("B", "VARCHAR2")[0]), overload="2")
    pick = ob.OracleBackend._pick_overload
    assert pick("PKG.P", [one, two], frozenset({"a"})) is one
    assert pick("PKG.P", [one, two], frozenset({"a", "b"})) is two
    with pytest.raises(UsageError, match="no version takes"):
        pick("PKG.P", [one, two], frozenset({"c"}))
    three = Signature("PKG.P", (_p("A", "VARCHAR2")[0],), overload="3")
    with pytest.raises(UsageError, match="more than one") as info:
        pick("PKG.P", [one, two, three], frozenset({"a"}))
    # the forms a user types to pick one (issue 24: "the error lists the forms")
    assert "PKG.P(NUMBER); PKG.P(VARCHAR2)" in info.value.message


def test_statement_binds_datetimes_as_timestamp_and_booleans_as_numbers():
    conn = FakeConn()
    hb = dt.datetime(2024, 5, 1, 12, 0, 0, 123456)
    backend().execute(conn, "UPDATE ASYNC_JOBS SET cancel_requested = :c WHERE heartbeat_at = :hb",
                      {"c": True, "hb": hb})
    cur = conn.cursors[0]
    assert cur.sizes == {"hb": oracledb.DB_TYPE_TIMESTAMP}
    sql, binds, kw = cur.executed[0]
    assert binds == {"c": 1, "hb": hb} and kw == {"fetch_lobs": False}


def test_times_are_naive_utc_in_the_database_and_aware_utc_outside():
    b = backend()
    local = dt.datetime(2024, 5, 1, 14, 0, 0, 500, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert b.to_db_time(local) == dt.datetime(2024, 5, 1, 12, 0, 0, 500)
    assert b.from_db_time(dt.datetime(2024, 5, 1, 12, 0)) == dt.datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert b.from_db_time(None) is None


def test_longops_stops_asking_once_not_granted():
    class Denied(FakeCursor):
        def execute(self, sql, binds=None, **kw):
            super().execute(sql, binds, **kw)
            raise ora_error("ORA-00942: table or view does not exist", 942)

    class CallConn:
        session_id, serial_num = 123, 4567

    b, conn, ctx = backend(), FakeConn(Denied), CallContext("x")
    b.poll_progress(conn, CallConn(), ctx)
    b.poll_progress(conn, CallConn(), ctx)
    assert len(conn.cursors) == 1 and conn.cursors[0].executed[0][1] == {"sid": 123, "serial": 4567}

    class Granted(FakeCursor):
        def execute(self, sql, binds=None, **kw):
            super().execute(sql, binds, **kw)
            self.rows = [(30, 120)]

    b, ctx = backend(), CallContext("x")
    b.poll_progress(FakeConn(Granted), CallConn(), ctx)
    assert ctx.snapshot()[0] == 25.0


# -- every statement the backend sends, linted for Oracle 12.2 ------------------------

class Recorder(ob.OracleBackend):
    """The Oracle backend, recording statements instead of running them."""

    def __init__(self):
        super().__init__(parse_dsn("oracle://scott@dbhost:1521/FREEPDB1"))
        self.sent: list[tuple[str, dict]] = []

    def execute(self, conn, sql, binds=None):
        self.sent.append((sql, dict(binds or {})))
        cur = FakeCursor()
        cur.description = [(c.upper(),) for c in store.COLUMNS]
        # only the id batch of a cleanup comes back, so its DELETE is sent too
        cur.rows = [("a" * 32,)] if "SELECT job_id FROM" in sql else []
        cur.fetchone = lambda: (1,)
        # the queue statements: a queue with room, one candidate waiting for
        # a completed dependency, so that every statement of a claim is sent
        if "max_running, paused FROM JOB_QUEUES" in sql:
            cur.fetchone = lambda: (4, 0)
            cur.rows = [("q", 4, 0)]
        elif "COUNT(*)" in sql and "claim_token" in sql:
            cur.fetchone = lambda: (0,)
        elif "SELECT job_id, after_jobs FROM" in sql:
            cur.rows = [("a" * 32, "b" * 32)]
        elif "SELECT job_id, status FROM" in sql:
            cur.rows = [("b" * 32, "completed")]
        elif "SELECT job_id, after_jobs, queue FROM" in sql:
            cur.rows = [("c" * 32, "a" * 32, "q")]
        elif "GROUP BY COALESCE(queue" in sql or "SELECT DISTINCT COALESCE(queue" in sql:
            cur.rows = [("q", 1, 1)] if "GROUP BY" in sql else [("q",)]
        cur.fetchall = lambda: list(cur.rows)
        return cur


def _store_statements() -> list[tuple[str, dict]]:
    rec = Recorder()
    now = dt.datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

    class C:
        def commit(self):
            pass

        def rollback(self):
            pass

    c = C()
    # the transitions as every caller makes them, through the lifecycle
    jobs = Lifecycle(rec, host="h")
    jobs.enqueue(c, job_id="a" * 32, procedure_name="SUMA_SIMPLE", now=now, params_json="{}",
                 timeout_s=None, max_attempts=1, submitted_by="me@host", unique_key=None)
    jobs.note_waiting(c, "a" * 32, "waiting for a connection")
    jobs.fail_unstarted(c, "a" * 32, now, "x")
    store.find_active_unique(rec, c, "k")
    jobs.claim(c, "a" * 32, now=now, pid=1, token="b" * 32, session="1:2")
    for progress in (None, 40.0):
        jobs.heartbeat(c, "a" * 32, now=now, progress=progress, output="o", changed=True)
        jobs.finish(c, "a" * 32, status=JobStatus.FAILED, end_time=now, duration="1s",
                    elapsed_s=1.0, result=None, error="e", output=None, progress=progress,
                    token="b" * 32 if progress else None)
    jobs.heartbeat(c, "a" * 32, now=now, progress=None, output=None, changed=False)
    jobs.next_attempt(c, "a" * 32, 2, "e")
    store.get(rec, c, "a" * 32)
    store.get_by_prefix(rec, c, "abcd")
    store.list_jobs(rec, c, since=now, statuses=["running", "failed"], procedure="P", limit=50)
    store.list_jobs(rec, c, since=now, statuses=None, procedure=None, limit=50)
    store.list_jobs(rec, c, since=None, statuses=None, limit=50,
                    procedure=store.ProcedureFilter("P\\_%", like=True))
    for proc in ("P", None):
        store.stats(rec, c, since=now, procedure=proc)
        store.lost_suspects(rec, c, stale_before=now, unclaimed_before=now, host="h",
                            since=now if proc else None)
    job = model.Job(job_id="a" * 32, status=JobStatus.RUNNING, procedure_name="P", start_time=now)
    store.mark_lost(rec, c, job, now=now, reason="r")
    store.mark_lost(rec, c, model.Job(**{**job.__dict__, "heartbeat_at": now}), now=now, reason="r")
    jobs.cancel_queued(c, "a" * 32, now)
    jobs.request_cancel(c, "a" * 32)
    store.count_finished_before(rec, c, before=now, statuses=["completed", "failed"])
    store.delete_finished_batch(rec, c, before=now, statuses=["completed"], batch=500)
    store.table_columns(rec, c)
    # queues: enqueue with every placing, the claim, dependencies, queue admin
    jobs.enqueue(c, job_id="a" * 32, procedure_name="P", now=now, params_json="{}", timeout_s=None,
                 max_attempts=1, submitted_by="me", unique_key=None, queue="q", priority=3,
                 not_before=now, after_jobs=("b" * 32, "c" * 32))
    jobs.claim_next(c, "q", token="d" * 32, pid=7, now=now)
    jobs.claim_next(c, "default", token="d" * 32, pid=None, now=now)
    jobs.cancel_dependents(c, "a" * 32, JobStatus.FAILED, now)
    store.claimable(rec, c, "q", now)
    store.live_workers(rec, c, "q", now)
    store.queues_needing_workers(rec, c, now)
    store.set_queue(rec, c, "q", max_running=2, paused=True)
    store.list_queues(rec, c)
    store.list_jobs(rec, c, since=None, statuses=None, procedure=None, limit=5, queue="q")
    # jobctl serve: its tokens, its count at start, the one statement of a scrape
    store.insert_token(rec, c, token_id="e" * 16, name="ci", token_hash="f" * 64,
                       scopes=("read", "submit"), procedures="ETL_*", now=now, expires_at=now)
    for lookup in (store.token_by_id, store.token_by_name):
        with contextlib.suppress(IndexError):  # the fake's one-column row is not a token's
            lookup(rec, c, "ci")
    store.list_tokens(rec, c)
    store.revoke_token(rec, c, "ci", now)
    store.delete_token(rec, c, "ci")
    store.touch_token(rec, c, "e" * 16, now)
    store.count_since(rec, c, now)
    store.check_tokens_table(rec, c)
    store.read_metrics(rec, c, since=now, edges=(0.5, 10))
    # issue 23: the commit marker, what the worker records beside the outcome
    rec.execute(c, *store.commit_marker("a" * 32))
    store.has_commit_mark(rec, c, "a" * 32)
    store.note_committed(rec, c, "a" * 32)
    store.record_session(rec, c, "a" * 32, "b" * 32, "1,2,@1")
    store.final_output(rec, c, "a" * 32, "b" * 32, "o", True)
    store.mark_lost(rec, c, job, now=now, reason="r", committed=True)
    jobs.finish(c, "a" * 32, status=JobStatus.FAILED, end_time=now, duration="1s", elapsed_s=1.0,
                result=None, error="e", output=None, progress=None, token="b" * 32,
                db_error_code="ORA-20001", committed_inside=True)
    jobs.enqueue(c, job_id="a" * 32, procedure_name="P", now=now, params_json="{}", timeout_s=None,
                 max_attempts=1, submitted_by="me", unique_key=None, atomic=True)
    return rec.sent


def _catalog_statements() -> list[tuple[str, dict]]:
    owner = {"owner": "SCOTT", "object_name": "P"}
    return [
        (ob.arguments_sql(False), owner),
        (ob.arguments_sql(True), {**owner, "package_name": "PKG"}),
        (ob.procedures_sql(False), owner),
        (ob.procedures_sql(True), {**owner, "package_name": "PKG"}),
        (ob.LONGOPS_SQL, {"sid": 1, "serial": 2}),
        (ob.GV_LONGOPS_SQL, {"inst_id": 1, "sid": 1, "serial": 2}),
        (ob.GV_SESSION_ALIVE_SQL, {"inst_id": 1, "sid": 1, "serial": 2}),
        (ob.SESSION_ALIVE_SQL, {"sid": 1, "serial": 2}),
        (ob.SERIAL_SQL, {"sid": 1}),
        (ob.COMPILE_ERRORS_SQL, {"name": "JOBCTL", "type": "PACKAGE BODY"}),
    ]


ALL_SQL = _store_statements() + _catalog_statements()

#: Oracle SQL reserved words (SQL Language Reference, "Oracle SQL Reserved
#: Words"): not usable as unquoted aliases or column names
ORACLE_RESERVED = set("""ACCESS ADD ALL ALTER AND ANY AS ASC AUDIT BETWEEN BY CHAR CHECK CLUSTER
COLUMN COMMENT COMPRESS CONNECT CREATE CURRENT DATE DECIMAL DEFAULT DELETE DESC DISTINCT DROP ELSE
EXCLUSIVE EXISTS FILE FLOAT FOR FROM GRANT GROUP HAVING IDENTIFIED IMMEDIATE IN INCREMENT INDEX
INITIAL INSERT INTEGER INTERSECT INTO IS LEVEL LIKE LOCK LONG MAXEXTENTS MINUS MLSLABEL MODE MODIFY
NOAUDIT NOCOMPRESS NOT NOWAIT NULL NUMBER OF OFFLINE ON ONLINE OPTION OR ORDER PCTFREE PRIOR PUBLIC
RAW RENAME RESOURCE REVOKE ROW ROWID ROWNUM ROWS SELECT SESSION SET SHARE SIZE SMALLINT START
SUCCESSFUL SYNONYM SYSDATE TABLE THEN TO TRIGGER UID UNION UNIQUE UPDATE USER VALIDATE VALUES
VARCHAR VARCHAR2 VIEW WHENEVER WHERE WITH""".split())

#: syntax sqlglot's oracle dialect accepts but Oracle 12.2 does not
NOT_ORACLE_12 = [
    (r"\bLIMIT\s+[:\d]", "LIMIT (use FETCH FIRST)"),
    (r"\bIF\s+(NOT\s+)?EXISTS\b", "IF [NOT] EXISTS (23ai only)"),
    (r"\bOFFSET\s+:\w+\s*$", "bare OFFSET"),
    (r"::", "PostgreSQL casts"),
    (r"\bI?LIKE\s+ANY\b|\bILIKE\b", "ILIKE"),
    (r"\b(TRUE|FALSE)\b", "boolean literals (23ai only)"),
    (r"\bAVG\s*\(\s*end_time\s*-", "AVG over an INTERVAL (23ai only)"),
    (r"\bRETURNING\b", "RETURNING (needs an OUT variable)"),
]


@pytest.mark.parametrize("sql, binds", ALL_SQL, ids=[re.sub(r"\s+", " ", s)[:60] for s, _ in ALL_SQL])
def test_every_statement_parses_as_oracle_and_binds_match(sql, binds):
    tree = sqlglot.parse_one(sql, read="oracle")
    assert not isinstance(tree, exp.Command), "sqlglot could not parse it as SQL"
    placeholders = {p.name for p in tree.find_all(exp.Placeholder)}
    # thin mode refuses a bind without a placeholder (DPY-4008) and a
    # placeholder without a value (DPY-4010)
    assert placeholders == set(binds)
    for pattern, what in NOT_ORACLE_12:
        assert not re.search(pattern, sql, re.IGNORECASE | re.MULTILINE), f"uses {what}"
    for alias in tree.find_all(exp.Alias):
        assert alias.alias.upper() not in ORACLE_RESERVED, f"reserved word {alias.alias} as alias"
    for in_list in tree.find_all(exp.In):
        assert len(in_list.expressions) <= 1000, "ORA-01795: more than 1000 expressions in a list"


def test_store_uses_timestamp_binds_for_every_time():
    for sql, binds in _store_statements():
        for name, value in binds.items():
            assert not (isinstance(value, dt.datetime) and value.tzinfo is not None), (name, sql)


def test_no_status_name_is_spelled_in_sql():
    """Status names reach SQL only as binds from JobStatus (`:st_<name>`), so
    renaming or adding one cannot leave a statement behind."""
    spelled = re.compile("'(?:%s)'" % "|".join(s.value for s in JobStatus), re.IGNORECASE)
    sent = _store_statements()
    assert any(":st_queued" in sql for sql, _ in sent)
    for sql, binds in sent:
        assert not spelled.search(sql), sql
        for name in re.findall(r":st_(\w+)", sql):
            assert binds[f"st_{name}"] == JobStatus(name).value, sql


def test_cleanup_batch_fits_oracle_in_list_limit():
    from jobctl import api
    assert api.CLEANUP_BATCH <= 1000


PLSQL_BLOCKS = [
    (ob.NAME_RESOLVE_SQL, {"name", "schema", "part1", "part2", "dblink", "part1_type", "object_number",
                           "current_schema"}),
    (ob.SESSION_SETUP_SQL, {"current_schema", "instance", "sid"}),
    (ob.OUTPUT_GET_LINES_SQL, {"lines", "num_lines"}),
    (ob.CALL_START_SQL, {"jc_txn", "jc_job"}),
    (ob.call_start_sql(atomic=True, state=True), {"jc_txn", "jc_job", "jc_state", "jc_seen"}),
    (ob.call_end_sql(atomic=True), {"jc_txn", "lines", "num_lines"}),
    (ob.RESET_SQL, {"jc_state", "jc_seen"}),
    (ob.SESSION_INFO_SQL, {"current_schema", "instance", "sid"}),
    (ob.setup_block(2), {"s1", "s2"}),
]


@pytest.mark.parametrize("block, names", PLSQL_BLOCKS)
def test_plsql_blocks_bind_what_the_code_supplies(block, names):
    # sqlglot cannot parse BEGIN ... END; blocks: check their shape and binds by hand
    assert re.fullmatch(r"\s*BEGIN\b.*\bEND;\s*", block, re.DOTALL)
    # binds outside quoted text (the dynamic SQL inside q'[...]' and '...'
    # has placeholders of its own, bound by USING)
    code = "".join(text for is_code, text in segments(re.sub(r"q'\[.*?\]'", "''", block, flags=re.S))
                   if is_code)
    assert set(re.findall(r"(?<![:\w]):(\w+)", code)) == names
    # each bind once: a name repeated in a PL/SQL block is one bind, but jobctl
    # never relies on how the driver pairs them
    assert sorted(re.findall(r"(?<![:\w]):(\w+)", code)) == sorted(names)


def test_resolve_binds_match_the_catalog_queries():
    sent = []

    class Cur(FakeCursor):
        def execute(self, sql, binds=None, **kw):
            super().execute(sql, binds, **kw)
            sent.append((sql, binds))
            if "NAME_RESOLVE" in sql:
                values = {"schema": "SCOTT", "part1": None, "part2": "SUMA_SIMPLE", "dblink": None,
                          "part1_type": 7, "object_number": 1, "current_schema": "HR"}
                for k, v in values.items():
                    binds[k].setvalue(0, v)
            elif "all_arguments" in sql:
                self.description = [(c.upper(),) for c in (
                    "overload", "position", "argument_name", "data_type", "pls_type", "type_owner",
                    "type_name", "type_subname", "in_out", "defaulted")]
                self.rows = [(None, 1, "VA", "NUMBER", "NUMBER", None, None, None, "IN", "N"),
                             (None, 2, "VB", "NUMBER", "NUMBER", None, None, None, "IN", "Y"),
                             (None, 3, "VRESULT", "NUMBER", "NUMBER", None, None, None, "OUT", "N")]
            else:
                self.rows = [("PROCEDURE", None)]

    sig = backend().resolve(FakeConn(Cur), "suma_simple", frozenset({"va"}))
    assert [(p.name, p.mode, p.defaulted, p.kind) for p in sig.params] == [
        ("VA", "IN", False, model.NUMBER), ("VB", "IN", True, model.NUMBER),
        ("VRESULT", "OUT", False, model.NUMBER)]
    # another schema's procedure keeps its owner (the session's own is tested below)
    assert sig.name == "SCOTT.SUMA_SIMPLE" and sig.extra["call_name"] == "SCOTT.SUMA_SIMPLE"
    resolve_binds = sent[0][1]
    assert resolve_binds["name"] == "SUMA_SIMPLE"            # the name travels as a bind
    assert set(sent[1][1]) == {"owner", "object_name"} and sent[1][1]["owner"] == "SCOTT"


@pytest.mark.parametrize("part1, part2, ptype, message", [
    ("F", None, 8, "is a function"),
    ("PKG", None, 9, "is a package"),
])
def test_resolve_refuses_functions_and_bare_packages(part1, part2, ptype, message):
    class Cur(FakeCursor):
        def execute(self, sql, binds=None, **kw):
            for k, v in {"schema": "SCOTT", "part1": part1, "part2": part2, "dblink": None,
                         "part1_type": ptype, "object_number": 1}.items():
                binds[k].setvalue(0, v)

    with pytest.raises(UsageError, match=message):
        backend().resolve(FakeConn(Cur), "X", frozenset())


def test_resolve_missing_object_is_not_found_exit_3():
    class Cur(FakeCursor):
        def execute(self, sql, binds=None, **kw):
            raise ora_error("ORA-06564: object NOPE does not exist\nORA-06512: at \"SYS.DBMS_UTILITY\"", 6564)

    with pytest.raises(NotFound) as info:
        backend().resolve(FakeConn(Cur), "NOPE", frozenset())
    assert info.value.exit_code == 3


# -- the sql/oracle scripts, split the way `db init` splits them -----------------------

def _split(name: str) -> list[str]:
    return split_script(read_sql("oracle", name), "sqlplus")


def _object(stmt: str) -> str:
    m = re.match(r"CREATE\s+OR\s+REPLACE\s+(PACKAGE\s+BODY|PACKAGE|PROCEDURE|VIEW)\s+(\w+)", stmt, re.I)
    return f"{m.group(1).upper()} {m.group(2).upper()}" if m else stmt.split(None, 1)[0].upper()


def test_schema_script_splits_into_its_units():
    stmts = _split("create_async_jobs_table.sql")
    units = [_object(s) for s in stmts]
    # the tables, columns and indexes: idempotent anonymous blocks, then the
    # backfill, then the objects CREATE OR REPLACE keeps current
    blocks = units.index("BEGIN")
    assert blocks >= 5 and set(units[:blocks]) == {"DECLARE"}
    assert units[blocks:] == [
        "BEGIN", "VIEW V_ASYNC_JOBS_RECENT",
        "PROCEDURE CLEANUP_OLD_ASYNC_JOBS", "PACKAGE JOBCTL_PROGRESS", "PACKAGE BODY JOBCTL_PROGRESS"]
    for s in stmts:
        # SQL*Plus's own commands and the `/` terminators are not sent
        assert not re.search(r"^\s*(/|SHOW\s+ERRORS|WHENEVER\s+SQLERROR|PROMPT|SET\s+SERVEROUTPUT)\b.*$",
                             s, re.M | re.I), s[:60]
        if _object(s).startswith(("VIEW",)):
            assert not s.endswith(";")                 # SQL: the driver wants no terminator
        else:
            assert re.search(r"\bEND(\s+\w+)?;$", s)   # PL/SQL keeps its END;


def test_examples_script_creates_the_three_demos():
    assert [_object(s) for s in _split("examples.sql")] == [
        "PROCEDURE SUMA_SIMPLE", "PROCEDURE DEMO_SLEEP", "PROCEDURE DEMO_FAIL"]
    assert backend().schema_files(examples=True) == ["create_async_jobs_table.sql", "examples.sql"]
    assert backend().schema_files(examples=False) == ["create_async_jobs_table.sql"]


def test_schema_script_has_every_column_and_index_and_stays_12c_compatible():
    text = read_sql("oracle", "create_async_jobs_table.sql")
    code = re.sub(r"--[^\n]*", "", text)
    assert not re.search(r"IF\s+NOT\s+EXISTS", code, re.I)
    create = re.search(r"q'\[\s*(CREATE TABLE ASYNC_JOBS.*?)\]'", text, re.S).group(1)
    table = sqlglot.parse_one(create, read="oracle")
    columns = {c.name.lower(): c for c in table.find_all(exp.ColumnDef)}
    assert list(columns) == list(store.COLUMNS)
    original = ["job_id", "status", "procedure_name", "start_time", "end_time", "duration", "result",
                "error_msg", "progress", "created_at"]
    added = re.findall(r"add_column\('(\w+) ", text)
    assert [a.lower() for a in added] == [c for c in store.COLUMNS if c not in original]
    for index in ("IX_ASYNC_JOBS_STATUS ON ASYNC_JOBS (STATUS)",
                  "IX_ASYNC_JOBS_START ON ASYNC_JOBS (START_TIME)",
                  "IX_ASYNC_JOBS_PROC_START ON ASYNC_JOBS (PROCEDURE_NAME, START_TIME)"):
        assert index in text
    assert re.search(r"UNIQUE INDEX UX_ASYNC_JOBS_UNIQUE_ACTIVE ON ASYNC_JOBS\s*"
                     r"\(CASE WHEN STATUS IN \('queued', 'running'\) THEN UNIQUE_KEY END\)", text)
    for code in ("-955", "-1430", "-1408"):
        assert f"EXCEPTION_INIT(e_" in text and code in text
    view = next(s for s in _split("create_async_jobs_table.sql") if "VIEW" in s.split("\n")[0])
    assert isinstance(sqlglot.parse_one(view, read="oracle"), exp.Create)
    # the pools' table has the columns the store reads and writes
    workers = re.search(r"q'\[\s*(CREATE TABLE JOB_WORKERS.*?)\]'", text, re.S).group(1)
    names = {c.name.lower() for c in sqlglot.parse_one(workers, read="oracle").find_all(exp.ColumnDef)}
    assert names == {"worker_id", "host", "pid", "queues", "concurrency", "running", "state",
                     "started_at", "heartbeat_at"}
    # and so has the tokens' table of jobctl serve
    tokens = re.search(r"q'\[\s*(CREATE TABLE JOB_TOKENS.*?)\]'", text, re.S).group(1)
    names = {c.name.lower() for c in sqlglot.parse_one(tokens, read="oracle").find_all(exp.ColumnDef)}
    assert names == {"token_id", "name", "token_hash", "scopes", "procedures", "created_at",
                     "expires_at", "last_used_at", "revoked_at"}


def test_progress_package_is_keyed_by_the_job_jobctl_names_at_each_call():
    """Issue 23: SET_PROGRESS finds its job through a package variable that
    jobctl sets at the start of every call (SET_JOB), falling back to
    CLIENT_IDENTIFIER for an older worker; the write is autonomous, and a
    COMMIT refused under --atomic (ORA-00034 / ORA-06519) leaves the job
    running without its progress."""
    body = next(s for s in _split("create_async_jobs_table.sql") if s.startswith("CREATE OR REPLACE PACKAGE BODY"))
    spec = next(s for s in _split("create_async_jobs_table.sql")
                if s.startswith("CREATE OR REPLACE PACKAGE JOBCTL_PROGRESS"))
    assert "PROCEDURE SET_JOB(p_job_id IN VARCHAR2);" in spec
    assert "PRAGMA AUTONOMOUS_TRANSACTION" in body
    assert "NVL(g_job_id, SYS_CONTEXT('USERENV', 'CLIENT_IDENTIFIER'))" in body
    assert re.search(r"WHERE JOB_ID = p_job_id\s+AND STATUS = 'running'", body)
    assert re.search(r"EXCEPTION_INIT\(e_commit_refused, -34\)", body)
    assert re.search(r"WHEN e_commit_refused OR e_autonomous_left_open THEN\s+NULL;", body)
    # the call names the job, whatever the session's CLIENT_IDENTIFIER says
    assert "JOBCTL_PROGRESS.SET_JOB(:1); END;' USING :jc_job" in ob.CALL_START_SQL


def test_cleanup_procedure_deletes_exactly_what_jobctl_cleanup_deletes():
    """Issue 23 item 6: an allow-list of the finished statuses, compared
    without regard to case, never a deny-list: a RUNNING or PENDING row that
    another writer left is not deleted."""
    proc = next(s for s in _split("create_async_jobs_table.sql")
                if s.startswith("CREATE OR REPLACE PROCEDURE CLEANUP_OLD_ASYNC_JOBS"))
    m = re.search(r"AND LOWER\(STATUS\) IN \(([^)]*)\)", proc)
    assert m, proc
    assert re.findall(r"'(\w+)'", m.group(1)) == [s.value for s in model.FINISHED_STATUSES]
    assert "NOT IN" not in proc


def test_db_init_print_shows_the_oracle_scripts_without_connecting(no_connect):
    result = CliRunner().invoke(app, ["--dsn", "oracle://scott@127.0.0.1:1/x", "db", "init", "--print",
                                      "--examples"])
    assert result.exit_code == 0, result.stderr
    assert "CREATE OR REPLACE PACKAGE BODY JOBCTL_PROGRESS AS" in result.stdout
    assert "CREATE OR REPLACE PROCEDURE DEMO_SLEEP" in result.stdout
    assert no_connect == []


def test_sql_files_ship_inside_the_package():
    root = Path(__file__).resolve().parent.parent
    for name in ("create_async_jobs_table.sql", "examples.sql"):
        assert (root / "sql" / "oracle" / name).is_file()


# == issue 8 (review defects), issue 7 (Oracle parts), issue 9 item 8 ============


class NoOutputCursor(FakeCursor):
    """DBMS_OUTPUT.GET_LINES answers "no lines", as for a procedure that
    printed nothing."""

    def execute(self, sql, binds=None, **kw):
        super().execute(sql, binds, **kw)
        if "GET_LINES" in sql:
            binds["num_lines"].setvalue(0, 0)
            binds["lines"].getvalue = lambda pos=0: []

def _resolving_cursor(schema, current_schema, part1, part2, ptype, rows, sent=None):
    """A cursor answering NAME_RESOLVE / ALL_ARGUMENTS / ALL_PROCEDURES with
    the given dictionary rows; it records every statement and bind sent."""
    class Cur(FakeCursor):
        def execute(self, sql, binds=None, **kw):
            super().execute(sql, binds, **kw)
            if sent is not None:
                sent.append((sql, binds))
            if "NAME_RESOLVE" in sql:
                for k, v in {"schema": schema, "part1": part1, "part2": part2, "dblink": None,
                             "part1_type": ptype, "object_number": 1,
                             "current_schema": current_schema}.items():
                    binds[k].setvalue(0, v)
            elif "all_arguments" in sql:
                self.description = [(c.upper(),) for c in (
                    "overload", "position", "argument_name", "data_type", "pls_type", "type_owner",
                    "type_name", "type_subname", "in_out", "defaulted")]
                self.rows = rows
            else:
                self.rows = [("PROCEDURE", None)]
    return Cur


SUMA_ROWS = [(None, 1, "VA", "NUMBER", "NUMBER", None, None, None, "IN", "N"),
             (None, 2, "VB", "NUMBER", "NUMBER", None, None, None, "IN", "Y"),
             (None, 3, "VRESULT", "NUMBER", "NUMBER", None, None, None, "OUT", "N")]


@pytest.mark.parametrize("typed, schema, current, part1, part2, ptype, canonical", [
    # the README's own setup: user JOBCTL, which also owned a package JOBCTL
    ("suma_simple", "JOBCTL", "JOBCTL", None, "SUMA_SIMPLE", 7, "SUMA_SIMPLE"),
    ("jobctl.suma_simple", "JOBCTL", "JOBCTL", None, "SUMA_SIMPLE", 7, "SUMA_SIMPLE"),
    ("SCOTT.SUMA_SIMPLE", "SCOTT", "SCOTT", None, "SUMA_SIMPLE", 7, "SUMA_SIMPLE"),
    ("scott.pkg.proc", "SCOTT", "SCOTT", "PKG", "PROC", 9, "PKG.PROC"),
    ("hr.pkg.proc", "HR", "SCOTT", "PKG", "PROC", 9, "HR.PKG.PROC"),
])
def test_call_leaves_out_the_owner_when_it_is_the_current_schema(typed, schema, current, part1,
                                                                 part2, ptype, canonical):
    """Defect 1 and issue 7: the name callproc pastes into `begin NAME(...)`
    carries no owner when the owner is the session's CURRENT_SCHEMA, so an
    object named like the schema cannot shadow it (PLS-00302), and every
    spelling of one procedure gets one canonical PROCEDURE_NAME. The old test
    asserted `SCOTT.SUMA_SIMPLE`, i.e. the bug."""
    sent = []
    b = backend()
    sig = b.resolve(FakeConn(_resolving_cursor(schema, current, part1, part2, ptype, SUMA_ROWS, sent)),
                    typed, frozenset({"va"}))
    assert sig.name == canonical and sig.extra["call_name"] == canonical
    assert "SYS_CONTEXT('USERENV', 'CURRENT_SCHEMA')" in sent[0][0]   # asked in the same round trip
    conn = FakeConn(NoOutputCursor)
    b.call(conn, sig, {"VA": 1}, CallContext("x"))
    assert conn.cursors[0].calls[0][0] == canonical


def test_schema_scripts_create_jobctl_progress_and_drop_nothing():
    """Defect 1: the helper package is JOBCTL_PROGRESS (a name no schema is
    likely to have), the demo calls it by that name, and `db init` runs no
    DROP at all: an old package JOBCTL or anything else of the user's stays."""
    for name in ("create_async_jobs_table.sql", "examples.sql"):
        code = re.sub(r"--[^\n]*", "", read_sql("oracle", name))
        assert not re.search(r"\bDROP\b", code, re.I), name
        assert not re.search(r"\bJOBCTL\s*\.", code), name
        assert not re.search(r"PACKAGE\s+(BODY\s+)?JOBCTL\b(?!_)", code), name
    assert "JOBCTL_PROGRESS.SET_PROGRESS(100 * v_done / v_total)" in read_sql("oracle", "examples.sql")


def test_recent_view_has_created_at_and_only_real_columns():
    """Issue 7: V_ASYNC_JOBS_RECENT keeps the seed's CREATED_AT; every column
    it selects exists in ASYNC_JOBS (parsed with sqlglot's oracle dialect)."""
    view = next(s for s in _split("create_async_jobs_table.sql") if "VIEW" in s.split("\n")[0])
    select = sqlglot.parse_one(view, read="oracle").find(exp.Select)
    names = [c.alias_or_name.lower() for c in select.expressions]
    assert "created_at" in names and set(names) <= set(store.COLUMNS)


def _closed_dsn(query=""):
    return f"oracle://scott@127.0.0.1:{closed_port()}/FREEPDB1{query}"


def test_dsn_query_options_reach_the_driver_with_expire_time_by_default():
    """Defect 2: Easy Connect options in the query string are passed on, typed
    as the installed driver's ConnectParams declares them (checked by building
    a real ConnectParams), and expire_time is on by default; the DSN's value
    wins over the profile's."""
    b = backend("oracle://scott@dbhost:1521/FREEPDB1?expire_time=2&retry_count=3&retry_delay=1"
                "&https_proxy=proxy.example&https_proxy_port=8080&ssl_server_dn_match=false",
                expire_time=9, retry_delay=7, heartbeat_s=1)
    kwargs = b.connect_params()
    dsn = kwargs.pop("dsn")
    params = oracledb.ConnectParams(**kwargs)
    params.parse_connect_string(dsn)
    assert (params.expire_time, params.retry_count, params.retry_delay) == (2, 3, 1)
    assert (params.https_proxy, params.https_proxy_port) == ("proxy.example", 8080)
    assert params.ssl_server_dn_match is False and "heartbeat_s" not in kwargs
    assert backend().connect_params()["expire_time"] == ob.DEFAULT_EXPIRE_TIME_MIN
    assert backend(expire_time=7).connect_params()["expire_time"] == 7


@pytest.mark.parametrize("query, message", [
    ("?expire_tme=2", "unknown option 'expire_tme' in the DSN's query string"),
    ("?wallet_password=s3cret", "wallet_password may not be given in plain text"),
    ("?expire_time=soon", "invalid expire_time 'soon'"),
    ("?retry_count=-1", "invalid retry_count '-1'"),
    ("?ssl_server_dn_match=maybe", "invalid ssl_server_dn_match 'maybe'"),
])
def test_bad_dsn_options_are_usage_errors_before_connecting(query, message, no_connect, monkeypatch):
    """Defect 2: a misspelt or ill-typed option is exit 2, one line, and no
    connection is attempted."""
    monkeypatch.setenv("JOBCTL_PASSWORD", "tiger")
    result = CliRunner().invoke(app, ["--dsn", "oracle://scott@127.0.0.1:1/x" + query, "list"])
    assert result.exit_code == 2, result.stderr
    assert message in result.stderr and result.stderr.count("\n") == 1
    assert no_connect == []


def test_dsn_options_are_accepted_by_a_real_connect_attempt():
    """Defect 2: the real driver takes the options jobctl builds (a wrong
    keyword would be a TypeError, `internal error`): a closed port still
    gives the one-line connection error, exit 4."""
    out = subprocess.run([sys.executable, "-m", "jobctl", "--dsn",
                          _closed_dsn("?expire_time=1&retry_count=1&retry_delay=0"), "list"],
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "JOBCTL_PASSWORD": "tiger"}, stdin=subprocess.DEVNULL)
    assert out.returncode == 4, out.stderr
    assert "nothing is listening at 127.0.0.1" in out.stderr and out.stderr.count("\n") == 1


PLS_302 = ("ORA-06550: line 1, column 14:\nPLS-00302: component 'SUMA_SIMPLE' must be declared\n"
           "ORA-06550: line 1, column 7:\nPL/SQL: Statement ignored")


def test_pls_lines_are_kept_in_one_line_errors():
    """Defect 3: ORA-06550 says only where; the PLS line that says what is
    wrong is kept, trimmed, on the same single line."""
    err = backend().translate_error(ora_error(PLS_302, 6550))
    assert err.message.endswith("ORA-06550: line 1, column 14: PLS-00302: component 'SUMA_SIMPLE' "
                                "must be declared")
    assert "\n" not in err.message and "Statement ignored" not in err.message
    err = backend().translate_error(ora_error(PLS_201, 6550))
    assert "PLS-00201: identifier 'SCOTT.NOPE' must be declared" in err.message and "\n" not in err.message


def test_privilege_advice_counts_role_grants():
    """Defect 7: callproc runs an anonymous block, which uses the session's
    enabled roles, so the advice must not say role grants do not count."""
    err = backend().translate_error(ora_error(PLS_201, 6550))
    assert "through a role enabled in the session" in err.message
    assert "does not count" not in err.message


def test_ora_00955_on_create_or_replace_is_an_error_naming_the_object():
    """Defect 4: ORA-00955 on CREATE OR REPLACE means another kind of object
    holds the name (e.g. a table JOBCTL_PROGRESS); db init must fail naming
    it, and the error is not one `db init` skips as "already there"."""
    class Cur(FakeCursor):
        def execute(self, sql, binds=None, **kw):
            raise ora_error("ORA-00955: name is already used by an existing object", 955)

    b = backend()
    with pytest.raises(DatabaseError) as info:
        b.execute(FakeConn(Cur), "CREATE OR REPLACE PACKAGE JOBCTL_PROGRESS AUTHID DEFINER AS\nEND;")
    assert "cannot create PACKAGE JOBCTL_PROGRESS" in info.value.message
    assert info.value.exit_code == 4 and not b.is_already_exists(info.value)
    # a plain CREATE (no OR REPLACE) keeps its "already there" meaning
    with pytest.raises(oracledb.Error) as raw:
        b.execute(FakeConn(Cur), "CREATE TABLE T (X NUMBER)")
    assert b.is_already_exists(raw.value)


def test_compilation_warnings_alone_do_not_fail_db_init():
    """Defect 4: with PLSQL_WARNINGS enabled DPY-7000 comes for warnings too;
    only ATTRIBUTE = 'ERROR' rows in USER_ERRORS fail the statement."""
    class Cur(FakeCursor):
        def execute(self, sql, binds=None, **kw):
            super().execute(sql, binds, **kw)
            if sql.lstrip().upper().startswith("CREATE"):
                self.warning = ora_errors._Error("ORA-24344: success with compilation error",
                                                 code=24344, iswarning=True)
            else:
                self.rows = []              # only PLW-nnnnn rows, which the query leaves out

    conn = FakeConn(Cur)
    backend().execute(conn, "CREATE OR REPLACE PROCEDURE P AS BEGIN NULL; END;")
    assert conn.cursors[1].executed[0][0] == ob.COMPILE_ERRORS_SQL
    assert "attribute = 'ERROR'" in ob.COMPILE_ERRORS_SQL


PACKAGE_DISCARDED = ('ORA-04068: existing state of packages has been discarded\n'
                     'ORA-04061: existing state of package body "SCOTT.PKG" has been invalidated\n'
                     'ORA-06508: PL/SQL: could not find program unit being called: "SCOTT.PKG"')


@pytest.mark.parametrize("failures, calls, ok", [(1, 2, True), (2, 2, False)])
def test_package_state_discarded_is_retried_once(failures, calls, ok):
    """Defect 5: on ORA-04068 (a package was recompiled under this session)
    the work is rolled back to the savepoint set before the call and the call
    is repeated once; a second failure is the job's error. Nothing else reads
    04068 as transient."""
    class Cur(NoOutputCursor):
        def callproc(self, name, parameters=None, keyword_parameters=None):
            super().callproc(name, parameters, keyword_parameters)
            self.executed.append(("callproc", None, {}))
            if len(self.calls) <= failures:
                raise ora_error(PACKAGE_DISCARDED, 4068)
            keyword_parameters["VRESULT"].setvalue(0, Decimal(3))

    sig = Signature("PKG.P", (_p("VRESULT", "NUMBER", "OUT")[0],), extra={"call_name": "PKG.P"})
    conn = FakeConn(Cur)
    if ok:
        assert backend().call(conn, sig, {}, CallContext("x")) == {"vresult": 3}
    else:
        with pytest.raises(DatabaseError, match="ORA-04068"):
            backend().call(conn, sig, {}, CallContext("x"))
    assert len(conn.cursors[0].calls) == calls
    start = conn.cursors[1].executed[0][0]          # the call's first round trip
    assert "SAVEPOINT jobctl_call" in start and start.startswith(ob.CALL_START_SQL[:-4])
    assert [e[0] for e in conn.cursors[0].executed][:3] == ["callproc", ob.CALL_UNDO_SQL, "callproc"]
    assert not backend().is_transient(ora_error(PACKAGE_DISCARDED, 4068))


def test_package_state_discarded_after_a_commit_is_not_retried():
    """Defect 5: a procedure that committed before ORA-04068 has no
    savepoint to return to (ORA-01086): its work cannot be undone, so the
    call is not repeated and the error is the job's."""
    class Cur(NoOutputCursor):
        def execute(self, sql, binds=None, **kw):
            super().execute(sql, binds, **kw)
            if sql == ob.CALL_UNDO_SQL:
                raise ora_error("ORA-01086: savepoint 'JOBCTL_CALL' never established in this "
                                "session or is invalid", 1086)

        def callproc(self, name, parameters=None, keyword_parameters=None):
            super().callproc(name, parameters, keyword_parameters)
            raise ora_error(PACKAGE_DISCARDED, 4068)

    conn = FakeConn(Cur)
    with pytest.raises(DatabaseError, match="ORA-04068"):
        backend().call(conn, Signature("P", (), extra={"call_name": "P"}), {}, CallContext("x"))
    assert len(conn.cursors[0].calls) == 1


def test_session_helpers_for_orphaned_jobs():
    """Issue 9 item 2 (Oracle side): the session is SID,SERIAL#,@INST_ID from
    the connection (thin mode's session_id/serial_num, the instance learnt at
    connect); the kill statement is exact and refuses anything else; alive is
    read from GV$SESSION, V$SESSION on the same instance, else unknown."""
    class CallConn:
        session_id, serial_num = 123, 4567

    b, conn = backend(), CallConn()
    b._remember(conn, {"instance": "2", "current_schema": "SCOTT", "sid": "123"})
    assert b.session_id(conn) == "123,4567,@2"
    assert b.kill_session_sql("123,4567,@2") == "ALTER SYSTEM KILL SESSION '123,4567,@2' IMMEDIATE"
    for bad in ("123,4567", "1,2,@3' IMMEDIATE; DROP TABLE T; --", "a,b,@c", ""):
        with pytest.raises(UsageError):
            b.kill_session_sql(bad)

    def answering(*answers):
        class Cur(FakeCursor):
            def execute(self, sql, binds=None, **kw):
                super().execute(sql, binds, **kw)
                answer = answers[0] if "gv$" in sql else answers[1]
                if isinstance(answer, Exception):
                    raise answer
                self.rows = [(answer,)]
        return Cur

    denied = ora_error("ORA-00942: table or view does not exist", 942)
    watch = FakeConn(answering(1, 0))
    assert b.session_alive(watch, "123,4567,@2") is True
    assert watch.cursors[0].executed[0][1] == {"inst_id": 2, "sid": 123, "serial": 4567}
    assert b.session_alive(FakeConn(answering(0, 1)), "123,4567,@2") is False
    here = FakeConn(answering(denied, 1))
    b._remember(here, {"instance": "2"})
    assert b.session_alive(here, "123,4567,@2") is True          # V$ on the same instance
    b._remember(here, {"instance": "1"})
    assert b.session_alive(here, "123,4567,@2") is None          # another instance: unknown
    both_denied = FakeConn(answering(denied, denied))
    b._remember(both_denied, {"instance": "2"})
    assert b.session_alive(both_denied, "123,4567,@2") is None
    assert b.session_alive(both_denied, "123,,@2") is None       # SERIAL# never known


def test_other_call_errors_are_not_retried():
    """Defect 5: only 04068/04061 repeat the call; a procedure's own error
    runs it once."""
    class Cur(NoOutputCursor):
        def callproc(self, name, parameters=None, keyword_parameters=None):
            super().callproc(name, parameters, keyword_parameters)
            raise ora_error("ORA-20001: boom", 20001)

    conn = FakeConn(Cur)
    with pytest.raises(DatabaseError, match="ORA-20001"):
        backend().call(conn, Signature("P", (), extra={"call_name": "P"}), {}, CallContext("x"))
    assert len(conn.cursors[0].calls) == 1


PLSQL_ARG_ROWS = {
    # a REF CURSOR OUT is read back as rows since issue 24; one passed IN is not
    "REF CURSOR IN/OUT": (None, 1, "RC", "REF CURSOR", None, None, None, None, "IN/OUT", "N"),
    "record IN": (None, 1, "R", "PL/SQL RECORD", None, "SCOTT", "PKG", "REC_T", "IN", "N"),
    "collection IN/OUT": (None, 1, "T", "TABLE", None, "SCOTT", "NUM_LIST", None, "IN/OUT", "N"),
    "XMLTYPE IN": (None, 1, "X", "OPAQUE/XMLTYPE", None, "SYS", "XMLTYPE", None, "IN", "N"),
    "object OUT": (None, 1, "O", "OBJECT", None, "SCOTT", "POINT_T", None, "OUT", "N"),
}


@pytest.mark.parametrize("case", list(PLSQL_ARG_ROWS))
def test_parameters_jobctl_cannot_pass_are_refused_at_submit(case):
    """Defect 6: the signature built from the dictionary rows marks REF
    CURSOR, records, collections, object types and XMLTYPE unsupported, and
    the submit check (which api.submit runs before inserting the row) refuses
    with exit 2 naming parameter and type; describe's signature is intact."""
    row = PLSQL_ARG_ROWS[case]
    sig = backend().resolve(FakeConn(_resolving_cursor("SCOTT", "SCOTT", None, "P", 7, [row])),
                            "P", frozenset())
    assert [p.kind for p in sig.params] == [model.UNSUPPORTED]
    with pytest.raises(UsageError) as info:
        backend().check_submit(sig)
    assert info.value.exit_code == 2
    assert f"parameter {row[2]}" in info.value.message and sig.params[0].type_name in info.value.message


def test_unsupported_input_with_a_default_can_be_left_out():
    """Defect 6: an unsupported IN parameter that has a DEFAULT does not stop
    the procedure from being submitted without it."""
    row = (None, 1, "R", "PL/SQL RECORD", None, "SCOTT", "PKG", "REC_T", "IN", "Y")
    sig = backend().resolve(FakeConn(_resolving_cursor("SCOTT", "SCOTT", None, "P", 7, [row])),
                            "P", frozenset())
    backend().check_submit(sig)
    with pytest.raises(UsageError, match="cannot pass"):
        params.bind(sig, {"R": "x"})


@pytest.mark.parametrize("case", ["REF CURSOR IN/OUT", "XMLTYPE IN"])
def test_submit_refuses_them_before_any_row_is_written(case):
    """Defect 6 through the library surface: Jobctl.submit on a session whose
    dictionary describes such a procedure raises exit 2 and sends no INSERT
    (every statement the session received is recorded)."""
    from jobctl.api import Jobctl
    from jobctl.config import resolve_settings

    class Conn(FakeConn):
        def commit(self):
            pass

        def rollback(self):
            pass

    conn = Conn(_resolving_cursor("SCOTT", "SCOTT", None, "P", 7, [PLSQL_ARG_ROWS[case]]))
    jc = Jobctl(resolve_settings(dsn="oracle://scott@dbhost:1521/FREEPDB1"))
    jc.session._conn = conn
    with pytest.raises(UsageError) as info:
        jc.submit("P", {})
    assert info.value.exit_code == 2 and f"parameter {PLSQL_ARG_ROWS[case][2]}" in info.value.message
    assert PLSQL_ARG_ROWS[case][3] in info.value.message        # the type, named
    sent = [sql for cur in conn.cursors for sql, _, _ in cur.executed]
    assert any("NAME_RESOLVE" in sql for sql in sent)
    assert not any(re.search(r"\bINSERT\b", sql, re.I) for sql in sent)


def test_rac_progress_reads_gv_longops_by_instance_then_falls_back_to_v():
    """Defect 8: the watchdog's connection may be on another RAC instance, so
    progress comes from GV$SESSION_LONGOPS with the call session's INST_ID;
    when GV$ is not granted, V$; when neither, it stops asking."""
    sent = []

    class Denied(FakeCursor):
        def execute(self, sql, binds=None, **kw):
            sent.append((sql, binds))
            raise ora_error("ORA-00942: table or view does not exist", 942)

    class CallConn:
        session_id, serial_num = 123, 4567

    b, call_conn, ctx = backend(), CallConn(), CallContext("x")
    b._remember(call_conn, {"instance": "2", "current_schema": "SCOTT", "sid": "123"})
    b.poll_progress(FakeConn(Denied), call_conn, ctx)
    b.poll_progress(FakeConn(Denied), call_conn, ctx)
    assert [s for s, _ in sent] == [ob.GV_LONGOPS_SQL, ob.LONGOPS_SQL]
    assert sent[0][1] == {"inst_id": 2, "sid": 123, "serial": 4567}

    class Granted(FakeCursor):
        def execute(self, sql, binds=None, **kw):
            super().execute(sql, binds, **kw)
            sent.append((sql, binds))
            self.rows = [(30, 120)]

    sent.clear()
    b, ctx = backend(), CallContext("x")
    b._remember(call_conn, {"instance": "2"})
    b.poll_progress(FakeConn(Granted), call_conn, ctx)
    assert sent[0][0] == ob.GV_LONGOPS_SQL and ctx.snapshot()[0] == 25.0


def test_national_character_parameters_bind_as_nvarchar():
    """Defect 9: NVARCHAR2/NCHAR values bind as DB_TYPE_NVARCHAR (a plain str
    would travel in the database character set and lose what it cannot
    hold); OUT ones come back through an NVARCHAR variable."""
    b, cur = backend(), FakeCursor()
    text = "Ñuñoa · 東京 · 𝄞"
    for data_type in ("NVARCHAR2", "NCHAR"):
        p, t = _p("N", data_type)
        var = b._in_bind(cur, p, t, params.coerce(p, text))
        assert var.type is oracledb.DB_TYPE_NVARCHAR and var.getvalue() == text
        assert b._in_bind(cur, p, t, None).type is oracledb.DB_TYPE_NVARCHAR
        p, t = _p("N", data_type, "OUT")
        assert (b._out_var(cur, p, t).type, b._out_var(cur, p, t).size) == (oracledb.DB_TYPE_NVARCHAR, 32767)
    p, t = _p("S", "VARCHAR2")
    assert b._in_bind(cur, p, t, text) == text


@pytest.mark.parametrize("dsn", [
    "oracle://scott/tiger@127.0.0.1:{port}/FREEPDB1",
    "oracle://scott/tiger@//127.0.0.1:{port}/FREEPDB1",
    "scott/tiger@127.0.0.1:{port}/FREEPDB1",
])
def test_sqlplus_style_dsn_connects_and_never_shows_the_password(dsn, monkeypatch):
    """Defect 10: `user/password@connect_identifier` is a DSN: user and
    service are right (real ConnectParams parsing), the password is the
    password and is masked; with JOBCTL_PASSWORD also set, no `internal
    error` (it was a ValueError), just the one-line connection error."""
    port = closed_port()
    s = parse_dsn(dsn.format(port=port))
    assert (s.scheme, s.user, s.password) == ("oracle", "scott", "tiger")
    b = get_backend(s)
    params = oracledb.ConnectParams()
    params.parse_connect_string(b.connect_dsn())
    assert (params.host, params.port, params.service_name) == ("127.0.0.1", port, "FREEPDB1")
    assert "tiger" not in s.display and "tiger" not in s.dsn
    for env in ({}, {"JOBCTL_PASSWORD": "other"}):
        out = subprocess.run([sys.executable, "-m", "jobctl", "--dsn", dsn.format(port=port), "list"],
                             capture_output=True, text=True, timeout=60,
                             env={**os.environ, **env}, stdin=subprocess.DEVNULL)
        assert out.returncode == 4, out.stderr
        assert f"nothing is listening at 127.0.0.1:{port}" in out.stderr
        assert "tiger" not in out.stderr and "internal error" not in out.stderr


def test_dsn_without_a_user_is_a_clear_usage_error(no_connect, monkeypatch):
    """Defect 10: `oracle://host/svc` names no user; it was DPY-3001 (bequeath
    needs thick mode). Now exit 2 saying how to write it, before connecting."""
    monkeypatch.setenv("JOBCTL_PASSWORD", "tiger")
    result = CliRunner().invoke(app, ["--dsn", "oracle://dbhost:1521/FREEPDB1", "list"])
    assert result.exit_code == 2
    assert "names no user" in result.stderr and "USER/PASSWORD@connect_identifier" in result.stderr
    assert result.stderr.count("\n") == 1 and no_connect == []


def test_thin_mode_refusals_point_at_thick_mode():
    """Defect 11: the driver's DPY-3001 (Native Network Encryption, ...) says
    what to do: switch on thick mode."""
    err = backend().translate_error(dpy_error(ora_errors.ERR_FEATURE_NOT_SUPPORTED,
                                              feature="Native Network Encryption and Data Integrity",
                                              driver_type="thick"))
    assert "thick" in err.message and "oracle_client" in err.message and err.exit_code == 4


def _run_jobctl(args, env=None, tmp=None):
    return subprocess.run([sys.executable, "-m", "jobctl", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
                          cwd=tmp)


@pytest.mark.parametrize("how", ["env", "profile_dir", "profile_thick"])
def test_thick_mode_without_a_client_library_is_one_line_exit_4(how, tmp_path):
    """Defect 11: thick mode asks the real driver to load the Oracle Client
    (oracle_client in the profile, JOBCTL_ORACLE_CLIENT, or thick = true);
    here no library exists, so the real DPI-1047 becomes one line, exit 4,
    before any connection and without a traceback."""
    empty = tmp_path / "instantclient_23_5"
    empty.mkdir()
    cfg = tmp_path / "config" / "jobctl" / "config.toml"
    cfg.parent.mkdir(parents=True)
    port = closed_port()
    profile = f'[profiles.p]\ndsn = "oracle://scott@127.0.0.1:{port}/FREEPDB1"\n'
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config"), "JOBCTL_PASSWORD": "tiger",
           "LD_LIBRARY_PATH": str(empty)}
    if how == "env":
        env["JOBCTL_ORACLE_CLIENT"] = str(empty)
    elif how == "profile_dir":
        profile += f'oracle_client = "{empty}"\n'
    else:
        profile += "thick = true\n"
    cfg.write_text(profile)
    out = _run_jobctl(["--profile", "p", "list"], env)
    assert out.returncode == 4, out.stderr
    line = out.stderr.strip()
    assert "\n" not in line and line.startswith("jobctl: error: cannot load the Oracle Client library")
    assert "DPI-1047" in line and "Traceback" not in out.stderr
    if how != "profile_thick":
        assert str(empty) in line


def test_client_library_is_loaded_once_per_process(monkeypatch):
    """Defect 11: init_oracle_client runs once however many connections the
    CLI or worker opens (the driver refuses a second call with other args)."""
    calls = []
    from jobctl.backends.oracle import connect as oracle_connect

    monkeypatch.setattr(oracle_connect, "_client_loaded", False)
    monkeypatch.setattr(oracledb, "init_oracle_client",
                        lambda lib_dir=None, config_dir=None: calls.append((lib_dir, config_dir)))
    ob.load_client("/opt/oracle/ic", "/etc/tns")
    ob.load_client("/opt/oracle/ic", "/etc/tns")
    assert calls == [("/opt/oracle/ic", "/etc/tns")]


def test_external_authentication_asks_no_password_and_needs_thick_mode(monkeypatch):
    """Defect 11: `/@alias` is external authentication: the connect keywords
    carry externalauth and no user or password (accepted by a real
    ConnectParams); in thin mode it is refused with exit 2 saying why."""
    s = parse_dsn("oracle:///@sales_prd")
    assert s.external_auth and s.user is None and s.password is None
    with pytest.raises(UsageError, match="needs thick mode"):
        get_backend(s).connect_params()
    thick = get_backend(parse_dsn("oracle:///@sales_prd", options={"thick": True}))
    kwargs = thick.connect_params()
    assert kwargs["externalauth"] is True and "user" not in kwargs and kwargs["dsn"] == "sales_prd"
    assert oracledb.ConnectParams(**{k: v for k, v in kwargs.items() if k != "dsn"}).externalauth
    assert parse_dsn("/@sales_prd".join(["oracle://", ""])).display == "oracle:///@sales_prd"


#: each character that used to break masking, alone and all together
NASTY_PASSWORDS = ["Zq@9Xv", "Zq:9Xv", "Zq/9Xv", "Zq%9Xv", "Zq?9Xv", "Zq#9Xv", "Zq&9Xv",
                   "Zq@9:Xv/Wk%Jm?Yb#Uh&Rt"]


def _leaks(password: str, text: str) -> list[str]:
    return [password[i:i + 3] for i in range(len(password) - 2) if password[i:i + 3] in text]


@pytest.mark.parametrize("password", NASTY_PASSWORDS)
@pytest.mark.parametrize("scheme", ["postgresql", "oracle"])
def test_passwords_with_url_characters_are_parsed_and_masked(scheme, password):
    """Issue 9 item 8: everything between `//` and the last `@` before the
    host is the user and password: parsed whole, never shown by mask_dsn or
    display, on every server backend; and in a query string."""
    dsn = f"{scheme}://app:{password}@dbhost:5432/prod"
    s = parse_dsn(dsn)
    assert (s.user, s.host, s.port, s.database) == ("app", "dbhost", 5432, "prod")
    if "%" not in password:
        assert s.password == password
    for shown in (config_mask(dsn), s.display, s.dsn):
        assert not _leaks(password, shown), shown
    q = parse_dsn(f"{scheme}://app@dbhost:5432/prod?connect_timeout=3&password={password.replace('&', '%26')}")
    assert not _leaks(password, q.display) and not _leaks(password, q.dsn)
    if scheme == "postgresql":
        assert q.options == {"connect_timeout": "3"}


def config_mask(dsn):
    from jobctl.config import mask_dsn
    return mask_dsn(dsn)


@pytest.mark.parametrize("password", NASTY_PASSWORDS)
@pytest.mark.parametrize("template", [
    "postgresql://root:{pw}@t:x/y",                # invalid port: the "invalid DSN" path
    "oracle://root:{pw}@t:x/y",
    "postgresql://root:{pw}@127.0.0.1:{port}/db",   # connection refused: the connect path
    "oracle://root:{pw}@127.0.0.1:{port}/db",
    "sqlite:///{tmp}/nodir/jobs.db?password={pw}",
])
def test_no_error_message_shows_any_part_of_the_password(template, password, tmp_path):
    """Issue 9 item 8: through the CLI, on every backend, neither the invalid
    DSN message nor a connection error shows three consecutive characters of
    the password."""
    pw = password.replace("&", "%26").replace("#", "%23") if template.startswith("sqlite") else password
    dsn = template.format(pw=pw, port=closed_port(), tmp=tmp_path)
    result = CliRunner().invoke(app, ["--dsn", dsn, "list"])
    assert result.exit_code in (2, 4), result.stderr
    assert result.stderr.startswith("jobctl: error: ")
    assert not _leaks(password, result.stderr + result.stdout), result.stderr


@pytest.mark.parametrize("dsn", [
    "oracle://scott/Zq@9:Xv/Wk@dbhost:1521/FREEPDB1",
    "scott/tiger@SALES_PRD",
    "oracle:///@SALES_PRD",
    "oracle://scott@dbhost/svc?expire_time=2&password=Zq%269",
    "postgresql://app:Zq@9:Xv/Wk%Jm?Yb#Uh&Rt@db1:5433/prod?sslmode=disable",
])
def test_worker_gets_the_same_connection_from_the_payload(dsn):
    """The detached worker rebuilds its settings from the payload (DSN
    without the secret, options, password): every DSN form parses back to
    the same user, host, service, options, password and auth mode."""
    import json

    s = parse_dsn(dsn)
    back = type(s).from_payload(json.loads(json.dumps(s.to_payload())))
    fields = ("scheme", "user", "host", "port", "database", "options", "password", "external_auth")
    assert [getattr(back, f) for f in fields] == [getattr(s, f) for f in fields]
    assert s.password is None or s.password not in s.dsn


def test_thick_mode_choice_from_profile_and_environment(monkeypatch, tmp_path):
    """Defect 11: oracle_client (profile) or JOBCTL_ORACLE_CLIENT picks thick
    mode with that directory, `thick = true` the system library path, and an
    explicit `thick = false` keeps a profile thin; thin is the default. In
    this process nothing loaded a client, so the driver reports thin mode."""
    monkeypatch.delenv("JOBCTL_ORACLE_CLIENT", raising=False)
    assert backend().client_lib_dir() == (False, None)
    assert backend(oracle_client="~/ic").client_lib_dir() == (True, os.path.expanduser("~/ic"))
    assert backend(thick="true").client_lib_dir() == (True, None)
    monkeypatch.setenv("JOBCTL_ORACLE_CLIENT", str(tmp_path))
    assert backend().client_lib_dir() == (True, str(tmp_path))
    assert backend(thick=False).client_lib_dir() == (False, str(tmp_path))
    with pytest.raises(UsageError, match="invalid thick"):
        backend(thick="sometimes").client_lib_dir()
    assert ob.client_info()["mode"] == "thin"


@pytest.mark.parametrize("typed, exact", [
    ("12345678901234567890123456789012345678", 12345678901234567890123456789012345678),
    ("0.1", Decimal("0.1")),
    ("-0.000000000000000000001", Decimal("-0.000000000000000000001")),
    ("1E+30", Decimal("1E+30")),
    ("12345678901234567890.123", Decimal("12345678901234567890.123")),
])
def test_number_values_bind_exactly_and_out_numbers_come_back_as_decimal(typed, exact):
    """Issue 7: a NUMBER value reaches the bind as the exact int/Decimal
    typed (never a float: the driver sends both as Oracle NUMBER, 38
    digits), and an OUT NUMBER variable is a Decimal one, so the value read
    back is not rounded through a float."""
    b, cur = backend(), FakeCursor()
    p, t = _p("N", "NUMBER")
    bound = b._in_bind(cur, p, t, params.coerce(p, typed))
    assert bound == exact and not isinstance(bound, float) and str(bound) == str(exact)
    for mode in ("OUT", "IN/OUT"):
        p, t = _p("N", "NUMBER", mode)
        assert b._out_var(cur, p, t).type is Decimal


def test_wallet_and_database_passwords_are_kept_out_of_the_workers_environment(tmp_path, monkeypatch):
    """Offline half of the /proc/PID/environ test: every variable an Oracle
    profile takes a secret from is one the worker starts without."""
    from jobctl.config import resolve_settings

    cfg = tmp_path / "config" / "jobctl" / "config.toml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text('[profiles.adb]\ndsn = "oracle://scott@adb_high"\npassword_env = "ADB_PW"\n'
                   'wallet_password_env = "ADB_WALLET_PW"\nconfig_dir = "~/wallet"\n')
    monkeypatch.setenv("ADB_PW", "db-secret")
    monkeypatch.setenv("ADB_WALLET_PW", "wallet-secret")
    settings = resolve_settings(profile="adb")
    assert {"ADB_PW", "ADB_WALLET_PW"} <= set(settings.secret_env)
    assert settings.connection.password == "db-secret"


@pytest.mark.parametrize("code, ended", [(1031, False), (30, True), (31, True), (None, True)])
def test_cancel_of_an_orphaned_session_kills_it_or_hands_the_statement_to_a_dba(code, ended):
    """Issue 9 item 2 and issue 23 on Oracle: `jobctl cancel` of an orphaned
    job sends the exact ALTER SYSTEM KILL SESSION for the recorded session,
    on a connection of its own (thin mode closes the connection that gets
    ORA-00031, and the caller still writes `cancelled` on its own). ORA-01031
    (not privileged) means "print it for a DBA" (False); ORA-00030 (no such
    session) means already gone; ORA-00031 (marked for kill) is success
    (ORACLE_NOTES: Second review, "ORA-00031 is success"); after a kill the
    session reads not alive, because a session lingering as STATUS 'KILLED'
    is excluded (the fake V$SESSION answers 0 as the real one would, given
    that filter). Proves the statements sent and how the driver's own error
    objects are read, not what a server does."""
    sent, opened, closed = [], [], []

    class Cur(FakeCursor):
        def execute(self, sql, binds=None, **kw):
            sent.append(sql)
            if "KILL SESSION" in sql:
                if code is not None:
                    exc = ora_error(f"ORA-{code:05d}: refused", code)
                    raise exc
                return
            self.rows = [(0,)]          # COUNT(*) of live sessions: none

    class KillConn(FakeConn):
        def close(self):
            closed.append(self)

    b = backend()

    def connect(job_id=None):
        conn = KillConn(Cur)
        opened.append(conn)
        return conn

    b.connect = connect
    caller = FakeConn(Cur)
    assert b.end_session(caller, "123,4567,@2") is ended
    assert sent[0] == "ALTER SYSTEM KILL SESSION '123,4567,@2' IMMEDIATE"
    assert len(opened) == 1 and closed == opened           # its own connection, closed
    assert all("KILL" not in e[0] for cur in caller.cursors for e in cur.executed)
    if code in (31, None):
        # then whether it still runs is read on the caller's connection,
        # with KILLED and SNIPED sessions not counted as alive
        assert "status NOT IN ('KILLED', 'SNIPED')" in sent[1]
    # a session recorded without SERIAL# (thick mode, V$SESSION not granted)
    # is never guessed at: only a DBA can pick it
    assert b.end_session(caller, "123,,@2") is False and len(opened) == 1


def test_a_killed_session_is_not_alive():
    """ORACLE_NOTES: Second review, "A killed session lingers": both views
    exclude STATUS KILLED and SNIPED, so `cancel` of an orphan right after a
    successful KILL SESSION reads it ended, not orphaned then lost."""
    for sql in (ob.GV_SESSION_ALIVE_SQL, ob.SESSION_ALIVE_SQL):
        assert re.search(r"status NOT IN \('KILLED', 'SNIPED'\)", sql)
