"""The Oracle backend's sessions and values (issues 23 and 24), checked
without an Oracle server.

What these tests prove: which statements and binds the backend sends (a
job's name, the session setup, the reset between jobs, the call's first and
last round trips with the marker, --atomic and the commit-inside check, the
check of values at submit), how it reads the driver's own error objects
(ORA-00028 inside DPY-4011 ...), and how every Oracle type is bound and read
back with the real driver's type objects and value classes (oracledb.DB_TYPE_*,
oracledb.IntervalYM, datetime.timedelta, bytes).

What they cannot prove (ORACLE_NOTES "Testing without a server", Second
review "What the offline tests cannot see"): that the server answers as the
fakes do — that LOCAL_TRANSACTION_ID changes after a COMMIT inside, that
ALTER SESSION DISABLE COMMIT IN PROCEDURE raises ORA-00034, that V$PARAMETER
shows ALTER SESSION changes as MODIFIED, that a killed session reads STATUS
'KILLED', that a REF CURSOR comes back as a cursor. `jobctl doctor` proves
those on the user's database (backends/oracle/checks_sessions.py).

The fakes below only record what the backend asks of a driver cursor; they
imitate no database behaviour beyond answering the binds the test sets.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import oracledb
import pytest
import sqlglot
from oracledb import errors as ora_errors
from sqlglot import exp

from jobctl import model
from jobctl.backends import get_backend
from jobctl.backends import oracle as ob
from jobctl.backends.base import CallContext
from jobctl.backends.oracle import values as ov
from jobctl.config import Tunables, parse_dsn
from jobctl.errors import DatabaseError, UsageError
from jobctl.model import Signature

UTC = dt.timezone.utc
JOB = "0123456789abcdef0123456789abcdef"


def backend(**options) -> ob.OracleBackend:
    return get_backend(parse_dsn("oracle://scott@dbhost:1521/FREEPDB1", options=options))


def ora_error(message: str, code: int) -> oracledb.Error:
    """A database error exactly as thin mode raises it (the driver's `_Error`,
    which maps ORA-00028/00031/01012... to DPY-4011: src/oracledb/errors.py)."""
    err = ora_errors._Error(message, code=code)
    return err.exc_type(err)


class Var:
    def __init__(self, typ, size=0):
        self.type, self.size, self.value = typ, size, None

    def setvalue(self, pos, value):
        self.value = value

    def getvalue(self, pos=0):
        return self.value


class Cur:
    """Records statements; `answer(sql, binds)` may set OUT binds or raise."""

    def __init__(self, conn):
        self.conn, self.executed, self.calls, self.sizes = conn, [], [], {}
        self.implicit, self.warning = [], None

    def var(self, typ, size=0, **kw):
        return Var(typ, size)

    def arrayvar(self, typ, value, size=0):
        v = Var(typ, size)
        v.value = []
        return v

    def setinputsizes(self, **sizes):
        self.sizes.update(sizes)

    def execute(self, sql, binds=None, **kw):
        self.executed.append((sql, binds))
        self.conn.sent.append((sql, binds))
        if self.conn.answer:
            self.conn.answer(sql, binds)
        if binds and "num_lines" in binds:
            binds["num_lines"].setvalue(0, 0)

    def callproc(self, name, parameters=None, keyword_parameters=None):
        self.calls.append((name, keyword_parameters))
        self.conn.sent.append(("callproc " + name, keyword_parameters))
        if self.conn.on_call:
            self.conn.on_call(keyword_parameters)

    def getimplicitresults(self):
        return self.conn.implicit

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class Conn:
    def __init__(self, answer=None, on_call=None):
        self.sent, self.answer, self.on_call, self.implicit = [], answer, on_call, []
        self.attrs, self.cursors = {}, []
        self.transaction_in_progress = False

    def cursor(self):
        cur = Cur(self)
        self.cursors.append(cur)
        return cur

    def __setattr__(self, name, value):
        if name in ("client_identifier", "module", "action"):
            self.attrs[name] = value
        object.__setattr__(self, name, value)


class Rows:
    """A result cursor as the driver hands one back: description and fetchmany."""

    def __init__(self, columns, rows):
        self.description = [(c, None) for c in columns]
        self.rows, self.closed, self.arraysize = rows, False, 100

    def fetchmany(self, n):
        return self.rows[:n]

    def close(self):
        self.closed = True


def _p(name, data_type, mode="IN", pls_type=None, defaulted=False):
    row = {"argument_name": name, "data_type": data_type, "pls_type": pls_type, "type_owner": None,
           "type_name": None, "type_subname": None, "in_out": mode,
           "defaulted": "Y" if defaulted else "N"}
    return ob.OracleBackend._param(row)


def _sig(*params_types, name="P"):
    params = tuple(p for p, _ in params_types)
    types = {p.name: t for p, t in params_types}
    return Signature(name, params, extra={"call_name": name, "types": types})


# -- a job's name and session (issue 23) -----------------------------------------------

def test_job_session_names_the_job_without_a_round_trip():
    """CLIENT_IDENTIFIER, MODULE and ACTION are write-only attributes sent
    with the next round trip (src/oracledb/connection.py, the setters): with
    no session_setup, start_job_session sends nothing itself."""
    b, conn = backend(), Conn()
    b.start_job_session(conn, JOB)
    assert conn.attrs == {"client_identifier": JOB, "module": "jobctl", "action": JOB}
    assert conn.sent == []


def test_session_setup_runs_in_one_round_trip_and_a_pool_connection_gets_its_zone_back(monkeypatch):
    """The user's session_setup (an NLS example) runs as EXECUTE IMMEDIATE of
    each statement in one block; a connection opened without a job (a
    pool's, UTC for bookkeeping) first gets the zone thin mode would have
    given it (ORA_SDTZ), so the procedure sees what SQL*Plus shows."""
    monkeypatch.setenv("ORA_SDTZ", "Europe/Paris")
    b, conn = backend(session_setup="ALTER SESSION SET NLS_DATE_FORMAT = 'YYYY-MM-DD HH24:MI:SS';\n"
                                     "ALTER SESSION SET NLS_NUMERIC_CHARACTERS = '.,'"), Conn()
    b._remember(conn, {"instance": "1", "zone_forced": True})
    b.start_job_session(conn, JOB)
    [(sql, binds)] = conn.sent
    assert sql == ob.setup_block(3)
    assert binds == {"s1": "ALTER SESSION SET TIME_ZONE = 'Europe/Paris'",
                     "s2": "ALTER SESSION SET NLS_DATE_FORMAT = 'YYYY-MM-DD HH24:MI:SS'",
                     "s3": "ALTER SESSION SET NLS_NUMERIC_CHARACTERS = '.,'"}
    assert b._session_info(conn)["zone_forced"] is False
    conn.sent.clear()
    b.start_job_session(conn, JOB)                    # the zone is the user's now: not again
    assert len(conn.sent[0][1]) == 2


def test_a_failing_session_setup_is_the_jobs_error_with_the_ora_code():
    def refuse(sql, binds):
        raise ora_error("ORA-00922: missing or invalid option", 922)

    b, conn = backend(session_setup="ALTER SESSION SET NOPE = 1"), Conn(answer=refuse)
    with pytest.raises(DatabaseError) as info:
        b.start_job_session(conn, JOB)
    assert info.value.message == "session_setup failed: ORA-00922: missing or invalid option"
    assert info.value.code == "ORA-00922" and info.value.exit_code == 4


@pytest.mark.parametrize("text, statements", [
    ("ALTER SESSION SET NLS_DATE_FORMAT = 'DD.MM.YYYY'; ALTER SESSION SET CURRENT_SCHEMA = HR",
     ["ALTER SESSION SET NLS_DATE_FORMAT = 'DD.MM.YYYY'", "ALTER SESSION SET CURRENT_SCHEMA = HR"]),
    ("ALTER SESSION SET NLS_DATE_FORMAT = 'YYYY;MM'  -- a ; in quotes\n",
     ["ALTER SESSION SET NLS_DATE_FORMAT = 'YYYY;MM'"]),
    ("BEGIN DBMS_SESSION.SET_NLS('NLS_TERRITORY', '''GERMANY'''); END;\n/\n"
     "ALTER SESSION SET TIME_ZONE = 'Europe/Berlin';",
     ["BEGIN DBMS_SESSION.SET_NLS('NLS_TERRITORY', '''GERMANY'''); END;",
      "ALTER SESSION SET TIME_ZONE = 'Europe/Berlin'"]),
    ("BEGIN NULL; END;", ["BEGIN NULL; END;"]),
    (None, []),
])
def test_session_setup_is_split_into_statements_for_execute_immediate(text, statements):
    assert ob.setup_statements(text) == statements


@pytest.mark.parametrize("ora_sdtz, expected", [
    ("+05:30", "'+05:30'"), ("Europe/Paris", "'Europe/Paris'"), ("DB_TZ", "DBTIMEZONE")])
def test_the_call_sessions_zone_is_the_one_thin_mode_gives(ora_sdtz, expected, monkeypatch):
    monkeypatch.setenv("ORA_SDTZ", ora_sdtz)
    assert ob.client_time_zone() == expected
    monkeypatch.setenv("ORA_SDTZ", "x'; DROP TABLE T; --")
    with pytest.raises(UsageError, match="ORA_SDTZ"):
        ob.client_time_zone()
    monkeypatch.delenv("ORA_SDTZ")
    assert re.fullmatch(r"'[+-]\d\d:\d\d'", ob.client_time_zone())


def test_connect_sets_utc_only_on_bookkeeping_sessions_and_names_the_watch_session(monkeypatch):
    """A connection for a job keeps the client's zone (ORACLE_NOTES: Second
    review, "Session time zone") and is named as the watch session until
    start_job_session makes it the call's; CLI and pool connections are UTC."""
    made = []

    def connect(**kwargs):
        conn = Conn()
        made.append(conn)
        return conn

    monkeypatch.setattr(oracledb, "connect", connect)
    monkeypatch.setenv("JOBCTL_PASSWORD", "tiger")
    b = get_backend(parse_dsn("oracle://scott:tiger@dbhost:1521/FREEPDB1"))
    b.connect()
    b.connect(job_id=JOB)
    books, watch = made
    assert books.sent[0][0] == ob.SESSION_SETUP_SQL and "TIME_ZONE" in ob.SESSION_SETUP_SQL
    assert watch.sent[0][0] == ob.SESSION_INFO_SQL and "TIME_ZONE" not in ob.SESSION_INFO_SQL
    assert books.attrs == {"module": "jobctl"}
    assert watch.attrs == {"client_identifier": "jobctl-watch:" + JOB, "module": "jobctl watch",
                           "action": JOB}
    assert b._session_info(books)["zone_forced"] and not b._session_info(watch)["zone_forced"]
    assert all(len(v.encode()) <= limit for v, limit in (
        (watch.attrs["client_identifier"], 64), (watch.attrs["module"], 48), (watch.attrs["action"], 32)))


