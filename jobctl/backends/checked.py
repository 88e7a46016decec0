"""Each backend checked against the protocols it implements, by mypy
(tests/test_types.py runs it). Nothing here runs: importing a backend would
load its driver."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import ConnectionSettings
    from .base import Backend, Database, Procedures
    from .oracle import OracleBackend
    from .postgresql import PostgresBackend
    from .sqlite import SqliteBackend

    def _every_backend_implements_both_roles(settings: ConnectionSettings) -> list[Backend]:
        sqlite: Backend = SqliteBackend(settings)
        postgresql: Backend = PostgresBackend(settings)
        oracle: Backend = OracleBackend(settings)
        databases: list[Database] = [sqlite, postgresql, oracle]
        procedures: list[Procedures] = [sqlite, postgresql, oracle]
        del databases, procedures
        return [sqlite, postgresql, oracle]
