"""What a `jobctl worker` pool is besides its loop: its state, its row in
JOB_WORKERS (registered, beating, removed), its bookkeeping connection
through the database coming and going, its signals and its grace when told
to stop, and the one place it sleeps."""

from __future__ import annotations

import contextlib
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
from .books import Books, Signatures
from .config import Settings
from .detached import note
from .errors import DatabaseError, UsageError, describe_exception
from .jobrun import INTERRUPT_GRACE_S
from .model import JobStatus, PoolState, utcnow
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
            if len(self.due) == 1:
                # else the thread waits for an earlier one (every job waits
                # DELAY_S), and looks at this one after it: no wake-up per job
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
                now = time.monotonic()
                ready = []
                while self.due and self.due[0][0] <= now:
                    ready.append(heapq.heappop(self.due)[2])
            for worker in ready:
                worker.start_watch()


class PoolBase:
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

    def active(self) -> list[Worker]:
        """The jobs holding a slot: a call abandoned after its interrupt
        failed (its outcome recorded) holds none."""
        with self.lock:
            return [w for w in self.running.values() if not w.abandoned.is_set()]

    def register(self) -> None:
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
                self.sleep(1.0)
                if self.stop_signal is not None or not self.connect_books():
                    return

    def beat(self, state: PoolState) -> None:
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

    def deregister(self) -> None:
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

    def connect_books(self) -> bool:
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
                self.sleep(delay)
                delay = min(delay * 2, 5.0)

    def catch_signals(self) -> None:
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
            self.wake()

    def stop(self, signame: str = "SIGTERM") -> None:
        """As the signal does (for an embedding program and the tests)."""
        if self.stop_signal is None:
            self.stop_signal = signame
        else:
            self.cancel_now = True
        self.wake()

    def drain(self) -> None:
        deadline = time.monotonic() + self.grace_s
        next_beat = 0.0
        while True:
            if time.monotonic() >= next_beat:
                # `stopping`, and alive for other hosts through a long grace
                with contextlib.suppress(Exception):
                    self.beat(PoolState.STOPPING)
                next_beat = time.monotonic() + self.tunables.heartbeat_s
            if not self.active() or self.cancel_now or time.monotonic() >= deadline:
                break
            self.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        why = (f"cancelled: the worker received {self.stop_signal} again" if self.cancel_now else
               f"cancelled: the worker received {self.stop_signal} and the job was still running "
               f"after its --grace of {self.grace_s:g}s")
        for worker in self.active():
            worker.request_stop(JobStatus.CANCELLED, why)
        # each call is interrupted and records `cancelled`; one that ignores
        # its interrupt is given up (and recorded) by its watchdog
        settle_by = time.monotonic() + max(INTERRUPT_GRACE_S, 3 * self.tunables.heartbeat_s) + 30
        while self.active() and time.monotonic() < settle_by:
            self.sleep(0.5)

    def close_all(self) -> None:
        with self.lock:
            spare, self.spare = self.spare, []
        for conn, _ in spare:
            with contextlib.suppress(Exception):
                conn.close()
        self.books.close()

    def wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"!")

    def sleep(self, seconds: float) -> None:
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
