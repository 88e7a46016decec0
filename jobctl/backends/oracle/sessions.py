"""The call's server session: how it is named (DB_SESSION), whether it
still runs, and how it is ended (issue 9 item 2: orphaned sessions)."""

from __future__ import annotations

import contextlib
import re
from typing import Any

import oracledb

from ...errors import UsageError
from .connect import SESSION_INFO_SQL
from .errors import error_code
from ..base import PolledCancel
from .shared import OracleBase

#: SERIAL# for thick mode, where `Connection.serial_num` does not exist
#: (src/oracledb/connection.py: "available only in python-oracledb Thin
#: mode"); needs SELECT on V_$SESSION, so best effort
SERIAL_SQL = "SELECT serial# FROM v$session WHERE sid = :sid"

#: a killed session stays in V$SESSION with STATUS 'KILLED' until PMON
#: cleans it up, and a session ended by a resource limit reads 'SNIPED':
#: neither is alive (ORACLE_NOTES: Second review, "A killed session lingers")
GV_SESSION_ALIVE_SQL = """
SELECT COUNT(*)
  FROM gv$session
 WHERE inst_id = :inst_id AND sid = :sid AND serial# = :serial
   AND status NOT IN ('KILLED', 'SNIPED')"""

SESSION_ALIVE_SQL = """
SELECT COUNT(*)
  FROM v$session
 WHERE sid = :sid AND serial# = :serial
   AND status NOT IN ('KILLED', 'SNIPED')"""


class OracleSessions(PolledCancel, OracleBase):
    def session_id(self, conn: Any) -> str:
        """"SID,SERIAL#,@INST_ID" of the session behind `conn`, as ALTER SYSTEM
        KILL SESSION takes it (ORACLE_NOTES: Found in a line-by-line review,
        "A break is only a marker"). Thin mode knows SID and SERIAL# locally;
        thick mode asks V$SESSION (best effort: SERIAL# may stay unknown)."""
        info = self._session_info(conn)
        instance = info.get("instance")
        sid: Any = None
        serial: Any = None
        try:
            sid, serial = conn.session_id, conn.serial_num
        except (AttributeError, oracledb.Error):
            pass
        if sid is None or instance is None:
            with conn.cursor() as cur:
                out = {"current_schema": cur.var(str, 128), "instance": cur.var(str, 40),
                       "sid": cur.var(str, 40)}
                cur.execute(SESSION_INFO_SQL, out)
                info = {**self._session_info(conn), **{k: v.getvalue() for k, v in out.items()}}
                self._remember(conn, info)
            instance = info.get("instance")
            sid = sid if sid is not None else info.get("sid")
        if serial is None:
            try:
                with conn.cursor() as cur:
                    cur.execute(SERIAL_SQL, {"sid": int(sid)})
                    row = cur.fetchone()
                    serial = row[0] if row else None
            except oracledb.Error:
                serial = None
        return f"{int(sid)},{'' if serial is None else int(serial)},@{int(instance or 1)}"

    @staticmethod
    def _parse_session(session: str) -> tuple[int, int, int]:
        m = re.fullmatch(r"\s*(\d+)\s*,\s*(\d+)\s*,\s*@(\d+)\s*", session or "")
        if not m:
            raise UsageError(f"invalid Oracle session {session!r}: expected SID,SERIAL#,@INST_ID")
        return int(m.group(1)), int(m.group(2)), int(m.group(3))

    def session_alive(self, conn: Any, session: str) -> bool | None:
        """Whether the session still exists: GV$SESSION (any RAC instance), or
        V$SESSION when only that is granted and the session is on this
        connection's instance; None when neither may be read."""
        try:
            sid, serial, inst_id = self._parse_session(session)
        except UsageError:
            return None        # SERIAL# was not known when it was recorded
        try:
            cur = self.execute(conn, GV_SESSION_ALIVE_SQL,
                               {"inst_id": inst_id, "sid": sid, "serial": serial})
            return bool(cur.fetchone()[0])
        except oracledb.Error as exc:
            if error_code(exc)[0] not in (942, 1031):
                raise self.translate_error(exc) from None
        here = self._session_info(conn).get("instance")
        if here is None or int(here) != inst_id:
            return None
        try:
            cur = self.execute(conn, SESSION_ALIVE_SQL, {"sid": sid, "serial": serial})
            return bool(cur.fetchone()[0])
        except oracledb.Error as exc:
            if error_code(exc)[0] in (942, 1031):
                return None
            raise self.translate_error(exc) from None

    def kill_session_sql(self, session: str) -> str:
        """The statement a DBA runs to end the session for good."""
        sid, serial, inst_id = self._parse_session(session)
        return f"ALTER SYSTEM KILL SESSION '{sid},{serial},@{inst_id}' IMMEDIATE"

    def end_session(self, conn: Any, session: str) -> bool:
        """`jobctl cancel` of an orphaned job: kill its session when this user
        holds ALTER SYSTEM; False (the caller then prints kill_session_sql for
        a DBA) when it does not. A break cannot reach a session whose client
        died (ORACLE_NOTES: Found in a line-by-line review, "A break is only a
        marker"), so killing it is the only way to stop the work.

        The statement runs on a connection of its own: thin mode answers
        ORA-00031 ("session marked for kill": the kill was accepted and
        completes later) with DPY-4011 and closes the connection that issued
        it (ORACLE_NOTES: Second review, "ORA-00031 is success"), and the
        caller still writes `cancelled` on `conn`."""
        try:
            statement = self.kill_session_sql(session)
        except UsageError:
            return False       # SERIAL# unknown: only a DBA can pick the session
        killer = self.connect()
        try:
            with killer.cursor() as cur:
                cur.execute(statement)
        except oracledb.Error as exc:
            code = error_code(exc)[0]
            if code == 30:     # ORA-00030: the session is already gone
                return True
            if code == 1031:   # ORA-01031: insufficient privileges
                return False
            if code != 31:     # ORA-00031: marked for kill, i.e. accepted
                raise self.translate_error(exc) from None
        finally:
            with contextlib.suppress(Exception):
                killer.close()
        # a killed session lingers as STATUS 'KILLED', which reads not alive;
        # None (V$ not readable) after an accepted kill is taken as ended too
        return self.session_alive(conn, session) is not True

    def liveness_dir(self) -> None:
        return None  # the heartbeat row is written on its own connection, never blocked by the call
