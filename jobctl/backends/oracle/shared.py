"""What the role modules of the Oracle backend share: the state
OracleBackend.__init__ sets, and, for the type checker, the methods one role
calls on another (each is implemented in exactly one role module)."""

from __future__ import annotations

import datetime as dt
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ... import config

if TYPE_CHECKING:
    from ...errors import JobctlError

UTC = dt.timezone.utc


class OracleBase:
    settings: config.ConnectionSettings
    #: which LONGOPS view still answers: GV$, then V$, then none (not granted)
    _longops_views: list[str]
    #: per connection: (current schema, instance number, SID) learnt at connect
    _sessions: weakref.WeakKeyDictionary[Any, dict[str, Any]]
    #: whether the V$ views the reset between jobs reads answer this user:
    #: None not yet known, False: every job gets a new connection (jobsession.py)
    _reset_views: bool | None

    if TYPE_CHECKING:
        def connect(self, *, job_id: str | None = None) -> Any: ...
        def execute(self, conn: Any, sql: str, binds: Mapping[str, Any] | None = None) -> Any: ...
        def translate_error(self, exc: BaseException) -> JobctlError: ...
        def is_transient(self, exc: BaseException) -> bool: ...
        def normalize_name(self, name: str) -> str: ...
        def _remember(self, conn: Any, info: Mapping[str, Any]) -> None: ...
        def _session_info(self, conn: Any) -> dict[str, Any]: ...

    # Fallbacks for the per-job session methods of the Procedures protocol,
    # last in the MRO: a role module's own implementation (sessions) wins.
    def start_job_session(self, conn: Any, job_id: str) -> None:
        return None

    def reset_job_session(self, conn: Any) -> bool:
        return False  # nothing reset here: a fresh connection for the next job

    def idle_job_session(self, conn: Any) -> bool:
        return True  # reset_job_session leaves nothing for later
