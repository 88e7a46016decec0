"""Connecting: the DSN's settings as libpq keywords, the password, the
application name that marks a job's session."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import psycopg
from psycopg.types.json import set_json_loads

from ... import config, jsontext
from ...errors import DatabaseError, UsageError
from .errors import diag_message
from .sessions import own_settings
from .shared import PostgresBase


DEFAULT_CONNECT_TIMEOUT = 10

@lru_cache(maxsize=1)
def _libpq_keywords() -> frozenset[str]:
    return frozenset(o.keyword.decode() for o in psycopg.pq.Conninfo.get_defaults())


#: what a PostgreSQL DSN may carry besides libpq's keywords: jobctl's own
#: options (session_setup: the SQL each job's session starts with)
JOBCTL_DSN_OPTIONS = frozenset({"session_setup"})


def check_dsn_keywords(settings: config.ConnectionSettings) -> None:
    """A keyword the DSN itself names (`bogus=1`, `?sslmod=require`) that is
    neither libpq's nor jobctl's is a typo: UsageError naming it (exit 2),
    where libpq would otherwise never see it and jobctl ignore it. The
    profile's keys are not checked: a profile also holds jobctl's settings."""
    known = _libpq_keywords() | JOBCTL_DSN_OPTIONS
    own = config.parse_dsn(settings.dsn).options  # the DSN's, without the profile's
    unknown = [k for k in own if k not in known]
    if not unknown:
        return
    import difflib

    near = difflib.get_close_matches(unknown[0], sorted(known), n=1)
    maybe = f" (did you mean {near[0]}?)" if near else ""
    raise UsageError(f"unknown keyword {unknown[0]!r} in the DSN{maybe}: a PostgreSQL DSN takes "
                     "libpq's connection keywords (host, dbname, sslmode, connect_timeout, ...) "
                     f"and jobctl's {', '.join(sorted(JOBCTL_DSN_OPTIONS))}")


class PostgresConnections(PostgresBase):
    def _conninfo(self, job_id: str | None) -> dict[str, Any]:
        s = self.settings
        known = _libpq_keywords()
        kwargs: dict[str, Any] = {k: str(v) for k, v in s.options.items()
                                  if k in known and v is not None}
        for key, value in (("host", s.host), ("port", s.port), ("dbname", s.database),
                           ("user", s.user), ("password", s.password)):
            if value is not None:
                kwargs[key] = str(value)
        kwargs.setdefault("connect_timeout", str(DEFAULT_CONNECT_TIMEOUT))
        kwargs["application_name"] = f"jobctl:{job_id}" if job_id else "jobctl"
        return kwargs

    def connect(self, *, job_id: str | None = None) -> Any:
        kwargs = self._conninfo(job_id)
        try:
            conn = psycopg.connect(autocommit=False, **kwargs)
        except psycopg.Error as exc:
            if self.settings.password is None and "no password supplied" in str(exc):
                password = config.prompt_password(self.settings)
                if password:
                    self.settings = self.settings.with_password(password)
                    return self.connect(job_id=job_id)
            raise DatabaseError(f"cannot connect to {self.settings.display}: {diag_message(exc)}",
                                transient=self.is_transient(exc)) from exc
        # json/jsonb OUT values keep their numbers exact, as PARAMS does
        set_json_loads(jsontext.loads, conn)
        try:
            conn.execute("SET TIME ZONE 'UTC'" + own_settings(conn))
            conn.commit()
        except psycopg.Error as exc:
            conn.close()
            raise self.translate_error(exc) from exc
        return conn
