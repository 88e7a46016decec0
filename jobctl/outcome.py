"""Recording a job's outcome: `completed` written on the call's own
connection and committed with the procedure's work (both or neither), the
commit tried again while SQLite keeps the transaction, read back when in
doubt; any other outcome written on the bookkeeping connection, guarded by
the claim token and retried with backoff."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from typing import Any

from . import detached, jsontext, lifecycle, store
from .errors import describe_exception
from .jobrun import JobRun, Signals
from .model import JobStatus, format_duration, utcnow


class Outcome(JobRun):
    def prepare_call(self) -> None:
        """What the backend needs to record the outcome itself, in the call's
        last transaction, where it ends the call's transactions itself; and
        the marker that tells later whether the call committed inside."""
        ctx = self.ctx
        ctx.outcome_written = ctx.hand_over = ctx.handed_over = None
        if ctx.atomic:
            ctx.marker = ctx.outcome = None
        else:
            ctx.marker = store.commit_marker(self.job_id)
            ctx.outcome = lifecycle.completed_in_call(self.backend, self.job_id, self.token)
            if self.handover_in_call is not None and self.queue is not None:
                ctx.hand_over = self.handover_in_call(self.queue, self.session)
        ctx.elapsed_before = time.monotonic() - self.started_mono

    def note_error(self, exc: BaseException) -> None:
        """The database's own code of the error, and whether the server ended
        the session on purpose (such a job is never retried)."""
        self.error_code = getattr(exc, "code", None)
        if getattr(exc, "killed", False):
            self.killed = True

    def note_commits(self) -> None:
        """After a failed call: did it commit inside before failing? Its
        marker row says so exactly (committed with the call's first
        transaction), whatever the call connection's state now."""
        ctx = self.ctx
        if ctx.self_committed or ctx.marker is None or ctx.commits_known:
            return
        try:
            with self.db_lock:
                marked = store.has_commit_mark(self.backend, self.watch_conn, self.job_id)
                self.watch_conn.commit()
        except Exception as exc:  # noqa: BLE001 - unknown: never retried
            detached.note(self.job_id, f"cannot read the commit marker: {describe_exception(exc)}")
            with self.db_lock, contextlib.suppress(Exception):
                self.watch_conn.rollback()
            return
        ctx.commits_known = True
        if marked:
            ctx.note_self_commit()

    def commit_outcome(self, result: dict | None) -> tuple[JobStatus, dict | None, str | None]:
        """Write `completed` on the call's own connection, guarded by "still
        running and still mine", and commit it with the procedure's work: both
        or neither. A job declared lost or cancelled meanwhile keeps that
        outcome, and its work is rolled back."""
        fields = self.outcome_fields(JobStatus.COMPLETED, result, None)
        work_pending = self.backend.in_transaction(self.call_conn)
        written = False  # the outcome's UPDATE is in the open transaction
        deadline = time.monotonic() + self.tunables.outcome_retry_window_s
        delay = 0.1
        while True:
            try:
                if not written:
                    written = self.write_completed(fields)
                    if not written:
                        self.call_conn.rollback()
                        note = ("work rolled back: the job is no longer running under this "
                                "worker's claim (declared lost or cancelled meanwhile)")
                        self.settled(note)
                        return JobStatus.FAILED, None, note
                self.call_conn.commit()
                break
            except Exception as exc:  # noqa: BLE001 - in doubt: ask the database what happened
                if self.may_try_again(exc, work_pending, deadline):
                    if not self.backend.in_transaction(self.call_conn):
                        written = False  # nothing of it was kept: the UPDATE again, guarded
                    time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                    delay = min(delay * 2, 5.0)
                    continue
                outcome = self.after_failed_commit(exc, result)
                if outcome[0] is not JobStatus.COMPLETED:
                    self.reserved = self.following = None  # rolled back with the rest
                return outcome
        self.settled(None)
        return JobStatus.COMPLETED, result, None

    def write_completed(self, fields: dict[str, Any]) -> bool:
        """The guarded `completed` UPDATE on the call's connection, then the
        hand-over (its claim behind a savepoint). A pool's slot sends both in
        one round trip where the backend batches statements (PostgreSQL's
        pipeline): the claim goes before the UPDATE's answer is read, so a
        job no longer ours rolls its claim back with everything else, and a
        claim that failed is undone alone, after the batch. False: the row is
        no longer ours (nothing is committed)."""
        conn = self.call_conn
        batching = False
        try:
            with (self.backend.batched(conn) if self.pooled
                  else contextlib.nullcontext(False)) as batching:
                written = self.lifecycle.finish_sent(conn, self.job_id, token=self.token, **fields)
                if not batching and written() == 0:
                    return False  # answered at once: no claim to make
                self.hand_over(conn, undo_later=batching)
        except Exception as exc:
            if not batching or not self.hand_over_undone(conn, exc):
                raise
        if written() == 0:
            self.reserved = self.following = None  # rolled back with the rest
            return False
        return True

    def hand_over_undone(self, conn: Any, exc: Exception) -> bool:
        """After a batch failed: its claim undone alone, when the failure came
        after the hand-over's savepoint. False when it came before (the
        outcome's UPDATE failed): the transaction cannot be saved."""
        self.reserved = self.following = None
        try:
            store.rollback_to(self.backend, conn, "jobctl_next")
        except Exception:  # noqa: BLE001 - no savepoint: the caller meets the first error
            return False
        detached.note(self.job_id, f"taking the next job of the queue: {describe_exception(exc)}")
        return True

    def may_try_again(self, exc: Exception, work_pending: bool, deadline: float) -> bool:
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

    def hand_over(self, conn: Any, *, apart: bool = False, undo_later: bool = False) -> None:
        """The next job of this one's queue, taken in the transaction that
        records this one's outcome, before it commits, so that the slot passes
        from job to job without ever standing free. A daemon-free worker
        reserves it (`reserved`), so that no submit starts another worker in
        between; a pool's slot claims it (`following`), one commit for both.
        A failure is undone alone (a savepoint): the outcome and the work
        stay, and the next job is taken after the commit instead. `apart`:
        the outcome was committed already, by the call (see pool._claim_one).
        `undo_later`: a failure is raised, for hand_over_undone after the
        batch it was sent in."""
        self.reserved = self.following = None
        if self.queue is None or (self.claim_following is None if self.pooled
                                  else Signals.received):
            return
        if not apart:
            store.savepoint(self.backend, conn, "jobctl_next")
        try:
            if self.pooled:
                self.following = self.claim_following(conn, self.queue, apart=apart)
            else:
                if apart:
                    self.backend.relax_commit(conn)
                token = uuid.uuid4().hex
                found = self.lifecycle.claim_next(conn, self.queue, token=token, pid=os.getpid(),
                                                  commit=False)
                self.reserved = (found, token) if found else None
        except Exception as exc:  # noqa: BLE001 - taken after the commit instead
            if apart or undo_later:
                raise  # apart: nothing else in the transaction to keep: the caller rolls it back
            detached.note(self.job_id, f"taking the next job of the queue: {describe_exception(exc)}")
            store.rollback_to(self.backend, conn, "jobctl_next")

    def settled(self, note: str | None) -> None:
        """The row holds its final outcome: nothing left for finish to write."""
        self.stop_retrying = True
        with self.state_lock:
            self.finished = True
        if note:
            detached.note(self.job_id, note)

    def after_failed_commit(self, exc: Exception, result: dict | None):
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
            self.settled(f"commit failed ({reason}) and the row could not be read back: "
                          "the outcome is unknown")
            return JobStatus.FAILED, None, reason
        if row is not None and row.claim_token == self.token and row.status is JobStatus.COMPLETED:
            self.settled(f"commit reported {reason}, but it had taken: work and outcome committed")
            return JobStatus.COMPLETED, result, None
        if row is not None and row.claim_token == self.token and row.status is JobStatus.RUNNING:
            # the transaction died with the connection: neither work nor outcome is there
            self.stop_retrying = True
            return JobStatus.FAILED, None, f"the commit failed, so the work was rolled back: {reason}"
        self.settled(f"commit failed ({reason}); the row is no longer ours: work rolled back")
        return JobStatus.FAILED, None, reason

    def outcome_fields(self, status: JobStatus, result: dict | None, error: str | None) -> dict:
        elapsed = time.monotonic() - self.started_mono
        progress, output, _ = self.ctx.snapshot()
        if status is JobStatus.COMPLETED:
            progress = 100.0
        ctx = self.ctx
        committed = True if ctx.self_committed else (False if ctx.commits_known else None)
        if status is not JobStatus.COMPLETED and ctx.self_committed:
            error = f"{error}; {lifecycle.COMMITS_STAY}" if error else lifecycle.COMMITS_STAY
        return dict(status=status, end_time=utcnow(), duration=format_duration(elapsed),
                    elapsed_s=round(elapsed, 3), error=error, output=output, progress=progress,
                    result=jsontext.dumps(result) if result is not None else None,
                    committed_inside=committed,
                    db_error_code=self.error_code if status is not JobStatus.COMPLETED else None)

    def finish(self, status: JobStatus, result: dict | None, error: str | None) -> None:
        with self.state_lock:
            if self.finished:
                return
            self.finished = True
        fields = self.outcome_fields(status, result, error)
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
                        self.hand_over(self.watch_conn)
                    self.watch_conn.commit()
                if not written:
                    detached.note(self.job_id, f"outcome {status.value} not written: the row is no longer running")
                return
            except Exception as exc:
                detached.note(self.job_id, f"final write failed (try {attempt + 1}): {describe_exception(exc)}")
                time.sleep(delay)
                delay = min(delay * 2, 30.0)
        detached.note(self.job_id, f"gave up writing outcome {status.value}: {error}")

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
