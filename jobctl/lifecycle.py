"""The job lifecycle: every transition of a job, and the one rule for `lost`.

Every write of a job's state goes through `Lifecycle`, whoever makes it (the
CLI through api.py, the worker, doctor's probes): enqueue at submit,
fail-unstarted, claim, heartbeat (with progress and output), retry (next
attempt), finish, cancel (queued, requested, orphaned) and mark lost.
the store (jobctl.store) keeps the SQL; status names are bound from JobStatus, never spelled
in a statement.

Every command that shows or acts on a job's liveness asks this module:
`status`, `list` and `wait` (`effective`), `stats` (`adjust_stats`),
`cleanup` and `submit --unique` (`mark_lost`), `cancel` of an orphaned job
(`end_orphan`); the worker keeps its side of the rule (`touch_liveness`).

The rule, for a row that says `running`:

- No WORKER_HOST: written by another application (the original one). jobctl
  cannot judge it, so it stays running, shown as `running (external)`, and
  is never written.
- Otherwise its worker is gone when the worker ran on this host and its pid
  is gone, or when neither its heartbeat row nor (same host only) its
  liveness file has moved for `lost_after` seconds. Heartbeats are written
  with the database server's clock and judged by it (`clock`): the hosts
  sharing a database have clocks of their own, which differ (SQLite: one
  host, its clock). A SIGSTOPped worker moves
  neither; a SQLite job whose own transaction blocks its heartbeat row still
  touches the file.
- A gone worker whose database session still executes the call is
  `orphaned` (never stored: cancel ends the session); otherwise the job is
  `lost`. A session that cannot be checked counts as gone.

A `queued` row waits for its turn (a free slot in its queue, its
dependencies, its start time) for as long as it takes: that is never lost.
Once `claim_next` reserved it for a worker (CLAIM_TOKEN, WORKER_HOST and the
reservation time in HEARTBEAT_AT), it is lost when that worker did not claim
it within `start_timeout`, or, on this host, when the reserving worker's pid
is gone.

Reading commands never write; only `mark_lost` stores `lost`, guarded on the
heartbeat it judged so that a worker coming back to life is not overwritten.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import store
from .config import Tunables
from .model import Job, JobStatus, PoolState, utcnow

if TYPE_CHECKING:
    from .backends.base import Backend

#: the longest a claim waits for its queue's lock (another host's claim holds
#: it a few milliseconds; a lock held longer is a stopped or cut-off client)
CLAIM_LOCK_WAIT_S = 1.0


#: what a job that ends other than completed says once its call had
#: committed inside: the procedure's own commits are not undone
COMMITS_STAY = ("the procedure had committed inside its own transaction before: "
                "that work stays committed")


def completed_in_call(backend: Backend, job_id: str, token: str) -> tuple[str, dict[str, Any]]:
    """running → completed, as a statement for the backend to run in the
    call's last transaction (CallContext.outcome), guarded by the claim."""
    return store.finish_in_call(backend, job_id, token)


def handover_in_call(backend: Backend, queue: str, *, host: str, pid: int, token: str,
                     session: str | None) -> tuple[str, dict[str, Any]] | None:
    """queued → running for a pool slot's next job, as a statement for the
    backend to run in the call's last transaction after the outcome
    (CallContext.hand_over); None where it cannot be one statement."""
    return store.handover_sql(backend, queue, now=utcnow(), host=host, pid=pid, token=token,
                              session=session)


def _lost_reason(backend: Backend, conn: Any, job: Job, why: str | None) -> tuple[str, bool]:
    """What a job written down as lost says, and whether its call had
    committed inside (seen by a heartbeat, or its marker row is there)."""
    committed = bool(job.committed_inside) or store.has_commit_mark(backend, conn, job.job_id,
                                                                    quietly=True)
    reason = f"lost: {why}; not re-run automatically"
    return (f"{reason}; {COMMITS_STAY}" if committed else reason), committed


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet reaped by its parent) is gone too
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


# -- the worker's side: a sign of life nothing in the database can block -------

def liveness_path(backend: Backend, job_id: str) -> Path | None:
    where = backend.liveness_dir()
    return None if where is None else where / job_id


def touch_liveness(path: Path) -> None:
    path.parent.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.close(fd)
    os.utime(path)


def remove_liveness(path: Path | None) -> None:
    if path is not None:
        with contextlib.suppress(OSError):
            path.unlink()