def test_the_dsn_may_carry_session_setup_without_it_reaching_the_driver():
    b = get_backend(parse_dsn("oracle://scott@dbhost:1521/FREEPDB1?session_setup=x&expire_time=2"))
    assert "session_setup" not in b.connect_params() and b.connect_params()["expire_time"] == 2


# -- the reset between jobs -------------------------------------------------------------

def _state_answer(state, seen=1):
    def answer(sql, binds):
        if binds and "jc_state" in binds:
            binds["jc_state"].setvalue(0, state)
            binds["jc_seen"].setvalue(0, seen)
    return answer


def test_reset_keeps_the_connection_only_when_the_session_is_as_the_job_found_it():
    """The fingerprint taken in the call's first round trip is compared with
    the one read after the job, in the block that resets package state and
    clears the job's name (ORACLE_NOTES: Second review, "Session state
    between jobs")."""
    b = backend()
    conn = Conn(answer=_state_answer("nls:A|zone:+01:00"))
    b.call(conn, _sig(), {}, CallContext(JOB))
    assert b._session_info(conn)["baseline"] == "nls:A|zone:+01:00"
    assert b.reset_job_session(conn) is True
    sql, binds = conn.sent[-1]
    assert sql == ob.RESET_SQL and set(binds) == {"jc_state", "jc_seen"}
    for step in ("DBMS_SESSION.MODIFY_PACKAGE_STATE(DBMS_SESSION.REINITIALIZE)",
                 "DBMS_SESSION.CLEAR_IDENTIFIER", "SET_MODULE('jobctl', 'idle')",
                 "ALTER SESSION ENABLE COMMIT IN PROCEDURE", "DBMS_OUTPUT.DISABLE"):
        assert step in sql
    conn.answer = _state_answer("nls:B|zone:+01:00")           # an ALTER SESSION by the job
    assert b.reset_job_session(conn) is False
    conn.transaction_in_progress = True
    assert b.reset_job_session(conn) is False


