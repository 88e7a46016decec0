"""The watchdog: a thread beside the call that writes the heartbeat, hears
of a cancel (announced at once, or read every cancel_poll_s), writes
progress and output within FLUSH_S of a change, touches the liveness file,
and gives up on a call that ignores its interrupt."""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
from pathlib import Path

from . import detached, lifecycle, store
from .errors import describe_exception
from .jobrun import BATCH_S, FLUSH_S, INTERRUPT_GRACE_S
from .model import JobStatus, utcnow
from .outcome import Outcome


class Watchdog(Outcome):
    def end_watch(self) -> None:
        self.done.set()
        self._wake()

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
                self.give_up()
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
                        self.look_for_commit_mark()
                    if changed:
                        next_flush = now + gap
                if self.listening and (heard or flags or self.job_id in self.books.news):
                    # news that came with the socket, or during the statements above
                    with self.db_lock:
                        flags.append(self.books.heard_cancel(self.job_id))
            except Exception as exc:
                detached.note(self.job_id, f"watchdog: {describe_exception(exc)}")
                self.reconnect_watch()
                # a dead server: try again at the next poll, not in a hot loop
                next_poll = time.monotonic() + poll
                next_hb = min(next_hb, next_poll)
                continue
            if any(f is None for f in flags):
                self.request_stop(JobStatus.CANCELLED, "the job row is no longer running")
            elif any(flags):
                self.request_stop(JobStatus.CANCELLED, "cancelled by `jobctl cancel`")

    def look_for_commit_mark(self) -> None:
        """Once the call committed inside, say so on the row while the job
        runs (best effort: a role that may not read JOB_COMMIT_MARKS, or a
        backend whose call blocks the row, is not asked again)."""
        ctx = self.ctx
        if (ctx.marker is None or self.mark_seen or not self.in_call
                or self.backend.liveness_dir() is not None):
            return
        try:
            with self.db_lock:
                self.mark_seen = store.note_committed(self.backend, self.watch_conn, self.job_id) > 0
                self.watch_conn.commit()
        except Exception as exc:  # noqa: BLE001 - the outcome says it at the end
            self.mark_seen = True
            detached.note(self.job_id, f"cannot read the commit marker: {describe_exception(exc)}")
            with self.db_lock, contextlib.suppress(Exception):
                self.watch_conn.rollback()

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

    def listen_for_cancel(self) -> None:
        """Ask for cancel news on the watch connection (the caller commits);
        a pool's connection listens already."""
        if not self.books.listening:
            self.books.listen()

    def give_up(self) -> None:
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
        self.finish(self.stop_reason or JobStatus.CANCELLED, None, message)
        lifecycle.remove_liveness(self.live_path)
        if self.pooled:
            # the other jobs of the pool run on: this call's thread and
            # connection are left to end when the call does, and the pool
            # gives the slot a new connection
            self.abandoned.set()
            self.end_watch()
            return
        os._exit(1)

    def pulse(self, path: Path) -> None:
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

    def reconnect_watch(self) -> None:
        with self.db_lock, contextlib.suppress(Exception):
            self.books.reconnect(job_id=None if self.pooled else self.job_id)

    def release(self) -> None:
        """A pooled job's end: its watchdog told to stop and its wake-up pipe
        closed (a pool runs thousands of jobs; a daemon-free worker exits),
        without waiting for the watchdog: it closes the pipe if still running."""
        self.end_watch()
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
