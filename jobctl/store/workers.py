"""JOB_WORKERS: the rows `jobctl worker` pools register and beat."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from ..model import PoolState
from .rows import beat_value, bind_time, read_text, split_ids

if TYPE_CHECKING:
    from ..backends.base import Database

# -- worker pools (`jobctl worker`) ---------------------------------------------

WORKERS = "JOB_WORKERS"

#: QUEUES of a pool that serves every queue
ALL_QUEUES = "*"


class WorkerRow(NamedTuple):
    """A JOB_WORKERS row (a NamedTuple, not a dataclass: this module is on
    the path of `jobctl status`, whose start-up a dataclass would cost)."""

    worker_id: str
    host: str
    pid: int
    queues: tuple[str, ...]       # empty: every queue
    concurrency: int
    running: int
    state: str                    # running | stopping
    started_at: dt.datetime | None
    heartbeat_at: dt.datetime | None

    def serves(self, queue: str) -> bool:
        return not self.queues or queue in self.queues


def register_worker(backend: Database, conn: Any, *, worker_id: str, host: str, pid: int,
                    queues: Sequence[str], concurrency: int, now: dt.datetime) -> None:
    binds = {"worker_id": worker_id, "host": host, "pid": pid, "state": PoolState.RUNNING.value,
             "queues": ",".join(queues) or ALL_QUEUES, "concurrency": concurrency,
             "now": bind_time(backend, now)}
    backend.execute(conn, f"""INSERT INTO {WORKERS}
        (worker_id, host, pid, queues, concurrency, running, state, started_at, heartbeat_at)
        VALUES (:worker_id, :host, :pid, :queues, :concurrency, 0, :state, :now,
                {beat_value(backend, binds, now)})""", binds)


def worker_heartbeat(backend: Database, conn: Any, worker_id: str, *, now: dt.datetime,
                     running: int, state: PoolState) -> int:
    """0: the row is gone (cleanup judged the pool gone while it was frozen)."""
    binds: dict[str, Any] = {"worker_id": worker_id, "running": running, "state": state.value}
    cur = backend.execute(conn, f"""UPDATE {WORKERS}
        SET heartbeat_at = {beat_value(backend, binds, now)}, running = :running, state = :state
        WHERE worker_id = :worker_id""", binds)
    return cur.rowcount


def deregister_worker(backend: Database, conn: Any, worker_id: str) -> None:
    backend.execute(conn, f"DELETE FROM {WORKERS} WHERE worker_id = :worker_id",
                    {"worker_id": worker_id})


def list_workers(backend: Database, conn: Any) -> list[WorkerRow]:
    cur = backend.execute(conn, f"""SELECT worker_id, host, pid, queues, concurrency, running,
        state, started_at, heartbeat_at FROM {WORKERS} ORDER BY started_at, worker_id""")
    out = []
    for r in cur.fetchall():
        queues = read_text(r[3]) or ALL_QUEUES
        out.append(WorkerRow(
            worker_id=r[0], host=r[1], pid=int(r[2]),
            queues=() if queues == ALL_QUEUES else tuple(split_ids(queues)),
            concurrency=int(r[4]), running=int(r[5] or 0), state=str(r[6]),
            started_at=backend.from_db_time(r[7]), heartbeat_at=backend.from_db_time(r[8])))
    return out


def delete_workers(backend: Database, conn: Any, worker_ids: Sequence[str]) -> int:
    deleted = 0
    for worker_id in worker_ids:
        cur = backend.execute(conn, f"DELETE FROM {WORKERS} WHERE worker_id = :worker_id",
                              {"worker_id": worker_id})
        deleted += cur.rowcount
    return deleted