def test_without_the_v_views_every_job_gets_a_new_connection():
    """What V$PARAMETER, V$LOCK, V$TEMPSEG_USAGE show (ALTER SESSION, user
    locks, session GTT rows) cannot be seen without SELECT on them, so no
    connection is reused, and the fingerprint is no longer read."""
    b = backend()
    conn = Conn(answer=_state_answer("nls:A", seen=0))
    b.call(conn, _sig(), {}, CallContext(JOB))
    assert b._reset_views is False
    before = len(conn.sent)
    assert b.reset_job_session(conn) is False and len(conn.sent) == before   # no round trip
    b.call(conn, _sig(), {}, CallContext(JOB))
    assert "jc_state" not in conn.sent[before][1]


def test_a_connection_that_cannot_answer_the_reset_is_replaced():
    def dead(sql, binds):
        raise ora_error("ORA-03113: end-of-file on communication channel", 3113)

    assert backend().reset_job_session(Conn(answer=dead)) is False


def test_the_fingerprints_dynamic_queries_are_oracle_sql():
    """sqlglot parses the V$ queries inside the fingerprint (it cannot parse
    the PL/SQL around them): names and shape, not privileges or semantics."""
    queries = re.findall(r"q'\[(.*?)\]'", ob.STATE_BLOCK, re.S)
    assert len(queries) == 4
    for q in queries + ["SELECT COUNT(*) FROM user_private_temp_tables"]:
        tree = sqlglot.parse_one(q, read="oracle")
        assert isinstance(tree, exp.Select), q
    assert "ismodified = 'MODIFIED'" in ob.STATE_BLOCK and "type = 'UL'" in ob.STATE_BLOCK
    assert "EXCEPTION_INIT(e_no_view, -942)" in ob.STATE_BLOCK


# -- the call: marker, commit inside, --atomic (issue 23) ------------------------------

def _txn_answer(before, after):
    def answer(sql, binds):
        if binds and "jc_txn" in binds:
            binds["jc_txn"].setvalue(0, before if "(TRUE)" in sql else after)
    return answer


@pytest.mark.parametrize("after, committed", [("7.12.900", False), ("8.3.1201", True), (None, True)])
def test_a_commit_inside_is_seen_by_the_transaction_id(after, committed):
    """LOCAL_TRANSACTION_ID(TRUE) before the call (a transaction is created
    if none), LOCAL_TRANSACTION_ID after it, in the round trip that reads
    DBMS_OUTPUT: another id, or none, means the procedure ended the
    transaction it was given (ctx.note_self_commit)."""
    ctx = CallContext(JOB)
    backend().call(Conn(answer=_txn_answer("7.12.900", after)), _sig(), {}, ctx)
    assert ctx.self_committed is committed and ctx.commits_known
    assert ("[jobctl] the procedure committed inside" in (ctx.snapshot()[1] or "")) is committed


