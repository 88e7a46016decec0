"""Calling a procedure: binds, OUT variables, DBMS_OUTPUT, the retry on
discarded package state, interrupting, and progress from LONGOPS
(ORACLE_NOTES "Calling a procedure", "Output, identity, progress")."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import oracledb

from ...errors import DatabaseError, JobctlError, UsageError
from ...model import BOOLEAN, INTEGER, JSON, NUMBER, TEXT, TIMESTAMP, UNSUPPORTED, Param, Signature
from ...params import to_json_value
from ..base import CallContext
from .catalog import is_plain_identifier
from .errors import error_code, db_text, error_info
from .shared import UTC as _UTC
from .shared import OracleBase

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

#: before each call: a savepoint to return to if the call must be repeated
#: (ORA-04068), and DBMS_OUTPUT without a size limit, in one round trip
CALL_START_SQL = "BEGIN SAVEPOINT jobctl_call; DBMS_OUTPUT.ENABLE(NULL); END;"
CALL_UNDO_SQL = "ROLLBACK TO SAVEPOINT jobctl_call"
OUTPUT_GET_LINES_SQL = "BEGIN DBMS_OUTPUT.GET_LINES(:lines, :num_lines); END;"

#: driver types a plain Python value already binds as (src/oracledb/impl/base/
#: metadata.pyx `from_value`: int/Decimal → NUMBER, bool → BOOLEAN, date and
#: datetime → DATE); others need a typed variable
_PLAIN_BINDS = (oracledb.DB_TYPE_NUMBER, oracledb.DB_TYPE_BOOLEAN, oracledb.DB_TYPE_DATE)

#: ORA-04068 existing state of packages has been discarded, ORA-04061
#: existing state of a package has been invalidated
_PACKAGE_STATE_DISCARDED = frozenset({4068, 4061})


class OracleCalls(OracleBase):
    @staticmethod
    def _prepare(p: Param, value: Any) -> Any:
        if p.kind == TIMESTAMP and isinstance(value, dt.datetime) and value.tzinfo is not None:
            # the session zone is UTC, and thin mode sends TIMESTAMP WITH TIME
            # ZONE values with offset +00:00 (src/oracledb/impl/base/encoders.pyx
            # encode_timestamp_tz): UTC wall time is right for every flavour
            value = value.astimezone(_UTC).replace(tzinfo=None)
        return value

    def _in_bind(self, cur: Any, p: Param, data_type: str, value: Any) -> Any:
        """A coerced input as callproc should bind it (ORACLE_NOTES "Calling a
        procedure", mapping list): a NULL of a non-string type, and the types
        the driver would guess wrong, get a typed variable."""
        value = self._prepare(p, value)
        db_type = self._db_type(p, (data_type or "").upper())
        if db_type is None or (value is not None and db_type in _PLAIN_BINDS):
            return value
        if db_type is oracledb.DB_TYPE_NVARCHAR:
            var = cur.var(db_type, max(1, len(value or "")))
        else:
            var = cur.var(db_type)
        var.setvalue(0, value)
        return var

    @staticmethod
    def _db_type(p: Param, data_type: str) -> Any:
        """The driver type for a parameter, or None where a plain Python value
        binds correctly (str → VARCHAR, int/Decimal → NUMBER, DATE)."""
        if p.kind in (NUMBER, INTEGER):
            return oracledb.DB_TYPE_NUMBER
        if p.kind == BOOLEAN:
            return oracledb.DB_TYPE_BOOLEAN
        if p.kind == JSON:
            return oracledb.DB_TYPE_JSON
        if p.kind == TIMESTAMP:
            if data_type == "DATE":
                return oracledb.DB_TYPE_DATE
            if "LOCAL TIME ZONE" in data_type:
                return oracledb.DB_TYPE_TIMESTAMP_LTZ
            if "TIME ZONE" in data_type:
                return oracledb.DB_TYPE_TIMESTAMP_TZ
            return oracledb.DB_TYPE_TIMESTAMP      # keeps fractional seconds
        if p.kind == TEXT:
            if data_type == "CLOB":
                return oracledb.DB_TYPE_CLOB
            if data_type == "NCLOB":
                return oracledb.DB_TYPE_NCLOB
            if data_type in ("NVARCHAR2", "NCHAR"):
                # national character set: a plain str binds as VARCHAR and
                # loses what the database character set cannot hold
                # (ORACLE_NOTES: Found in a line-by-line review, "National
                # character types")
                return oracledb.DB_TYPE_NVARCHAR
        return None

    def _out_var(self, cur: Any, p: Param, data_type: str) -> Any:
        """A variable for an OUT or IN OUT parameter."""
        data_type = (data_type or "").upper()
        if p.kind == NUMBER:
            # NUMBER holds 38 digits: a Decimal variable returns them all,
            # where the driver's default would hand back a float
            return cur.var(Decimal)
        if p.kind == INTEGER:
            return cur.var(int)
        if p.kind == TEXT and data_type in ("NVARCHAR2", "NCHAR"):
            return cur.var(oracledb.DB_TYPE_NVARCHAR, _OUTPUT_LINE_MAX)
        if p.kind == TEXT and data_type not in ("CLOB", "NCLOB"):
            return cur.var(str, _OUTPUT_LINE_MAX)  # the default size is 4000
        db_type = self._db_type(p, data_type)
        if db_type is None:
            raise UsageError(f"parameter {p.name} is {p.type_name}, which jobctl cannot receive")
        return cur.var(db_type)

    @staticmethod
    def _keyword(name: str) -> str:
        """A parameter name as callproc pastes it: `NAME => :n`."""
        keyword = name if is_plain_identifier(name) else f'"{name}"'
        if '"' in name or not oracledb.is_simple_sql_name(keyword):
            raise UsageError(f"invalid parameter name {name!r}")
        return keyword

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
                    var.setvalue(0, self._prepare(p, values[p.name]))
                keyword_parameters[keyword] = var
                out_vars[p.name] = var
            elif p.name in values:
                keyword_parameters[keyword] = self._in_bind(cur, p, data_type, values[p.name])
            # an IN parameter not given is left out, so its DEFAULT applies

        try:
            # unlimited buffer: the 20000-byte default raises ORU-10027 and
            # would fail the job (ORACLE_NOTES "Output, identity, progress")
            cur.execute(CALL_START_SQL)
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
            self._read_output(conn, ctx)       # lines put before the error still help
            raise self._job_error(exc, sig.name) from None
        self._read_output(conn, ctx)
        result = {}
        for pname, var in out_vars.items():
            value = var.getvalue()
            if hasattr(value, "read"):        # an OUT CLOB arrives as a LOB
                value = value.read()
            result[pname.lower()] = to_json_value(value)
        return result

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
        if (err.code == 6550 and "PLS-00201" in err.message) or (
                err.full_code.startswith("DPY-") and err.full_code != "DPY-4024"):
            return self.translate_error(exc)
        return DatabaseError(db_text(err), transient=self.is_transient(exc))

    def _read_output(self, conn: Any, ctx: CallContext) -> None:
        """DBMS_OUTPUT lines, readable only now and in this session
        (samples/dbms_output.py). Best effort: a dead connection has none."""
        try:
            cur = conn.cursor()
            lines_var = cur.arrayvar(str, _OUTPUT_CHUNK, _OUTPUT_LINE_MAX)
            count_var = cur.var(int)
            while True:
                count_var.setvalue(0, _OUTPUT_CHUNK)
                cur.execute(OUTPUT_GET_LINES_SQL, {"lines": lines_var, "num_lines": count_var})
                count = count_var.getvalue() or 0
                for line in lines_var.getvalue()[:count]:
                    ctx.log(line or "")
                if count < _OUTPUT_CHUNK:
                    break
        except oracledb.Error:
            pass

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
