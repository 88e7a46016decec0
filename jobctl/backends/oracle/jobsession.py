"""A job's call session: its name (CLIENT_IDENTIFIER, MODULE, ACTION), the
user's session setup, and what happens to the session between two jobs
(ORACLE_NOTES: Second review, "Identity is per job, not per connection",
"Session time zone", "NLS", "Session state between jobs").

The reset between jobs, and why it replaces the connection so often: package
state is reset cheaply (DBMS_SESSION.MODIFY_PACKAGE_STATE(REINITIALIZE)),
but ALTER SESSION settings, CURRENT_SCHEMA, rows in session-duration global
temporary tables and DBMS_LOCK user locks cannot be undone from outside the
job ("Session state between jobs": what cannot be reset cheaply is reset by
a new connection). Some of them can be *seen*: the same block that resets
the packages reads a fingerprint of the session (NLS_SESSION_PARAMETERS,
the time zone, CURRENT_SCHEMA, edition, container, enabled roles,
application contexts, private temporary tables, and, from the V$ views,
parameters changed by ALTER SESSION (V$PARAMETER.ISMODIFIED = 'MODIFIED',
Oracle Database Reference), user locks (V$LOCK type UL), temporary segments
(V$TEMPSEG_USAGE: the rows of session GTTs) and parallel/trace switches
(V$SESSION)). The connection serves the next job only when that fingerprint
equals the one taken when the job's call started. When the V$ views cannot
be read (no SELECT_CATALOG_ROLE or grants), what they would show is
invisible, so every job gets a new connection: the honest reading of "where
a reset is not possible, replace the connection". Not seen even then:
`ALTER SESSION SET EVENTS` and `ALTER SESSION SET ISOLATION_LEVEL` (no view
shows them); docs/oracle-sessions.md says so.
"""

from __future__ import annotations

import re
from typing import Any

import oracledb

from ...errors import DatabaseError
from ...sqlfiles import segments, split_script
from .connect import client_time_zone
from .errors import error_info, one_line, ora_code, server_text
from .shared import OracleBase

MODULE_CALL = "jobctl"
IDLE_ACTION = "idle"

#: the session's fingerprint, a PL/SQL block of its own (nested in the call's
#: first block and in the reset); binds :jc_state (text) and :jc_seen (1
#: when the V$ views answered). Sums of ORA_HASH keep long lists short.
#: Everything that could fail at run time is caught (the call must never fail
#: over it); what is compiled statically names only views every user may
#: read (NLS_SESSION_PARAMETERS, SESSION_ROLES, SESSION_CONTEXT, DUAL), the
#: rest is dynamic SQL, so a missing grant or an older release is an error
#: at run time, caught, never a compilation error of the call's block.
STATE_BLOCK = """
    DECLARE
        e_no_view EXCEPTION;
        PRAGMA EXCEPTION_INIT(e_no_view, -942);
        e_no_priv EXCEPTION;
        PRAGMA EXCEPTION_INIT(e_no_priv, -1031);
        v_state VARCHAR2(32767);
        v_part  VARCHAR2(4000);
        v_count NUMBER;
        v_zone  VARCHAR2(100);
        v_seen  PLS_INTEGER := 0;
    BEGIN
      BEGIN
        SELECT LISTAGG(parameter || '=' || value, ';') WITHIN GROUP (ORDER BY parameter)
          INTO v_part FROM nls_session_parameters;
        SELECT SESSIONTIMEZONE INTO v_zone FROM dual;
        v_state := 'nls:' || v_part || '|zone:' || v_zone
            || '|schema:' || SYS_CONTEXT('USERENV', 'CURRENT_SCHEMA')
            || '|edition:' || SYS_CONTEXT('USERENV', 'CURRENT_EDITION_NAME')
            || '|container:' || SYS_CONTEXT('USERENV', 'CON_NAME');
        SELECT COUNT(*) || ':' || SUM(ORA_HASH(role)) INTO v_part FROM session_roles;
        v_state := v_state || '|roles:' || v_part;
        SELECT COUNT(*) || ':' || SUM(ORA_HASH(namespace || '.' || attribute || '=' || value))
          INTO v_part FROM session_context;
        v_state := v_state || '|contexts:' || v_part;
        BEGIN
            EXECUTE IMMEDIATE 'SELECT COUNT(*) FROM user_private_temp_tables' INTO v_count;
            v_state := v_state || '|private_temp_tables:' || v_count;
        EXCEPTION
            WHEN e_no_view THEN NULL;   -- before 18c there are none
        END;
        BEGIN
            EXECUTE IMMEDIATE q'[SELECT COUNT(*) || ':' || SUM(ORA_HASH(name || '=' || value))
                                   FROM v$parameter WHERE ismodified = 'MODIFIED']' INTO v_part;
            v_state := v_state || '|parameters:' || v_part;
            EXECUTE IMMEDIATE q'[SELECT COUNT(*) FROM v$lock
                                  WHERE sid = SYS_CONTEXT('USERENV', 'SID') AND type = 'UL']'
              INTO v_count;
            v_state := v_state || '|user_locks:' || v_count;
            EXECUTE IMMEDIATE q'[SELECT COUNT(*) FROM v$tempseg_usage u
                                   JOIN v$session s ON s.saddr = u.session_addr
                                  WHERE s.sid = SYS_CONTEXT('USERENV', 'SID')]' INTO v_count;
            v_state := v_state || '|temp_segments:' || v_count;
            EXECUTE IMMEDIATE q'[SELECT pdml_status || ',' || pddl_status || ',' || pq_status
                                        || ',' || sql_trace
                                   FROM v$session WHERE sid = SYS_CONTEXT('USERENV', 'SID')]'
              INTO v_part;
            v_state := v_state || '|parallel_trace:' || v_part;
            v_seen := 1;
        EXCEPTION
            WHEN e_no_view OR e_no_priv THEN NULL;
        END;
      EXCEPTION
        WHEN OTHERS THEN      -- never the job's failure: unknown, so the connection is replaced
            v_state := NULL;
            v_seen := 0;
      END;
        :jc_state := v_state;
        :jc_seen := v_seen;
    END;"""