def test_after_a_failed_call_the_marker_tells_a_commit_from_a_rollback():
    """The ids cannot tell a COMMIT inside from a full ROLLBACK inside. After
    a failed call with a marker, jobctl's marker row (committed with the
    call's first transaction, or rolled back with it) decides: the backend
    leaves commits_known False so the worker reads it. Without a marker an
    ended transaction counts as committed (never retried); a connection that
    died leaves it unknown."""
    def fail(kw):
        raise ora_error("ORA-20001: batch 3 failed", 20001)

    marked = CallContext(JOB)
    marked.marker = ("INSERT INTO JOB_COMMIT_MARKS (job_id) VALUES (:mark_job_id)",
                     {"mark_job_id": JOB})
    with pytest.raises(DatabaseError):
        backend().call(Conn(answer=_txn_answer("1.2.3", None), on_call=fail), _sig(), {}, marked)
    assert not marked.self_committed and not marked.commits_known
    plain = CallContext(JOB)
    with pytest.raises(DatabaseError):
        backend().call(Conn(answer=_txn_answer("1.2.3", None), on_call=fail), _sig(), {}, plain)
    assert plain.self_committed and plain.commits_known
    kept = CallContext(JOB)
    kept.marker = marked.marker
    with pytest.raises(DatabaseError):
        backend().call(Conn(answer=_txn_answer("1.2.3", "1.2.3"), on_call=fail), _sig(), {}, kept)
    assert not kept.self_committed and kept.commits_known          # nothing committed: retryable

    def dead(sql, binds):
        _txn_answer("1.2.3", None)(sql, binds)
        if "GET_LINES" in sql:
            raise ora_error("ORA-03113: end-of-file on communication channel", 3113)

    lost = CallContext(JOB)
    with pytest.raises(DatabaseError):
        backend().call(Conn(answer=dead, on_call=fail), _sig(), {}, lost)
    assert not lost.self_committed and not lost.commits_known


def test_the_marker_runs_first_in_the_calls_first_round_trip():
    """CallContext.marker runs in the call's first transaction, before the
    savepoint a repeat returns to, with its binds as jobctl's own statements
    bind them (datetimes as TIMESTAMP, booleans as 1/0)."""
    ctx = CallContext(JOB)
    now = dt.datetime(2024, 5, 1, 12, 0, 0, 123456)
    ctx.marker = ("UPDATE ASYNC_JOBS SET committed_inside = :flag, heartbeat_at = :t "
                  "WHERE job_id = :job_id;", {"flag": True, "t": now, "job_id": JOB})
    conn = Conn()
    backend().call(conn, _sig(), {}, ctx)
    sql, binds = conn.sent[0]
    lines = [ln.strip() for ln in sql.splitlines()]
    assert lines[1] == ("UPDATE ASYNC_JOBS SET committed_inside = :flag, heartbeat_at = :t "
                        "WHERE job_id = :job_id;")
    assert lines.index("SAVEPOINT jobctl_call;") > 1
    assert binds["flag"] == 1 and binds["t"] == now and binds["job_id"] == JOB
    assert binds["jc_job"] == JOB
    start_cursor = next(c for c in conn.cursors if c.executed and c.executed[0][0] == sql)
    assert start_cursor.sizes == {"t": oracledb.DB_TYPE_TIMESTAMP}
    assert start_cursor is not conn.cursors[0] and conn.cursors[0].sizes == {}   # not callproc's
    marker_tree = sqlglot.parse_one(ctx.marker[0].rstrip(";"), read="oracle")
    assert {p.name for p in marker_tree.find_all(exp.Placeholder)} == {"flag", "t", "job_id"}


def test_atomic_refuses_commit_inside_and_names_the_option():
    """--atomic: ALTER SESSION DISABLE COMMIT IN PROCEDURE in the first round
    trip, ENABLE again in the last; ORA-00034 keeps its text and says why."""
    def refuse(kw):
        raise ora_error("ORA-00034: cannot COMMIT in current PL/SQL session\n"
                        'ORA-06512: at "SCOTT.PURGE", line 12', 34)

    ctx = CallContext(JOB)
    ctx.atomic = True
    conn = Conn(on_call=refuse)
    with pytest.raises(DatabaseError) as info:
        backend().call(conn, _sig(name="PURGE"), {}, ctx)
    assert info.value.message.startswith("ORA-00034: cannot COMMIT in current PL/SQL session\n")
    assert "--atomic" in info.value.message and info.value.code == "ORA-00034"
    sent = [sql for sql, _ in conn.sent]
    assert "EXECUTE IMMEDIATE 'ALTER SESSION DISABLE COMMIT IN PROCEDURE';" in sent[0]
    assert "ALTER SESSION ENABLE COMMIT IN PROCEDURE" in sent[2]     # after the error too


# -- the database's error, kept (issue 23) -----------------------------------------------

@pytest.mark.parametrize("code, text", [
    (28, "ORA-00028: your session has been killed"),
    (31, "ORA-00031: session marked for kill"),
    (1012, "ORA-01012: not logged on"),
])
def test_a_killed_session_fails_the_job_with_its_own_text_and_is_never_retried(code, text):
    """Thin mode raises these as DPY-4011 (src/oracledb/errors.py,
    ERR_ORACLE_ERROR_XREF) and marks them recoverable; the job keeps the
    server's line first, its code, killed=True, transient=False."""
    def kill(kw):
        raise ora_error(text, code)

    with pytest.raises(DatabaseError) as info:
        backend().call(Conn(on_call=kill), _sig(), {}, CallContext(JOB))
    err = info.value
    assert err.message.splitlines()[0] == text
    assert "DPY-4011" in err.message and "Help:" not in err.message
    assert (err.code, err.killed, err.transient) == (f"ORA-{code:05d}", True, False)
    assert not backend().is_transient(ora_error(text, code))