class Lifecycle:
    def __init__(self, backend: Backend, tunables: Tunables | None = None,
                 host: str | None = None):
        self.backend = backend
        # the transitions need no timing; only the rule does
        self.tunables = tunables or Tunables()
        self.host = host or os.uname().nodename

    # -- transitions: queued ------------------------------------------------------------
    def enqueue(self, conn: Any, *, job_id: str, procedure_name: str, now: dt.datetime,
                params_json: str, timeout_s: float | None, max_attempts: int,
                submitted_by: str, unique_key: str | None,
                signature_json: str | None = None, queue: str = store.DEFAULT_QUEUE,
                priority: int = 0, not_before: dt.datetime | None = None,
                after_jobs: tuple[str, ...] = (), atomic: bool = False) -> None:
        """submit: a new `queued` row (the caller commits)."""
        store.insert_job(self.backend, conn, job_id=job_id, procedure_name=procedure_name,
                         now=now, params_json=params_json, timeout_s=timeout_s,
                         max_attempts=max_attempts, submitted_by=submitted_by,
                         unique_key=unique_key, signature_json=signature_json, queue=queue,
                         priority=priority, not_before=not_before, after_jobs=after_jobs,
                         atomic=atomic)

    def enqueue_many(self, conn: Any, jobs: list[dict[str, Any]]) -> None:
        """submit --params-file: many `queued` rows in one batch (the caller commits)."""
        store.insert_jobs(self.backend, conn, jobs)

    @property
    def lock_bounds(self) -> store.LockBounds:
        """A claim waits for its queue's lock at most half a heartbeat (a
        pool's heartbeats wait behind its claim), and a client silent inside
        a claim for lost_after is cut off by the server: a host cut off while
        it holds a queue's lock stops that queue no longer than its jobs take
        to read lost."""
        tun = self.tunables
        return store.LockBounds(wait_s=min(CLAIM_LOCK_WAIT_S, tun.heartbeat_s / 2),
                                silent_s=tun.lost_after_s)

    def claim_next(self, conn: Any, queue: str, *, token: str, pid: int | None = None,
                   now: dt.datetime | None = None, commit: bool = True) -> str | None:
        """Reserve the next eligible job of `queue` for a worker, within the
        queue's limit (see store.claim_next); commits unless told the
        caller's transaction does. None: none may start."""
        return store.claim_next(self.backend, conn, queue, now=now or utcnow(), host=self.host,
                                pid=pid, token=token, commit=commit, bounds=self.lock_bounds)

    def claim_batch(self, conn: Any, queue: str, *, token: str, pid: int,
                    sessions: list[str | None], known_queue: bool = False,
                    commit: bool = True, spare: int = store.CLAIM_SPARE,
                    handover: bool = False, limits: dict[str, int] | None = None,
                    now: dt.datetime | None = None) -> list[Job]:
        """queued → running for a pool: up to len(sessions) jobs of `queue`
        at once, within its limit (see store.claim_batch); commits unless
        told the caller's transaction does."""
        return store.claim_batch(self.backend, conn, queue, now=now or utcnow(), host=self.host,
                                 pid=pid, token=token, sessions=sessions, known_queue=known_queue,
                                 commit=commit, spare=spare, handover=handover,
                                 limits=limits, bounds=self.lock_bounds)

    def unreserve(self, conn: Any, job_id: str, token: str) -> int:
        """A reservation its worker will not use (it was told to stop): the
        job is queued for any worker again (the caller commits)."""
        return store.unreserve(self.backend, conn, job_id, token)

    def cancel_dependents(self, conn: Any, job_id: str, status: JobStatus,
                          now: dt.datetime | None = None) -> int:
        """`job_id` ended `status` without completing: every queued job
        waiting for it ends `cancelled`, and theirs with them (commits)."""
        now = now or utcnow()
        cancelled, todo = 0, [(job_id, status.value)]
        while todo:
            ended, how = todo.pop()
            for dependent, _ in store.queued_dependents(self.backend, conn, ended):
                if store.cancel_dependent(self.backend, conn, dependent, now,
                                          f"cancelled: dependency {ended} ended {how}, so it never ran"):
                    cancelled += 1
                    todo.append((dependent, JobStatus.CANCELLED.value))
        conn.commit()
        return cancelled

    def note_waiting(self, conn: Any, job_id: str, note: str | None) -> int:
        """Why a queued job has not started yet (None clears it); it stays queued."""
        return store.note_queued(self.backend, conn, job_id, note)

    def fail_unstarted(self, conn: Any, job_id: str, now: dt.datetime, reason: str) -> int:
        """queued → failed: the job never ran (no worker, no connection), so
        it is not left to read lost. 0 when it is no longer queued."""
        return store.fail_queued(self.backend, conn, job_id, now, reason)

    def cancel_queued(self, conn: Any, job_id: str, now: dt.datetime) -> int:
        """queued → cancelled, before any worker claimed it."""
        return store.cancel_queued(self.backend, conn, job_id, now)

    def claim(self, conn: Any, job_id: str, *, now: dt.datetime, pid: int, token: str,
              session: str | None) -> int:
        """queued → running, once, by the worker on this host."""
        return store.claim(self.backend, conn, job_id, now=now, host=self.host, pid=pid,
                           token=token, session=session)

    # -- transitions: running -----------------------------------------------------------
    def heartbeat(self, conn: Any, job_id: str, *, now: dt.datetime, progress: float | None,
                  output: str | None, changed: bool) -> bool | None:
        """The worker's sign of life, carrying progress and output when they
        changed. Returns the cancel flag, or None when the job is no longer
        running (commits)."""
        return store.heartbeat(self.backend, conn, job_id, now=now, progress=progress,
                               output=output, write_progress=changed)

    def cancel_flag(self, conn: Any, job_id: str) -> bool | None:
        """The worker's cheap poll between heartbeats: the cancel flag, or
        None when the job is no longer running (commits)."""
        return store.cancel_flag(self.backend, conn, job_id)

    def request_cancel(self, conn: Any, job_id: str) -> int:
        """Ask a running job's worker to stop (it records the outcome)."""
        return store.request_cancel(self.backend, conn, job_id)

    def next_attempt(self, conn: Any, job_id: str, attempt: int, error: str) -> None:
        """--retries: the job stays running, under attempt number `attempt`."""
        store.next_attempt(self.backend, conn, job_id, attempt, error)

    def finish(self, conn: Any, job_id: str, **fields: Any) -> int:
        return self.finish_sent(conn, job_id, **fields)()  # its count read at once

    def finish_sent(self, conn: Any, job_id: str, *, status: JobStatus,
                    **fields: Any) -> Callable[[], int]:
        """running → a final status, written once (store.finish_sent's fields);
        its count, read after the batch: 0 when no longer running (or ours)."""
        if not status.finished:
            raise ValueError(f"{status.value} is not a final status")
        return store.finish_sent(self.backend, conn, job_id, status=status, **fields)

    # -- the rule ------------------------------------------------------------------
    def clock(self, conn: Any) -> dt.datetime:
        """The time the rule judges heartbeats by: the server's, with which
        they are written, or this host's (SQLite). Ends the transaction on
        `conn`: call it before writing."""
        now = self.backend.server_time(conn)
        conn.commit()
        return now or utcnow()

    @staticmethod
    def is_external(job: Job) -> bool:
        return job.status is JobStatus.RUNNING and not job.worker_host

    def worker_gone(self, job: Job, now: dt.datetime) -> str | None:
        """Why the job's worker is gone (or never came), or None, at `now`
        by `clock`. No I/O but the local pid and liveness file."""
        tun = self.tunables
        if job.status is JobStatus.QUEUED:
            if not job.claim_token or not job.worker_host:
                return None  # waiting for its turn, however long that takes
            if job.worker_host == self.host and job.worker_pid and not pid_alive(job.worker_pid):
                return (f"its worker never started (worker pid {job.worker_pid} on "
                        f"{job.worker_host}, which reserved it, is gone)")
            reserved = job.heartbeat_at or job.start_time
            if reserved and (now - reserved).total_seconds() > tun.start_timeout_s:
                return f"its worker never started (reserved for it at {reserved.isoformat()})"
            return None
        if job.status is not JobStatus.RUNNING or self.is_external(job):
            return None
        if job.worker_host == self.host and job.worker_pid:
            if not pid_alive(job.worker_pid):
                return f"worker pid {job.worker_pid} on {job.worker_host} is gone"
            age = self._liveness_age(job)
            if age is not None and age <= tun.lost_after_s:
                return None
        if job.heartbeat_at is None:
            return "its worker never sent a heartbeat"
        if (now - job.heartbeat_at).total_seconds() > tun.lost_after_s:
            return f"no heartbeat since {job.heartbeat_at.isoformat()}"
        return None

    def _liveness_age(self, job: Job) -> float | None:
        path = liveness_path(self.backend, job.job_id)
        if path is None:
            return None
        try:
            return max(0.0, time.time() - path.stat().st_mtime)
        except OSError:
            return None

    def session_running(self, conn: Any, job: Job) -> bool | None:
        """Does the job's server session still execute the call? None: unknown."""
        if not job.db_session:
            return False
        try:
            return self.backend.session_alive(conn, job.db_session)
        except Exception:  # noqa: BLE001 - a view we may not read is "cannot tell"
            with contextlib.suppress(Exception):
                conn.rollback()
            return None

    def judge(self, conn: Any, job: Job, now: dt.datetime) -> Job:
        """The job as every reading command shows it."""
        if self.is_external(job):
            return replace(job, external=True)
        why = self.worker_gone(job, now)
        if why is None:
            return job
        if job.status is JobStatus.RUNNING:
            running = self.session_running(conn, job)
            if running:
                return replace(job, status=JobStatus.ORPHANED, status_reason=(
                    f"{why}; its server session {job.db_session} still runs the call"))
            if running is None:
                why += f" (its server session {job.db_session} could not be checked)"
        why += f"; {COMMITS_STAY}" if job.committed_inside else ""
        return replace(job, status=JobStatus.LOST, lost_detected=True, status_reason=why)

    def effective(self, conn: Any, job: Job, now: dt.datetime | None = None) -> Job:
        """`judge` at `now` (by `clock`; read when not given), after reading
        the row again when it looks dead: its worker may have written the
        outcome and exited since it was read."""
        now = now or self.clock(conn)
        if self.worker_gone(job, now) is None:
            return self.judge(conn, job, now)
        fresh = store.get(self.backend, conn, job.job_id)
        if fresh is None:
            conn.commit()
            return job
        return self.judge(conn, fresh, self.clock(conn))

    # -- acting on it -----------------------------------------------------------------
    def lost_jobs(self, conn: Any, now: dt.datetime | None = None, *,
                  since: dt.datetime | None = None) -> list[tuple[Job, Job]]:
        """(stored row, as judged at `now`, by `clock`) for every row the rule
        does not show as stored: the only rows whose liveness needs a second look."""
        tun = self.tunables
        now = now or self.clock(conn)
        suspects = store.lost_suspects(
            self.backend, conn, host=self.host, since=since,
            stale_before=now - dt.timedelta(seconds=tun.lost_after_s),
            unclaimed_before=now - dt.timedelta(seconds=tun.start_timeout_s))
        conn.commit()
        out = []
        for job in suspects:
            judged = self.judge(conn, job, now)
            if judged.status is not job.status:
                out.append((job, judged))
        return out

    def mark_lost(self, conn: Any, now: dt.datetime | None = None, *,
                  dry_run: bool = False) -> int:
        """Write `lost` for the jobs the rule calls lost at `now` (by `clock`;
        never orphaned or external ones). Used by cleanup and submit --unique."""
        now = now or self.clock(conn)
        lost = [(job, judged) for job, judged in self.lost_jobs(conn, now)
                if judged.status is JobStatus.LOST]
        if dry_run:
            return len(lost)
        marked = 0
        for job, judged in lost:
            reason, committed = _lost_reason(self.backend, conn, job, judged.status_reason)
            marked += store.mark_lost(self.backend, conn, job, now=now, reason=reason,
                                      committed=committed)
            remove_liveness(liveness_path(self.backend, job.job_id))  # left by a killed worker
        conn.commit()
        for job, _ in lost:
            self.cancel_dependents(conn, job.job_id, JobStatus.LOST, now)
        return marked

    def adjust_stats(self, conn: Any, rows: list[dict[str, Any]], now: dt.datetime | None, *,
                     since: dt.datetime | None) -> list[dict[str, Any]]:
        """SQL counted stored statuses; move the few rows the rule shows
        otherwise, so stats agrees with status and list."""
        by_proc = {r["procedure"]: r for r in rows}
        # every suspect in the window, whatever --procedure matched: only the
        # procedures stats counted are corrected, so both use one filter
        for job, judged in self.lost_jobs(conn, now, since=since):
            row = by_proc.get(job.procedure_name)
            if row is not None:
                row[job.status.value] -= 1
                row[judged.status.value] += 1
        for row in rows:
            finished = sum(row[s.value] for s in JobStatus if s.finished)
            row["success_pct"] = round(100.0 * row["completed"] / finished, 1) if finished else None
        return rows

    def end_orphan(self, conn: Any, job: Job, now: dt.datetime) -> tuple[bool, str]:
        """cancel of an orphaned job: end its server session, then record
        `cancelled` (guarded by the claim token, as the worker's own write).
        Returns (ended, the statement a DBA runs when it could not)."""
        session = job.db_session or ""
        statement = self.backend.kill_session_sql(session)
        try:
            ended = bool(self.backend.end_session(conn, session))
        except Exception:  # noqa: BLE001 - not privileged: the DBA's statement says what to do
            with contextlib.suppress(Exception):
                conn.rollback()
            ended = False
        if not ended:
            return False, statement
        self.finish(conn, job.job_id, status=JobStatus.CANCELLED, end_time=now,
                    duration=None, elapsed_s=None, result=None, output=job.output, progress=None,
                    error=f"cancelled by `jobctl cancel`: the worker was gone and its server "
                          f"session {session} was ended (its work rolled back)",
                    token=job.claim_token)
        conn.commit()
        return True, statement


def describe_worker(row: store.WorkerRow, *, host: str, lost_after_s: float,
                    now: dt.datetime | None = None) -> str:
    """running | stopping | gone, by the same rule as a job's worker: on this
    host its pid, elsewhere its heartbeat."""
    now = now or utcnow()
    if row.host == host:
        alive = pid_alive(row.pid)
    else:
        alive = row.heartbeat_at is not None and (now - row.heartbeat_at).total_seconds() <= lost_after_s
    return row.state if alive else PoolState.GONE.value
