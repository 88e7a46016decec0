"""Starting workers: there is no daemon. Each free slot of a queue gets a
detached worker, reserved a job in the database first so that no two
commands start one for the same slot; a worker drains its queue, then exits.
A live `jobctl worker` pool serving a queue is left to claim its jobs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from . import detached, lifecycle, store, talk
from .config import Settings
from .errors import DatabaseError, JobctlError
from .model import PoolState, utcnow
from .session import Session


class Launcher:
    def __init__(self, session: Session):
        self.session = session
        #: heal_once ran (reading commands heal at most once each)
        self.healed = False

    @property
    def _settings(self) -> Settings:
        # the backend's settings: they hold a password asked for at the prompt
        return replace(self.session.settings, connection=self.session.backend.settings)

    def wake_later(self, queue: str, not_before: dt.datetime | None) -> None:
        """A job that may not start yet: a sleeping timer process (no
        connection) starts a worker for its queue then."""
        if not_before is None or not_before <= utcnow():
            return
        detached.spawn_timer(self._settings, queue, not_before)

    def start_workers(self, queues: Sequence[str]) -> int:
        """Reserve the next eligible job of each queue while it has a free
        slot, and start a detached worker for each reservation. The worker
        claims that job, then the next ones of its queue, until none is
        eligible. Returns how many started."""
        import uuid  # lazily (with the platform module it loads): only a free slot needs it

        session, jobs = self.session, self.session.lifecycle
        started = 0
        for queue in queues:
            with session.db() as conn:
                if self.pool_serves(conn, queue):
                    continue  # its pool heard of the work and claims it
            while True:
                token = uuid.uuid4().hex
                with session.db() as conn:
                    job_id = jobs.claim_next(conn, queue, token=token)
                if job_id is None:
                    break
                try:
                    detached.spawn(self._settings, job_id, token)
                except OSError as exc:
                    reason = f"could not start the worker: {exc}"
                    with session.db() as conn:
                        jobs.fail_unstarted(conn, job_id, utcnow(), reason)
                        conn.commit()
                    raise JobctlError(f"job {job_id} failed: {reason}") from exc
                started += 1
        return started

    def heal(self, *, every_free_slot: bool = True) -> int:
        """Start a worker for each free slot of every queue holding eligible
        jobs that no worker has reserved (a host that rebooted, a worker
        killed between jobs). `cleanup` fills every free slot, right after
        marking lost jobs lost. Reading commands (status, list, wait, cancel,
        queue list) act only on queues where no worker is alive at all: where
        one is, it takes the next job itself as soon as it finishes its own,
        and a worker started beside it in that moment would only overlap it."""
        self.healed = True
        backend = self.session.backend
        with self.session.db() as conn:
            now = self.session.lifecycle.clock(conn)  # a sign of life is judged by the server's clock
            fresh = now - dt.timedelta(seconds=self.session.settings.tunables.lost_after_s)
            queues = [q for q in store.queues_needing_workers(backend, conn, now)
                      if store.claimable(backend, conn, q, now)
                      and (every_free_slot or not store.live_workers(backend, conn, q, fresh))]
            conn.commit()
        return self.start_workers(queues) if queues else 0

    def heal_once(self) -> int:
        """heal() for reading commands, after their own read worked: at most
        once each, and never their failure (a read-only account, a busy
        database): they still show what they read. A read never waits for
        another writer: with the write lock taken, the reservation is left
        to the next command (or to the writer, often a worker itself)."""
        if self.healed:
            return 0
        try:
            with self.session.db() as conn, self.session.backend.writes_without_waiting(conn):
                return self.heal(every_free_slot=False)
        except JobctlError as exc:
            if isinstance(exc, DatabaseError) and exc.transient:
                return 0  # the lock is taken (or the connection went): next time
            talk.say(f"notice: could not start a worker for waiting jobs: {exc.message}")
            return 0

    # -- worker pools ------------------------------------------------------------------
    def judged_pools(self, conn: Any,
                     now: dt.datetime | None = None) -> list[tuple[store.WorkerRow, str]]:
        """Each JOB_WORKERS row with its state (running, stopping or gone:
        lifecycle.describe_worker); commits. Raises when the table cannot be read."""
        session = self.session
        rows = store.list_workers(session.backend, conn)
        conn.commit()
        if rows and now is None:
            now = session.lifecycle.clock(conn)  # the clock their heartbeats are written with
        return [(w, lifecycle.describe_worker(w, host=session.lifecycle.host,
                                              lost_after_s=session.settings.tunables.lost_after_s,
                                              now=now))
                for w in rows]

    def forget_gone_pools(self, conn: Any, now: dt.datetime) -> None:
        """cleanup: the JOB_WORKERS rows of pools that are gone (killed, or a
        host that rebooted); their jobs were judged by the lost rule already."""
        try:
            gone = [w.worker_id for w, state in self.judged_pools(conn, now) if state == PoolState.GONE]
            store.delete_workers(self.session.backend, conn, gone)
            conn.commit()
        except Exception:  # noqa: BLE001 - no pool table (an older schema): nothing to forget
            conn.rollback()

    def pool_serves(self, conn: Any, queue: str) -> bool:
        """A live `jobctl worker` serves `queue`: submit leaves the job to it.
        A database without JOB_WORKERS (or a role that may not read it) has none."""
        try:
            judged = self.judged_pools(conn)
        except Exception:  # noqa: BLE001 - no pool table: daemon-free workers only
            conn.rollback()
            return False
        return any(w.serves(queue) and state == PoolState.RUNNING for w, state in judged)


def start_workers(settings: Settings, queues: Sequence[str]) -> int:
    """Workers for the free slots of `queues`, on a connection of their own
    (a worker whose job completed, for the jobs of other queues waiting for it)."""
    with Session(settings) as session:
        return Launcher(session).start_workers(queues)