def test_a_lost_connection_keeps_the_servers_words_and_stays_transient():
    b = backend()
    exc = ora_error("ORA-03113: end-of-file on communication channel", 3113)
    err = b.translate_error(exc)
    assert err.message.endswith("ORA-03113: end-of-file on communication channel "
                                "(DPY-4011: the database or network closed the connection)")
    assert err.transient and not err.killed and err.code == "ORA-03113"
    internal = b._job_error(ora_error("ORA-00600: internal error code, arguments: [kdsgrp1]", 600), "P")
    assert internal.message.startswith("ORA-00600: internal error code") and internal.code == "ORA-00600"


def test_every_job_error_carries_its_ora_code():
    err = backend()._job_error(ora_error("ORA-20001: demo failure\nORA-06512: at line 3", 20001), "P")
    assert err.code == "ORA-20001" and err.message.startswith("ORA-20001: demo failure")


@pytest.mark.parametrize("code, transient", [
    (12516, True), (12519, True), (12520, True), (12528, True), (12514, False)])
def test_refused_connections_are_transient_but_an_unknown_service_is_not(code, transient):
    exc = ora_errors._create_exception(ora_errors.ERR_LISTENER_REFUSED_CONNECTION, error_code=code)
    assert backend().is_transient(exc) is transient


def test_an_instance_starting_up_is_transient():
    assert backend().is_transient(ora_error("ORA-01033: ORACLE initialization or shutdown in "
                                            "progress", 1033))


# -- every Oracle type, bound with the driver's own objects (issue 24) -----------------

@pytest.mark.parametrize("data_type, written, db_type, bound", [
    ("INTERVAL DAY TO SECOND", "P1DT2H3M4.5S", oracledb.DB_TYPE_INTERVAL_DS,
     dt.timedelta(days=1, hours=2, minutes=3, seconds=4.5)),
    ("INTERVAL DAY(2) TO SECOND(6)", "-1 00:00:30", oracledb.DB_TYPE_INTERVAL_DS,
     -dt.timedelta(days=1, seconds=30)),
    ("INTERVAL YEAR TO MONTH", "P1Y2M", oracledb.DB_TYPE_INTERVAL_YM, oracledb.IntervalYM(1, 2)),
    ("INTERVAL YEAR TO MONTH", "-P14M", oracledb.DB_TYPE_INTERVAL_YM, oracledb.IntervalYM(-1, -2)),
    ("INTERVAL YEAR TO MONTH", "P-1Y-2M", oracledb.DB_TYPE_INTERVAL_YM, oracledb.IntervalYM(-1, -2)),
    ("INTERVAL DAY TO SECOND", "PT-1H-30M", oracledb.DB_TYPE_INTERVAL_DS, -dt.timedelta(minutes=90)),
    ("RAW", "\\x0a1B", oracledb.DB_TYPE_RAW, b"\x0a\x1b"),
    ("RAW", "cafe", oracledb.DB_TYPE_RAW, b"\xca\xfe"),
    ("BLOB", "\\x00ff", oracledb.DB_TYPE_BLOB, b"\x00\xff"),
    ("JSON", '{"a": [1, 2.5]}', oracledb.DB_TYPE_JSON, {"a": [1, Decimal("2.5")]}),
])
def test_each_oracle_type_binds_as_the_driver_object(data_type, written, db_type, bound):
    """The value written on the command line (ISO 8601, hex, JSON) becomes
    the object python-oracledb binds for that DB_TYPE (doc/src/user_guide/
    sql_execution.rst, "Fetched Data Types": INTERVAL DAY TO SECOND ↔
    timedelta, INTERVAL YEAR TO MONTH ↔ oracledb.IntervalYM, RAW/BLOB ↔ bytes)."""
    from jobctl import params
    p = _p("X", data_type)
    var = backend()._in_bind(Cur(Conn()), p, data_type, params.coerce(p, written))
    assert var.type is db_type and var.value == bound


def test_booleans_23ai_and_plsql_bind_as_python_booleans():
    from jobctl import params
    for data_type in ("BOOLEAN", "PL/SQL BOOLEAN"):
        p = _p("B", data_type)
        assert p.kind == model.BOOLEAN
        assert backend()._in_bind(Cur(Conn()), p, data_type, params.coerce(p, "0")) is False
        var = backend()._in_bind(Cur(Conn()), p, data_type, None)
        assert var.type is oracledb.DB_TYPE_BOOLEAN and var.value is None


@pytest.mark.parametrize("data_type, zoned", [
    ("TIMESTAMP", False), ("DATE", False),
    ("TIMESTAMP WITH TIME ZONE", True), ("TIMESTAMP WITH LOCAL TIME ZONE", True)])
