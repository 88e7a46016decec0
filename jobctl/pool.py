"""`jobctl worker`: a pool that runs up to N jobs at once in one process.

It claims the next eligible jobs of the queues it serves (every queue unless
--queue names some) within each queue's limit, under the same queue lock and
count as a daemon-free worker (`Lifecycle.claim_batch`), so pools on many
hosts and daemon-free workers share one limit. A slot that completes a job
claims its queue's next one in the same commit (the hand-over: see
store.claim_batch for why that needs no lock). Each
job runs as a `runner.Worker` on a call connection of its own; one
bookkeeping connection (`runner.Books`) carries the claims, heartbeats,
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
import heapq
import os
import select
import signal
import threading
import time
import uuid
from typing import Any

from . import lifecycle, store
from .backends import get_backend
from .config import Settings
from .errors import DatabaseError, UsageError, describe_exception
from .model import Job, JobStatus, utcnow
from .detached import note
from .books import Books, Signatures
from .jobrun import INTERRUPT_GRACE_S
from .runner import Worker

#: the largest --concurrency: each slot is a database session
MAX_CONCURRENCY = 256


class WatchLater:
    """Starts a pooled job's watchdog once the job has run for DELAY_S: a
    short job ends before and never pays for a thread (a third of a no-op
    job's cost in a pool). Nothing is missed meanwhile: its timeout has its
    own timer, a cancel or progress waits for the watchdog's first round,
    well within the second they are promised in, and the first heartbeat is
    due heartbeat_s after the claim."""

    DELAY_S = 0.05

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.due: list[tuple[float, int, Worker]] = []
        self.count = 0
        threading.Thread(target=self._run, daemon=True, name="watch-later").start()

    def __call__(self, worker: Worker) -> None:
        with self.cond:
            heapq.heappush(self.due, (time.monotonic() + self.DELAY_S, self.count, worker))
            self.count += 1
            self.cond.notify()

    def _run(self) -> None:
        while True:
            with self.cond:
                while not self.due:
                    self.cond.wait()
                wait = self.due[0][0] - time.monotonic()
                if wait > 0:
                    self.cond.wait(wait)
                    continue
                worker = heapq.heappop(self.due)[2]
            worker.start_watch()


class Pool:
    def __init__(self, settings: Settings, *, queues: tuple[str, ...] = (), concurrency: int = 4,
                 grace_s: float = 60.0):
        if not 1 <= concurrency <= MAX_CONCURRENCY:
            raise UsageError(f"--concurrency must be from 1 to {MAX_CONCURRENCY}")
        if not 0 <= grace_s <= 30 * 86400:
            raise UsageError("--grace must be from 0 to 30 days")
        self.settings = settings
        self.tunables = settings.tunables
        self.backend = get_backend(settings.connection)
        self.lifecycle = lifecycle.Lifecycle(self.backend, self.tunables)
        self.books = Books(self.backend)
        self.signatures = Signatures(self.backend)
        #: started in run(), after the signals are blocked (a thread started
        #: before would take SIGTERM's default action: the end of the pool)
        self.watch_later: WatchLater | None = None
        self.queues = queues
        self.concurrency = concurrency
        self.grace_s = grace_s
        self.worker_id = uuid.uuid4().hex
        self.pid = os.getpid()
        #: job id -> its Worker, while its thread runs
        self.running: dict[str, Worker] = {}
        #: call connections ready for the next job, with their server sessions
        self.spare: list[tuple[Any, str | None]] = []
        #: queues whose JOB_QUEUES row this pool has seen
        self.known: set[str] = set()
        #: each queue's limit when last claimed from (0: unlimited, whose
        #: hand-over needs no count)
        self.limits: dict[str, int] = {}
        #: jobs completed since the last claim round (their dependents may start)
        self.completed: list[str] = []
        self.lock = threading.Lock()
        self.stop_signal: str | None = None
        self.cancel_now = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        #: the interval between claims when no news arrives (new work on
        #: SQLite/Oracle, a start time reached, a database come back)
        self.poll_s = self.tunables.cancel_poll_s

    # -- the loop ------------------------------------------------------------------------
    def run(self, on_ready: Any = None) -> int:
        self._catch_signals()
        self.watch_later = WatchLater()
        if not self._connect_books():
            return 0  # told to stop before the database was ever reachable
        self._register()
        if on_ready is not None:
            on_ready(self)
        next_beat = 0.0
        while self.stop_signal is None:
            try:
                if time.monotonic() >= next_beat:
                    self._beat("running")
                    next_beat = time.monotonic() + self.tunables.heartbeat_s
                self._claim_free_slots()
            except Exception as exc:  # noqa: BLE001 - the database went away: reconnect, go on
                note("pool", f"worker {self.worker_id}: {describe_exception(exc)}")
                self._sleep(min(self.poll_s, 1.0))
                self._connect_books()
                continue
            self._sleep(self.poll_s)
        self._drain()
        self._deregister()
        self._close()
        return 0

    def active(self) -> list[Worker]:
        """The jobs holding a slot: a call abandoned after its interrupt
        failed (its outcome recorded) holds none."""
        with self.lock:
            return [w for w in self.running.values() if not w.abandoned.is_set()]

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
        conn, _ = ready
        try:
            conn.rollback()
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
        self._wake()

    def _claim_one(self, conn: Any, queue: str, session: str | None, *,
                   handover: bool) -> Job | None:
        """A slot's next job of `queue`, run by `session` on `conn`: in the
        transaction that records its current one (`handover`: see
        Worker._hand_over), or in a transaction of its own."""
        if self.stop_signal is not None:
            return None
        jobs = self.lifecycle.claim_batch(conn, queue, token=uuid.uuid4().hex, pid=self.pid,
                                          sessions=[session], known_queue=True,
                                          commit=not handover, spare=self.concurrency,
                                          handover=handover, limits=self.limits)
        return jobs[0] if jobs else None

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

    # -- this pool's row -------------------------------------------------------------
    def _register(self) -> None:
        host = self.lifecycle.host
        while True:
            try:
                with self.books.lock:
                    gone = [w.worker_id for w in store.list_workers(self.backend, self.books.conn)
                            if w.host == host and not lifecycle.pid_alive(w.pid)]
                    store.delete_workers(self.backend, self.books.conn, gone)
                    store.register_worker(self.backend, self.books.conn, worker_id=self.worker_id,
                                          host=host, pid=self.pid, queues=self.queues,
                                          concurrency=self.concurrency, now=utcnow())
                    self.books.conn.commit()
                return
            except Exception as exc:
                with contextlib.suppress(Exception):
                    self.books.conn.rollback()
                if self.backend.is_missing_table(exc):
                    raise DatabaseError("table JOB_WORKERS is missing: run jobctl db init "
                                        "to create it") from exc
                if not self.backend.is_transient(exc):
                    raise self.backend.translate_error(exc) from exc
                self._sleep(1.0)
                if self.stop_signal is not None or not self._connect_books():
                    return

    def _beat(self, state: str) -> None:
        with self.books.lock:
            try:
                busy = len(self.active())
                if not store.worker_heartbeat(self.backend, self.books.conn, self.worker_id,
                                              now=utcnow(), running=busy, state=state):
                    # cleanup took the row while this pool was frozen: it is alive
                    store.register_worker(self.backend, self.books.conn, worker_id=self.worker_id,
                                          host=self.lifecycle.host, pid=self.pid,
                                          queues=self.queues, concurrency=self.concurrency,
                                          now=utcnow())
                self.books.conn.commit()
            except BaseException:
                with contextlib.suppress(Exception):
                    self.books.conn.rollback()
                raise

    def _deregister(self) -> None:
        for attempt in range(3):
            try:
                with self.books.lock:
                    store.deregister_worker(self.backend, self.books.conn, self.worker_id)
                    self.books.conn.commit()
                return
            except Exception as exc:  # noqa: BLE001 - a row left behind reads as a gone worker
                note("pool", f"could not remove worker {self.worker_id}: {describe_exception(exc)}")
                time.sleep(0.5 * 2 ** attempt)
                with self.books.lock, contextlib.suppress(Exception):
                    self.books.reconnect()

    # -- the database coming and going --------------------------------------------------
    def _connect_books(self) -> bool:
        """A working bookkeeping connection that listens for news, retried
        with backoff for as long as it takes; False when told to stop first."""
        delay = 0.1
        while True:
            try:
                with self.books.lock:
                    if self.books.conn is None:
                        self.books.conn = self.backend.connect()
                    else:
                        self.books.reconnect()
                    self.books.listen()
                    self.books.conn.commit()
                return True
            except Exception as exc:
                if not self.backend.is_transient(exc) and self.books.conn is None:
                    raise self.backend.translate_error(exc) from exc
                note("pool", f"worker {self.worker_id}: waiting for the database: "
                             f"{describe_exception(exc)}")
                if self.stop_signal is not None and not self.active():
                    return False
                self._sleep(delay)
                delay = min(delay * 2, 5.0)

    # -- stopping ----------------------------------------------------------------------
    def _catch_signals(self) -> None:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        threading.Thread(target=self._hear_signals, daemon=True, name="signals").start()

    def _hear_signals(self) -> None:
        while True:
            signum = signal.sigwait({signal.SIGTERM, signal.SIGINT})
            if self.stop_signal is None:
                self.stop_signal = signal.Signals(signum).name
            else:
                self.cancel_now = True  # a second signal: no more grace
            self._wake()

    def stop(self, signame: str = "SIGTERM") -> None:
        """As the signal does (for an embedding program and the tests)."""
        if self.stop_signal is None:
            self.stop_signal = signame
        else:
            self.cancel_now = True
        self._wake()

    def _drain(self) -> None:
        deadline = time.monotonic() + self.grace_s
        next_beat = 0.0
        while True:
            if time.monotonic() >= next_beat:
                # `stopping`, and alive for other hosts through a long grace
                with contextlib.suppress(Exception):
                    self._beat("stopping")
                next_beat = time.monotonic() + self.tunables.heartbeat_s
            if not self.active() or self.cancel_now or time.monotonic() >= deadline:
                break
            self._sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        why = (f"cancelled: the worker received {self.stop_signal} again" if self.cancel_now else
               f"cancelled: the worker received {self.stop_signal} and the job was still running "
               f"after its --grace of {self.grace_s:g}s")
        for worker in self.active():
            worker.request_stop(JobStatus.CANCELLED, why)
        # each call is interrupted and records `cancelled`; one that ignores
        # its interrupt is given up (and recorded) by its watchdog
        settle_by = time.monotonic() + max(INTERRUPT_GRACE_S, 3 * self.tunables.heartbeat_s) + 30
        while self.active() and time.monotonic() < settle_by:
            self._sleep(0.5)

    def _close(self) -> None:
        with self.lock:
            spare, self.spare = self.spare, []
        for conn, _ in spare:
            with contextlib.suppress(Exception):
                conn.close()
        self.books.close()

    # -- sleeping ----------------------------------------------------------------------
    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"!")

    def _sleep(self, seconds: float) -> None:
        """Until a job ends, a signal, news on the bookkeeping connection
        (work queued: claim at once), or `seconds`."""
        fds = [self._wake_r]
        news = self.books.wait_fd()
        if news is not None:
            fds.append(news)
        try:
            ready, _, _ = select.select(fds, [], [], seconds)
        except (OSError, ValueError):
            ready = []
            time.sleep(min(seconds, 0.1))
        if news is not None and news in ready:
            # a cancel wakes its job's watchdog; queued work, the next claim round
            with self.books.lock, contextlib.suppress(Exception):
                self.books.read_news()
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self._wake_r, 512):
                pass
