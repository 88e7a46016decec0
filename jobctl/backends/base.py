"""The seam between jobctl and a database.

Everything that differs between SQLite, PostgreSQL and Oracle lives behind
`Backend`, split by role: `Database` (connecting, SQL dialect, errors,
server sessions) and `Procedures` (resolving, calling, interrupting and
progress). The store, the library and the worker never ask which database
they talk to, nor whether it has a method: every backend implements both
(checked by mypy through backends/checked.py).

SQL passed to `execute` is written with named binds (`:name`); a backend
converts them to its driver's paramstyle.
"""

from __future__ import annotations

import datetime as dt
import threading
from contextlib import AbstractContextManager
from pathlib import Path
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Protocol

from ..config import ConnectionSettings
from ..errors import JobctlError
from ..model import Signature


SELF_COMMIT_NOTE = ("[jobctl] the procedure committed inside its own transaction: work it "
                    "committed is kept even if the job ends failed, cancelled or lost")


class CallContext:
    """What a running procedure can reach: progress, output lines, the stop flag.

    The worker's watchdog thread reads `progress` and `output` and writes them
    to the job row, at most once a second while they change; backends call
    `progress()`/`log()` from the thread that runs the procedure (PostgreSQL
    notices, SQLite callables). `on_change`, when set, is called (outside the
    lock, from that thread) the first time something changes after a
    snapshot: it wakes the watchdog without a write per notice.
    """

    def __init__(self, job_id: str, *, output_cap: int = 1_000_000, atomic: bool = False,
                 result_rows: int = 1000):
        self.job_id = job_id
        #: the job asked for all or nothing (`submit --atomic`): the call runs
        #: inside jobctl's transaction and a COMMIT inside the procedure is
        #: refused with a message naming --atomic
        self.atomic = atomic
        #: rows kept from a REF CURSOR OUT or an implicit result (Tunables.result_rows)
        self.result_rows = result_rows
        #: (SQL with :binds, binds): the backend executes it on the call
        #: connection in the call's first transaction, right before calling
        #: the procedure, so that a COMMIT inside the procedure commits it too
        #: (store.commit_marker): how jobctl knows after a crash that earlier
        #: commits stay. None: nothing to mark (atomic calls).
        self.marker: tuple[str, dict[str, Any]] | None = None
        #: (SQL with :binds, binds) of the guarded UPDATE that records
        #: `completed`, for a backend that ends the call's transactions itself
        #: (PostgreSQL outside --atomic: the CALL runs at top level), to run in
        #: the call's last transaction so that the last stretch of work and the
        #: outcome commit together. Its binds named :call_* are the backend's
        #: to supply from the call: call_end_time (UTC, as a time column holds
        #: it), call_elapsed_s and call_duration (the job's, counted from
        #: `elapsed_before` seconds before the call), call_result (the OUT
        #: values as JSON text), call_committed (1 when the call committed
        #: inside, else 0). Backends whose runner commits leave it alone.
        self.outcome: tuple[str, dict[str, Any]] | None = None
        self.elapsed_before = 0.0
        #: what the backend did with `outcome`: None, not used (the runner
        #: writes and commits the outcome); True, written and committed with
        #: the call's last transaction; False, its guard matched no row (the
        #: job was declared lost or cancelled meanwhile), so the last
        #: transaction was rolled back
        self.outcome_written: bool | None = None
        #: (SQL with :binds, binds): a pool slot's claim of its queue's next
        #: job, one UPDATE returning the claimed row, which a backend that
        #: runs `outcome` may run right after it in the same transaction
        #: (where it fails, the outcome stays and the slot claims later);
        #: the claimed row's columns go in `handed_over` (None: none claimed)
        self.hand_over: tuple[str, dict[str, Any]] | None = None
        self.handed_over: dict[str, Any] | None = None
        #: the backend can tell whether the call committed inside (then
        #: `self_committed` False means: nothing of it was committed)
        self.commits_known = False
        self.stop_requested = threading.Event()
        self._lock = threading.Lock()
        self._lines: list[str] = []
        self._size = 0
        self._cap = output_cap
        self._truncated = False
        self._progress: float | None = None
        self._dirty = False
        self.on_change: Callable[[], None] | None = None
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
            woke, self._dirty = not self._dirty, True
        self._changed(woke)

    def log(self, line: str) -> None:
        line = str(line).rstrip("\n")
        with self._lock:
            if self._size + len(line) + 1 > self._cap:
                self._truncated = True
            else:
                self._lines.append(line)
                self._size += len(line) + 1
            woke, self._dirty = not self._dirty, True
        self._changed(woke)

    def _changed(self, first: bool) -> None:
        if first and self.on_change is not None:
            self.on_change()

    @property
    def dirty(self) -> bool:
        """Something changed since the last snapshot (not yet written)."""
        with self._lock:
            return self._dirty

    def snapshot(self) -> tuple[float | None, str | None, bool]:
        """(progress, output text, changed since the last snapshot)."""
        with self._lock:
            changed, self._dirty = self._dirty, False
            text = "\n".join(self._lines) if self._lines else None
            if self._truncated:
                text = (text or "") + "\n[output truncated by jobctl]"
            return self._progress, text, changed