#: after a job, one round trip: package state reset (effective once this
#: block ends: DBMS_SESSION documentation), the job's name cleared (the slot
#: is idle), DBMS_OUTPUT off, COMMIT allowed again (--atomic), and the
#: fingerprint read
RESET_SQL = f"""
BEGIN
    DBMS_SESSION.MODIFY_PACKAGE_STATE(DBMS_SESSION.REINITIALIZE);
    DBMS_SESSION.CLEAR_IDENTIFIER;
    DBMS_APPLICATION_INFO.SET_MODULE('{MODULE_CALL}', '{IDLE_ACTION}');
    DBMS_OUTPUT.DISABLE;
    EXECUTE IMMEDIATE 'ALTER SESSION ENABLE COMMIT IN PROCEDURE';{STATE_BLOCK}
END;"""

_PLSQL_UNIT = re.compile(r"^\s*(DECLARE|BEGIN)\b", re.IGNORECASE)


def setup_statements(text: str | None) -> list[str]:
    """The user's session_setup as single statements for EXECUTE IMMEDIATE:
    SQL without its `;`, a PL/SQL block (DECLARE/BEGIN, ended by a `/`
    line or the end of the text) with its `END;`. Several SQL statements
    may share a line: they are split at `;` outside quotes and comments."""
    out: list[str] = []
    for unit in split_script(text or "", "sqlplus"):
        if _PLSQL_UNIT.match(unit):
            out.append(unit if unit.rstrip().endswith(";") else unit.rstrip() + ";")
            continue
        current = ""
        for is_code, piece in segments(unit):
            if not is_code:
                if not piece.startswith(("--", "/*")):
                    current += piece            # a quoted string or identifier
                continue
            parts = piece.split(";")
            for part in parts[:-1]:
                current += part
                if current.strip():
                    out.append(current.strip())
                current = ""
            current += parts[-1]
        if current.strip():
            out.append(current.strip())
    return out


def setup_block(count: int) -> str:
    """The session setup as one anonymous block: one round trip."""
    return "BEGIN\n" + "".join(f"    EXECUTE IMMEDIATE :s{i};\n" for i in range(1, count + 1)) + "END;"


class OracleJobSessions(OracleBase):
    def start_job_session(self, conn: Any, job_id: str) -> None:
        """Before a job's call, on the call connection: the job's name where a
        DBA looks (CLIENT_IDENTIFIER = the job id, MODULE 'jobctl', ACTION =
        the job id; the watch session says 'jobctl watch'), then the user's
        session_setup. The names are write-only attributes sent with the
        next round trip (src/oracledb/connection.py, the setters): with no
        setup they ride on the call's own first round trip, at no cost.

        A connection opened without a job (a pool's) had its zone set to UTC
        for bookkeeping: the client's zone is given back here, in the same
        round trip as the setup, so the procedure sees what SQL*Plus shows
        (ORACLE_NOTES: Second review, "Session time zone"). NLS settings come
        only from session_setup: thin mode ignores NLS_LANG and
        NLS_DATE_FORMAT (ORACLE_NOTES: Second review, "NLS")."""
        conn.client_identifier = job_id
        conn.module = MODULE_CALL
        conn.action = job_id[:32]
        info = self._session_info(conn)
        statements: list[str] = []
        if info.get("zone_forced"):
            statements.append(f"ALTER SESSION SET TIME_ZONE = {client_time_zone()}")
        statements += setup_statements(self.session_setup_text())
        if not statements:
            return
        try:
            with conn.cursor() as cur:
                cur.execute(setup_block(len(statements)),
                            {f"s{i}": s for i, s in enumerate(statements, 1)})
        except oracledb.Error as exc:
            err = error_info(exc)
            text = one_line(server_text(err)) if err is not None else str(exc)
            raise DatabaseError(f"session_setup failed: {text}", code=ora_code(err),
                                transient=self.is_transient(exc)) from None
        if info:
            self._remember(conn, {**info, "zone_forced": False})

    def session_setup_text(self) -> str | None:
        """ConnectionSettings.session_setup (the profile key or the DSN's
        `session_setup=` option, both kept in the settings' options)."""
        text = getattr(self.settings, "session_setup", None)
        return text if text is not None else self.settings.options.get("session_setup")

    def reset_job_session(self, conn: Any) -> bool:
        """After a job, before the connection serves another: True when the
        session is as the job found it, False when it must be replaced (see
        the module's docstring for what is reset, what is only seen, and
        why a user who cannot read the V$ views gets a new connection per
        job). Never raises: a connection that cannot answer is replaced."""
        if self._reset_views is False:
            return False        # the views cannot be read: nothing would be seen
        info = self._session_info(conn)
        baseline = info.get("baseline")
        try:
            if conn.transaction_in_progress:
                return False    # the job's work was neither committed nor rolled back
            with conn.cursor() as cur:
                state, seen = cur.var(str, 32767), cur.var(int)
                cur.execute(RESET_SQL, {"jc_state": state, "jc_seen": seen})
        except (oracledb.Error, AttributeError):
            return False
        if not seen.getvalue():
            self._reset_views = False
            return False
        self._reset_views = True
        return baseline is not None and state.getvalue() == baseline
