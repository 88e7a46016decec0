"""Before and after the call: both connections opened through a
connection storm, the server session noted, and after the job the jobs
that waited for it settled and the next job of its queue reserved, so a
daemon-free worker drains its queue on the same connections."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from typing import Any

from . import detached, store
from .config import Settings
from .errors import describe_exception
from .jobrun import Signals
from .model import JobStatus, utcnow
from .outcome import Outcome


class Claiming(Outcome):
    def open_connections(self) -> bool:
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
                    self.note_queued(None)  # best effort: the outcome overwrites it anyway
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
                    self.fail_unstarted(reason)
                    return False
                if self.watch_conn is not None and reason != noted:
                    noted = reason if self.note_queued(f"waiting for a connection: {reason}") else noted
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def note_queued(self, text: str | None) -> bool:
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

    def fail_unstarted(self, reason: str) -> None:
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

    def session_id(self) -> str | None:
        try:
            return self.backend.session_id(self.call_conn)
        except Exception as exc:  # noqa: BLE001 - unknown session: lost stays heartbeat-only
            detached.note(self.job_id, f"cannot read the call's server session: {describe_exception(exc)}")
            try:
                self.call_conn.rollback()
            except Exception:
                pass
            return None

    def settle_in_call(self) -> tuple[JobStatus, dict | None, str | None]:
        """The backend wrote the outcome in the call's last transaction
        (CallContext.outcome): what is left is the output the notices brought
        (to the worker, not the server), the session's reset, and the next
        job of the queue. The output goes first, on jobctl's own connection
        (the call's is not reset yet): until it is there, a reader sees the
        job completed with the output of its last heartbeat (`logs --follow`
        would stop a line short). A pool's slot takes a limited queue's next
        job afterwards, under the queue's lock: its lock-free hand-over
        (store.claim_batch) holds the limit only in the transaction that
        records the outcome, which the call's own last transaction was (see
        pool._claim_one)."""
        if not self.ctx.outcome_written:
            note = ("the last stretch of work rolled back: the job is no longer running under "
                    "this worker's claim (declared lost or cancelled meanwhile)")
            self.settled(note)
            return JobStatus.FAILED, None, note
        self.settled(None)
        _, output, _ = self.ctx.snapshot()
        if output is not None or self.ctx.self_committed:
            try:
                with self.db_lock:
                    # it need not wait for the disk: the outcome is durable
                    # already (see Database.relax_commit)
                    self.backend.relax_commit(self.watch_conn)
                    store.final_output(self.backend, self.watch_conn, self.job_id, self.token,
                                       output, self.ctx.self_committed)
                    self.watch_conn.commit()
            except Exception as exc:  # noqa: BLE001 - the outcome stands
                with self.db_lock, contextlib.suppress(Exception):
                    self.watch_conn.rollback()
                detached.note(self.job_id, f"output not written: {describe_exception(exc)}")
        self.clean_call_session()
        conn = self.call_conn
        try:
            if conn is None:
                raise RuntimeError("no call connection")
            if self.ctx.hand_over is not None:  # the call claimed it, or nothing was free
                handed = self.ctx.handed_over
                self.following = store.row_to_job(self.backend, handed) if handed else None
            else:
                self.hand_over(conn, apart=True)
            conn.commit()
        except Exception as exc:  # noqa: BLE001 - the outcome stands; the next job comes later
            self.reserved = self.following = None
            with contextlib.suppress(Exception):
                conn.rollback()
            detached.note(self.job_id, f"taking the next job of the queue: {describe_exception(exc)}")
        return JobStatus.COMPLETED, None, None

    # -- the call's session, clean for each job ----------------------------------
    def start_call_session(self) -> None:
        """The job's identity and the user's session setup, on the call
        connection, before its call (every path: pool, hand-over, daemon-free)."""
        self.session_clean = False
        self.backend.start_job_session(self.call_conn, self.job_id)

    def clean_call_session(self) -> None:
        """After the job: what it left in its session is cleared before the
        connection serves another job; a connection that cannot be cleared
        (or is broken) is replaced."""
        if self.session_clean or self.call_conn is None or self.abandoned.is_set():
            return
        self.session_clean = True
        try:
            kept = self.backend.reset_job_session(self.call_conn)
        except Exception as exc:  # noqa: BLE001 - replaced below
            detached.note(self.job_id, f"session reset failed: {describe_exception(exc)}")
            kept = False
        if not kept:
            self.replace_call_connection()

    def replace_call_connection(self) -> None:
        """A new call connection for this worker (the old one broken, or not
        clean); the next job's claim records its session."""
        with contextlib.suppress(Exception):
            self.call_conn.close()
        try:
            self.call_conn = self.backend.connect(job_id=self.job_id)
        except Exception as exc:  # noqa: BLE001 - the next job opens one
            detached.note(self.job_id, f"cannot open a new call connection: {describe_exception(exc)}")
            self.call_conn = None
            return
        if self.finished:
            return
        # still running (a retry comes): DB_SESSION follows the new session
        self.session = self.session_id()
        self.note_session()

    def note_session(self) -> None:
        try:
            with self.db_lock:
                store.record_session(self.backend, self.watch_conn, self.job_id, self.token,
                                     self.session)
                self.watch_conn.commit()
        except Exception as exc:  # noqa: BLE001 - the lost rule then reads the old session
            detached.note(self.job_id, f"cannot record the new session: {describe_exception(exc)}")

    def next_job(self) -> tuple[str, str] | None:
        """After this job: cancel the jobs that waited for it if it did not
        complete, then reserve the next eligible job of its queue (within the
        queue's limit, which this job's slot just freed). (job id, token) or
        None when nothing is eligible, or the worker was told to stop."""
        if Signals.received:
            self.unreserve()
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
            self.unreserve()
            return None
        return (found, token) if found else None

    def unreserve(self) -> None:
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
            self.start_workers_for(others)
        return job.queue

    def start_workers_for(self, queues: list[str]) -> None:
        from . import launcher  # only when a dependency crosses queues

        launcher.start_workers(Settings(connection=self.settings, tunables=self.tunables,
                                        secret_env=tuple(detached.SECRET_ENV)), queues)

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
