"""The job lifecycle: the one rule for `lost`, and the transitions made on it.

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
  liveness file has moved for `lost_after` seconds. A SIGSTOPped worker moves
  neither; a SQLite job whose own transaction blocks its heartbeat row still
  touches the file.
- A gone worker whose database session still executes the call is
  `orphaned` (never stored: cancel ends the session); otherwise the job is
  `lost`. A session that cannot be checked counts as gone.

A `queued` row is lost when no worker claimed it within `start_timeout`.

Reading commands never write; only `mark_lost` stores `lost`, guarded on the
heartbeat it judged so that a worker coming back to life is not overwritten.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from . import store
from .config import Tunables
from .model import Job, JobStatus, utcnow


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

def liveness_path(backend: Any, job_id: str) -> Path | None:
    where = getattr(backend, "liveness_dir", lambda: None)()
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
    def __init__(self, backend: Any, tunables: Tunables, host: str | None = None):
        self.backend = backend
        self.tunables = tunables
        self.host = host or os.uname().nodename

    # -- the rule ------------------------------------------------------------------
    @staticmethod
    def is_external(job: Job) -> bool:
        return job.status is JobStatus.RUNNING and not job.worker_host

    def worker_gone(self, job: Job, now: dt.datetime) -> str | None:
        """Why the job's worker is gone (or never came), or None. No I/O but
        the local pid and liveness file."""
        tun = self.tunables
        if job.status is JobStatus.QUEUED:
            if job.start_time and (now - job.start_time).total_seconds() > tun.start_timeout_s:
                return f"its worker never started (queued since {job.start_time.isoformat()})"
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
        check = getattr(self.backend, "session_alive", None)
        if not job.db_session or check is None:
            return False
        try:
            return check(conn, job.db_session)
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
        return replace(job, status=JobStatus.LOST, lost_detected=True, status_reason=why)

    def effective(self, conn: Any, job: Job, now: dt.datetime | None = None) -> Job:
        """`judge`, after reading the row again when it looks dead: its worker
        may have written the outcome and exited since it was read."""
        now = now or utcnow()
        if self.worker_gone(job, now) is None:
            return self.judge(conn, job, now)
        fresh = store.get(self.backend, conn, job.job_id)
        conn.commit()
        if fresh is None:
            return job
        return self.judge(conn, fresh, utcnow())

    # -- acting on it -----------------------------------------------------------------
    def lost_jobs(self, conn: Any, now: dt.datetime, *,
                  since: dt.datetime | None = None) -> list[tuple[Job, Job]]:
        """(stored row, as judged) for every row the rule does not show as
        stored: the only rows whose liveness needs a second look."""
        tun = self.tunables
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

    def mark_lost(self, conn: Any, now: dt.datetime, *, dry_run: bool = False) -> int:
        """Write `lost` for the jobs the rule calls lost (never orphaned or
        external ones). Used by cleanup and submit --unique."""
        lost = [(job, judged) for job, judged in self.lost_jobs(conn, now)
                if judged.status is JobStatus.LOST]
        if dry_run:
            return len(lost)
        marked = 0
        for job, judged in lost:
            marked += store.mark_lost(self.backend, conn, job, now=now,
                                      reason=f"lost: {judged.status_reason}; not re-run automatically")
            remove_liveness(liveness_path(self.backend, job.job_id))  # left by a killed worker
        conn.commit()
        return marked

    def adjust_stats(self, conn: Any, rows: list[dict[str, Any]], now: dt.datetime, *,
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
        statement = getattr(self.backend, "kill_session_sql", lambda s: "")(session)
        end = getattr(self.backend, "end_session", None)
        try:
            ended = bool(end and end(conn, session))
        except Exception:  # noqa: BLE001 - not privileged: the DBA's statement says what to do
            with contextlib.suppress(Exception):
                conn.rollback()
            ended = False
        if not ended:
            return False, statement
        store.finish(self.backend, conn, job.job_id, status=JobStatus.CANCELLED, end_time=now,
                     duration=None, elapsed_s=None, result=None, output=job.output, progress=None,
                     error=f"cancelled by `jobctl cancel`: the worker was gone and its server "
                           f"session {session} was ended (its work rolled back)",
                     token=job.claim_token)
        conn.commit()
        return True, statement
