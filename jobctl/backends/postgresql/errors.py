"""What a psycopg error means: missing table, transient, and the one line
a user reads."""

from __future__ import annotations

import re
from typing import Any

import psycopg
from psycopg import errors as pgerrors

from ...errors import DatabaseError, JobctlError, SchemaMissing
from .shared import PostgresBase


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())

def diag_message(exc: BaseException) -> str:
    diag: Any = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    if not primary:
        text = re.sub(r"\s+", " ", _one_line(str(exc)))  # libpq's "FATAL:  ..." and tabs
        return text.removeprefix("connection failed: ") or type(exc).__name__
    out = primary
    if diag.message_detail:
        out += f" (DETAIL: {diag.message_detail})"
    if diag.message_hint:
        out += f" (HINT: {diag.message_hint})"
    return _one_line(out)

#: the server ended the session on purpose: an administrator's
#: pg_terminate_backend (57P01 admin_shutdown). Never retried.
KILLED_STATES = frozenset({"57P01"})
_KILLED_TEXT = re.compile(r"terminating connection due to administrator command")

#: a COMMIT or ROLLBACK inside a procedure called inside a transaction block
INVALID_TRANSACTION_TERMINATION = "2D000"

def call_error_message(exc: BaseException) -> tuple[str, str | None, bool]:
    """(the job's ERROR_MSG, the SQLSTATE, killed) of an error the call met.
    The message is what psql prints with VERBOSITY verbose, on one line:
    `ERROR:  JC042: message (DETAIL: ...) (HINT: ...)`."""
    text = diag_message(exc)
    diag: Any = getattr(exc, "diag", None)
    state = getattr(exc, "sqlstate", None) or (getattr(diag, "sqlstate", None) if diag else None)
    killed = state in KILLED_STATES or bool(_KILLED_TEXT.search(str(exc)))
    if state is None and killed:
        state = "57P01"
    if state is None:
        return text, None, killed
    severity = (getattr(diag, "severity_nonlocalized", None) if diag is not None else None) or (
        "FATAL" if killed else "ERROR")
    return f"{severity}:  {state}: {text}", state, killed

_MISSING_JOBS_TABLE = re.compile(r'"(?:[^"]*\.)?async_jobs"', re.IGNORECASE)

#: refusals at connect that pass on their own: max_connections or a role's
#: CONNECTION LIMIT (53300), slots reserved for superusers, a restart
_PASSING_FATAL = re.compile(r"too many (connections|clients)|remaining connection slots|"
                            r"the database system is (starting up|shutting down|in recovery|"
                            r"not yet accepting)|terminating connection")


class PostgresErrors(PostgresBase):
    #: 55P03: lock_timeout (bound_lock_wait), a lock another session keeps for
    #: now; 25P03: the server ended a session silent inside its transaction
    #: (bound_lock_wait's idle_in_transaction_session_timeout): connect again
    _TRANSIENT_STATES = frozenset({"57P01", "57P02", "57P03", "40P01", "40001", "53300", "55P03",
                                   "25P03"})

    def is_missing_table(self, exc: BaseException) -> bool:
        return (isinstance(exc, pgerrors.UndefinedTable)
                and _MISSING_JOBS_TABLE.search(diag_message(exc)) is not None)

    def is_undefined_column(self, exc: BaseException) -> bool:
        return isinstance(exc, pgerrors.UndefinedColumn)

    def is_unique_violation(self, exc: BaseException) -> bool:
        return isinstance(exc, pgerrors.UniqueViolation)

    def is_lock_timeout(self, exc: BaseException) -> bool:
        return isinstance(exc, pgerrors.LockNotAvailable)

    def is_already_exists(self, exc: BaseException) -> bool:
        return isinstance(exc, (pgerrors.DuplicateTable, pgerrors.DuplicateObject,
                                pgerrors.DuplicateColumn))

    def is_transient(self, exc: BaseException) -> bool:
        if isinstance(exc, DatabaseError):
            return exc.transient
        if not isinstance(exc, psycopg.Error):
            return False
        state = exc.sqlstate
        if state is None:  # no server answer: connection refused, lost, closed
            if not isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
                return False
            # a refused connection carries no sqlstate, only the server's FATAL
            # text: a storm or a restart passes, a bad password or database does not
            text = str(exc)
            return "FATAL:" not in text or bool(_PASSING_FATAL.search(text))
        return state.startswith("08") or state in self._TRANSIENT_STATES

    def translate_error(self, exc: BaseException) -> JobctlError:
        if isinstance(exc, JobctlError):
            return exc
        if self.is_missing_table(exc):
            return SchemaMissing(self.settings.display)
        message = diag_message(exc)
        if isinstance(exc, psycopg.Error) and exc.sqlstate is None and self.is_transient(exc):
            message = f"{self.settings.display}: {message}"
        return DatabaseError(message, transient=self.is_transient(exc))
