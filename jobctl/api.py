"""The library surface. Everything the CLI can do, Python code can do too::

    from jobctl.api import Jobctl
    from jobctl.config import resolve_settings

    with Jobctl(resolve_settings(dsn="sqlite:///jobs.db")) as jc:
        job_id = jc.submit("SUMA_SIMPLE", {"vA": 10}).job_id
        job = jc.wait([job_id])[0]
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from . import params as params_mod
from . import store
from .backends import get_backend
from .config import Settings
from .errors import DatabaseError, JobctlError, JobsUnfinished, NotFound, UsageError
from .model import FINISHED_STATUSES, MAX_DURATION_S, Job, JobStatus, Signature, utcnow

MIN_PREFIX = 4
CLEANUP_BATCH = 500
#: `list --limit` above this is a typo, and would overflow a bind on some databases
MAX_LIST_LIMIT = 1_000_000
#: `cleanup --days` beyond a century is a typo (and overflows date arithmetic)
MAX_CLEANUP_DAYS = 36500


@dataclass(frozen=True)
class Submitted:
    job_id: str
    created: bool  # False: `--unique` found the same work already queued or running


@dataclass(frozen=True)
class CleanupReport:
    marked_lost: int
    deleted: int
    dry_run: bool


@dataclass(frozen=True)
class CancelReport:
    job: Job
    action: str  # cancelled | requested | finished | lost


def _pid_alive(pid: int) -> bool:
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


class Jobctl:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.backend = get_backend(settings.connection)
        self._conn: Any = None
        self._host = os.uname().nodename

    # -- plumbing --------------------------------------------------------------------
    def __enter__(self) -> Jobctl:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    @property
    def conn(self) -> Any:
        if self._conn is None:
            self._conn = self.backend.connect()
        return self._conn

    @contextlib.contextmanager
    def _db(self) -> Iterator[Any]:
        """Run database work; driver errors leave as domain errors, and an
        unfinished transaction is rolled back so nothing half-written stays."""
        try:
            yield self.conn
        except JobctlError:
            self._rollback()
            raise
        except Exception as exc:
            self._rollback()
            raise self.backend.translate_error(exc) from exc

    def _rollback(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.rollback()

    # -- lost detection (reading commands show it, never write it) ------------------
    def _lost_reason(self, job: Job, now: dt.datetime) -> str | None:
        """Why `job` is lost, or None. Running: its heartbeat is stale or its
        worker process (on this host) is gone. Queued: no worker claimed it
        within start_timeout — every submit starts its worker at once, so a
        job still queued after that will never run."""
        tun = self.settings.tunables
        if job.status is JobStatus.QUEUED:
            if job.start_time and (now - job.start_time).total_seconds() > tun.start_timeout_s:
                return f"its worker never started (queued since {job.start_time.isoformat()})"
            return None
        if job.status is not JobStatus.RUNNING:
            return None
        if job.worker_host == self._host and job.worker_pid and not _pid_alive(job.worker_pid):
            return f"worker pid {job.worker_pid} on {job.worker_host} is gone"
        if job.heartbeat_at is None:
            return "its worker never sent a heartbeat"
        if (now - job.heartbeat_at).total_seconds() > tun.lost_after_s:
            return f"no heartbeat since {job.heartbeat_at.isoformat()}"
        return None

    def _effective(self, job: Job, now: dt.datetime | None = None) -> Job:
        now = now or utcnow()
        if self._lost_reason(job, now) is None:
            return job
        # the worker may have written its outcome and exited since we read
        with self._db() as conn:
            fresh = store.get(self.backend, conn, job.job_id)
            conn.commit()
        if fresh is None or self._lost_reason(fresh, utcnow()) is None:
            return fresh or job
        return replace(fresh, status=JobStatus.LOST, lost_detected=True)

    def _lost_jobs(self, conn, now: dt.datetime) -> list[tuple[Job, str]]:
        tun = self.settings.tunables
        suspects = store.lost_suspects(
            self.backend, conn, host=self._host,
            stale_before=now - dt.timedelta(seconds=tun.lost_after_s),
            unclaimed_before=now - dt.timedelta(seconds=tun.start_timeout_s))
        return [(job, why) for job in suspects if (why := self._lost_reason(job, now))]

    def _mark_lost(self, conn, now: dt.datetime) -> int:
        marked = sum(store.mark_lost(self.backend, conn, job, now=now,
                                     reason=f"lost: {why}; not re-run automatically")
                     for job, why in self._lost_jobs(conn, now))
        conn.commit()
        return marked

    # -- submit ------------------------------------------------------------------------
    def submit(self, procedure: str, given: dict[str, Any], *, timeout_s: float | None = None,
               retries: int = 0, unique: bool = False) -> Submitted:
        name = self.backend.normalize_name(procedure)
        if retries < 0:
            raise UsageError("--retries must be 0 or more")
        if timeout_s is not None and not 0 < timeout_s <= MAX_DURATION_S:  # also refuses nan
            raise UsageError(f"--timeout must be more than 0 and at most {MAX_DURATION_S:g} s")
        with self._db() as conn:
            try:
                sig = self.backend.resolve(conn, name, frozenset(k.casefold() for k in given))
            except NotFound:
                # on a database without ASYNC_JOBS the first thing to do is
                # `db init`, not to hunt for the procedure
                self._require_table(conn)
                raise
            values = params_mod.bind(sig, given)
            stored = {k: params_mod.to_json_value(v) for k, v in values.items()}
            conn.commit()  # resolve may have opened a read transaction
            params_json = json.dumps(stored, sort_keys=True)
            unique_key = None

            def already_active() -> Submitted | None:
                existing = store.find_active_unique(self.backend, conn, unique_key)
                conn.commit()
                return Submitted(existing[0].job_id, created=False) if existing else None

            if unique:
                import hashlib

                unique_key = hashlib.sha256(
                    json.dumps([name, stored], sort_keys=True).encode()).hexdigest()
                self._mark_lost(conn, utcnow())
                if found := already_active():
                    return found
            import uuid

            job_id = uuid.uuid4().hex
            try:
                store.insert_job(self.backend, conn, job_id=job_id, procedure_name=name, now=utcnow(),
                                 params_json=params_json, timeout_s=timeout_s,
                                 max_attempts=retries + 1, submitted_by=_submitter(),
                                 unique_key=unique_key)
                conn.commit()
            except Exception as exc:
                if unique and self.backend.is_unique_violation(exc):
                    conn.rollback()  # another submit won the race: report its job
                    if found := already_active():
                        return found
                raise
        from . import runner  # lazily: only submit spawns

        try:
            # the backend's settings: they hold a password asked for at the prompt
            runner.spawn(replace(self.settings, connection=self.backend.settings), job_id)
        except OSError as exc:
            reason = f"could not start the worker: {exc}"
            with self._db() as conn:
                store.fail_queued(self.backend, conn, job_id, utcnow(), reason)
                conn.commit()
            raise JobctlError(f"job {job_id} failed: {reason}") from exc
        return Submitted(job_id, created=True)

    def _require_table(self, conn) -> None:
        try:
            store.table_columns(self.backend, conn)
            conn.commit()
        except Exception as exc:
            conn.rollback()
            if self.backend.is_missing_table(exc):
                raise self.backend.translate_error(exc) from exc

    # -- reading -------------------------------------------------------------------------
    def get(self, ref: str) -> Job:
        ref = ref.strip().lower()
        if len(ref) < MIN_PREFIX or any(c not in "0123456789abcdef" for c in ref):
            raise UsageError(f"invalid job id {ref!r}: use the id or a unique prefix of at least "
                             f"{MIN_PREFIX} hex characters")
        with self._db() as conn:
            if len(ref) == 32:
                job = store.get(self.backend, conn, ref)
                found = [job] if job else []
            else:
                found = store.get_by_prefix(self.backend, conn, ref)
            conn.commit()
        if not found:
            raise NotFound(f"no job {ref}")
        if len(found) > 1:
            raise UsageError(f"job id prefix {ref} is ambiguous ({found[0].job_id[:12]}, "
                             f"{found[1].job_id[:12]}, ...): give more characters")
        return self._effective(found[0])

    def get_many(self, refs: Sequence[str]) -> list[Job]:
        return [self.get(r) for r in refs]

    def list_jobs(self, *, statuses: Sequence[str] | None = None, procedure: str | None = None,
                  since_s: float = 86400, limit: int = 50) -> list[Job]:
        wanted = _parse_statuses(statuses)
        _check_since(since_s)
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise UsageError(f"--limit must be from 1 to {MAX_LIST_LIMIT}")
        proc = self.backend.normalize_name(procedure) if procedure else None
        sql_statuses = None
        if wanted:
            sql_statuses = {s.value for s in wanted}
            if JobStatus.LOST in wanted:
                sql_statuses.add(JobStatus.RUNNING.value)  # lost ones may still read running
        now = utcnow()
        with self._db() as conn:
            jobs = store.list_jobs(self.backend, conn, since=now - dt.timedelta(seconds=since_s),
                                   statuses=sorted(sql_statuses) if sql_statuses else None,
                                   procedure=proc, limit=limit)
            conn.commit()
        jobs = [self._effective(j, now) for j in jobs]
        if wanted:
            jobs = [j for j in jobs if j.status in wanted]
        return jobs

    def stats(self, *, since_s: float = 7 * 86400, procedure: str | None = None) -> list[dict[str, Any]]:
        _check_since(since_s)
        proc = self.backend.normalize_name(procedure) if procedure else None
        now = utcnow()
        with self._db() as conn:
            tun = self.settings.tunables
            rows = store.stats(self.backend, conn, since=now - dt.timedelta(seconds=since_s),
                               stale_before=now - dt.timedelta(seconds=tun.lost_after_s),
                               unclaimed_before=now - dt.timedelta(seconds=tun.start_timeout_s),
                               procedure=proc)
            conn.commit()
        return rows

    def describe(self, procedure: str) -> Signature:
        name = self.backend.normalize_name(procedure)
        with self._db() as conn:
            sig = self.backend.resolve(conn, name, frozenset())
            conn.commit()
        return sig

    # -- acting ----------------------------------------------------------------------------
    def cancel(self, refs: Sequence[str]) -> list[CancelReport]:
        jobs = self.get_many(refs)  # every id checked before anything is written
        out = []
        for job in jobs:
            with self._db() as conn:
                if job.status is JobStatus.QUEUED and store.cancel_queued(self.backend, conn, job.job_id, utcnow()):
                    action = "cancelled"
                elif job.status in (JobStatus.QUEUED, JobStatus.RUNNING) and \
                        store.request_cancel(self.backend, conn, job.job_id):
                    action = "requested"
                else:
                    action = "lost" if job.status is JobStatus.LOST else "finished"
                conn.commit()
                fresh = store.get(self.backend, conn, job.job_id) or job
                conn.commit()
            out.append(CancelReport(self._effective(fresh), action))
        return out

    def wait(self, refs: Sequence[str], *, timeout_s: float | None = None,
             on_poll: Callable[[list[Job]], None] | None = None) -> list[Job]:
        ids = [j.job_id for j in self.get_many(refs)]
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            now = utcnow()
            with self._db() as conn:
                jobs = [store.get(self.backend, conn, i) for i in ids]
                conn.commit()
            jobs = [self._effective(j, now) for j in jobs if j is not None]
            if on_poll:
                on_poll(jobs)
            if all(j.status.finished for j in jobs):
                return jobs
            if deadline is not None and time.monotonic() >= deadline:
                raise JobsUnfinished(
                    f"timed out waiting: {sum(not j.status.finished for j in jobs)} job(s) still "
                    "queued or running (they keep running)")
            pause = self.settings.tunables.poll_s
            if deadline is not None:
                pause = max(0.0, min(pause, deadline - time.monotonic()))
            time.sleep(pause)

    def cleanup(self, *, days: float, statuses: Sequence[str] | None = None,
                dry_run: bool = False) -> CleanupReport:
        if not 0 <= days <= MAX_CLEANUP_DAYS:  # also refuses nan
            raise UsageError(f"--days must be a number of days from 0 to {MAX_CLEANUP_DAYS}, not {days:g}")
        wanted = _parse_statuses(statuses) or list(FINISHED_STATUSES)
        active = [s.value for s in wanted if not s.finished]
        if active:
            raise UsageError(f"cleanup never deletes {', '.join(active)} jobs")
        names = [s.value for s in wanted]
        now = utcnow()
        before = now - dt.timedelta(days=days)
        with self._db() as conn:
            if dry_run:
                lost = len(self._lost_jobs(conn, now))
                count = store.count_finished_before(self.backend, conn, before=before, statuses=names)
                conn.commit()
                return CleanupReport(lost, count, True)
            lost = self._mark_lost(conn, now)
            deleted = 0
            while n := store.delete_finished_batch(self.backend, conn, before=before,
                                                   statuses=names, batch=CLEANUP_BATCH):
                deleted += n
        return CleanupReport(lost, deleted, False)

    # -- schema ------------------------------------------------------------------------------
    def schema_sql(self, *, examples: bool = False) -> str:
        from .sqlfiles import read_sql

        parts = []
        for name in self.backend.schema_files(examples=examples):
            parts.append(f"-- sql/{self.backend.name}/{name}\n{read_sql(self.backend.name, name).rstrip()}\n")
        return "\n".join(parts)

    def db_init(self, *, examples: bool = False) -> list[str]:
        """Create or upgrade the schema from the same files a DBA runs by hand;
        statements whose object already exists are skipped. Returns what ran."""
        from .sqlfiles import read_sql, split_script

        ran = []
        with self._db() as conn:
            for name in self.backend.schema_files(examples=examples):
                for stmt in split_script(read_sql(self.backend.name, name), self.backend.script_style):
                    try:
                        self.backend.execute(conn, stmt)
                        conn.commit()
                        ran.append(stmt)
                    except Exception as exc:
                        conn.rollback()
                        if not self.backend.is_already_exists(exc):
                            raise
            missing = set(store.COLUMNS) - store.table_columns(self.backend, conn)
            conn.commit()
        if missing:
            raise DatabaseError(f"ASYNC_JOBS still lacks columns {', '.join(sorted(missing))} after db init")
        return ran


def _check_since(since_s: float) -> None:
    # a window past a century overflows date arithmetic: the caller's mistake
    if not 0 <= since_s <= MAX_DURATION_S:  # also refuses nan
        raise UsageError(f"--since must be from 0 to {MAX_DURATION_S:g} s, not {since_s:g}")


def _parse_statuses(statuses: Sequence[str] | None) -> list[JobStatus]:
    out = []
    for raw in statuses or ():
        for part in str(raw).split(","):
            part = part.strip().lower()
            if not part:
                continue
            try:
                out.append(JobStatus(part))
            except ValueError:
                raise UsageError(f"unknown status {part!r}: one of "
                                 + ", ".join(s.value for s in JobStatus)) from None
    return out


def _submitter() -> str:
    try:
        user = getpass.getuser()
    except Exception:
        user = str(os.getuid())
    return f"{user}@{os.uname().nodename}"[:128]