def test_timestamps_bind_as_sqlplus_reads_a_literal(data_type, zoned):
    """A zoned parameter given an offset gets the instant: TIMESTAMP WITH
    TIME ZONE holding the UTC wall time, since thin mode labels any bound
    datetime +00:00 (python-oracledb issue 374). Without an offset, a wall
    time in the session's zone (no longer forced to UTC). A DATE or
    TIMESTAMP keeps the wall time as written, offset dropped, as Oracle does
    when a zoned literal is assigned to one."""
    from jobctl import params
    p = _p("T", data_type)
    b, cur = backend(), Cur(Conn())
    bound = b._in_bind(cur, p, data_type, params.coerce(p, "2024-05-01T10:00:00.5+02:00"))
    naive = b._in_bind(cur, p, data_type, params.coerce(p, "2024-05-01T10:00:00.5"))
    wall, utc = dt.datetime(2024, 5, 1, 10, 0, 0, 500000), dt.datetime(2024, 5, 1, 8, 0, 0, 500000)
    if zoned:
        assert (bound.type, bound.value) == (oracledb.DB_TYPE_TIMESTAMP_TZ, utc)
        assert (naive.type, naive.value) == (oracledb.DB_TYPE_TIMESTAMP, wall)
    elif data_type == "DATE":
        assert bound == wall and naive == wall                  # plain DATE binds
    else:
        assert (bound.type, bound.value) == (oracledb.DB_TYPE_TIMESTAMP, wall)
        assert (naive.type, naive.value) == (oracledb.DB_TYPE_TIMESTAMP, wall)


@pytest.mark.parametrize("data_type, out_type", [
    ("INTERVAL DAY TO SECOND", oracledb.DB_TYPE_INTERVAL_DS),
    ("INTERVAL YEAR TO MONTH", oracledb.DB_TYPE_INTERVAL_YM),
    ("RAW", oracledb.DB_TYPE_RAW), ("BLOB", oracledb.DB_TYPE_BLOB),
    ("REF CURSOR", oracledb.DB_TYPE_CURSOR), ("JSON", oracledb.DB_TYPE_JSON),
    ("BOOLEAN", oracledb.DB_TYPE_BOOLEAN),
    ("TIMESTAMP WITH LOCAL TIME ZONE", oracledb.DB_TYPE_TIMESTAMP_LTZ),
])
def test_out_variables_use_the_driver_types(data_type, out_type):
    var = backend()._out_var(Cur(Conn()), _p("O", data_type, "OUT"), data_type)
    assert var.type is out_type


@pytest.mark.parametrize("value, shown", [
    (dt.timedelta(days=1, hours=2, minutes=3, seconds=4, microseconds=500000), "P1DT2H3M4.5S"),
    (-dt.timedelta(minutes=90), "PT-1H-30M"),
    (-dt.timedelta(days=1, microseconds=1), "P-1DT-0.000001S"),
    (dt.timedelta(0), "PT0S"),
    (oracledb.IntervalYM(1, 2), "P1Y2M"),
    (oracledb.IntervalYM(-2, 0), "P-2Y"),
    (oracledb.IntervalYM(-1, -6), "P-1Y-6M"),
    (oracledb.IntervalYM(0, 0), "P0M"),
    (b"\x0a\x1b", "\\x0a1b"),
    (Decimal("12345678901234567890.123456789012345678"), Decimal("12345678901234567890.123456789012345678")),
    (dt.datetime(2024, 5, 1, 10, 0, 0, 5), "2024-05-01T10:00:00.000005"),
])
def test_values_come_back_as_iso_8601_and_hex_and_round_trip(value, shown):
    assert ov.result_value(value) == shown
    if isinstance(value, dt.timedelta):
        assert ov.parse_interval_ds(shown, "X") == value       # what resubmit sends back
    elif isinstance(value, oracledb.IntervalYM):
        assert ov.parse_interval_ym(shown, "X") == value
    elif isinstance(value, bytes):
        assert ov.parse_hex(shown, "X", "RAW") == value


@pytest.mark.parametrize("data_type, bad, message", [
    ("INTERVAL DAY TO SECOND", "P1M", "years or months"),
    ("INTERVAL DAY TO SECOND", "PT0.0000001S", "finer than a microsecond"),
    ("INTERVAL DAY TO SECOND", "tomorrow", "ISO 8601"),
    ("INTERVAL YEAR TO MONTH", "P1D", "days or a time"),
    ("RAW", "\\xabc", "hex bytes"),
    ("RAW", "zz", "hex bytes"),
])
def test_values_jobctl_cannot_read_are_exit_2_naming_the_parameter(data_type, bad, message):
    with pytest.raises(UsageError) as info:
        backend()._in_bind(Cur(Conn()), _p("P_X", data_type), data_type, bad)
    assert info.value.exit_code == 2 and "parameter P_X" in info.value.message
    assert message in info.value.message


# -- result sets: REF CURSOR OUT and implicit results ------------------------------------

