"""Queues: JOB_QUEUES (limit, paused), what occupies a slot, dependencies
between jobs, and the queues that have work no worker has taken."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..model import JobStatus
from .rows import (
    DEFAULT_MAX_RUNNING, DEFAULT_QUEUE, TABLE, bind_time, execute, read_text, split_ids,
)

if TYPE_CHECKING:
    from ..backends.base import Database

# -- queues: limits, the claim, dependencies ------------------------------------

QUEUES = "JOB_QUEUES"


#: the order in which a queue's jobs are claimed, the claim index's own
#: (IX_ASYNC_JOBS_NEXT): the next job is one index entry away, not a sort
NEXT_ORDER = "ORDER BY priority DESC, start_time, job_id"


def claim_in(queue: str, binds: dict[str, Any]) -> str:
    """The claim's rows of `queue`: a row jobctl's submit wrote always names
    its queue (the column's default filled it in rows older than queues),
    so no `OR queue IS NULL` keeps the claim index from serving it."""
    binds["queue"] = queue
    return "queue = :queue"


def in_queue(queue: str, binds: dict[str, Any]) -> str:
    """Rows of `queue`; a NULL QUEUE (a row older than queues, or written by
    another application) belongs to the default queue."""
    binds["queue"] = queue
    return "(queue = :queue OR queue IS NULL)" if queue == DEFAULT_QUEUE else "queue = :queue"


#: what occupies a slot: a job running under a jobctl worker, or reserved for
#: one that is starting (claim_next); rows of other applications do not
_ACTIVE = ("worker_host IS NOT NULL AND (status = :st_running"
           " OR (status = :st_queued AND claim_token IS NOT NULL))")


#: a queued row jobctl's submit wrote (it records the resolved signature); a
#: queued row of another application is never run by a jobctl worker
OURS = "signature IS NOT NULL"


@dataclass(frozen=True)
class QueueState:
    name: str
    max_running: int          # 0: unlimited
    paused: bool
    running: int              # slots taken (running, or reserved for a starting worker)
    queued: int = 0

    @property
    def free(self) -> bool:
        return not self.paused and (self.max_running == 0 or self.running < self.max_running)


def ensure_queue(backend: Database, conn: Any, queue: str) -> None:
    """The queue's JOB_QUEUES row, created with the default limit when missing.
    On SQLite this first write also opens the claim's write transaction."""
    sql = backend.insert_if_missing_sql(QUEUES, "queue_name", ("queue_name", "max_running", "paused"))
    try:
        backend.execute(conn, sql, {"queue_name": queue, "max_running": None, "paused": 0})
    except Exception as exc:
        if not backend.is_unique_violation(exc):  # another session created it first
            raise


def queue_row(backend: Database, conn: Any, queue: str, *, lock: bool) -> tuple[int, bool]:
    suffix = backend.lock_clause(skip_locked=False) if lock else ""
    cur = backend.execute(conn, f"SELECT max_running, paused FROM {QUEUES} "
                                f"WHERE queue_name = :queue {suffix}", {"queue": queue})
    row = cur.fetchone()
    if row is None:
        return DEFAULT_MAX_RUNNING, False
    limit = DEFAULT_MAX_RUNNING if row[0] is None else int(row[0])
    return limit, bool(row[1])


def count_active(backend: Database, conn: Any, queue: str) -> int:
    # two counts rather than one with an OR of the statuses: each one reads
    # only its status's part of the claim index, not every row of the table
    binds: dict[str, Any] = {}
    where = in_queue(queue, binds)
    cur = execute(backend, conn, f"""
        SELECT COUNT(*) FROM {TABLE} WHERE status = :st_running AND {where}
           AND worker_host IS NOT NULL
        UNION ALL
        SELECT COUNT(*) FROM {TABLE} WHERE status = :st_queued AND {where}
           AND claim_token IS NOT NULL AND worker_host IS NOT NULL""", binds)
    return sum(int(r[0]) for r in cur.fetchall())


def live_workers(backend: Database, conn: Any, queue: str, fresh_after: dt.datetime) -> int:
    """Slots of `queue` whose worker gave a sign of life since `fresh_after`."""
    binds: dict[str, Any] = {"fresh": bind_time(backend, fresh_after)}
    cur = execute(backend, conn, f"""SELECT COUNT(*) FROM {TABLE}
        WHERE {in_queue(queue, binds)} AND {_ACTIVE} AND heartbeat_at >= :fresh""", binds)
    return int(cur.fetchone()[0])


def queue_state(backend: Database, conn: Any, queue: str) -> QueueState:
    limit, paused = queue_row(backend, conn, queue, lock=False)
    return QueueState(queue, limit, paused, count_active(backend, conn, queue))


def dependency_statuses(backend: Database, conn: Any, ids: Sequence[str]) -> dict[str, JobStatus]:
    """The stored status of each id that exists (PK lookups)."""
    if not ids:
        return {}
    binds = {f"id{i}": v for i, v in enumerate(ids)}
    cur = backend.execute(conn, f"SELECT job_id, status FROM {TABLE} WHERE job_id IN "
                                f"({', '.join(':' + k for k in binds)})", binds)
    out = {}
    for job_id, status in cur.fetchall():
        try:
            out[job_id] = JobStatus(str(status).lower())
        except ValueError:
            out[job_id] = JobStatus.FAILED
    return out


def blocking_dependency(statuses: dict[str, JobStatus], ids: Sequence[str]) -> tuple[str, str] | None:
    """("ended"|"waiting", why) for the first dependency that is not completed."""
    waiting = None
    for dep in ids:
        status = statuses.get(dep)
        if status is None:
            return "ended", f"dependency {dep} no longer exists"
        if status.finished and status is not JobStatus.COMPLETED:
            return "ended", f"dependency {dep} ended {status.value}"
        if status is not JobStatus.COMPLETED and waiting is None:
            waiting = ("waiting", f"dependency {dep} not finished ({status.value})")
    return waiting


def cancel_dependent(backend: Database, conn: Any, job_id: str, now: dt.datetime, reason: str) -> int:
    cur = execute(backend, conn, f"""
        UPDATE {TABLE} SET status = :st_cancelled, end_time = :now, error_msg = :reason
         WHERE job_id = :job_id AND status = :st_queued AND claim_token IS NULL""",
        {"job_id": job_id, "now": bind_time(backend, now), "reason": reason})
    return cur.rowcount


def queued_dependents(backend: Database, conn: Any, job_id: str) -> list[tuple[str, str]]:
    """Queued jobs that name `job_id` in AFTER_JOBS: (id, its queue).
    The LIKE only narrows the queued rows; the ids are compared exactly."""
    cur = execute(backend, conn, f"""SELECT job_id, after_jobs, queue FROM {TABLE}
        WHERE status = :st_queued AND after_jobs LIKE :pattern""", {"pattern": f"%{job_id}%"})
    out = []
    for dep_id, after, queue in cur.fetchall():
        if job_id in split_ids(read_text(after)):
            out.append((dep_id, queue or DEFAULT_QUEUE))
    return out


def queued_with_dependencies(backend: Database, conn: Any) -> list[tuple[str, list[str], str]]:
    """Every queued job that waits for others: (id, the ids, its queue)."""
    cur = execute(backend, conn, f"""SELECT job_id, after_jobs, queue FROM {TABLE}
        WHERE status = :st_queued AND after_jobs IS NOT NULL""")
    return [(r[0], split_ids(read_text(r[1])), r[2] or DEFAULT_QUEUE) for r in cur.fetchall()]


def queued_not_before(backend: Database, conn: Any, queue: str, start: dt.datetime,
                      end: dt.datetime) -> bool:
    """Whether a queued job of `queue` that no worker reserved waits for a
    start time in [start, end): what a `submit --at/--in` timer wakes for."""
    binds: dict[str, Any] = {"lo": bind_time(backend, start), "hi": bind_time(backend, end)}
    cur = execute(backend, conn, f"""SELECT COUNT(*) FROM {TABLE}
        WHERE status = :st_queued AND claim_token IS NULL AND {in_queue(queue, binds)}
          AND not_before >= :lo AND not_before < :hi""", binds)
    return int(cur.fetchone()[0]) > 0


def queues_needing_workers(backend: Database, conn: Any, now: dt.datetime) -> list[str]:
    """Queues holding queued jobs that no worker has reserved and whose start
    time has come: a worker may be missing for them."""
    cur = execute(backend, conn, f"""SELECT DISTINCT COALESCE(queue, '{DEFAULT_QUEUE}') FROM {TABLE}
        WHERE status = :st_queued AND claim_token IS NULL
          AND (not_before IS NULL OR not_before <= :now) AND {OURS}""", {"now": bind_time(backend, now)})
    return sorted(r[0] for r in cur.fetchall())


def set_queue(backend: Database, conn: Any, queue: str, *, max_running: int | None = None,
              paused: bool | None = None) -> None:
    ensure_queue(backend, conn, queue)
    sets: list[str] = []
    binds: dict[str, Any] = {"queue": queue}
    if max_running is not None:
        sets.append("max_running = :max_running")
        binds["max_running"] = max_running
    if paused is not None:
        sets.append("paused = :paused")
        binds["paused"] = int(paused)
    if sets:
        backend.execute(conn, f"UPDATE {QUEUES} SET {', '.join(sets)} WHERE queue_name = :queue", binds)


def queue_exists(backend: Database, conn: Any, queue: str) -> bool:
    """The default queue, a queue `queue set` created (its JOB_QUEUES row), or
    one holding queued or running jobs (rows older than queue rows)."""
    if queue == DEFAULT_QUEUE:
        return True
    cur = backend.execute(conn, f"SELECT 1 FROM {QUEUES} WHERE queue_name = :queue", {"queue": queue})
    if cur.fetchone() is not None:
        return True
    return unfinished_in_queue(backend, conn, queue) > 0


def unfinished_in_queue(backend: Database, conn: Any, queue: str) -> int:
    """Queued and running jobs of `queue` (running ones a worker left
    count too, until cleanup writes them lost)."""
    binds: dict[str, Any] = {}
    cur = execute(backend, conn, f"""SELECT COUNT(*) FROM {TABLE}
        WHERE status IN (:st_queued, :st_running) AND {in_queue(queue, binds)}""", binds)
    return int(cur.fetchone()[0])


def delete_queue(backend: Database, conn: Any, queue: str) -> int:
    """Delete the queue's JOB_QUEUES row, in the caller's transaction (it
    locks the row, or opens SQLite's write transaction, so a claim cannot
    slip between the caller's count and its commit). Returns rows deleted."""
    cur = backend.execute(conn, f"DELETE FROM {QUEUES} WHERE queue_name = :queue", {"queue": queue})
    return cur.rowcount


def list_queues(backend: Database, conn: Any) -> list[QueueState]:
    """Every configured queue and every queue holding queued or running jobs."""
    configured = {}
    for name, limit, paused in backend.execute(
            conn, f"SELECT queue_name, max_running, paused FROM {QUEUES}").fetchall():
        configured[name] = (DEFAULT_MAX_RUNNING if limit is None else int(limit), bool(paused))
    cur = execute(backend, conn, f"""
        SELECT COALESCE(queue, '{DEFAULT_QUEUE}') AS q,
               SUM(CASE WHEN status = :st_queued AND claim_token IS NULL THEN 1 ELSE 0 END),
               SUM(CASE WHEN {_ACTIVE} THEN 1 ELSE 0 END)
          FROM {TABLE} WHERE status IN (:st_queued, :st_running)
         GROUP BY COALESCE(queue, '{DEFAULT_QUEUE}')""")
    counts = {r[0]: (int(r[1] or 0), int(r[2] or 0)) for r in cur.fetchall()}
    out = []
    for name in sorted(set(configured) | set(counts) | {DEFAULT_QUEUE}):
        limit, paused = configured.get(name, (DEFAULT_MAX_RUNNING, False))
        queued, running = counts.get(name, (0, 0))
        out.append(QueueState(name, limit, paused, running, queued))
    return out
