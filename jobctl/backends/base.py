"""The seam between jobctl and a database.

Everything that differs between SQLite, PostgreSQL and Oracle lives behind
`Backend`; `store.py`, `api.py` and `runner.py` never ask which database they
talk to. SQL passed to `execute` is written with named binds (`:name`); a
backend converts them to its driver's paramstyle.
"""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path
from collections.abc import Mapping
from typing import Any, ClassVar, Protocol, runtime_checkable

from ..config import ConnectionSettings
from ..errors import JobctlError
from ..model import Signature


SELF_COMMIT_NOTE = ("[jobctl] the procedure committed inside its own transaction: work it "
                    "committed is kept even if the job ends failed, cancelled or lost")


class CallContext:
    """What a running procedure can reach: progress, output lines, the stop flag.

    The worker's watchdog thread reads `progress` and `output` and writes them
    to the job row with each heartbeat; backends call `progress()`/`log()` from
    the thread that runs the procedure (PostgreSQL notices, SQLite callables).
    """

    def __init__(self, job_id: str, *, output_cap: int = 1_000_000):
        self.job_id = job_id
        self.stop_requested = threading.Event()
        self._lock = threading.Lock()
        self._lines: list[str] = []
        self._size = 0
        self._cap = output_cap
        self._truncated = False
        self._progress: float | None = None
        self._dirty = False
        #: the procedure committed inside its own transaction (when the backend
        #: can tell): that work is outside at-most-once
        self.self_committed = False

    def note_self_commit(self) -> None:
        if not self.self_committed:
            self.self_committed = True
            self.log(SELF_COMMIT_NOTE)

    def progress(self, pct: float) -> None:
        pct = max(0.0, min(100.0, float(pct)))
        with self._lock:
            self._progress = pct
            self._dirty = True

    def log(self, line: str) -> None:
        line = str(line).rstrip("\n")
        with self._lock:
            if self._size + len(line) + 1 > self._cap:
                self._truncated = True
            else:
                self._lines.append(line)
                self._size += len(line) + 1
            self._dirty = True

    def snapshot(self) -> tuple[float | None, str | None, bool]:
        """(progress, output text, changed since the last snapshot)."""
        with self._lock:
            changed, self._dirty = self._dirty, False
            text = "\n".join(self._lines) if self._lines else None
            if self._truncated:
                text = (text or "") + "\n[output truncated by jobctl]"
            return self._progress, text, changed


@runtime_checkable
class Backend(Protocol):
    #: scheme name, also the folder under sql/ holding this backend's scripts
    name: ClassVar[str]
    #: how the sql/ files separate statements: "semicolon" or "sqlplus" (`/` lines)
    script_style: ClassVar[str]

    settings: ConnectionSettings

    # -- connections and SQL -------------------------------------------------
    def connect(self, *, job_id: str | None = None) -> Any:
        """A DB-API connection with autocommit off. A worker passes its job id,
        which the backend shows to the DBA (application_name `jobctl:<id>`,
        CLIENT_IDENTIFIER, MODULE/ACTION, ...). Failures raise a domain
        DatabaseError (exit 4) with one clear line."""

    def execute(self, conn: Any, sql: str, binds: Mapping[str, Any] | None = None) -> Any:
        """Run one statement written with `:name` binds; return the cursor."""

    def limit_clause(self, bind: str) -> str:
        """Row limit for the end of a SELECT, taking the bind `:<bind>`."""

    def percentile_sql(self, fraction: float, expr: str) -> str:
        """An aggregate computing the continuous percentile of `expr`."""

    def to_db_time(self, value: dt.datetime) -> Any:
        """An aware UTC datetime as the driver should bind it."""

    def from_db_time(self, value: Any) -> dt.datetime | None:
        """A fetched time column as an aware UTC datetime."""

    # -- errors --------------------------------------------------------------
    def is_missing_table(self, exc: BaseException) -> bool: ...
    def is_unique_violation(self, exc: BaseException) -> bool: ...
    # optional: `is_undefined_column(exc) -> bool` (a column the statement
    # names is not in the table): lets an original-shaped ASYNC_JOBS be told
    # apart cheaply; without it any failed statement checks the columns
    def is_already_exists(self, exc: BaseException) -> bool:
        """DDL that `db init` may ignore because the object is already there."""

    def translate_error(self, exc: BaseException) -> JobctlError:
        """A driver exception as a domain error with one clear line."""

    def is_transient(self, exc: BaseException) -> bool:
        """Connection lost, deadlock, ... worth retrying a bookkeeping write."""

    # -- procedures ----------------------------------------------------------
    def normalize_name(self, name: str) -> str:
        """Validate a procedure name (UsageError, before any connection) and
        return it as stored in PROCEDURE_NAME."""

    def resolve(self, conn: Any, name: str, given: frozenset[str]) -> Signature:
        """The signature of procedure `name`; `given` (casefolded input names)
        picks among overloads. NotFound when there is none."""

    def list_procedures(self, conn: Any, like: str | None) -> list[Signature]:
        """Every procedure the connected user can call (one Signature per
        overload), named as `resolve` names them. `like` is a LIKE pattern
        (`\\` escapes) on the name, matched without regard to case, that a
        backend may use to narrow a large catalog; the caller filters again."""

    def call(self, conn: Any, sig: Signature, values: Mapping[str, Any],
             ctx: CallContext) -> dict[str, Any]:
        """Run the procedure with coerced input values keyed by parameter name.
        Returns OUT / IN OUT values, keys lower-case, JSON-ready. Does not
        commit or roll back: the runner does."""

    def interrupt(self, conn: Any) -> None:
        """From another thread: make the in-flight `call` on `conn` stop."""

    def poll_progress(self, conn: Any, call_conn: Any, ctx: CallContext) -> None:
        """Optional: read progress published out of band (called by the watchdog)."""

    def schema_files(self, *, examples: bool) -> list[str]:
        """Files under sql/<name>/ that `db init` runs, in order."""

    # -- sessions: who runs the call on the server (at-most-once) ------------
    def session_id(self, conn: Any) -> str | None:
        """The server session of `conn`, recorded in DB_SESSION at claim, in
        a form that cannot match a later session reusing the same number
        (PostgreSQL: pid and backend start). None when there is none."""

    def session_alive(self, conn: Any, session: str) -> bool | None:
        """Is `session` (from session_id) still executing a statement? None
        when this connection cannot tell (no privilege, no such view)."""

    def kill_session_sql(self, session: str) -> str:
        """The exact statement a DBA runs to end `session`."""

    def end_session(self, conn: Any, session: str) -> bool:
        """Stop what `session` runs and end it; True once it is gone, False
        when this connection may not (the caller then shows kill_session_sql)."""

    def liveness_dir(self) -> Path | None:
        """Where a worker on this host touches a per-job file each heartbeat
        when its own transaction can block the heartbeat row (SQLite), or None."""
