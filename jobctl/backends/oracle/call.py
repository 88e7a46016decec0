"""Calling a procedure: its first and last round trips (the marker, the
commit-inside check, --atomic, the job named for JOBCTL_PROGRESS),
DBMS_OUTPUT, the retry on discarded package state, result sets,
interrupting, and progress from LONGOPS (ORACLE_NOTES "Calling a
procedure", "Output, identity, progress", Second review)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from typing import Any

import oracledb

from ...errors import DatabaseError, JobctlError, UsageError
from ...model import UNSUPPORTED, Signature
from ..base import CallContext
from .binds import OracleBinds
from .dialect import bind_values
from .errors import db_text, error_code, error_info, is_killed, ora_code, server_text
from .jobsession import STATE_BLOCK
from .values import REF_CURSOR, base_type, cut_note, decimal_numbers, fetch_rows, result_value

#: DBMS_OUTPUT lines fetched per round trip, and the longest line PL/SQL
#: can put (ORACLE_NOTES "Output, identity, progress"; samples/dbms_output.py)
_OUTPUT_CHUNK = 100
_OUTPUT_LINE_MAX = 32767

#: RAC: V$ views show the local instance only and the watchdog's connection
#: may land on another one, so read GV$ by the call session's INST_ID and
#: fall back to V$ when GV$ is not granted (ORACLE_NOTES: Found in a
#: line-by-line review, "RAC")
GV_LONGOPS_SQL = """
SELECT sofar, totalwork
  FROM gv$session_longops
 WHERE inst_id = :inst_id AND sid = :sid AND serial# = :serial AND totalwork > 0
 ORDER BY last_update_time DESC
 FETCH FIRST 1 ROWS ONLY"""

LONGOPS_SQL = """
SELECT sofar, totalwork
  FROM v$session_longops
 WHERE sid = :sid AND serial# = :serial AND totalwork > 0
 ORDER BY last_update_time DESC
 FETCH FIRST 1 ROWS ONLY"""

CALL_UNDO_SQL = "ROLLBACK TO SAVEPOINT jobctl_call"
OUTPUT_GET_LINES_SQL = "BEGIN DBMS_OUTPUT.GET_LINES(:lines, :num_lines); END;"

#: JOBCTL_PROGRESS.SET_PROGRESS finds its job through a package variable set
#: here, at the start of every call, on every path (pool, hand-over,
#: daemon-free): CLIENT_IDENTIFIER is unset or stale on a reused connection
#: and a procedure may set it itself (ORACLE_NOTES: Second review, "Identity
#: is per job, not per connection"). Dynamic, so a schema without the package
#: (or with an older one, PLS-00302) runs its jobs all the same.
SET_JOB_BLOCK = """
    BEGIN
        EXECUTE IMMEDIATE 'BEGIN JOBCTL_PROGRESS.SET_JOB(:1); END;' USING :jc_job;
    EXCEPTION
        WHEN OTHERS THEN
            NULL;   -- not installed, older, invalid: progress only, never the job's failure
    END;"""

_DML = re.compile(r"^\s*(INSERT|UPDATE|DELETE|MERGE)\b", re.IGNORECASE)


def call_start_sql(*, marker: str | None = None, atomic: bool = False, state: bool = False) -> str:
    """Before each call, one round trip: the marker (CallContext.marker: a
    COMMIT inside commits it too), the transaction's id (created if none:
    DBMS_TRANSACTION.LOCAL_TRANSACTION_ID(TRUE)) to tell after the call
    whether the procedure committed inside, a savepoint to return to if the
    call must be repeated (ORA-04068), DBMS_OUTPUT without a size limit, the
    job for JOBCTL_PROGRESS, for --atomic COMMIT refused inside procedures
    (ALTER SESSION DISABLE COMMIT IN PROCEDURE: ORA-00034), and the session's
    fingerprint for reset_job_session (jobsession.STATE_BLOCK). The marker
    comes first: the savepoint is after it, so a repeat keeps it."""
    lines = ["BEGIN"]
    if marker:
        lines.append(f"    {marker.strip().rstrip(';')};")
    lines += ["    :jc_txn := DBMS_TRANSACTION.LOCAL_TRANSACTION_ID(TRUE);",
              "    SAVEPOINT jobctl_call;",
              "    DBMS_OUTPUT.ENABLE(NULL);" + SET_JOB_BLOCK]
    if atomic:
        lines.append("    EXECUTE IMMEDIATE 'ALTER SESSION DISABLE COMMIT IN PROCEDURE';")
    text = "\n".join(lines)
    if state:
        text += STATE_BLOCK
    return text + "\nEND;"


CALL_START_SQL = call_start_sql()


def call_end_sql(*, atomic: bool = False) -> str:
    """After the call (and after its error), one round trip: the
    transaction's id again (a different one, or none: the procedure ended
    the transaction it was given, i.e. committed inside), COMMIT allowed
    again, and the first DBMS_OUTPUT lines."""
    enable = ("\n    EXECUTE IMMEDIATE 'ALTER SESSION ENABLE COMMIT IN PROCEDURE';" if atomic else "")
    return ("BEGIN\n    :jc_txn := DBMS_TRANSACTION.LOCAL_TRANSACTION_ID;" + enable +
            "\n    DBMS_OUTPUT.GET_LINES(:lines, :num_lines);\nEND;")


#: ORA-04068 existing state of packages has been discarded, ORA-04061
#: existing state of a package has been invalidated
_PACKAGE_STATE_DISCARDED = frozenset({4068, 4061})

#: ORA-00034 cannot COMMIT in current PL/SQL session: what a COMMIT inside
#: meets under ALTER SESSION DISABLE COMMIT IN PROCEDURE
ATOMIC_REFUSED = ("a COMMIT or ROLLBACK inside the procedure was refused because the job was "
                  "submitted with --atomic (all or nothing); submit it without --atomic to let "
                  "the procedure commit")


class OracleCalls(OracleBinds):
    def call(self, conn: Any, sig: Signature, values: Mapping[str, Any],
             ctx: CallContext) -> dict[str, Any]:
        call_name = sig.extra.get("call_name") or self.normalize_name(sig.name)
        types = sig.extra.get("types", {})
        for p in sig.params:
            if p.kind == UNSUPPORTED and (p.is_output or p.name in values):
                raise UsageError(f"{sig.name}: parameter {p.name} is {p.type_name}, which jobctl "
                                 "cannot pass or receive")
        cur = conn.cursor()
        keyword_parameters: dict[str, Any] = {}
        out_vars: dict[str, Any] = {}
        for p in sig.params:
            keyword = self._keyword(p.name)
            data_type = types.get(p.name, "")
            if p.is_output:
                var = self._out_var(cur, p, data_type)
                if p.is_input and values.get(p.name) is not None:
                    var.setvalue(0, self._in_value(p, data_type, values[p.name]))
                keyword_parameters[keyword] = var
                out_vars[p.name] = var
            elif p.name in values:
                keyword_parameters[keyword] = self._in_bind(cur, p, data_type, values[p.name])
            # an IN parameter not given is left out, so its DEFAULT applies

        atomic = bool(getattr(ctx, "atomic", False))
        try:
            txn = self._start_call(conn, ctx, atomic)
        except oracledb.Error as exc:
            raise self._job_error(exc, sig.name) from None
        # result sets (REF CURSOR OUT, implicit results) are fetched with
        # exact numbers: the connection's handler applies to every cursor it
        # hands back, until they are read (values.decimal_numbers)
        handler = getattr(conn, "outputtypehandler", None)
        try:
            conn.outputtypehandler = decimal_numbers
        except AttributeError:
            handler = False
        try:
            return self._run(conn, cur, sig, call_name, keyword_parameters, out_vars, ctx, txn,
                             atomic)
        finally:
            if handler is not False:
                with contextlib.suppress(Exception):
                    conn.outputtypehandler = handler

    def _run(self, conn: Any, cur: Any, sig: Signature, call_name: str,
             keyword_parameters: dict[str, Any], out_vars: dict[str, Any], ctx: CallContext,
             txn: str | None, atomic: bool) -> dict[str, Any]:
        """The call itself, its output, and what it returns."""
        try:
            try:
                cur.callproc(call_name, keyword_parameters=keyword_parameters)
            except oracledb.Error as exc:
                if error_code(exc)[0] not in _PACKAGE_STATE_DISCARDED or not self._undo_call(cur):
                    raise
                # a package was recompiled since this session used it; its
                # state is reset now, so the call is repeated once from the
                # savepoint (ORACLE_NOTES "Errors → what jobctl says": retry once)
                cur.callproc(call_name, keyword_parameters=keyword_parameters)
        except oracledb.Error as exc:
            # lines put before the error still help
            self._note_commits(ctx, self._read_output(conn, ctx, txn, atomic), failed=True)
            raise self._job_error(exc, sig.name) from None
        self._note_commits(ctx, self._read_output(conn, ctx, txn, atomic), failed=False)
        limit = int(getattr(ctx, "result_rows", 1000))
        types = sig.extra.get("types", {})
        result: dict[str, Any] = {}
        for pname, var in out_vars.items():
            value = var.getvalue()
            if base_type(types.get(pname)) == REF_CURSOR:
                rows = self._rows(value, pname.lower(), limit, ctx) if value is not None else None
                result[pname.lower()] = rows
            else:
                result[pname.lower()] = result_value(value, limit)
        implicit = self._implicit_results(cur, limit, ctx)
        if implicit is not None:
            result.setdefault("implicit_results", implicit)
        return result

    def _start_call(self, conn: Any, ctx: CallContext, atomic: bool) -> str | None:
        """The call's first round trip (call_start_sql); returns the id of
        the transaction the procedure is given. The marker's binds are bound
        as `execute` binds them (datetimes as TIMESTAMP, booleans as 1/0), on
        a cursor of its own: input sizes set for them must not reach callproc."""
        cur = conn.cursor()
        marker = getattr(ctx, "marker", None)
        marker_sql, marker_binds = (marker if marker else (None, {}))
        if marker_sql and not _DML.match(marker_sql):
            self.execute(conn, marker_sql, marker_binds)      # not DML: a statement of its own
            marker_sql, marker_binds = None, {}
        state = self._reset_views is not False
        values, sizes = bind_values(marker_binds)
        txn = cur.var(str, 64)
        binds: dict[str, Any] = {**values, "jc_txn": txn, "jc_job": ctx.job_id}
        if state:
            binds["jc_state"], binds["jc_seen"] = cur.var(str, 32767), cur.var(int)
        if sizes:
            cur.setinputsizes(**sizes)
        cur.execute(call_start_sql(marker=marker_sql, atomic=atomic, state=state), binds)
        if state:
            if binds["jc_seen"].getvalue():
                self._remember(conn, {**self._session_info(conn),
                                      "baseline": binds["jc_state"].getvalue()})
            else:
                self._reset_views = False
        return txn.getvalue()

    @staticmethod
    def _undo_call(cur: Any) -> bool:
        """Back to the state before the call. ORA-04068 may come half way,
        when the procedure reaches a package after doing work; a procedure
        that committed has no savepoint left (ORA-01086): then no retry,
        since its work cannot be undone."""
        try:
            cur.execute(CALL_UNDO_SQL)
            return True
        except oracledb.Error:
            return False

    def _job_error(self, exc: BaseException, name: str) -> JobctlError:
        """What ERROR_MSG records: the database's own text (ORA-20001 ...
        ORA-06512 ...), except where a translation says more."""
        err = error_info(exc)
        if err is None:
            return DatabaseError(f"{name}: {exc}")
        code = ora_code(err)
        if err.code == 34:
            return DatabaseError(f"{db_text(err)}\n{ATOMIC_REFUSED}", code=code)
        if err.full_code == "DPY-4011" or (code and err.full_code.startswith("DPY-")):
            # the server's own line first (ORA-00028 your session has been
            # killed), never the driver's paraphrase alone (ORACLE_NOTES:
            # Second review, "ORA-00031 is success", "Never retry a kill")
            return DatabaseError(server_text(err), transient=self.is_transient(exc), code=code,
                                 killed=is_killed(err))
        if (err.code == 6550 and "PLS-00201" in err.message) or (
                err.full_code.startswith("DPY-") and err.full_code != "DPY-4024"):
            return self.translate_error(exc)
        return DatabaseError(db_text(err), transient=self.is_transient(exc), code=code)

    @staticmethod
    def _note_commits(ctx: CallContext, ended: bool | None, *, failed: bool) -> None:
        """What the transaction ids say (see _read_output). The procedure ended
        the transaction it was given: a COMMIT, or a full ROLLBACK, which the
        ids cannot tell apart. After a failed call with a marker, the marker
        row tells them apart exactly, so that is left to it (commits_known
        stays False and the worker reads the marker); otherwise an ended
        transaction counts as committed inside (never retried). Unknown
        (the connection died): left to the marker as well."""
        if ended is None:
            return
        if ended:
            if failed and getattr(ctx, "marker", None) is not None:
                return
            ctx.note_self_commit()
        ctx.commits_known = True

    def _read_output(self, conn: Any, ctx: CallContext, txn: str | None = None,
                     atomic: bool = False) -> bool | None:
        """DBMS_OUTPUT lines, readable only now and in this session
        (samples/dbms_output.py), the first ones in the round trip that reads
        the transaction's id again. Returns whether the procedure ended the
        transaction it was given (another id, or none), None when unknown.
        Best effort: a dead connection has no lines."""
        ended: bool | None = None
        try:
            cur = conn.cursor()
            lines_var = cur.arrayvar(str, _OUTPUT_CHUNK, _OUTPUT_LINE_MAX)
            count_var = cur.var(int)
            txn_var = cur.var(str, 64)
            sql = call_end_sql(atomic=atomic)
            binds: dict[str, Any] = {"lines": lines_var, "num_lines": count_var, "jc_txn": txn_var}
            while True:
                count_var.setvalue(0, _OUTPUT_CHUNK)
                cur.execute(sql, binds)
                if "jc_txn" in binds:
                    if txn is not None:
                        ended = txn_var.getvalue() != txn
                    sql, binds = OUTPUT_GET_LINES_SQL, {"lines": lines_var, "num_lines": count_var}
                count = count_var.getvalue() or 0
                for line in (lines_var.getvalue() or [])[:count]:
                    ctx.log(line or "")
                if count < _OUTPUT_CHUNK:
                    break
        except oracledb.Error:
            pass
        return ended

    @staticmethod
    def _rows(cursor: Any, name: str, limit: int, ctx: CallContext) -> list[dict[str, Any]]:
        rows, cut = fetch_rows(cursor, limit)
        if cut:
            ctx.log(cut_note(name, limit))
        return rows

    def _implicit_results(self, cur: Any, limit: int, ctx: CallContext) -> list[Any] | None:
        """Result sets the procedure passed to DBMS_SQL.RETURN_RESULT, each as
        an array of row objects (`implicit_results`), or None when it passed
        none (ORACLE_NOTES: Second review, "Implicit results and REF
        CURSORs": thin mode, Oracle 12.1+)."""
        try:
            cursors = cur.getimplicitresults()
        except (oracledb.Error, AttributeError):
            return None
        if not cursors:
            return None
        return [self._rows(c, f"implicit result {i}", limit, ctx) for i, c in enumerate(cursors, 1)]

    def interrupt(self, conn: Any) -> None:
        """From the watchdog thread: thin mode's cancel() breaks the running
        call, which raises ORA-01013; the connection stays usable and the
        runner rolls back (ORACLE_NOTES "Long calls, cancel, timeout";
        tests/test_1100_connection.py test_1126)."""
        if conn is not None:
            conn.cancel()

    def poll_progress(self, conn: Any, call_conn: Any, ctx: CallContext) -> None:
        """Progress a procedure publishes with SET_SESSION_LONGOPS, read from
        another session: GV$SESSION_LONGOPS by the call session's instance
        (RAC), else V$SESSION_LONGOPS; a view that answers ORA-00942/01031 is
        not granted and is not asked again (ORACLE_NOTES "Output, identity,
        progress"). Oracle also lists its own long operations (scans over
        6 s) there; the most recently updated one wins."""
        if not self._longops_views or conn is None or call_conn is None:
            return
        try:
            sid, serial = call_conn.session_id, call_conn.serial_num
        except (AttributeError, oracledb.Error):
            return             # thick mode: no local SID/SERIAL#; progress via the package
        instance: Any = self._session_info(call_conn).get("instance")
        while self._longops_views:
            sql = self._longops_views[0]
            if sql is GV_LONGOPS_SQL and instance is None:
                self._longops_views.pop(0)
                continue
            binds = {"sid": sid, "serial": serial}
            if sql is GV_LONGOPS_SQL:
                binds["inst_id"] = int(instance)
            try:
                row = self.execute(conn, sql, binds).fetchone()
                break
            except oracledb.Error as exc:
                if error_code(exc)[0] in (942, 1031):
                    self._longops_views.pop(0)
                    continue
                return
        else:
            return
        if row and row[1]:
            ctx.progress(100.0 * float(row[0] or 0) / float(row[1]))