class Database(Protocol):
    """The database as a place that holds ASYNC_JOBS: connecting, running
    SQL in its dialect, translating its errors, and its server sessions."""

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

    def execute_many(self, conn: Any, sql: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run one statement once per bind set, batched by the driver."""

    # -- dialect -------------------------------------------------------------
    def limit_clause(self, bind: str) -> str:
        """Row limit for the end of a SELECT, taking the bind `:<bind>`."""

    def lock_clause(self, *, skip_locked: bool) -> str:
        """What ends a SELECT that locks the rows it returns for this
        transaction ("" where the transaction itself holds the write lock)."""

    def lock_first_clause(self, bind: str) -> str | None:
        """What ends a SELECT that locks (skipping locked rows) only the first
        `:<bind>` rows it finds, or None where a row limit cannot be combined
        with a lock (Oracle: ORA-02014); the caller then locks fewer at a time."""

    def returning_clause(self, columns: Sequence[str]) -> str | None:
        """What ends an UPDATE that returns the updated rows' `columns`, or
        None where the database cannot (Oracle, outside PL/SQL; SQLite before
        3.35): the caller reads them in a statement of its own."""

    def writes_without_waiting(self, conn: Any) -> AbstractContextManager[None]:
        """Within it, a write that would wait for another writer's lock fails
        at once instead (is_transient is true of its error). For what a
        reading command writes on the side (starting a worker for waiting
        jobs): it leaves that to the next command rather than wait. Where
        readers never wait for writers and a claim skips locked rows
        (PostgreSQL, Oracle) there is nothing to do."""

    def bound_lock_wait(self, conn: Any, *, wait_s: float, silent_s: float) -> None:
        """For a claim, before it takes its queue's lock: this transaction
        waits at most `wait_s` for a lock another session holds (then fails,
        is_transient), and should its client fall silent inside it for
        `silent_s` (a host cut off mid-claim) the server ends the session, so
        the queue's lock is not held until the network gives up on it. Within
        writes_without_waiting the wait is shorter still: a reading command's
        claim does not wait."""

    def batched(self, conn: Any) -> AbstractContextManager[bool]:
        """Within it, statements go to the server together and their answers
        come back together (PostgreSQL's pipeline mode): a statement's rows
        or row count are read once the block ends, or a fetch inside it waits
        for every statement sent before. An error skips the statements after
        it and is raised at that fetch or at the block's end; recovery (a
        ROLLBACK TO SAVEPOINT) comes after the block. Yields whether it
        batches: elsewhere each statement is answered at once, as outside."""

    def relax_commit(self, conn: Any) -> None:
        """This transaction's commit need not wait for the disk (PostgreSQL:
        synchronous_commit off). Only for a transaction whose loss in a
        server crash is harmless: a claim, since the outcome that follows is
        written guarded by the claim and committed durably."""

    def insert_if_missing_sql(self, table: str, key: str, columns: Sequence[str]) -> str:
        """An INSERT of one row (binds `:<column>`) that does nothing when a
        row with the same `key` is there."""

    def percentile_sql(self, fraction: float, expr: str) -> str:
        """An aggregate computing the continuous percentile of `expr`."""

    def seconds_between_sql(self, start: str, end: str) -> str:
        """The seconds from time column `start` to `end` as a number (for rows
        another writer finished without ELAPSED_S)."""

    def to_db_time(self, value: dt.datetime) -> Any:
        """An aware UTC datetime as the driver should bind it."""

    def from_db_time(self, value: Any) -> dt.datetime | None:
        """A fetched time column as an aware UTC datetime."""

    def clock_sql(self) -> str | None:
        """The database server's time now (UTC, as a time column holds it)
        as an SQL expression, taken afresh by each statement; None where all
        of jobctl runs on one host (SQLite), whose clock is then the one.
        Heartbeats are written with it and the lost rule judges them by it:
        the clocks of the hosts sharing a database differ."""

    def server_time(self, conn: Any) -> dt.datetime | None:
        """clock_sql read on `conn` (aware UTC), in the caller's transaction;
        None where clock_sql is None."""

    def schema_files(self, *, examples: bool) -> list[str]:
        """Files under sql/<name>/ that `db init` runs, in order."""

    # -- errors --------------------------------------------------------------
    def is_missing_table(self, exc: BaseException) -> bool: ...
    def is_unique_violation(self, exc: BaseException) -> bool: ...

    def is_undefined_column(self, exc: BaseException) -> bool:
        """A column the statement names is not in the table: tells an
        original-shaped ASYNC_JOBS apart without reading its columns."""

    def is_already_exists(self, exc: BaseException) -> bool:
        """DDL that `db init` may ignore because the object is already there."""

    def is_lock_timeout(self, exc: BaseException) -> bool:
        """The wait bound_lock_wait set ran out: another session keeps the lock."""

    def translate_error(self, exc: BaseException) -> JobctlError:
        """A driver exception as a domain error with one clear line."""

    def is_transient(self, exc: BaseException) -> bool:
        """Connection lost, deadlock, ... worth retrying a bookkeeping write."""

    def keeps_transaction(self, exc: BaseException) -> bool:
        """`exc`, raised by a write or a commit, left the transaction as it
        was, everything in it (SQLite after SQLITE_BUSY or SQLITE_FULL): the
        same statement or commit may be tried again, and commits it once.
        False where a failed commit ends the transaction (PostgreSQL, Oracle):
        the caller reads back what happened instead."""

    def in_transaction(self, conn: Any) -> bool:
        """`conn` holds uncommitted work."""

    # -- sessions: who runs the call on the server (at-most-once) ------------
    def session_id(self, conn: Any) -> str | None:
        """The server session of `conn`, recorded in DB_SESSION at claim, in
        a form that cannot match a later session reusing the same number
        (PostgreSQL: pid and backend start). None when there is none."""

    def session_alive(self, conn: Any, session: str) -> bool | None:
        """Is `session` (from session_id) still executing a statement? None
        when this connection cannot tell (no privilege, no such view)."""

    def kill_session_sql(self, session: str) -> str:
        """The exact statement a DBA runs to end `session` ("" when none can)."""

    def end_session(self, conn: Any, session: str) -> bool:
        """Stop what `session` runs and end it; True once it is gone, False
        when this connection may not (the caller then shows kill_session_sql)."""

    def liveness_dir(self) -> Path | None:
        """Where a worker on this host touches a per-job file each heartbeat
        when its own transaction can block the heartbeat row (SQLite), or None."""

    # -- a cancel that reaches the worker at once, not at its next poll of
    #    CANCEL_REQUESTED (PostgreSQL: LISTEN/NOTIFY); elsewhere no-ops -------
    def announce_cancel(self, conn: Any, job_id: str) -> None:
        """In the transaction that sets the flag, so the news is delivered
        when, and only if, the flag is committed."""

    def listen_cancel(self, conn: Any) -> bool:
        """On the worker's watch connection, in its claim's transaction (and
        again on every new watch connection); False: the backend cannot, the
        worker polls CANCEL_REQUESTED instead."""

    def cancel_wait_fd(self, conn: Any) -> int:
        """A descriptor readable when news may have come (only asked of a
        connection listen_cancel returned True for)."""

    def announce_work(self, conn: Any, queue: str) -> None:
        """In the transaction that queues work in `queue`, so that a worker
        pool serving it claims at once rather than at its next poll."""

    def announcements(self, conn: Any) -> list[str]:
        """Without waiting: the news that arrived on a listening connection:
        a job id (its cancel was requested) or WORK_NEWS + a queue name (work
        was queued). Raises when the connection is gone."""


class Procedures(Protocol):
    """The database as a place that runs stored procedures: naming,
    resolving, calling, interrupting them and reading their progress."""

    def normalize_name(self, name: str) -> str:
        """Validate a procedure name (UsageError, before any connection) and
        return it as stored in PROCEDURE_NAME."""

    def resolve(self, conn: Any, name: str, given: frozenset[str]) -> Signature:
        """The signature of procedure `name`; `given` (casefolded input names)
        picks among overloads. NotFound when there is none."""

    def overloads(self, conn: Any, name: str) -> list[Signature]:
        """Every overload of procedure `name` (one Signature each, named as
        `resolve` names them; `Signature.form` tells them apart). NotFound
        when there is none. The generic code (lookup.choose) picks one: by
        a signature form the user typed, else by the names and values given."""

    def check_values(self, conn: Any, sig: Signature, values: Mapping[str, Any]) -> None:
        """Check on the server, without side effects and in at most one round
        trip when every value is good, that each bound input value (keyed by
        parameter name, as params.bind returns them) is accepted by its
        declared type: range, enum label, domain CHECK, length, format.
        UsageError naming the parameter when one is not. Nothing is written;
        the caller commits or rolls back the transaction afterwards."""

    def check_submit(self, sig: Signature) -> None:
        """Refuse at submit (UsageError, before any row is written) a procedure
        whose parameters the backend can neither pass nor read back; `describe`
        still shows it. Nothing to refuse: return."""

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
        """Read progress published out of band (called by the watchdog); a
        backend whose procedures report progress in-band does nothing."""


    # -- each job in a clean session of its own ------------------------------
    def start_job_session(self, conn: Any, job_id: str) -> None:
        """Before each job's call, on the call connection: the job's identity
        where a DBA looks (PostgreSQL application_name `jobctl:<job_id>`;
        Oracle CLIENT_IDENTIFIER/MODULE/ACTION), then the user's session
        setup SQL (ConnectionSettings.session_setup). Leaves no
        transaction open. A failure of the user's SQL is the job's failure."""

    def reset_job_session(self, conn: Any) -> bool:
        """After each job, before the connection serves another one (pool,
        hand-over): clear everything the job left in the session (temporary
        tables, locks, settings, package state...) and restore jobctl's own
        settings. False when the connection must be replaced instead (the
        caller closes it and connects anew). What can wait without being
        seen by another job may be left to the next job's first statement
        (see idle_job_session)."""

    def idle_job_session(self, conn: Any) -> bool:
        """The connection waits with no job to follow at once (a pool's slot
        found its queue empty): whatever reset_job_session left to the next
        job's first statement is cleared now. False: replace it."""