def test_ref_cursor_out_and_implicit_results_come_back_as_bounded_row_arrays():
    """A REF CURSOR OUT (cursor.var(DB_TYPE_CURSOR)) and the cursors of
    DBMS_SQL.RETURN_RESULT (cursor.getimplicitresults()) become arrays of row
    objects, at most CallContext.result_rows rows each (one more is fetched
    to know), with a line in OUTPUT when cut (ORACLE_NOTES: Second review,
    "Implicit results and REF CURSORs")."""
    rc = Rows(["EMPNO", "ENAME", "HIRED", "Mixed"],
              [(Decimal("7839"), "KING", dt.datetime(1981, 11, 17), b"\x01"),
               (Decimal("7698"), "BLAKE", None, None), (Decimal("1"), "X", None, None)])
    extra = Rows(["N"], [(Decimal("1.5"),)])

    def fill(kw):
        kw["RC"].setvalue(0, rc)

    conn = Conn(on_call=fill)
    conn.implicit = [extra]
    ctx = CallContext(JOB, result_rows=2)
    result = backend().call(conn, _sig((_p("RC", "REF CURSOR", "OUT"), "REF CURSOR")), {}, ctx)
    assert result["rc"] == [
        {"empno": Decimal("7839"), "ename": "KING", "hired": "1981-11-17T00:00:00", "Mixed": "\\x01"},
        {"empno": Decimal("7698"), "ename": "BLAKE", "hired": None, "Mixed": None}]
    assert result["implicit_results"] == [[{"n": Decimal("1.5")}]]
    assert rc.closed and extra.closed
    assert "[jobctl] rc: cut at 2 rows (JOBCTL_RESULT_ROWS)" in ctx.snapshot()[1]
    assert "implicit result 1" not in ctx.snapshot()[1]
    assert conn.outputtypehandler is None                    # restored after the call


def test_numbers_in_result_sets_are_fetched_as_decimal():
    class Meta:
        type_code = oracledb.DB_TYPE_NUMBER

    class C:
        arraysize = 50

        def var(self, typ, arraysize=None):
            return (typ, arraysize)

    assert ov.decimal_numbers(C(), Meta()) == (Decimal, 50)
    Meta.type_code = oracledb.DB_TYPE_VARCHAR
    assert ov.decimal_numbers(C(), Meta()) is None


def test_result_rows_is_a_tunable_from_the_environment(monkeypatch):
    assert Tunables.from_sources({}).result_rows == 1000
    monkeypatch.setenv("JOBCTL_RESULT_ROWS", "50")
    assert Tunables.from_sources({}).result_rows == 50
    for bad in ("0", "x", "-3", "1.5", "10000000"):
        monkeypatch.setenv("JOBCTL_RESULT_ROWS", bad)
        with pytest.raises(UsageError, match="JOBCTL_RESULT_ROWS"):
            Tunables.from_sources({})


# -- overloads and the check at submit (issue 24) ------------------------------------------

ARG_COLUMNS = ("overload", "position", "argument_name", "data_type", "pls_type", "type_owner",
               "type_name", "type_subname", "in_out", "defaulted")


def _catalog_conn(rows):
    def answer(sql, binds):
        if "NAME_RESOLVE" in sql:
            for k, v in {"schema": "SCOTT", "part1": "PKG", "part2": "PROC", "dblink": None,
                         "part1_type": 9, "object_number": 1, "current_schema": "SCOTT"}.items():
                binds[k].setvalue(0, v)
    conn = Conn(answer=answer)

    class CatCur(Cur):
        def execute(self, sql, binds=None, **kw):
            super().execute(sql, binds, **kw)
            if "all_arguments" in sql:
                self.description = [(c.upper(),) for c in ARG_COLUMNS]
                self.rows = rows
            elif "all_procedures" in sql:
                self.rows = [("PROCEDURE", "1"), ("PROCEDURE", "2")]

        def fetchall(self):
            return self.rows

    conn.cursor = lambda: CatCur(conn)
    return conn


def test_overloads_lists_every_overload_with_its_form():
    """ALL_ARGUMENTS.OVERLOAD tells overloads apart (ORACLE_NOTES: Second
    review, "Overloads"); each gets the form a user types to pick it."""
    rows = [("1", 1, "P_N", "NUMBER", "NUMBER", None, None, None, "IN", "N"),
            ("2", 1, "P_N", "VARCHAR2", "VARCHAR2", None, None, None, "IN", "N")]
    sigs = backend().overloads(_catalog_conn(rows), "pkg.proc")
    assert [s.overload for s in sigs] == ["1", "2"]
    assert [ob.catalog.signature_form(s) for s in sigs] == ["PKG.PROC(NUMBER)", "PKG.PROC(VARCHAR2)"]
    assert sigs[0].extra["pls_types"] == {"P_N": "NUMBER"}


def test_check_values_assigns_each_value_to_a_typed_variable_in_one_round_trip():
    """One anonymous block; each input assigned to a variable of its type
    (from an allow-list, never from the dictionary's text); the first
    refusal names its parameter. CLOB inputs are not sent (any text fits)."""
    def refuse_second(sql, binds):
        binds["jc_bad"].setvalue(0, 2)
        binds["jc_err"].setvalue(0, "ORA-06502: PL/SQL: numeric or value error: number precision too large")

    sig = _sig((_p("A", "VARCHAR2"), "VARCHAR2"), (_p("N", "NUMBER", pls_type="NATURALN"), "NUMBER"),
               (_p("C", "CLOB"), "CLOB"), (_p("D", "INTERVAL DAY TO SECOND"), "INTERVAL DAY TO SECOND"),
               (_p("O", "NUMBER", "OUT"), "NUMBER"))
    sig.extra["pls_types"] = {"N": "NATURALN"}
    conn = Conn(answer=refuse_second)
    with pytest.raises(UsageError) as info:
        backend().check_values(conn, sig, {"A": "x", "N": -1, "C": "long", "D": "PT1S"})
    assert info.value.exit_code == 2
    assert info.value.message == ("parameter N is NATURALN: '-1' is refused by the database: "
                                  "ORA-06502: PL/SQL: numeric or value error: number precision too large")
    [(sql, binds)] = conn.sent
    assert "v_1 VARCHAR2(32767);" in sql and "v_2 NATURALN := 0;" in sql
    assert "v_3 INTERVAL DAY(9) TO SECOND(9);" in sql and "v_4" not in sql
    assert set(binds) == {"v1", "v2", "v3", "jc_bad", "jc_err"}
    assert binds["v3"].type is oracledb.DB_TYPE_INTERVAL_DS
    conn = Conn()                                               # nothing refused
    backend().check_values(conn, sig, {"A": "x"})
    assert len(conn.sent) == 1


