"""Oracle Database through python-oracledb: thin mode (no Oracle Client) by
default, thick mode when a profile asks for it (`oracle_client`, `thick`).

One module per role of the backend, combined into `OracleBackend`:
connect.py (DSN, driver options, passwords, thick mode), sessions.py (the
call's server session: DB_SESSION, alive, kill), jobsession.py (a job's
name, the user's session setup, the reset between jobs), dialect.py
(running SQL, times, the schema scripts), errors.py (what a driver error
means), catalog.py (finding a procedure, its signature and overloads),
binds.py (values as bound, the check at submit), values.py (intervals, hex,
result sets), call.py (the call, DBMS_OUTPUT, commits inside, progress),
and checks.py / checks_sessions.py (`jobctl doctor`'s Oracle checks,
imported by doctor only).

No Oracle server runs where this was written. Every driver or database fact
the code relies on names its source: `ORACLE_NOTES "section"` is a section of
the project's shared Oracle notes, `src/...`, `tests/...` and
`samples/...` are paths in the oracle/python-oracledb repository. Points that
could not be confirmed are marked "unconfirmed" and coded defensively.

oracledb is imported in this package and nowhere else: it loads only for an
`oracle://` DSN, so other commands never pay for the driver.
"""

from __future__ import annotations

import weakref
from typing import Any, ClassVar

from ... import config
from .call import (CALL_START_SQL, CALL_UNDO_SQL, GV_LONGOPS_SQL, LONGOPS_SQL,
                   OUTPUT_GET_LINES_SQL, OracleCalls, call_end_sql, call_start_sql)
from .catalog import (ARGUMENTS_SQL, NAME_RESOLVE_SQL, PROCEDURE_LIST_SQL, PROCEDURES_SQL,
                      OracleCatalog, arguments_sql, procedures_sql, type_kind)
from .connect import (DEFAULT_EXPIRE_TIME_MIN, DRIVER_OPTIONS, SESSION_INFO_SQL,
                      SESSION_SETUP_SQL, OracleConnections, client_info, client_time_zone,
                      load_client)
from .dialect import COMPILE_ERRORS_SQL, OracleDialect
from .errors import OracleErrors
from .jobsession import RESET_SQL, STATE_BLOCK, OracleJobSessions, setup_block, setup_statements
from .sessions import GV_SESSION_ALIVE_SQL, SERIAL_SQL, SESSION_ALIVE_SQL, OracleSessions

__all__ = [
    "ARGUMENTS_SQL", "BACKEND", "CALL_START_SQL", "CALL_UNDO_SQL", "COMPILE_ERRORS_SQL",
    "DEFAULT_EXPIRE_TIME_MIN", "DRIVER_OPTIONS", "GV_LONGOPS_SQL", "GV_SESSION_ALIVE_SQL",
    "LONGOPS_SQL", "NAME_RESOLVE_SQL", "OUTPUT_GET_LINES_SQL", "PROCEDURE_LIST_SQL",
    "PROCEDURES_SQL", "SERIAL_SQL",
    "SESSION_ALIVE_SQL", "SESSION_INFO_SQL", "SESSION_SETUP_SQL", "RESET_SQL", "STATE_BLOCK",
    "OracleBackend", "arguments_sql", "call_end_sql", "call_start_sql", "client_info",
    "client_time_zone", "load_client", "procedures_sql", "setup_block", "setup_statements",
    "type_kind",
]


class OracleBackend(OracleConnections, OracleSessions, OracleJobSessions, OracleDialect,
                    OracleErrors, OracleCatalog, OracleCalls):
    name: ClassVar[str] = "oracle"
    script_style: ClassVar[str] = "sqlplus"

    def __init__(self, settings: config.ConnectionSettings):
        self.settings = settings
        self._longops_views = [GV_LONGOPS_SQL, LONGOPS_SQL]
        self._sessions: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()
        self._reset_views: bool | None = None


BACKEND = OracleBackend
