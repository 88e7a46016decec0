"""PostgreSQL through psycopg 3.

Procedures are PostgreSQL `PROCEDURE`s, run with `CALL schema.proc(name =>
value, ...)`; INOUT / OUT parameters come back as the one result row. Inside a
procedure, `RAISE NOTICE 'jobctl:progress=40'` reports progress and every
other notice is captured as output, live, through a notice handler.

One module per role of the backend, combined into `PostgresBackend`:
connect.py, dialect.py, errors.py, catalog.py, call.py, sessions.py, with
names.py for names and binds. psycopg is imported in this package only, so
that a SQLite user never pays for it (and need not have it installed).
"""

from __future__ import annotations

import weakref
from typing import ClassVar

from ...config import ConnectionSettings
from .call import CANCEL_CHANNEL, PostgresCalls
from .catalog import PostgresCatalog
from .connect import DEFAULT_CONNECT_TIMEOUT, PostgresConnections, check_dsn_keywords
from .dialect import PostgresDialect
from .errors import PostgresErrors
from .names import convert_binds, split_name
from .sessions import PostgresSessions

__all__ = ["BACKEND", "CANCEL_CHANNEL", "DEFAULT_CONNECT_TIMEOUT", "PostgresBackend",
           "convert_binds", "split_name"]


class PostgresBackend(PostgresConnections, PostgresSessions, PostgresDialect, PostgresErrors,
                      PostgresCatalog, PostgresCalls):
    name: ClassVar[str] = "postgresql"
    script_style: ClassVar[str] = "semicolon"

    def __init__(self, settings: ConnectionSettings):
        check_dsn_keywords(settings)  # a typo in the DSN: exit 2 before anything is tried
        self.settings = settings
        self._identity = weakref.WeakKeyDictionary()
        self._left_clean = weakref.WeakKeyDictionary()


BACKEND = PostgresBackend
