"""One job's run as its worker sees it: the state every part of the worker
shares (connections, claim token, how and why it was told to stop), and the
process's signals. The parts build on it in turn: recording the outcome
(jobctl.outcome), the watchdog (jobctl.watchdog), claiming and handing over
(jobctl.claiming), and the call itself (jobctl.runner.Worker)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import uuid
from typing import Any

from . import detached, lifecycle
from .backends import get_backend
from .backends.base import CallContext
from .books import Books, Signatures
from .config import ConnectionSettings, Tunables
from .errors import describe_exception
from .model import Job, JobStatus

#: after an interrupt, how long the call may take to give up before the
#: watchdog writes the outcome itself and ends the process
INTERRUPT_GRACE_S = 10.0

#: at most one write of progress/output per this many seconds while they change
FLUSH_S = 1.0
#: a change is written this long after it is first seen, so that what a
#: procedure says in one breath (a progress notice and its line) lands together
BATCH_S = 0.05


class Signals:
    """SIGTERM/SIGINT go to the job the worker runs now; once received, the
    worker takes no further job of its queue. One listener per process,
    however many jobs it runs in turn."""

    current: JobRun | None = None
    received: str | None = None
    _started = False

    @classmethod
    def attach(cls, worker: JobRun) -> None:
        cls.current = worker
        if cls._started:
            return
        cls._started = True
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        threading.Thread(target=cls.listen_for_cancel, daemon=True, name="signals").start()

    @classmethod
    def listen_for_cancel(cls) -> None:
        while True:
            signum = signal.sigwait({signal.SIGTERM, signal.SIGINT})
            cls.received = signal.Signals(signum).name
            if cls.current is not None:
                cls.current.request_stop(JobStatus.CANCELLED, f"worker received {cls.received}")


class JobRun:
    def __init__(self, connection: ConnectionSettings, tunables: Tunables, job_id: str,
                 token: str | None = None, connections: tuple[Any, Any] = (None, None),
                 books: Books | None = None, pooled: bool = False, backend: Any = None,
                 signatures: Signatures | None = None,
                 jobs: lifecycle.Lifecycle | None = None):
        self.settings = connection
        self.tunables = tunables
        self.job_id = job_id
        self.backend = backend or get_backend(connection)
        self.ctx = CallContext(job_id, result_rows=tunables.result_rows)
        #: in a pool, every job's bookkeeping shares the pool's connection;
        #: the daemon-free worker hands its own from job to job
        self.books = books or Books(self.backend, connections[0])
        #: a pooled job leaves signals to the pool, and a call that ignores
        #: its interrupt to the pool too (it may not end the process)
        self.pooled = pooled
        self.signatures = signatures
        #: set once the outcome is recorded and the call was abandoned (pool)
        self.abandoned = threading.Event()
        self.state_lock = threading.Lock()
        self.in_call = False
        self.stop_reason: JobStatus | None = None
        self.stop_message: str | None = None
        self.interrupted_at: float | None = None
        self.timeout_s: float | None = None
        self.done = threading.Event()
        self.finished = False
        # the previous job's connection, when this worker drains its queue
        self.call_conn = connections[1]
        self.started_mono = time.monotonic()
        #: written at claim (or already, by the reservation that started this
        #: worker): every write of the outcome is guarded by it
        self.token = token or uuid.uuid4().hex
        #: the server session running the call (DB_SESSION), when the backend has one
        self.session: str | None = None
        self.lifecycle = jobs or lifecycle.Lifecycle(self.backend, tunables)
        self.live_path = lifecycle.liveness_path(self.backend, job_id)
        self.stop_retrying = False
        #: the watchdog sleeps in select() on this pipe (and on the watch
        #: connection's socket where cancels are announced): new progress or
        #: output, and the end of the run, wake it at once
        #: (made with the watchdog: a pooled job that ends first never needs it)
        self._wake_r = self._wake_w = -1
        self.ctx.on_change = self._wake
        self.books.wakers[job_id] = self._wake
        self._watching = False
        self._releasing = False
        self._released = False
        #: how the run ended, as far as this worker knows (None: not run)
        self.outcome: JobStatus | None = None
        #: the job's queue, once read; and the next job of it reserved for
        #: this worker in the outcome's transaction: (id, token)
        self.queue: str | None = None
        self.reserved: tuple[str, str] | None = None
        #: a pool's slot: how to claim its next job in this job's commit, and what it claimed
        self.claim_following: Any = None
        #: a pool's slot: the statement claiming its next job in the call's own
        #: last transaction (CallContext.hand_over), given the queue and session
        self.handover_in_call: Any = None
        #: a pool starts the watchdog a moment later (see poolbase.WatchLater)
        self.watch_later: Any = None
        self.following: Job | None = None
        #: counts attempts, so a timer left from an earlier attempt stops nothing
        self.attempt_no = 0
        #: the database's code of the last error (DB_ERROR_CODE), and whether
        #: the server ended the call's session on purpose (never retried)
        self.error_code: str | None = None
        self.killed = False
        #: the call connection was reset (or replaced) since the job's call
        self.session_clean = False
        #: the watchdog saw the call's commit marker (or gave up looking)
        self.mark_seen = False

    @property
    def watch_conn(self) -> Any:
        return self.books.conn

    @watch_conn.setter
    def watch_conn(self, conn: Any) -> None:
        self.books.conn = conn

    @property
    def db_lock(self) -> threading.Lock:
        return self.books.lock

    @property
    def listening(self) -> bool:
        return self.books.listening

    def _wake(self) -> None:
        with self.state_lock:
            if self._released or self._wake_w < 0:
                return  # no watchdog yet, or its descriptor may belong to another job now
            with contextlib.suppress(BlockingIOError, OSError):
                os.write(self._wake_w, b"!")   # a full pipe is awake enough

    def request_stop(self, reason: JobStatus, message: str) -> None:
        with self.state_lock:
            if self.stop_reason is not None:
                return
            self.stop_reason, self.stop_message = reason, message
            self.ctx.stop_requested.set()
            if self.in_call:
                self.interrupted_at = time.monotonic()
                try:
                    self.backend.interrupt(self.call_conn)
                except Exception as exc:
                    detached.note(self.job_id, f"interrupt failed: {describe_exception(exc)}")
