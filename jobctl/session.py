"""One connection to the jobs database, shared by the services one `Jobctl`
composes (submitting, reading, starting workers): opened on first use,
driver errors turned into domain errors, a failed transaction rolled back."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from . import store
from .backends import get_backend
from .config import Settings
from .errors import DatabaseError, JobctlError, NotFound, SchemaOutdated, UsageError
from .lifecycle import Lifecycle
from .model import COLUMNS, Job

#: the shortest job id prefix a command takes
MIN_PREFIX = 4


#: Session(create=DEFAULT_ONLY): only the default SQLite file may be created
DEFAULT_ONLY = "default"


class Session:
    def __init__(self, settings: Settings, *, create: bool | str = True):
        """`create`: whether a SQLite file that does not exist may be created
        (True: any, as `db init` and the library do; DEFAULT_ONLY: only the
        default one, jobctl's own, as `submit` does; False: none). A command
        that may not create it says so, exit 4, rather than answer from an
        empty file: a cron job that lost its JOBCTL_DSN, or whose --dsn has a
        typo, cannot look healthy."""
        self.settings = settings
        self.backend = get_backend(settings.connection)
        self.lifecycle = Lifecycle(self.backend, settings.tunables)
        self._conn: Any = None
        self._create = create

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    @property
    def conn(self) -> Any:
        if self._conn is None:
            self._require_database()
            self._conn = self.backend.connect()
        return self._conn

    def _require_database(self) -> None:
        settings = self.settings.connection
        if settings.scheme != "sqlite" or self._create is True or settings.database == ":memory:" \
                or os.path.exists(settings.database or ""):
            return
        if settings.is_default:
            if self._create == DEFAULT_ONLY:
                return
            raise DatabaseError(f"no jobs database at {settings.database}; "
                                "set JOBCTL_DSN or run jobctl submit first")
        raise DatabaseError(f"no jobs database at {settings.database} (the DSN names a file that "
                            f"does not exist); check the path, or create it with "
                            f"`jobctl --dsn {settings.display} db init`")

    @contextlib.contextmanager
    def db(self) -> Iterator[Any]:
        """Run database work; driver errors leave as domain errors, and an
        unfinished transaction is rolled back so nothing half-written stays."""
        try:
            yield self.conn
        except JobctlError:
            self.rollback()
            raise
        except Exception as exc:
            self.rollback()
            if missing := self._missing_columns(exc):
                raise SchemaOutdated(missing) from exc
            raise self.backend.translate_error(exc) from exc

    def _missing_columns(self, exc: Exception) -> int:
        """After a failed statement: how many of jobctl's columns an
        original-shaped ASYNC_JOBS lacks (0 when that was not the cause).
        Asked only on the error path, so the normal path costs nothing."""
        if not self.backend.is_undefined_column(exc):
            return 0
        if self.backend.is_missing_table(exc) or self._conn is None:
            return 0
        try:
            have = store.table_columns(self.backend, self._conn)
            self._conn.commit()
        except Exception:
            self.rollback()
            return 0
        return len(set(COLUMNS) - have)

    def rollback(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.rollback()

    def require_table(self, conn: Any) -> None:
        """ASYNC_JOBS is there, with every column jobctl writes."""
        try:
            have = store.table_columns(self.backend, conn)
            conn.commit()
        except Exception as exc:
            conn.rollback()
            if self.backend.is_missing_table(exc):
                raise self.backend.translate_error(exc) from exc
            return
        if missing := len(set(COLUMNS) - have):
            raise SchemaOutdated(missing)

    def find(self, conn: Any, ref: str) -> Job:
        """The job a full id or a unique prefix names (as stored)."""
        if len(ref) < MIN_PREFIX or any(c not in "0123456789abcdef" for c in ref):
            raise UsageError(f"invalid job id {ref!r}: use the id or a unique prefix of at least "
                             f"{MIN_PREFIX} hex characters")
        if len(ref) == 32:
            job = store.get(self.backend, conn, ref)
            found = [job] if job else []
        else:
            found = store.get_by_prefix(self.backend, conn, ref)
        conn.commit()
        if not found:
            raise NotFound(f"no job {ref}")
        if len(found) > 1:
            raise UsageError(f"job id prefix {ref} is ambiguous ({found[0].job_id[:12]}, "
                             f"{found[1].job_id[:12]}, ...): give more characters")
        return found[0]


class Service:
    """A part of the library working on one Session (its connection, its
    backend, its lifecycle)."""

    def __init__(self, session: Session):
        self.session = session
        self.settings = session.settings
        self.backend = session.backend
        self.lifecycle = session.lifecycle
        self.db = session.db
