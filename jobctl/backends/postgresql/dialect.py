"""Running SQL on PostgreSQL: statements, row limits and locks, times, the
schema scripts."""

from __future__ import annotations

import contextlib
import datetime as dt
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg

from .names import convert_binds
from .shared import PostgresBase


UTC = dt.timezone.utc
#: how long a reading command's claim waits for its queue's lock: a claim
#: beside it holds it a few milliseconds; anything longer is left to the next command
NO_WAIT_MS = 20
#: connections inside writes_without_waiting (a reading command's claim)
_NOT_WAITING: weakref.WeakSet[Any] = weakref.WeakSet()


class PostgresDialect(PostgresBase):
    def execute(self, conn: Any, sql: str, binds: Mapping[str, Any] | None = None) -> Any:
        cur = conn.cursor()
        if not binds:
            cur.execute(sql)
        else:
            cur.execute(convert_binds(sql, frozenset(binds)), dict(binds))
        return cur

    def execute_many(self, conn: Any, sql: str, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            with conn.cursor() as cur:
                cur.executemany(convert_binds(sql, frozenset(rows[0])), [dict(r) for r in rows])

    def limit_clause(self, bind: str) -> str:
        return f"LIMIT :{bind}"

    def lock_clause(self, *, skip_locked: bool) -> str:
        return "FOR UPDATE SKIP LOCKED" if skip_locked else "FOR UPDATE"

    def lock_first_clause(self, bind: str) -> str | None:
        return f"LIMIT :{bind} FOR UPDATE SKIP LOCKED"  # locks only the rows it returns

    def returning_clause(self, columns: Sequence[str]) -> str | None:
        return "RETURNING " + ", ".join(columns)

    def keeps_transaction(self, exc: BaseException) -> bool:
        return False  # a failed statement aborts the transaction, a failed commit ends it

    def in_transaction(self, conn: Any) -> bool:
        return conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE

    @contextlib.contextmanager
    def writes_without_waiting(self, conn: Any):
        # MVCC: reads never wait, claims skip locked job rows; what is left is
        # the queue's lock a claim takes, which bound_lock_wait then barely
        # waits for on this connection (as SQLite's busy_timeout is the connection's)
        _NOT_WAITING.add(conn)
        try:
            yield
        finally:
            _NOT_WAITING.discard(conn)

    def bound_lock_wait(self, conn: Any, *, wait_s: float, silent_s: float) -> None:
        # a cut host's session keeps its locks for as long as the server's TCP
        # keepalive takes to notice (hours by default); lock_timeout 0 would mean
        # "no bound", hence at least 1 ms
        wait_ms = max(1, round(wait_s * 1000))
        if conn in _NOT_WAITING:
            wait_ms = min(wait_ms, NO_WAIT_MS)
        self.execute(conn, "SELECT pg_catalog.set_config('lock_timeout', :wait, true),"
                     " pg_catalog.set_config('idle_in_transaction_session_timeout', :silent, true)",
                     {"wait": str(wait_ms), "silent": str(max(1, round(silent_s * 1000)))}).fetchall()

    @contextlib.contextmanager
    def batched(self, conn: Any):
        if not psycopg.Pipeline.is_supported():  # a libpq older than 14
            yield False
            return
        with conn.pipeline():
            yield True

    def relax_commit(self, conn: Any) -> None:
        # a later durable commit on this connection (the job's outcome)
        # flushes the WAL past this one too
        self.execute(conn, "SET LOCAL synchronous_commit TO OFF")

    def insert_if_missing_sql(self, table: str, key: str, columns: Sequence[str]) -> str:
        return (f"INSERT INTO {table} ({', '.join(columns)}) "
                f"VALUES ({', '.join(':' + c for c in columns)}) ON CONFLICT ({key}) DO NOTHING")

    def seconds_between_sql(self, start: str, end: str) -> str:
        return f"EXTRACT(EPOCH FROM ({end} - {start}))"

    def percentile_sql(self, fraction: float, expr: str) -> str:
        return (f"PERCENTILE_CONT({float(fraction)!r}) WITHIN GROUP "
                f"(ORDER BY CAST({expr} AS DOUBLE PRECISION))")

    def to_db_time(self, value: dt.datetime) -> Any:
        if value.tzinfo is None:
            return value
        return value.astimezone(UTC).replace(tzinfo=None)

    def clock_sql(self) -> str:
        # the statement's time, not the transaction's (now()): a pool's
        # hand-over claim is written in the transaction of a long call
        return "(statement_timestamp() AT TIME ZONE 'UTC')"

    def server_time(self, conn: Any) -> dt.datetime | None:
        return self.from_db_time(self.execute(conn, f"SELECT {self.clock_sql()}").fetchone()[0])

    def from_db_time(self, value: Any) -> dt.datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def schema_files(self, *, examples: bool) -> list[str]:
        return ["create_async_jobs_table.sql"] + (["examples.sql"] if examples else [])

    def liveness_dir(self) -> None:
        return None  # the heartbeat row is written on its own connection, never blocked by the call
