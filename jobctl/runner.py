"""The detached worker, and how it is spawned.

The worker runs one job: started isolated (`python -I`, in `/`, so nothing
in the caller's directory is importable), its own session (it survives the
terminal closing and its parent's exit), reparented at once so its caller
has no child to reap, stdio pointed at /dev/null, files it creates private,
the connection settings and secret read from a pipe on stdin — never argv,
never the environment, from which every variable that carried a secret is
dropped. It connects (waiting out a connection storm until start_timeout),
claims the job (`queued → running`), runs the procedure
on one connection while a watchdog thread on a second connection writes the
heartbeat, hears of a cancel and records progress and output, and a timer
enforces the timeout; then writes the outcome once, guarded and retried.

Reacting within a second, with the heartbeat row still written every
heartbeat_s: a cancel is heard at once where the database announces it
(PostgreSQL NOTIFY, on the watch connection), else by reading the flag every
cancel_poll_s; the timeout is a timer of its own, which no database round
trip can delay; progress and output are written at most once a second while
they change (FLUSH_S), whatever the number of notices.
Then it reserves the next eligible job of the same queue (its own slot just
came free) and runs it on the same connections, until none is eligible: no
daemon, and never more workers than the queue's limit.

This module must import quickly: the budget from `submit` to `running` is
half a second, so no typer, no rich here.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import select
import signal
import sys
import threading
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

from . import detached, jsontext, lifecycle, store
from .backends import get_backend
from .backends.base import WORK_NEWS, CallContext
from .config import ConnectionSettings, Settings, Tunables
from .errors import JobctlError, describe_exception
from .model import Job, JobStatus, format_duration, utcnow
from .params import from_stored

#: where a worker writes what it cannot write to its job's row
log_path = detached.log_path

#: the variables that carried a secret to this worker: kept out of the
#: environment of any worker it starts in turn
_SECRET_ENV: list[str] = []

#: after an interrupt, how long the call may take to give up before the
#: watchdog writes the outcome itself and ends the process
INTERRUPT_GRACE_S = 10.0

#: at most one write of progress/output per this many seconds while they change
FLUSH_S = 1.0
#: a change is written this long after it is first seen, so that what a
#: procedure says in one breath (a progress notice and its line) lands together
BATCH_S = 0.05


def _wake(connection: ConnectionSettings, tunables: Tunables, payload: dict[str, Any]) -> int:
    import fcntl
    import hashlib

    wake = payload["wake"]
    at = dt.datetime.fromisoformat(wake["at"])
    key = hashlib.sha256(f"{connection.display}\n{wake['queue']}\n{at:%Y%m%d%H%M%S}".encode())
    path = detached.log_path().parent / "timers" / key.hexdigest()[:32]
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return 0  # another timer on this host wakes the same queue at the same second
    delay = (at - utcnow()).total_seconds()
    if delay > 0:
        time.sleep(delay + 0.05)
    from . import launcher

    settings = Settings(connection=connection, tunables=tunables,
                        secret_env=tuple(payload.get("environ", {})))
    launcher.start_workers(settings, [wake["queue"]])
    with contextlib.suppress(OSError):
        path.unlink()
    return 0


class _Signals:
    """SIGTERM/SIGINT go to the job the worker runs now; once received, the
    worker takes no further job of its queue. One listener per process,
    however many jobs it runs in turn."""

    current: Worker | None = None
    received: str | None = None
    _started = False

    @classmethod
    def attach(cls, worker: Worker) -> None:
        cls.current = worker
        if cls._started:
            return
        cls._started = True
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        threading.Thread(target=cls._listen, daemon=True, name="signals").start()

    @classmethod
    def _listen(cls) -> None:
        while True:
            signum = signal.sigwait({signal.SIGTERM, signal.SIGINT})
            cls.received = signal.Signals(signum).name
            if cls.current is not None:
                cls.current.request_stop(JobStatus.CANCELLED, f"worker received {cls.received}")


class Books:
    """The bookkeeping connection: claims, heartbeats, cancel flags and
    outcomes of every job a process runs (one job after another for a
    daemon-free worker, many at once for `jobctl worker`), under one lock.
    News the database announces on it (PostgreSQL NOTIFY) is read into
    `news` by whichever thread reads first, and taken by the one it is for."""

    NEWS_KEPT = 256

    def __init__(self, backend: Any, conn: Any = None):
        self.backend = backend
        self.conn = conn
        self.lock = threading.Lock()
        self.listening = False
        self.news: set[str] = set()
        #: job id -> how to wake its watchdog when news of it arrives, however
        #: it was read (another job's watchdog, the pool)
        self.wakers: dict[str, Any] = {}

    def listen(self) -> None:
        """Ask for news on the connection (the caller commits)."""
        self.listening = self.backend.listen_cancel(self.conn)

    def read_news(self) -> None:
        """Under the lock: take in what arrived, waking the jobs it is for."""
        fresh = set(self.backend.announcements(self.conn)) - self.news
        self.news |= fresh
        for job_id in fresh:
            if (wake := self.wakers.get(job_id)) is not None:
                wake()
        if len(self.news) > self.NEWS_KEPT:
            # every worker hears every cancel: forget those of other
            # processes' jobs (kept a while: a job just claimed may not have
            # its worker yet)
            self.news = {n for n in self.news if n in self.wakers or n.startswith(WORK_NEWS)}

    def heard_cancel(self, job_id: str) -> bool:
        """Under the lock: was a cancel of job_id announced?"""
        self.read_news()
        if job_id in self.news:
            self.news.discard(job_id)
            return True
        return False

    def heard_work(self) -> bool:
        """Under the lock: was work queued (in any queue) since last asked?"""
        self.read_news()
        work = {n for n in self.news if n.startswith(WORK_NEWS)}
        self.news -= work
        return bool(work)

    def wait_fd(self) -> int | None:
        if not self.listening or self.conn is None:
            return None
        try:
            return self.backend.cancel_wait_fd(self.conn)
        except Exception:  # noqa: BLE001 - a closed connection: nothing to wait on
            return None

    def reconnect(self, job_id: str | None = None) -> None:
        """A new connection in place of a broken one (under the lock); raises
        when the database cannot be reached."""
        fresh = self.backend.connect(job_id=job_id)
        with contextlib.suppress(Exception):
            self.conn.close()
        self.conn = fresh
        if self.listening:
            self.listen()
            self.conn.commit()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()


class Signatures:
    """A pool's resolved signatures, each reused for at most TTL_S and only
    while it is the one the job's submit recorded: a pool runs many jobs of
    the same procedure, and resolving it for every one of them was a third
    of a short job's cost. A procedure replaced (with new parameters) in the
    last second before its job starts may be called with the shape resolved
    just before; the call then fails on its parameters. A job submitted
    after the change records the new fingerprint and resolves afresh."""

    TTL_S = 1.0

    def __init__(self, backend: Any):
        self.backend = backend
        self.lock = threading.Lock()
        self.seen: dict[tuple[str, frozenset[str]], tuple[Any, float]] = {}

    def resolve(self, conn: Any, name: str, given: frozenset[str], recorded: dict) -> Any:
        key, now = (name, given), time.monotonic()
        with self.lock:
            hit = self.seen.get(key)
        if (hit is not None and now - hit[1] < self.TTL_S
                and recorded.get("fingerprint") in (None, hit[0].fingerprint)):
            return hit[0]
        sig = self.backend.resolve(conn, name, given)
        with self.lock:
            self.seen[key] = (sig, now)
        return sig


class Worker:
    def __init__(self, connection: ConnectionSettings, tunables: Tunables, job_id: str,
                 token: str | None = None, connections: tuple[Any, Any] = (None, None),
                 books: Books | None = None, pooled: bool = False, backend: Any = None,
                 signatures: Signatures | None = None,
                 jobs: lifecycle.Lifecycle | None = None):
        self.settings = connection
        self.tunables = tunables
        self.job_id = job_id
        self.backend = backend or get_backend(connection)
        self.ctx = CallContext(job_id)
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
        #: a pool starts the watchdog a moment later (see pool.WatchLater)
        self.watch_later: Any = None
        self.following: Job | None = None
        #: counts attempts, so a timer left from an earlier attempt stops nothing
        self.attempt_no = 0

    # the bookkeeping connection and its lock belong to `books`
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

    def _end_watch(self) -> None:
        self.done.set()
        self._wake()

    # -- stopping ----------------------------------------------------------------
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

    def start_watch(self) -> None:
        """Start the watchdog thread, unless the run already ended."""
        with self.state_lock:
            if self._releasing or self.done.is_set():
                return
            self._watching = True
            self._wake_r, self._wake_w = os.pipe()
            os.set_blocking(self._wake_r, False)
            os.set_blocking(self._wake_w, False)
        threading.Thread(target=self._watch, daemon=True, name="watchdog").start()

    def _watch(self) -> None:
        """The watchdog's thread: it owns the wake-up pipe while it runs, so
        a pooled job's pipe is closed by whichever of it and `release` ends last."""
        try:
            self._watchdog()
        finally:
            with self.state_lock:
                self._watching = False
                if self._releasing:
                    self._close_pipe()

    def _watchdog(self) -> None:
        """Until the run ends: hear a cancel (announced at once, or read every
        cancel_poll_s), write progress/output within FLUSH_S of a change and
        the heartbeat every heartbeat_s, and give up on a call that ignores
        its interrupt. Sleeps in select() in between, woken by changes."""
        tun = self.tunables
        hb, poll = tun.heartbeat_s, tun.cancel_poll_s
        gap = min(FLUSH_S, hb)
        grace = max(INTERRUPT_GRACE_S, 3 * hb)
        now = time.monotonic()
        next_hb, next_poll, next_flush = now + hb, now + poll, now
        dirty_since: float | None = None
        while not self.done.is_set():
            due = [next_hb, next_poll]
            if self.ctx.dirty:
                if dirty_since is None:
                    dirty_since = time.monotonic()
                due.append(max(next_flush, dirty_since + BATCH_S))
            if self.interrupted_at is not None:
                due.append(self.interrupted_at + grace)
            heard = self._sleep(max(0.0, min(due) - time.monotonic()))
            if self.done.is_set():
                return
            now = time.monotonic()
            if self.interrupted_at is not None and self.in_call and now - self.interrupted_at > grace:
                self._give_up()
                return
            #: cancel flags read this round: True, False, or None (the row is no longer ours)
            flags: list[bool | None] = []
            try:
                if now >= next_poll:
                    next_poll = now + poll
                    with contextlib.suppress(Exception):
                        self.backend.poll_progress(self.watch_conn, self.call_conn, self.ctx)
                    if not self.listening:
                        with self.db_lock:
                            flags.append(self.lifecycle.cancel_flag(self.watch_conn, self.job_id))
                beat = now >= next_hb
                flush = dirty_since is not None and now >= max(next_flush, dirty_since + BATCH_S)
                if beat or flush:
                    progress, output, changed = self.ctx.snapshot()
                    dirty_since = None
                    with self.db_lock:
                        flags.append(self.lifecycle.heartbeat(
                            self.watch_conn, self.job_id, now=utcnow(), progress=progress,
                            output=output, changed=changed))
                    if beat:
                        next_hb = now + hb
                    if changed:
                        next_flush = now + gap
                if self.listening and (heard or flags or self.job_id in self.books.news):
                    # news that came with the socket, or during the statements above
                    with self.db_lock:
                        flags.append(self.books.heard_cancel(self.job_id))
            except Exception as exc:
                detached.note(self.job_id, f"watchdog: {describe_exception(exc)}")
                self._reconnect_watch()
                # a dead server: try again at the next poll, not in a hot loop
                next_poll = time.monotonic() + poll
                next_hb = min(next_hb, next_poll)
                continue
            if any(f is None for f in flags):
                self.request_stop(JobStatus.CANCELLED, "the job row is no longer running")
            elif any(flags):
                self.request_stop(JobStatus.CANCELLED, "cancelled by `jobctl cancel`")

    def _sleep(self, seconds: float) -> bool:
        """Wait up to `seconds` for a wake-up; True when the watch connection
        has something to read (a cancel may have been announced)."""
        fds = [self._wake_r]
        # in a pool, the pool reads the shared connection and wakes the job
        # whose cancel came: a dozen watchdogs woken by every reply on it
        # would only queue up for its lock
        news = None if self.pooled else self.books.wait_fd()
        if news is not None:
            fds.append(news)
        try:
            ready, _, _ = select.select(fds, [], [], seconds)
        except (OSError, ValueError):   # the watch connection closed under us
            ready = []
            self.done.wait(seconds)
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self._wake_r, 512):
                pass
        return any(fd != self._wake_r for fd in ready)

    def _listen(self) -> None:
        """Ask for cancel news on the watch connection (the caller commits);
        a pool's connection listens already."""
        if not self.books.listening:
            self.books.listen()

    def _expire(self, attempt_no: int) -> None:
        """The timeout's timer: a thread of its own, so no database round
        trip can delay it past the deadline."""
        if attempt_no == self.attempt_no and self.in_call:
            self.request_stop(JobStatus.TIMED_OUT, f"timed out after {format_duration(self.timeout_s)}")

    def _give_up(self) -> None:
        """The call ignored the interrupt: record the outcome and end the
        process, which also rolls the procedure's transaction back."""
        detached.note(self.job_id, "procedure did not stop after interrupt; exiting")
        message = f"{self.stop_message}; the call did not stop when interrupted, so the worker exited"
        if self.session:
            # exiting ends our side only: the server may go on running the
            # statement (and commit nothing, but hold its locks) until it next
            # talks to us, so say which session and how to end it
            kill = self.backend.kill_session_sql(self.session)
            message += (f"; interrupt did not take; server session {self.session} may still be running"
                        + (f" (to end it: {kill})" if kill else ""))
        self._finish(self.stop_reason or JobStatus.CANCELLED, None, message)
        lifecycle.remove_liveness(self.live_path)
        if self.pooled:
            # the other jobs of the pool run on: this call's thread and
            # connection are left to end when the call does, and the pool
            # gives the slot a new connection
            self.abandoned.set()
            self._end_watch()
            return
        os._exit(1)

    def _pulse(self, path: Path) -> None:
        """Touch the liveness file: a sign of life that the job's own
        transaction cannot block (SQLite). A stopped process touches nothing."""
        while True:
            try:
                lifecycle.touch_liveness(path)
            except OSError as exc:
                detached.note(self.job_id, f"liveness file {path}: {exc}")
                return
            if self.done.wait(self.tunables.heartbeat_s):
                return

    def _reconnect_watch(self) -> None:
        with self.db_lock, contextlib.suppress(Exception):
            self.books.reconnect(job_id=None if self.pooled else self.job_id)

    # -- running -------------------------------------------------------------------
    def run(self, claimed: Job | None = None, session: str | None = None) -> int:
        """Claim the job and run it. `claimed`: a pool claimed it already
        (running, under this worker's token, run by server session `session`
        on the call connection it handed over)."""
        if not self.pooled:
            _Signals.attach(self)
            if _Signals.received:
                self.request_stop(JobStatus.CANCELLED, f"worker received {_Signals.received}")
        if claimed is None:
            if not self._open_connections():
                return 1
            # the call's connection opened before the claim, so that the claim
            # records the server session that will run the call
            self.session = self._session_id()
        else:
            self.session = session
        if self.live_path is not None:
            threading.Thread(target=self._pulse, args=(self.live_path,), daemon=True,
                             name="pulse").start()
        if claimed is None:
            with self.db_lock:
                taken = self.lifecycle.claim(self.watch_conn, self.job_id, now=utcnow(),
                                             pid=os.getpid(), token=self.token, session=self.session)
                if taken:
                    # in the claim's transaction: a cancel can only be requested
                    # of a running job, and by then this connection hears it
                    self._listen()
                self.watch_conn.commit()
            if not taken:
                detached.note(self.job_id, "not claimed: the job is no longer queued")
                self._end_watch()
                lifecycle.remove_liveness(self.live_path)
                return 0
            self.started_mono = time.monotonic()
            with self.db_lock:
                job = store.get(self.backend, self.watch_conn, self.job_id)
                self.watch_conn.commit()
            assert job is not None  # just claimed, and only cleanup deletes (finished rows)
        else:
            job = claimed
        self.timeout_s = job.timeout_s
        self.queue = job.queue
        max_attempts = max(1, job.max_attempts or 1)

        try:
            stored = job.params or {}
            # run exactly what submit validated: same procedure, same overload,
            # and the values it bound (exact, typed), not a re-coercion of text
            recorded = job.signature or {}
            name = recorded.get("name") or job.procedure_name
            given = frozenset(k.casefold() for k in stored)
            sig = (self.signatures.resolve(self.call_conn, name, given, recorded)
                   if self.signatures else self.backend.resolve(self.call_conn, name, given))
            if changed := sig.changes_since(recorded):
                raise JobctlError(changed)
            values = from_stored(sig, stored)
        except Exception as exc:
            self.done.set()
            self._finish(JobStatus.FAILED, None, describe_exception(exc))
            self.outcome = JobStatus.FAILED
            lifecycle.remove_liveness(self.live_path)
            return 1

        if self.watch_later is not None:
            self.watch_later(self)
        else:
            self.start_watch()
        status, result, error = JobStatus.FAILED, None, None
        for attempt in range(1, max_attempts + 1):
            status, result, error = self._attempt(sig, values)
            if (status is not JobStatus.FAILED or attempt == max_attempts or self.stop_reason
                    or self.stop_retrying):
                break
            with self.db_lock:
                self.lifecycle.next_attempt(self.watch_conn, self.job_id, attempt + 1,
                                            f"attempt {attempt} failed: {error}")
                self.watch_conn.commit()
            backoff = self.tunables.retry_backoff_s * 2 ** (attempt - 1)
            if self.ctx.stop_requested.wait(backoff):
                status, error = self.stop_reason or JobStatus.CANCELLED, self.stop_message
                break
        self._end_watch()
        self._finish(status, result, error)
        self.outcome = status
        lifecycle.remove_liveness(self.live_path)
        return 0 if status is JobStatus.COMPLETED else 1

    # -- draining the queue ------------------------------------------------------------
    def next_job(self) -> tuple[str, str] | None:
        """After this job: cancel the jobs that waited for it if it did not
        complete, then reserve the next eligible job of its queue (within the
        queue's limit, which this job's slot just freed). (job id, token) or
        None when nothing is eligible, or the worker was told to stop."""
        if _Signals.received:
            self._unreserve()
            return None
        try:
            queue = self.settle_dependents()
            if self.reserved is not None:
                return self.reserved
            if queue is None:
                return None
            with self.db_lock:
                token = uuid.uuid4().hex
                found = self.lifecycle.claim_next(self.watch_conn, queue, token=token,
                                                  pid=os.getpid())
        except Exception as exc:  # noqa: BLE001 - a later jobctl command starts a worker
            detached.note(self.job_id, f"could not take the next job of the queue: {describe_exception(exc)}")
            self._unreserve()
            return None
        return (found, token) if found else None

    def _unreserve(self) -> None:
        """Stopping with a job reserved: give it back to the queue, so the
        next worker takes it (not left to read lost)."""
        if self.reserved is None:
            return
        job_id, token = self.reserved
        self.reserved = None
        try:
            with self.db_lock:
                self.lifecycle.unreserve(self.watch_conn, job_id, token)
                self.watch_conn.commit()
        except Exception as exc:  # noqa: BLE001 - it reads lost at start_timeout, as a crash would
            detached.note(job_id, f"could not give back the reservation: {describe_exception(exc)}")

    def settle_dependents(self) -> str | None:
        """After the job: the jobs that waited for it are cancelled when it did
        not complete; when it did, workers start for those of them that wait
        in other queues (this job's own queue is its worker's to drain).
        Returns the job's queue, None when its row is gone."""
        with self.db_lock:
            self.watch_conn.rollback()
            job = store.get(self.backend, self.watch_conn, self.job_id)
            self.watch_conn.commit()
            if job is None:
                return None
            if job.status.finished and job.status is not JobStatus.COMPLETED:
                self.lifecycle.cancel_dependents(self.watch_conn, job.job_id, job.status)
                others = []
            else:
                others = sorted({q for _, q in store.queued_dependents(
                    self.backend, self.watch_conn, job.job_id) if q != job.queue})
                self.watch_conn.commit()
        if others:
            self._start_workers_for(others)
        return job.queue

    def release(self) -> None:
        """A pooled job's end: its watchdog told to stop and its wake-up pipe
        closed (a pool runs thousands of jobs; a daemon-free worker exits),
        without waiting for the watchdog: it closes the pipe if still running."""
        self._end_watch()
        self.books.wakers.pop(self.job_id, None)
        with self.state_lock:
            self._releasing = True
            if not self._watching:
                self._close_pipe()

    def _close_pipe(self) -> None:
        """Under state_lock; once."""
        if self._released:
            return
        self._released = True  # _wake writes nothing from now on
        for fd in (self._wake_r, self._wake_w):
            if fd < 0:
                continue
            with contextlib.suppress(OSError):
                os.close(fd)

    def crashed(self, exc: BaseException) -> None:
        """The worker itself failed (a bug, not the procedure): say so in the
        row, whether the job was still queued or already running."""
        crashed = f"worker crashed: {describe_exception(exc)}"
        with self.db_lock:
            if not self.lifecycle.fail_unstarted(self.watch_conn, self.job_id, utcnow(), crashed):
                self.lifecycle.finish(self.watch_conn, self.job_id, status=JobStatus.FAILED,
                                      end_time=utcnow(), duration=None, elapsed_s=None, result=None,
                                      output=None, progress=None, error=crashed, token=self.token)
            self.watch_conn.commit()

    def _start_workers_for(self, queues: list[str]) -> None:
        from . import launcher  # only when a dependency crosses queues

        launcher.start_workers(Settings(connection=self.settings, tunables=self.tunables,
                                        secret_env=tuple(_SECRET_ENV)), queues)

    def handover(self) -> tuple[Any, Any]:
        """Both connections, clean, for the worker of the next job."""
        conns = []
        for conn in (self.watch_conn, self.call_conn):
            try:
                conn.rollback()
            except Exception:
                with contextlib.suppress(Exception):
                    conn.close()
                conn = None
            conns.append(conn)
        return conns[0], conns[1]

    def close(self) -> None:
        for conn in (self.watch_conn, self.call_conn):
            with contextlib.suppress(Exception):
                conn.close()

    def _session_id(self) -> str | None:
        try:
            return self.backend.session_id(self.call_conn)
        except Exception as exc:  # noqa: BLE001 - unknown session: lost stays heartbeat-only
            detached.note(self.job_id, f"cannot read the call's server session: {describe_exception(exc)}")
            try:
                self.call_conn.rollback()
            except Exception:
                pass
            return None

    # -- connecting, through a storm ------------------------------------------------------
    def _open_connections(self) -> bool:
        """Open both connections before claiming. A server that refuses for now
        (too many connections, a per-role limit, a restart) is retried with
        backoff until start_timeout; the reason goes into the queued row as soon
        as one connection works, so `status` says what the job waits for."""
        # readers call a job lost start_timeout after its submit, which was a
        # moment before this process started: give up a little earlier, so the
        # row says `failed` with the reason before anyone can read it as lost
        limit = self.tunables.start_timeout_s
        deadline = self.started_mono + limit - min(1.0, limit / 10)
        delay, noted = 0.1, None
        while True:
            try:
                if self.watch_conn is None:
                    self.watch_conn = self.backend.connect(job_id=self.job_id)
                if self.call_conn is None:
                    self.call_conn = self.backend.connect(job_id=self.job_id)
                if noted is not None:
                    noted = None
                    self._note_queued(None)  # best effort: the outcome overwrites it anyway
                    if self.watch_conn is None:
                        continue  # clearing it lost the connection: open another
                return True
            except Exception as exc:
                reason = describe_exception(exc)
                retry = self.backend.is_transient(exc) and time.monotonic() + delay < deadline
                if not retry:
                    if self.backend.is_transient(exc):
                        reason = (f"no database connection within start_timeout "
                                  f"({self.tunables.start_timeout_s:g} s): {reason}")
                    self._fail_unstarted(reason)
                    return False
                if self.watch_conn is not None and reason != noted:
                    noted = reason if self._note_queued(f"waiting for a connection: {reason}") else noted
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _note_queued(self, text: str | None) -> bool:
        try:
            self.lifecycle.note_waiting(self.watch_conn, self.job_id, text)
            self.watch_conn.commit()
            return True
        except Exception as exc:
            detached.note(self.job_id, f"could not note the wait: {describe_exception(exc)}")
            with contextlib.suppress(Exception):
                self.watch_conn.close()
            self.watch_conn = None
            return False

    def _fail_unstarted(self, reason: str) -> None:
        """The job never ran: end it `failed` with the reason rather than leave
        it to read lost. With no connection at all, keep trying to write that
        with the final write's backoff (the storm may pass)."""
        detached.note(self.job_id, f"not started: {reason}")
        delay = 0.25
        for attempt in range(self.tunables.final_write_attempts):
            try:
                if self.watch_conn is None:
                    self.watch_conn = self.backend.connect(job_id=self.job_id)
                self.lifecycle.fail_unstarted(self.watch_conn, self.job_id, utcnow(), reason)
                self.watch_conn.commit()
                return
            except Exception as exc:
                with contextlib.suppress(Exception):
                    if self.watch_conn is not None:
                        self.watch_conn.close()
                self.watch_conn = None
                if attempt == self.tunables.final_write_attempts - 1:
                    detached.note(self.job_id, f"gave up recording the failure: {describe_exception(exc)}")
                    return
            time.sleep(delay)
            delay = min(delay * 2, 30.0)

    def _attempt(self, sig, values) -> tuple[JobStatus, dict | None, str | None]:
        timer = None
        with self.state_lock:
            if self.stop_reason:
                return self.stop_reason, None, self.stop_message
            self.attempt_no += 1
            self.in_call = True
            if self.timeout_s:
                timer = threading.Timer(self.timeout_s, self._expire, (self.attempt_no,))
                timer.daemon = True
                timer.start()
        try:
            result = self.backend.call(self.call_conn, sig, values, self.ctx)
            with self.state_lock:
                self.in_call = False
        except BaseException as exc:  # noqa: BLE001 - the job's outcome, whatever it is
            with self.state_lock:
                self.in_call = False
            try:
                self.call_conn.rollback()
            except Exception:
                # connection broken (killed session): open a new one for any retry
                try:
                    self.call_conn = self.backend.connect(job_id=self.job_id)
                except Exception:
                    pass
            if self.stop_reason:
                return self.stop_reason, None, self.stop_message
            return JobStatus.FAILED, None, describe_exception(exc)
        finally:
            if timer is not None:
                timer.cancel()
        return self._commit_with_outcome(result)

    def _commit_with_outcome(self, result: dict | None) -> tuple[JobStatus, dict | None, str | None]:
        """Write `completed` on the call's own connection, guarded by "still
        running and still mine", and commit it with the procedure's work: both
        or neither. A job declared lost or cancelled meanwhile keeps that
        outcome, and its work is rolled back."""
        fields = self._outcome_fields(JobStatus.COMPLETED, result, None)
        work_pending = self.backend.in_transaction(self.call_conn)
        written = False  # the outcome's UPDATE is in the open transaction
        deadline = time.monotonic() + self.tunables.outcome_retry_window_s
        delay = 0.1
        while True:
            try:
                if not written:
                    written = self.lifecycle.finish(self.call_conn, self.job_id, token=self.token,
                                                    **fields) > 0
                    if not written:
                        self.call_conn.rollback()
                        note = ("work rolled back: the job is no longer running under this "
                                "worker's claim (declared lost or cancelled meanwhile)")
                        self._settled(note)
                        return JobStatus.FAILED, None, note
                    self._hand_over(self.call_conn)
                self.call_conn.commit()
                break
            except Exception as exc:  # noqa: BLE001 - in doubt: ask the database what happened
                if self._may_try_again(exc, work_pending, deadline):
                    if not self.backend.in_transaction(self.call_conn):
                        written = False  # nothing of it was kept: the UPDATE again, guarded
                    time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                    delay = min(delay * 2, 5.0)
                    continue
                outcome = self._after_failed_commit(exc, result)
                if outcome[0] is not JobStatus.COMPLETED:
                    self.reserved = self.following = None  # rolled back with the rest
                return outcome
        self._settled(None)
        return JobStatus.COMPLETED, result, None

    def _may_try_again(self, exc: Exception, work_pending: bool, deadline: float) -> bool:
        """The outcome's write or commit met a lock or a full disk that left
        everything as it was (SQLite): the same commit, again, until the
        deadline. Never when the procedure's own work was rolled back with
        it: that work cannot be redone (at most once)."""
        if not self.backend.keeps_transaction(exc) or time.monotonic() >= deadline:
            return False
        if work_pending and not self.backend.in_transaction(self.call_conn):
            return False
        detached.note(self.job_id, f"outcome not committed yet, trying again: {describe_exception(exc)}")
        return True

    def _hand_over(self, conn: Any) -> None:
        """The next job of this one's queue, taken in the transaction that
        records this one's outcome, before it commits, so that the slot passes
        from job to job without ever standing free. A daemon-free worker
        reserves it (`reserved`), so that no submit starts another worker in
        between; a pool's slot claims it (`following`), one commit for both.
        A failure is undone alone (a savepoint): the outcome and the work
        stay, and the next job is taken after the commit instead."""
        self.reserved = self.following = None
        if self.queue is None or (self.claim_following is None if self.pooled
                                  else _Signals.received):
            return
        store.savepoint(self.backend, conn, "jobctl_next")
        try:
            if self.pooled:
                self.following = self.claim_following(conn, self.queue)
            else:
                token = uuid.uuid4().hex
                found = self.lifecycle.claim_next(conn, self.queue, token=token, pid=os.getpid(),
                                                  commit=False)
                self.reserved = (found, token) if found else None
        except Exception as exc:  # noqa: BLE001 - taken after the commit instead
            detached.note(self.job_id, f"taking the next job of the queue: {describe_exception(exc)}")
            store.rollback_to(self.backend, conn, "jobctl_next")

    def _settled(self, note: str | None) -> None:
        """The row holds its final outcome: nothing left for _finish to write."""
        self.stop_retrying = True
        with self.state_lock:
            self.finished = True
        if note:
            detached.note(self.job_id, note)

    def _after_failed_commit(self, exc: Exception, result: dict | None):
        reason = describe_exception(exc)
        try:
            self.call_conn.rollback()
        except Exception:
            pass
        for attempt in range(self.tunables.final_write_attempts):
            try:
                with self.db_lock:
                    try:
                        self.watch_conn.close()
                    except Exception:
                        pass
                    self.watch_conn = self.backend.connect(job_id=self.job_id)
                    row = store.get(self.backend, self.watch_conn, self.job_id)
                    self.watch_conn.commit()
                break
            except Exception as again:  # noqa: BLE001
                detached.note(self.job_id, f"cannot read back after a failed commit (try {attempt + 1}): "
                                  f"{describe_exception(again)}")
                time.sleep(min(0.25 * 2 ** attempt, 30.0))
        else:
            self._settled(f"commit failed ({reason}) and the row could not be read back: "
                          "the outcome is unknown")
            return JobStatus.FAILED, None, reason
        if row is not None and row.claim_token == self.token and row.status is JobStatus.COMPLETED:
            self._settled(f"commit reported {reason}, but it had taken: work and outcome committed")
            return JobStatus.COMPLETED, result, None
        if row is not None and row.claim_token == self.token and row.status is JobStatus.RUNNING:
            # the transaction died with the connection: neither work nor outcome is there
            self.stop_retrying = True
            return JobStatus.FAILED, None, f"the commit failed, so the work was rolled back: {reason}"
        self._settled(f"commit failed ({reason}); the row is no longer ours: work rolled back")
        return JobStatus.FAILED, None, reason

    def _outcome_fields(self, status: JobStatus, result: dict | None, error: str | None) -> dict:
        elapsed = time.monotonic() - self.started_mono
        progress, output, _ = self.ctx.snapshot()
        if status is JobStatus.COMPLETED:
            progress = 100.0
        return dict(status=status, end_time=utcnow(), duration=format_duration(elapsed),
                    elapsed_s=round(elapsed, 3), error=error, output=output, progress=progress,
                    result=jsontext.dumps(result) if result is not None else None)

    def _finish(self, status: JobStatus, result: dict | None, error: str | None) -> None:
        with self.state_lock:
            if self.finished:
                return
            self.finished = True
        fields = self._outcome_fields(status, result, error)
        delay = 0.25
        for attempt in range(self.tunables.final_write_attempts):
            try:
                with self.db_lock:
                    if attempt:
                        try:
                            self.watch_conn.close()
                        except Exception:
                            pass
                        self.watch_conn = self.backend.connect(job_id=self.job_id)
                    written = self.lifecycle.finish(self.watch_conn, self.job_id,
                                                    token=self.token, **fields)
                    if written and not self.pooled:  # a pool's slot claims after this
                        self._hand_over(self.watch_conn)
                    self.watch_conn.commit()
                if not written:
                    detached.note(self.job_id, f"outcome {status.value} not written: the row is no longer running")
                return
            except Exception as exc:
                detached.note(self.job_id, f"final write failed (try {attempt + 1}): {describe_exception(exc)}")
                time.sleep(delay)
                delay = min(delay * 2, 30.0)
        detached.note(self.job_id, f"gave up writing outcome {status.value}: {error}")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m jobctl.runner JOB_ID  (settings as JSON on stdin)", file=sys.stderr)
        return 2
    job_id = argv[1]
    os.umask(0o077)  # whatever the worker creates (worker.log, a SQLite -wal) is private
    payload = json.loads(sys.stdin.read() or "{}")
    sys.path.extend(p for p in payload.get("sys_path", ()) if p not in sys.path)
    os.environ.update(payload.get("environ", {}))
    _SECRET_ENV[:] = list(payload.get("environ", {}))
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    try:
        connection = ConnectionSettings.from_payload(payload["connection"])
        tunables = Tunables(**payload.get("tunables", {}))
        if payload.get("wake"):
            return _wake(connection, tunables, payload)
        worker = Worker(connection, tunables, job_id, token=payload.get("token"))
        code = worker.run()
        # daemon-free draining: the slot this job held goes to the next
        # eligible job of its queue, on the same process and connections,
        # until none is eligible
        while (following := worker.next_job()) is not None:
            job_id = following[0]
            worker = Worker(connection, tunables, job_id, token=following[1],
                            connections=worker.handover())
            code = worker.run()
        worker.close()
        return code
    except BaseException as exc:  # noqa: BLE001 - a worker must leave a trace
        detached.note(job_id, "worker crashed: " + "".join(traceback.format_exception(exc)))
        try:
            backend = get_backend(ConnectionSettings.from_payload(payload["connection"]))
            jobs = lifecycle.Lifecycle(backend)
            conn = backend.connect(job_id=job_id)
            crashed = f"worker crashed: {describe_exception(exc)}"
            if not jobs.fail_unstarted(conn, job_id, utcnow(), crashed):
                jobs.finish(conn, job_id, status=JobStatus.FAILED, end_time=utcnow(),
                            duration=None, elapsed_s=None, result=None, output=None, progress=None,
                            error=crashed)
            conn.commit()
        except BaseException:
            pass
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
