"""`jobctl worker`: a pool that runs up to N jobs at once in one process.

It claims the next eligible jobs of the queues it serves (every queue unless
--queue names some) within each queue's limit, under the same queue lock and
count as a daemon-free worker (`Lifecycle.claim_batch`), so pools on many
hosts and daemon-free workers share one limit. A slot that completes a job
claims its queue's next one in the same commit (the hand-over: see
store.claim_batch for why that needs no lock). Each
job runs as a `runner.Worker` on a call connection of its own; one
bookkeeping connection (`books.Books`) carries the claims, heartbeats,
cancel news, progress, output and the outcomes of failures for all of them.
Its row in JOB_WORKERS says it is alive, which queues it serves and how busy
it is: submit leaves those queues to it (no Python start-up per job), and
`jobctl worker list` shows it.

Stopping: SIGTERM or SIGINT stops the claiming; running jobs have --grace
seconds to finish, then are cancelled and recorded `cancelled`; exit 0. A
second signal cancels them at once. SIGKILL leaves its jobs to the lost rule
(their worker pid is gone): each becomes `lost`, none is run again.

Losing the database: nothing is claimed until the bookkeeping connection is
back (reconnected with backoff, for as long as it takes); a call whose
session died ends `failed` with the server's reason, its work rolled back,
and every outcome is written as soon as a connection takes it (the job's own
retries). A job is claimed once, by one token, so it never runs twice.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
import uuid
from typing import Any

from . import lifecycle, store
from .detached import note
from .errors import describe_exception
from .model import Job, JobStatus, PoolState, utcnow
from .poolbase import PoolBase, WatchLater
from .runner import Worker


class Pool(PoolBase):
    """The loop: claim free slots, run each job on a slot of its own, let
    completed jobs' dependents start."""

    def run(self, on_ready: Any = None) -> int:
        self.catch_signals()
        self.watch_later = WatchLater()
        if not self.connect_books():
            return 0  # told to stop before the database was ever reachable
        self.register()
        if on_ready is not None:
            on_ready(self)
        next_beat = 0.0
        while self.stop_signal is None:
            try:
                if time.monotonic() >= next_beat:
                    self.beat(PoolState.RUNNING)
                    next_beat = time.monotonic() + self.tunables.heartbeat_s
                self._claim_free_slots()
            except Exception as exc:  # noqa: BLE001 - the database went away: reconnect, go on
                note("pool", f"worker {self.worker_id}: {describe_exception(exc)}")
                self.sleep(min(self.poll_s, 1.0))
                self.connect_books()
                continue
            self.sleep(self.poll_s)
        self.drain()
        self.deregister()
        self.close_all()
        return 0

    def _claim_free_slots(self) -> None:
        """Claim while slots are free, each queue in turn so that none starves
        the others. Each claim first has its call connections ready (and their
        server sessions known): a job is never claimed that this pool cannot
        start at once, and its row says which session runs it."""
        self._settle_completed()
        while self.stop_signal is None:
            free = self.concurrency - len(self.active())
            if free <= 0:
                return
            if self.queues:
                queues = list(self.queues)
            else:
                with self.books.lock:
                    queues = store.queues_needing_workers(self.backend, self.books.conn, utcnow())
                    self.books.conn.commit()
            claimed = 0
            share = max(1, free // max(1, len(queues)))
            for queue in queues:
                free = self.concurrency - len(self.active())
                if free <= 0 or self.stop_signal is not None:
                    return
                ready = [self._call_connection() for _ in range(min(free, share))]
                token = uuid.uuid4().hex
                try:
                    with self.books.lock:
                        self.books.heard_work()  # this round looks at whatever was announced
                        jobs = self.lifecycle.claim_batch(self.books.conn, queue, token=token,
                                                          pid=self.pid,
                                                          sessions=[sid for _, sid in ready],
                                                          known_queue=queue in self.known,
                                                          spare=self.concurrency,
                                                          limits=self.limits)
                        self.known.add(queue)
                except BaseException:
                    for conn in ready:
                        self._give_back(conn)
                    raise
                for job, conn in zip(jobs, ready):
                    self._start(job, conn)
                for conn in ready[len(jobs):]:
                    self._give_back(conn)
                claimed += len(jobs)
            if not claimed:
                return

    def _call_connection(self) -> tuple[Any, str | None]:
        """A call connection and its server session. A spare one is asked for
        its session again first: it may have been terminated while it waited
        (a job must not be claimed for a dead connection)."""
        while True:
            with self.lock:
                if not self.spare:
                    break
                conn, _ = self.spare.pop()
            try:
                session = self.backend.session_id(conn)
                conn.commit()
                return conn, session
            except Exception:  # noqa: BLE001 - gone: try the next, or open one
                with contextlib.suppress(Exception):
                    conn.close()
        conn = self.backend.connect()
        try:
            session = self.backend.session_id(conn)
            conn.commit()
        except Exception:  # noqa: BLE001 - unknown session: lost stays heartbeat-only
            conn.rollback()
            session = None
        return conn, session

    def _give_back(self, ready: tuple[Any, str | None]) -> None:
        """A call connection back among the spare ones, with nothing of its
        last job left for later (Procedures.idle_job_session)."""
        conn, _ = ready
        try:
            conn.rollback()
            if not self.backend.idle_job_session(conn):
                raise RuntimeError("the session could not be reset")
        except Exception:  # noqa: BLE001 - broken (a terminated session): the next job opens one
            with contextlib.suppress(Exception):
                conn.close()
            return
        with self.lock:
            self.spare.append(ready)

    def _start(self, job: Job, ready: tuple[Any, str | None]) -> None:
        worker = self._worker(job, ready)
        threading.Thread(target=self._slot, args=(worker, job, ready), daemon=True,
                         name=f"slot-{job.job_id[:8]}").start()

    def _worker(self, job: Job, ready: tuple[Any, str | None]) -> Worker:
        worker = Worker(self.settings.connection, self.tunables, job.job_id, token=job.claim_token,
                        connections=(None, ready[0]), books=self.books, pooled=True,
                        backend=self.backend, signatures=self.signatures, jobs=self.lifecycle)
        worker.claim_following = functools.partial(self._claim_one, session=ready[1],
                                                   handover=True)
        worker.handover_in_call = self._handover_in_call
        worker.watch_later = self.watch_later
        with self.lock:
            self.running[job.job_id] = worker
        return worker

    def _slot(self, worker: Worker, job: Job, ready: tuple[Any, str | None]) -> None:
        """One slot: run the job, then claim the next one of its queue for
        itself, on its own connection, and run that, until none is eligible
        (or the pool stops): a finished job's slot does not wait for the
        pool's loop, and slots claim side by side."""
        while True:
            kept = self._run_job(worker, job, ready)
            if kept is None:
                break
            following = worker.following or self._claim_for_slot(job.queue, kept)
            if following is None:
                self._give_back(kept)
                break
            with self.lock:
                self.running.pop(worker.job_id, None)
            job, ready = following, kept
            worker = self._worker(job, ready)
        with self.lock:
            self.running.pop(worker.job_id, None)
        self.wake()

    def _claim_one(self, conn: Any, queue: str, session: str | None, *,
                   handover: bool, apart: bool = False) -> Job | None:
        """A slot's next job of `queue`, run by `session` on `conn`: in the
        transaction that records its current one (`handover`: see
        Worker._hand_over), or in a transaction of its own. `apart`: the
        current job's outcome is committed already (the call wrote it), so
        the lock-free hand-over may only take a job of an unlimited queue,
        which has no limit to hold; a limited queue's next job is claimed
        afterwards, under its lock."""
        if self.stop_signal is not None or (apart and self.limits.get(queue) != 0):
            return None
        if apart:
            self.backend.relax_commit(conn)  # a claim alone (or with output): see claim_batch
        jobs = self.lifecycle.claim_batch(conn, queue, token=uuid.uuid4().hex, pid=self.pid,
                                          sessions=[session], known_queue=True,
                                          commit=not handover, spare=self.concurrency,
                                          handover=handover, limits=self.limits)
        return jobs[0] if jobs else None

    def _handover_in_call(self, queue: str, session: str | None):
        if self.stop_signal is not None:
            return None
        return lifecycle.handover_in_call(self.backend, queue, host=self.lifecycle.host,
                                          pid=self.pid, token=uuid.uuid4().hex, session=session)

    def _claim_for_slot(self, queue: str, ready: tuple[Any, str | None]) -> Job | None:
        try:
            return self._claim_one(ready[0], queue, ready[1], handover=False)
        except Exception as exc:  # noqa: BLE001 - the pool's loop claims it later
            note("pool", f"worker {self.worker_id}: claim on a slot: {describe_exception(exc)}")
            return None

    def _run_job(self, worker: Worker, job: Job,
                 ready: tuple[Any, str | None]) -> tuple[Any, str | None] | None:
        """Run one job; returns its call connection, clean, for the next one
        (None: the connection is gone or was abandoned with its call)."""
        try:
            worker.run(claimed=job, session=ready[1])
        except BaseException as exc:  # noqa: BLE001 - one job's crash is that job's outcome
            note(worker.job_id, "pooled job crashed: " + describe_exception(exc))
            with contextlib.suppress(Exception):
                worker.crashed(exc)
        if worker.outcome is JobStatus.COMPLETED:
            with self.lock:
                self.completed.append(worker.job_id)
        else:
            try:
                worker.settle_dependents()  # cancels the jobs that waited for it
            except Exception as exc:  # noqa: BLE001 - the next claim cancels them
                note(worker.job_id, f"could not cancel the jobs waiting for it: "
                                    f"{describe_exception(exc)}")
        worker.release()
        if worker.abandoned.is_set():
            with contextlib.suppress(Exception):
                worker.call_conn.close()
            return None
        if worker.call_conn is None:
            return None
        ready = ready if worker.call_conn is ready[0] else (worker.call_conn, worker.session_id())
        try:
            ready[0].rollback()
        except Exception:  # noqa: BLE001 - broken (a terminated session): the next job opens one
            with contextlib.suppress(Exception):
                ready[0].close()
            return None
        return ready

    def _settle_completed(self) -> None:
        """Jobs of other queues that waited for the ones this pool completed
        may start now: a worker for each such queue (this pool's own claims
        take the rest). One look per round, not one per job."""
        with self.lock:
            done, self.completed = set(self.completed), []
        if not done:
            return
        with self.books.lock:
            waiting = store.queued_with_dependencies(self.backend, self.books.conn)
            self.books.conn.commit()
        others = sorted({queue for _, after, queue in waiting
                         if done & set(after) and not (not self.queues or queue in self.queues)})
        if others:
            from . import launcher

            launcher.start_workers(self.settings, others)
