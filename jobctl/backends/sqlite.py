"""SQLite: the embedded default. Procedures are local Python callables."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import io
import os
import re
import signal
import sqlite3
import stat
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from .. import talk
from ..config import ConnectionSettings
from ..errors import DatabaseError, JobctlError, NotFound, SchemaMissing, UsageError
from ..model import Signature
from ..params import to_json_value
from ..sqlfiles import session_statements
from ..model import COLUMNS
from .base import CallContext, OverloadsByResolve, PolledCancel

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$#]*(\.[A-Za-z_][A-Za-z0-9_$#]*){0,2}$")
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"
_ENDS_TRANSACTION = re.compile(r"\s*(COMMIT|END)\b", re.IGNORECASE)
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")
#: a command blocked by another writer says so after this long
LOCK_NOTICE_AFTER_S = 2.0


@functools.cache
def _schema_indexes() -> frozenset[str]:
    """The indexes the schema file creates: a database lacking one is half-made."""
    from ..sqlfiles import read_sql  # only when a database is checked (start-up time)

    text = read_sql("sqlite", "create_async_jobs_table.sql")
    names = re.findall(r"CREATE\s+(?:UNIQUE\s+)?INDEX\s+IF\s+NOT\s+EXISTS\s+(\w+)", text, re.IGNORECASE)
    return frozenset(n.upper() for n in names)


#: what a COMMIT inside a procedure of an --atomic job ends with
ATOMIC_REFUSAL = ("the procedure tried to end its transaction (COMMIT or ROLLBACK), which "
                  "`submit --atomic` refuses: the job runs all or nothing; submit it without "
                  "--atomic to let it commit")


def _refuse_transaction_control(action: int, *args: Any) -> int:
    # BEGIN/COMMIT/ROLLBACK are SQLITE_TRANSACTION; a SAVEPOINT stays allowed
    return sqlite3.SQLITE_DENY if action == sqlite3.SQLITE_TRANSACTION else sqlite3.SQLITE_OK


@contextlib.contextmanager
def _atomic_guard(conn: sqlite3.Connection, atomic: bool):
    """--atomic: a COMMIT or ROLLBACK inside the procedure is refused. (The
    call's commits are seen by the trace callback instead of a marker row
    (CallContext.marker): its INSERT would take SQLite's one write lock for
    the whole call, and no server session outlives the worker here.)"""
    if not atomic:
        yield
        return
    conn.set_authorizer(_refuse_transaction_control)
    try:
        yield
    except sqlite3.DatabaseError as exc:
        if "not authorized" in str(exc):
            raise DatabaseError(ATOMIC_REFUSAL) from exc
        raise
    finally:
        conn.set_authorizer(None)


def _run_session_setup(conn: sqlite3.Connection, statements: list[str]) -> None:
    if conn.in_transaction:
        conn.rollback()
    for stmt in statements:
        try:
            conn.execute(stmt)
        except sqlite3.Error as exc:
            conn.rollback()
            raise DatabaseError(f"session_setup failed: {exc}") from exc
    if conn.in_transaction:
        conn.commit()


def _clear_session(conn: sqlite3.Connection) -> bool:
    """What a local procedure may leave on its connection: an open
    transaction and TEMP tables. Settings (PRAGMAs) are not undone: a
    connection whose jobs ran session_setup is replaced (reset_job_session)."""
    try:
        if conn.in_transaction:
            conn.rollback()
        temps = conn.execute("SELECT type, name FROM sqlite_temp_master"
                             " WHERE type IN ('table', 'view')").fetchall()
        for kind, name in temps:
            conn.execute('DROP {} IF EXISTS temp."{}"'.format(
                "VIEW" if kind == "view" else "TABLE", name.replace('"', '""')))
        if conn.in_transaction:
            conn.commit()
    except sqlite3.Error:
        return False
    return True


class CallInterrupted(Exception):
    """Raised inside a local procedure when the watchdog stops it."""


class _Percentile:
    """percentile_cont(value, fraction) as SQLite ≥ 3.47 spells it, for the
    older SQLite that Python ships with."""

    def __init__(self):
        self.values: list[float] = []
        self.fraction = 0.5

    def step(self, value, fraction):
        if value is not None:
            self.values.append(float(value))
            self.fraction = float(fraction)

    def finalize(self):
        if not self.values:
            return None
        v = sorted(self.values)
        pos = self.fraction * (len(v) - 1)
        lo = int(pos)
        hi = min(lo + 1, len(v) - 1)
        return v[lo] + (v[hi] - v[lo]) * (pos - lo)


class _LineWriter(io.TextIOBase):
    """print() inside a local procedure → ctx.log(), line by line."""

    def __init__(self, ctx: CallContext):
        self.ctx, self.buf = ctx, ""

    def write(self, text: str) -> int:
        self.buf += text
        *lines, self.buf = self.buf.split("\n")
        for line in lines:
            self.ctx.log(line)
        return len(text)

    def flush_rest(self) -> None:
        if self.buf:
            self.ctx.log(self.buf)
            self.buf = ""


class _PerThreadStdout(io.TextIOBase):
    """sys.stdout while local procedures run: each thread's print() goes to
    the writer of the call it runs (a pool runs several at once), anything
    else to the stdout it replaced."""

    def __init__(self, original: Any):
        self.original = original
        self.local = threading.local()

    def write(self, text: str) -> int:
        writer = getattr(self.local, "writer", None)
        return (writer or self.original).write(text)

    def flush(self) -> None:
        if getattr(self.local, "writer", None) is None:
            self.original.flush()


_STDOUT_LOCK = threading.Lock()


def _capture_stdout(writer: _LineWriter) -> _PerThreadStdout:
    with _STDOUT_LOCK:
        if not isinstance(sys.stdout, _PerThreadStdout):
            sys.stdout = _PerThreadStdout(sys.stdout)
        out = sys.stdout
    out.local.writer = writer
    return out


class LocalContext:
    """The `ctx` a local procedure receives."""

    def __init__(self, ctx: CallContext, connection: sqlite3.Connection):
        self._ctx = ctx
        self.connection = connection
        self.job_id = ctx.job_id

    def progress(self, pct: float) -> None:
        self._ctx.progress(pct)

    def log(self, line: str) -> None:
        self._ctx.log(line)

    @property
    def cancelled(self) -> bool:
        return self._ctx.stop_requested.is_set()

    def sleep(self, seconds: float) -> None:
        if self._ctx.stop_requested.wait(seconds):
            raise CallInterrupted("stopped")


def _make_private(path: Path) -> None:
    """The default database holds every user's job parameters: tighten one
    that an older jobctl (or a umask) left readable by others."""
    loose = []
    for p in (path.parent, path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            mode = stat.S_IMODE(p.stat().st_mode)
        except OSError:
            continue
        if mode & 0o077:
            with contextlib.suppress(OSError):
                p.chmod(0o700 if p.is_dir() else 0o600)
                loose.append(f"{p.name} {mode:o}")
    if loose:
        talk.say(f"notice: made {path.parent} private to its owner "
                 f"(was readable by others: {', '.join(loose)})")

def _schema_incomplete(conn: sqlite3.Connection) -> bool:
    columns = {row[1].lower() for row in conn.execute("PRAGMA table_info(ASYNC_JOBS)")}
    # every index of the schema file, on whichever table: comparing with
    # ASYNC_JOBS' own only made every whole database look half-made, and
    # each connect then waited for the write lock to "repair" it
    indexes = {row[0].upper() for row in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index'")}
    return bool(set(COLUMNS) - columns or _schema_indexes() - indexes)


#: what a SQLite DSN's query string may carry: jobctl's own options only
DSN_OPTIONS = ("session_setup",)


def _check_dsn_options(settings: ConnectionSettings) -> None:
    """`sqlite:///jobs.db?bogus=1`: an option the DSN names that jobctl does
    not know is a typo, exit 2 naming it, not silently ignored."""
    from ..config import parse_dsn

    if "?" not in settings.dsn:
        return
    unknown = [k for k in parse_dsn(settings.dsn).options if k not in DSN_OPTIONS]
    if unknown:
        raise UsageError(f"unknown option {unknown[0]!r} in the DSN: a SQLite DSN takes "
                         f"no option but {', '.join(DSN_OPTIONS)} (sqlite:///path/jobs.db)")


class _JobSessions:
    """Each job's session on SQLite: the user's session_setup before it, and
    after it what a local procedure may leave cleared (_clear_session)."""

    settings: ConnectionSettings

    def start_job_session(self, conn, job_id: str) -> None:
        _run_session_setup(conn, session_statements("sqlite", self.settings.session_setup))

    def reset_job_session(self, conn) -> bool:
        return _clear_session(conn) and not self.settings.session_setup

    def idle_job_session(self, conn) -> bool:
        return True  # reset_job_session leaves nothing for later


class _OneWriter:
    """What a server database needs about other sessions' locks, commits
    and round trips, and a file written by one process at a time does not."""

    def bound_lock_wait(self, conn, *, wait_s: float, silent_s: float) -> None:
        # the write lock is waited for busy_timeout (0 in writes_without_waiting),
        # and a process cannot be cut off from a file on its own disk
        return None

    def batched(self, conn: sqlite3.Connection) -> contextlib.AbstractContextManager[bool]:
        return contextlib.nullcontext(False)  # in-process: no round trips to save

    def relax_commit(self, conn) -> None:
        return None  # one writer at a time: nothing waits on a claim's commit


class _Durations:
    def seconds_between_sql(self, start: str, end: str) -> str:
        return f"((julianday({end}) - julianday({start})) * 86400.0)"


class SqliteBackend(_JobSessions, _OneWriter, _Durations, PolledCancel, OverloadsByResolve):
    name: ClassVar[str] = "sqlite"
    script_style: ClassVar[str] = "semicolon"

    def __init__(self, settings: ConnectionSettings):
        _check_dsn_options(settings)
        self.settings = settings
        self.path = Path(settings.database or "")
        self._modules_loaded = False
        self._in_call = False

    # -- connections -----------------------------------------------------------
    def connect(self, *, job_id: str | None = None) -> sqlite3.Connection:
        path = self.path
        memory = str(path) == ":memory:"
        if self.settings.is_default:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            _make_private(path)
        if path.is_dir():
            raise DatabaseError(f"cannot open database {self.settings.display}: {path} is a directory")
        if not memory and not path.exists() and path.parent.is_dir():
            # jobctl's own file, private from its first byte; SQLite gives the
            # -wal and -shm files the mode of the database file
            with contextlib.suppress(FileExistsError):
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        busy_s = self.settings.busy_timeout_s
        try:
            conn = sqlite3.connect(str(path), timeout=busy_s, isolation_level="IMMEDIATE",
                                   check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {int(busy_s * 1000)}")
            # WAL: readers never wait for writers, and a crash cannot corrupt the
            # file; NORMAL syncs at checkpoints only, so a power cut may lose the
            # last commits but never leaves a torn database
            conn.execute("PRAGMA synchronous = NORMAL")
            # typeshed knows only aggregates of one int argument
            conn.create_aggregate("percentile_cont", 2, _Percentile)  # type: ignore[arg-type]
            if not memory and (self.settings.is_default or path.stat().st_size == 0) \
                    and _schema_incomplete(conn):
                # the default file is jobctl's own: (re)create what a first use
                # or a full disk left missing
                self._create_schema(conn)
            elif conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
        except sqlite3.Error as exc:
            raise self.translate_error(exc) from None
        return conn

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        from ..sqlfiles import read_sql, split_script

        for stmt in split_script(read_sql(self.name, "create_async_jobs_table.sql"), self.script_style):
            try:
                conn.execute(stmt)
            except sqlite3.OperationalError as exc:
                if not self.is_already_exists(exc):
                    raise
        conn.commit()

    def execute(self, conn, sql: str, binds: Mapping[str, Any] | None = None):
        if conn.in_transaction or not sql.lstrip()[:7].upper().startswith(_WRITES):
            return conn.execute(sql, dict(binds or {}))
        # the first write of a transaction waits for the write lock, up to
        # busy_timeout: say so rather than hang in silence
        timer = threading.Timer(LOCK_NOTICE_AFTER_S, self._say_waiting)
        timer.daemon = True
        timer.start()
        try:
            return conn.execute(sql, dict(binds or {}))
        finally:
            timer.cancel()

    def _say_waiting(self) -> None:
        with contextlib.suppress(Exception):
            talk.say(f"waiting for the write lock on {self.path}: another process "
                     f"is writing (giving up after {self.settings.busy_timeout_s:g} s, "
                     "JOBCTL_BUSY_TIMEOUT)")

    def execute_many(self, conn, sql: str, rows: Sequence[Mapping[str, Any]]) -> None:
        conn.executemany(sql, [dict(r) for r in rows])

    def limit_clause(self, bind: str) -> str:
        return f"LIMIT :{bind}"

    def lock_clause(self, *, skip_locked: bool) -> str:
        # a claim's first statement is a write, so the whole transaction
        # already holds the database's one write lock (BEGIN IMMEDIATE)
        return ""

    def lock_first_clause(self, bind: str) -> str | None:
        return f"LIMIT :{bind}"  # the write lock covers every row

    def returning_clause(self, columns: Sequence[str]) -> str | None:
        return "RETURNING " + ", ".join(columns) if sqlite3.sqlite_version_info >= (3, 35) else None

    @contextlib.contextmanager
    def writes_without_waiting(self, conn: sqlite3.Connection):
        conn.execute("PRAGMA busy_timeout = 0")
        try:
            yield
        finally:
            with contextlib.suppress(sqlite3.Error):  # a connection closed meanwhile
                conn.execute(f"PRAGMA busy_timeout = {int(self.settings.busy_timeout_s * 1000)}")

    def insert_if_missing_sql(self, table: str, key: str, columns: Sequence[str]) -> str:
        return (f"INSERT OR IGNORE INTO {table} ({', '.join(columns)}) "
                f"VALUES ({', '.join(':' + c for c in columns)})")

    def percentile_sql(self, fraction: float, expr: str) -> str:
        return f"percentile_cont({expr}, {fraction!r})"

    def to_db_time(self, value: dt.datetime) -> str:
        return value.astimezone(dt.timezone.utc).strftime(_TIME_FORMAT)

    def clock_sql(self) -> None:
        return None  # one host: heartbeats carry its clock, bound as a value

    def server_time(self, conn: Any) -> None:
        return None

    def from_db_time(self, value: Any) -> dt.datetime | None:
        if value is None or value == "":
            return None
        if isinstance(value, dt.datetime):
            parsed = value
        else:
            parsed = dt.datetime.fromisoformat(str(value))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.timezone.utc)
        return parsed

    # -- errors ----------------------------------------------------------------
    def is_missing_table(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.OperationalError) and "no such table" in str(exc).lower()

    def is_undefined_column(self, exc: BaseException) -> bool:
        text = str(exc).lower()
        return isinstance(exc, sqlite3.OperationalError) and (
            "no such column" in text or "has no column named" in text)

    def is_unique_violation(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.IntegrityError) and "unique" in str(exc).lower()

    def is_lock_timeout(self, exc: BaseException) -> bool:
        return False  # no bound_lock_wait: SQLITE_BUSY is busy_timeout's, and transient

    def is_already_exists(self, exc: BaseException) -> bool:
        text = str(exc).lower()
        return "duplicate column" in text or "already exists" in text

    def is_transient(self, exc: BaseException) -> bool:
        text = str(exc).lower()
        return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)

    def keeps_transaction(self, exc: BaseException) -> bool:
        # SQLite's own advice: COMMIT failing with SQLITE_BUSY leaves the
        # transaction active, to be committed later; after SQLITE_FULL the
        # caller learns from in_transaction whether it was rolled back
        return isinstance(exc, sqlite3.OperationalError) and \
            getattr(exc, "sqlite_errorcode", 0) & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED,
                                                         sqlite3.SQLITE_FULL)

    def in_transaction(self, conn: sqlite3.Connection) -> bool:
        return conn.in_transaction

    def translate_error(self, exc: BaseException) -> JobctlError:
        if isinstance(exc, JobctlError):
            return exc
        if self.is_missing_table(exc):
            return SchemaMissing(self.settings.display)
        text = str(exc)
        if "unable to open database file" in text:
            text = f"cannot open database {self.path}: the file or its directory is not accessible"
        elif self.is_transient(exc):
            text = (f"the database {self.path} is locked by another writer: gave up after "
                    f"{self.settings.busy_timeout_s:g} s (JOBCTL_BUSY_TIMEOUT)")
        elif "file is not a database" in text:
            text = f"cannot open database {self.path}: the file is not a SQLite database"
        else:
            text = f"{self.settings.display}: {text}"
        return DatabaseError(text, transient=self.is_transient(exc))

    # -- procedures ------------------------------------------------------------
    def normalize_name(self, name: str) -> str:
        name = name.strip()
        if not _NAME.match(name):
            raise UsageError(f"invalid procedure name {name!r}: expected NAME, PKG.NAME or SCHEMA.PKG.NAME")
        return name.upper()

    def _load(self):
        """The local procedures' registry, user modules loaded. Imported here,
        not at the top: reading commands never need it (start-up time)."""
        from .. import local

        if not self._modules_loaded:
            local.load_modules(self.settings.options.get("modules") or [])
            self._modules_loaded = True
        return local

    def resolve(self, conn, name: str, given: frozenset[str]) -> Signature:
        local = self._load()
        proc = local.REGISTRY.get(name.upper())
        if proc is None:
            # the caller adds the closest names (api: "did you mean ...?")
            raise NotFound(f"procedure {name} not found among the local procedures")
        return proc.signature

    def check_submit(self, sig: Signature) -> None:
        return None  # nothing to refuse before the call

    def list_procedures(self, conn, like: str | None) -> list[Signature]:
        local = self._load()
        return [local.REGISTRY[name].signature for name in sorted(local.REGISTRY)]

    def call(self, conn, sig: Signature, values: Mapping[str, Any], ctx: CallContext) -> dict[str, Any]:
        local = self._load()
        proc = local.REGISTRY[sig.name]
        writer = _LineWriter(ctx)
        on_main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGUSR1, self._on_interrupt_signal) if on_main else None
        def on_statement(sql: str) -> None:
            # a COMMIT the procedure issues ends jobctl's transaction early:
            # what it committed no longer waits for the job's outcome
            if _ENDS_TRANSACTION.match(sql):
                ctx.note_self_commit()

        ctx.commits_known = True  # ctx.marker is not run: see _atomic_guard
        conn.set_trace_callback(on_statement)
        out = _capture_stdout(writer)
        try:
            self._in_call = on_main
            try:
                with _atomic_guard(conn, ctx.atomic):
                    returned = proc.func(LocalContext(ctx, conn), **values)
            finally:
                self._in_call = False
                out.local.writer = None
        finally:
            conn.set_trace_callback(None)
            writer.flush_rest()
            if on_main:
                signal.signal(signal.SIGUSR1, previous)
        returned = returned if isinstance(returned, dict) else {}
        outputs = [p.name for p in sig.params if p.is_output]
        by_name = {k.casefold(): v for k, v in returned.items()}
        return {name.lower(): to_json_value(by_name.get(name.casefold())) for name in outputs}

    def interrupt(self, conn) -> None:
        # a running SQL statement stops at once; Python code is woken by a
        # signal to the main thread, which raises CallInterrupted there
        # (a call on another thread — a pool's slot — has no such handler:
        # it stops at its next ctx.sleep or statement, which see the stop)
        with contextlib.suppress(Exception):
            conn.interrupt()
        if self._in_call and threading.current_thread() is not threading.main_thread():
            main = threading.main_thread().ident
            if main is not None:  # always: the main thread is running
                signal.pthread_kill(main, signal.SIGUSR1)

    def _on_interrupt_signal(self, signum, frame):
        # only inside the procedure: a late signal must not break the commit
        if self._in_call:
            raise CallInterrupted("interrupted")

    def poll_progress(self, conn, call_conn, ctx: CallContext) -> None:
        return None

    def schema_files(self, *, examples: bool) -> list[str]:
        return ["create_async_jobs_table.sql"]

    # -- sessions ----------------------------------------------------------------
    # A SQLite "session" is the worker process itself: when it dies its
    # transaction is gone, so there is never an orphaned session to find.
    def session_id(self, conn) -> str | None:
        return None

    def session_alive(self, conn, session: str) -> bool | None:
        return None

    def kill_session_sql(self, session: str) -> str:
        return ""

    def end_session(self, conn, session: str) -> bool:
        return False

    def liveness_dir(self) -> Path | None:
        # A local procedure writing through ctx.connection holds the write
        # lock for its whole run, so the heartbeat row cannot be written;
        # a file next to the database is a sign of life nothing can block.
        if str(self.path) in ("", ":memory:"):
            return None
        return self.path.with_name(self.path.name + "-live")


BACKEND = SqliteBackend
