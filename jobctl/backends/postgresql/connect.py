"""Connecting: the DSN's settings as libpq keywords, the password, the
application name that marks a job's session."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import psycopg
from psycopg.types.json import set_json_loads

from ... import config, jsontext
from ...errors import DatabaseError
from .errors import diag_message
from .sessions import own_settings
from .shared import PostgresBase


DEFAULT_CONNECT_TIMEOUT = 10

@lru_cache(maxsize=1)
def _libpq_keywords() -> frozenset[str]:
    return frozenset(o.keyword.decode() for o in psycopg.pq.Conninfo.get_defaults())


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
