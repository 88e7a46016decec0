"""JOB_TOKENS (the tokens of `jobctl serve`) and the few reads the server
makes of its own: how many jobs the database holds at start, and the one
statement a /metrics scrape runs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from ..model import JobStatus
from .rows import TABLE, bind_time, execute, read_text
from .workers import WORKERS

if TYPE_CHECKING:
    from ..backends.base import Database

TOKENS = "JOB_TOKENS"

_TOKEN_COLUMNS = ("token_id", "name", "token_hash", "scopes", "procedures", "created_at",
                  "expires_at", "last_used_at", "revoked_at")


class TokenRow(NamedTuple):
    token_id: str
    name: str
    token_hash: str
    scopes: tuple[str, ...]
    procedures: str | None        # a name pattern (`procedures PATTERN`'s); None: every one
    created_at: dt.datetime | None
    expires_at: dt.datetime | None
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None


def _token(backend: Database, r: Sequence[Any]) -> TokenRow:
    scopes = tuple(s for s in (read_text(r[3]) or "").split(",") if s)
    return TokenRow(token_id=str(r[0]), name=str(r[1]), token_hash=str(r[2]), scopes=scopes,
                    procedures=read_text(r[4]) or None,
                    created_at=backend.from_db_time(r[5]), expires_at=backend.from_db_time(r[6]),
                    last_used_at=backend.from_db_time(r[7]), revoked_at=backend.from_db_time(r[8]))


_SELECT_TOKENS = f"SELECT {', '.join(_TOKEN_COLUMNS)} FROM {TOKENS}"


def insert_token(backend: Database, conn: Any, *, token_id: str, name: str, token_hash: str,
                 scopes: Sequence[str], procedures: str | None, now: dt.datetime,
                 expires_at: dt.datetime | None) -> None:
    backend.execute(conn, f"""INSERT INTO {TOKENS}
        (token_id, name, token_hash, scopes, procedures, created_at, expires_at)
        VALUES (:token_id, :name, :token_hash, :scopes, :procedures, :now, :expires_at)""",
                    {"token_id": token_id, "name": name, "token_hash": token_hash,
                     "scopes": ",".join(scopes), "procedures": procedures,
                     "now": bind_time(backend, now), "expires_at": bind_time(backend, expires_at)})


def token_by_id(backend: Database, conn: Any, token_id: str) -> TokenRow | None:
    cur = backend.execute(conn, f"{_SELECT_TOKENS} WHERE token_id = :token_id",
                          {"token_id": token_id})
    row = cur.fetchone()
    return None if row is None else _token(backend, row)


def token_by_name(backend: Database, conn: Any, name: str) -> TokenRow | None:
    cur = backend.execute(conn, f"{_SELECT_TOKENS} WHERE name = :name", {"name": name})
    row = cur.fetchone()
    return None if row is None else _token(backend, row)


def list_tokens(backend: Database, conn: Any) -> list[TokenRow]:
    cur = backend.execute(conn, f"{_SELECT_TOKENS} ORDER BY name")
    return [_token(backend, r) for r in cur.fetchall()]


def revoke_token(backend: Database, conn: Any, name: str, now: dt.datetime) -> int:
    """0: no such token, or revoked already."""
    cur = backend.execute(conn, f"""UPDATE {TOKENS} SET revoked_at = :now
        WHERE name = :name AND revoked_at IS NULL""", {"name": name, "now": bind_time(backend, now)})
    return cur.rowcount


def delete_token(backend: Database, conn: Any, name: str) -> int:
    cur = backend.execute(conn, f"DELETE FROM {TOKENS} WHERE name = :name", {"name": name})
    return cur.rowcount


def touch_token(backend: Database, conn: Any, token_id: str, now: dt.datetime) -> None:
    backend.execute(conn, f"UPDATE {TOKENS} SET last_used_at = :now WHERE token_id = :token_id",
                    {"token_id": token_id, "now": bind_time(backend, now)})


def count_since(backend: Database, conn: Any, since: dt.datetime) -> int:
    """Jobs started (submitted) since then: what `jobctl serve` says it holds at start."""
    cur = backend.execute(conn, f"SELECT COUNT(*) FROM {TABLE} WHERE start_time >= :since",
                          {"since": bind_time(backend, since)})
    return int(cur.fetchone()[0] or 0)


def check_tokens_table(backend: Database, conn: Any) -> None:
    """Raises when JOB_TOKENS cannot be read (not created: db init)."""
    backend.execute(conn, f"SELECT COUNT(*) FROM {TOKENS} WHERE 1 = 0").fetchall()


# -- /metrics: one statement per scrape -------------------------------------------------

#: the rows of the metrics statement: kind, then what that kind fills
METRIC_COLUMNS = ("kind", "name", "queue", "status", "n", "total_s", "bucket", "host", "t")


def metrics_sql(backend: Database, *, since: dt.datetime,
                edges: Sequence[float]) -> tuple[str, dict[str, Any]]:
    """Per (status, queue): queued and running jobs (all of them), finished
    ones started since `since` ('j'); per (procedure, duration bucket): the
    completed jobs since `since`, with their seconds summed ('h'); every
    pool's row ('w'); the server's clock, which pools beat with ('c')."""
    binds: dict[str, Any] = {"since": bind_time(backend, since)}
    bucket = ["CASE"]
    for i, edge in enumerate(edges):
        binds[f"e{i}"] = edge
        bucket.append(f"WHEN elapsed_s <= :e{i} THEN {i}")
    bucket.append(f"ELSE {len(edges)} END")
    queue = "COALESCE(queue, 'default')"
    clock = backend.clock_sql()
    null_time = "CAST(NULL AS TIMESTAMP)"
    branches = [
        f"""SELECT 'j' AS kind, CAST(NULL AS VARCHAR(200)) AS name, {queue} AS queue, status,
                   COUNT(*) AS n, CAST(NULL AS NUMERIC) AS total_s, CAST(NULL AS INTEGER) AS bucket,
                   CAST(NULL AS VARCHAR(255)) AS host, {null_time} AS t
              FROM {TABLE} WHERE status IN (:st_queued, :st_running)
             GROUP BY {queue}, status""",
        f"""SELECT 'j', NULL, {queue}, status, COUNT(*), NULL, NULL, NULL, {null_time}
              FROM {TABLE} WHERE start_time >= :since AND status NOT IN (:st_queued, :st_running)
             GROUP BY {queue}, status""",
        f"""SELECT 'h', proc_name, NULL, NULL, COUNT(*), SUM(secs), bucket_no, NULL, {null_time}
              FROM (SELECT procedure_name AS proc_name, elapsed_s AS secs,
                           {' '.join(bucket)} AS bucket_no
                      FROM {TABLE}
                     WHERE start_time >= :since AND status = :st_completed
                       AND elapsed_s IS NOT NULL) d
             GROUP BY proc_name, bucket_no""",
        f"""SELECT 'w', worker_id, NULL, state, pid, NULL, NULL, host, heartbeat_at
              FROM {WORKERS}""",
    ]
    if clock is not None:
        # a FROM-less select is not portable (Oracle wants DUAL)
        branches.append(f"SELECT 'c', NULL, NULL, NULL, NULL, NULL, NULL, NULL, {clock} "
                        f"FROM {_one_row(backend)}")
    sql = "\nUNION ALL\n".join(branches)
    return sql, binds


def _one_row(backend: Database) -> str:
    """A table of exactly one row on every backend."""
    return "DUAL" if backend.name == "oracle" else "(SELECT 1 AS one) o"


def read_metrics(backend: Database, conn: Any, *, since: dt.datetime,
                 edges: Sequence[float]) -> list[dict[str, Any]]:
    """The metrics statement's rows as dicts (METRIC_COLUMNS); the caller commits."""
    sql, binds = metrics_sql(backend, since=since, edges=edges)
    cur = execute(backend, conn, sql, binds)
    return [dict(zip(METRIC_COLUMNS, r)) for r in cur.fetchall()]


