"""The Oracle backend's sessions (issue 23), checked without an Oracle server.
Values and types (issue 24) are in test_oracle_offline_values.py.

What these tests prove: which statements and binds the backend sends (a
job's name, the session setup, the reset between jobs, the call's first and
last round trips with the marker, --atomic and the commit-inside check, the
kill of an orphan), and how it reads the driver's own error objects
(ORA-00028 inside DPY-4011, refused connections ...).

What they cannot prove (ORACLE_NOTES "Testing without a server", Second
review "What the offline tests cannot see"): that the server answers as the
fakes do — that LOCAL_TRANSACTION_ID changes after a COMMIT inside, that
ALTER SESSION DISABLE COMMIT IN PROCEDURE raises ORA-00034, that V$PARAMETER
shows ALTER SESSION changes as MODIFIED, that a killed session reads STATUS
'KILLED', that a REF CURSOR comes back as a cursor. `jobctl doctor` proves
those on the user's database (backends/oracle/checks_sessions.py).

The fakes (oracle_fakes.py) only record what the backend asks of a driver
cursor; they imitate no database behaviour beyond answering the binds the
test sets.
"""

from __future__ import annotations

import datetime as dt
import re

import oracledb
import pytest
import sqlglot
from oracledb import errors as ora_errors
from sqlglot import exp

from jobctl.backends import get_backend
from jobctl.backends import oracle as ob
from jobctl.backends.base import CallContext
from jobctl.config import parse_dsn
from jobctl.errors import DatabaseError, UsageError
from oracle_fakes import JOB, Conn, _sig, backend, ora_error


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