class Backend(Database, Procedures, Protocol):
    """One database module (backends/<name>.py): both roles."""


class OverloadsByResolve:
    """For a backend whose procedures have one overload each and no types of
    a server to check values against (SQLite's registry of Python callables:
    params.bind's coercion is the check), or that has no catalog of
    overloads of its own yet: the one overload `resolve` picks without
    names, and no server-side check. Listed last among a backend's bases,
    so that the backend's own methods win."""

    def overloads(self, conn: Any, name: str) -> list[Signature]:
        return [self.resolve(conn, name, frozenset())]  # type: ignore[attr-defined]

    def check_values(self, conn: Any, sig: Signature, values: Mapping[str, Any]) -> None:
        return None


#: the prefix of an announcement that work was queued (a job id never has one)
WORK_NEWS = "queue:"


class PolledCancel:
    """The cancel-news methods of a backend whose database cannot announce a
    cancel (SQLite, Oracle): the worker polls CANCEL_REQUESTED every
    cancel_poll_s instead."""

    def announce_cancel(self, conn: Any, job_id: str) -> None:
        return None

    def listen_cancel(self, conn: Any) -> bool:
        return False

    def cancel_wait_fd(self, conn: Any) -> int:
        raise NotImplementedError("no cancel news: listen_cancel returned False")

    def announce_work(self, conn: Any, queue: str) -> None:
        return None

    def announcements(self, conn: Any) -> list[str]:
        return []