def test_check_values_refuses_unreadable_values_before_any_round_trip():
    conn = Conn()
    sig = _sig((_p("R", "RAW"), "RAW"))
    with pytest.raises(UsageError, match="parameter R is RAW"):
        backend().check_values(conn, sig, {"R": "xyz"})
    assert conn.sent == []
    backend().check_values(conn, _sig((_p("C", "CLOB"), "CLOB")), {"C": "x"})
    assert conn.sent == []                                      # nothing to check: no round trip


@pytest.mark.parametrize("data_type, pls_type, declared", [
    ("NUMBER", "INTEGER", "INTEGER"), ("NUMBER", None, "NUMBER"), ("PLS_INTEGER", None, "PLS_INTEGER"),
    ("NUMBER", "SIMPLE_INTEGER", "SIMPLE_INTEGER := 0"), ("DATE", None, "DATE"),
    ("TIMESTAMP WITH LOCAL TIME ZONE", None, "TIMESTAMP(9) WITH LOCAL TIME ZONE"),
    ("INTERVAL YEAR TO MONTH", None, "INTERVAL YEAR(9) TO MONTH"), ("BOOLEAN", None, "BOOLEAN"),
    ("CLOB", None, None), ("BLOB", None, None), ("X); DROP TABLE T; --", None, None),
])
def test_check_types_come_from_an_allow_list(data_type, pls_type, declared):
    assert ob.binds.check_type(data_type, pls_type) == declared


def test_check_values_block_binds_what_it_names():
    block = ob.binds.check_values_sql(["NUMBER", "DATE"])
    assert re.fullmatch(r"\s*DECLARE\b.*\bEND;\s*", block, re.S)
    assert set(re.findall(r"(?<![:\w]):(\w+)", block)) == {"v1", "v2", "jc_bad", "jc_err"}
    assert block.count("EXCEPTION WHEN OTHERS THEN") == 2
    assert not re.search(r"\b(INSERT|UPDATE|DELETE|MERGE|COMMIT|CALL)\b", block)   # no side effect


def test_check_values_never_refuses_over_its_own_block():
    """ORA-06550 means jobctl's block did not compile on this database: the
    values are not at fault, so submit goes on and the call checks them."""
    def broken(sql, binds):
        raise ora_error("ORA-06550: line 3, column 9:\nPLS-00201: identifier 'JSON' must be declared",
                        6550)

    conn = Conn(answer=broken)
    backend().check_values(conn, _sig((_p("J", "JSON"), "JSON")), {"J": {"a": 1}})
    assert len(conn.sent) == 1
    assert ob.binds.check_type("NVARCHAR2", None) is None     # its size depends on the charset


def _static_sql(block: str) -> list[str]:
    """The static SQL inside a PL/SQL block, as plain SQL: `SELECT x INTO v
    FROM t;` without its INTO, DML up to its `;` (sqlglot parses SQL, not
    PL/SQL: ORACLE_NOTES "Testing without a server")."""
    out = []
    for m in re.finditer(r"\b(SELECT\b.*?;(?=\s*\n)|DELETE\s+FROM\b.*?;(?=\s*\n)|UPDATE\s+\w+\s+SET\b.*?;(?=\s*\n))", block,
                         re.S | re.I):
        stmt = m.group(1).rstrip(";")
        if "EXECUTE IMMEDIATE" in block[max(0, m.start() - 25):m.start()] or stmt.count("'") % 2:
            continue                                  # dynamic SQL, linted on its own
        out.append(re.sub(r"\bINTO\s+\w+(\s*,\s*\w+)*\s+FROM\b", "FROM", stmt, flags=re.I))
    return out


def test_static_sql_inside_the_plsql_blocks_is_oracle_sql():
    """What PL/SQL compiles statically must be right, or the block (the
    call's first round trip, the schema's procedures) fails to compile: the
    SELECTs of the fingerprint, CLEANUP_OLD_ASYNC_JOBS's DELETE and
    JOBCTL_PROGRESS's UPDATE parse as Oracle SQL. Syntax only: sqlglot does
    not know Oracle's views or types."""
    from jobctl.sqlfiles import read_sql, split_script

    units = split_script(read_sql("oracle", "create_async_jobs_table.sql"), "sqlplus")
    cleanup = next(u for u in units if "PROCEDURE CLEANUP_OLD_ASYNC_JOBS" in u)
    body = next(u for u in units if u.startswith("CREATE OR REPLACE PACKAGE BODY JOBCTL_PROGRESS"))
    statements = _static_sql(ob.STATE_BLOCK) + _static_sql(cleanup) + _static_sql(body)
    assert len(statements) >= 6, statements
    for stmt in statements:
        tree = sqlglot.parse_one(stmt, read="oracle")
        assert not isinstance(tree, exp.Command), stmt
