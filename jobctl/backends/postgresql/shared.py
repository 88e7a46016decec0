"""What the role modules of the PostgreSQL backend share: the state
PostgresBackend.__init__ sets, and, for the type checker, the methods one
role calls on another (each is implemented in exactly one role module)."""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ...config import ConnectionSettings

if TYPE_CHECKING:
    from ...errors import JobctlError
    from ...model import Param, Signature


class PostgresBase:
    settings: ConnectionSettings
    #: per call connection: the job's settings (application_name, time zone,
    #: connection check) start_job_session left for the call's first statement
    _identity: weakref.WeakKeyDictionary[Any, list[str]]
    #: per call connection: its last job's call left nothing in the session
    #: (LEFT_IN_SESSION_SQL), so reset_job_session has nothing to do
    _left_clean: weakref.WeakKeyDictionary[Any, bool]

    if TYPE_CHECKING:
        def execute(self, conn: Any, sql: str, binds: Mapping[str, Any] | None = None) -> Any: ...
        def translate_error(self, exc: BaseException) -> JobctlError: ...
        def is_transient(self, exc: BaseException) -> bool: ...
        def normalize_name(self, name: str) -> str: ...
        def job_identity(self, conn: Any) -> str: ...
        def start_job_session(self, conn: Any, job_id: str) -> None: ...
        def job_identity_sql(self, conn: Any) -> list[str]: ...
        def _argument(self, conn: Any, p: Param, value_sql: str) -> str: ...
        def _literal(self, conn: Any, p: Param, value: Any) -> str: ...
        def _target(self, conn: Any, sig: Signature) -> str: ...
