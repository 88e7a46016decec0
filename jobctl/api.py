"""The library surface. Everything the CLI can do, Python code can do too::

    from jobctl.api import Jobctl
    from jobctl.config import resolve_settings

    with Jobctl(resolve_settings(dsn="sqlite:///jobs.db")) as jc:
        job_id = jc.submit("SUMA_SIMPLE", {"vA": 10}).job_id
        job = jc.wait([job_id])[0]

`Jobctl` composes the services on one database session: submitting
(jobctl.submitting), reading (jobctl.reading), procedures by name
(jobctl.lookup) and starting workers (jobctl.launcher); what it does itself
is what acts across them: cancel, cleanup, queues, pools and the schema.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from . import params as params_mod
from . import store
from .config import Settings
from .errors import DatabaseError, NotFound, UsageError
from .launcher import Launcher
from .lookup import Lookup, name_pattern
from .model import COLUMNS, FINISHED_STATUSES, Job, JobStatus, PoolState, utcnow
from .reading import MAX_LIST_LIMIT, Reader, parse_statuses
from .session import MIN_PREFIX, Service, Session
from .submitting import Submitted, Submitter, check_queue_name, require_queue, start_time

if TYPE_CHECKING:
    from .serving import ServerReads
    from .tokens import Tokens

__all__ = ["Jobctl", "Submitted", "CleanupReport", "CancelReport", "name_pattern",
           "check_queue_name", "start_time", "MIN_PREFIX", "MAX_LIST_LIMIT", "CLEANUP_BATCH",
           "MAX_CLEANUP_DAYS"]

CLEANUP_BATCH = 500
#: `cleanup --days` beyond a century is a typo (and overflows date arithmetic)
MAX_CLEANUP_DAYS = 36500


@dataclass(frozen=True)
class CleanupReport:
    marked_lost: int
    deleted: int
    dry_run: bool


#: CancelReport.action of a job that had already ended
FINISHED = "finished"


@dataclass(frozen=True)
class CancelReport:
    job: Job
    action: str  # cancelled | requested | finished | lost | external

    @property
    def nothing_to_do(self) -> bool:
        """The job had ended (or was lost) before the cancel: nothing written."""
        return self.action in (FINISHED, JobStatus.LOST.value)


class Jobctl(Service):
    def __init__(self, settings: Settings, *, create: bool | str = True):
        """`create`: may a SQLite file that does not exist be created (True:
        any; session.DEFAULT_ONLY: only the default one; False: none, exit 4)."""
        super().__init__(Session(settings, create=create))
        self.launcher = Launcher(self.session)
        self.lookup = Lookup(self.session)
        self.reader = Reader(self.session, self.launcher, self.lookup)
        self.submitter = Submitter(self.session, self.launcher, self.lookup)
        # the surface, served by the services
        self.submit = self.submitter.submit
        self.submit_many = self.submitter.submit_many
        self.start_workers = self.launcher.start_workers
        self.heal = self.launcher.heal
        self.get = self.reader.get
        self.get_many = self.reader.get_many
        self.list_jobs = self.reader.list_jobs
        self.stats = self.reader.stats
        self.top_frame = self.reader.top_frame
        self.stats_chart = self.reader.stats_chart
        self.typical_duration = self.reader.typical_duration
        self.recent_jobs = self.reader.recent_jobs
        self.wait = self.reader.wait
        self.follow = self.reader.follow
        self.describe = self.lookup.describe
        self.procedures = self.lookup.procedures
        self.procedure_names = self.lookup.procedure_names

    def __enter__(self) -> Jobctl:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.session.close()

    @property
    def conn(self) -> Any:
        return self.session.conn

    @property
    def tokens(self) -> Tokens:
        """`jobctl token` and the checks of `jobctl serve` (jobctl.tokens)."""
        from .tokens import Tokens

        return Tokens(self.session)

    @property
    def server_reads(self) -> ServerReads:
        """What `jobctl serve` reads besides jobs (jobctl.serving)."""
        from .serving import ServerReads

        return ServerReads(self.session)

    def resubmit(self, ref: str, overrides: dict[str, Any] | None = None, *,
                 timeout_s: float | None = None, retries: int | None = None,
                 unique: bool = False, atomic: bool | None = None) -> tuple[Job, Submitted]:
        """Submit job `ref`'s procedure again with its parameters as stored
        (exact: numbers stay Decimal), `overrides` replacing values by name
        (case-insensitive). The timeout and retries are the original job's
        unless given, and so is --atomic. Validated as `submit` validates; returns (the original
        job, the new submission)."""
        job = self.get(ref)
        if job.external:
            raise UsageError(f"job {job.job_id} was written by another application, not by "
                             "jobctl: its parameters are not known")
        if job.timeout_s is not None and timeout_s is None:
            timeout_s = float(job.timeout_s)
        if retries is None:
            retries = max(0, int(job.max_attempts or 1) - 1)
        given = params_mod.merge(dict(job.params or {}), dict(overrides or {}))
        options: dict[str, Any] = dict(timeout_s=timeout_s, retries=retries, unique=unique,
                                       queue=job.queue, priority=job.priority or 0,
                                       atomic=job.atomic if atomic is None else atomic)
        form = (job.signature or {}).get("form")
        if form:
            # the overload submit chose, by its form: overloads may differ
            # by type only; when that form is gone (the procedure was
            # replaced), the name picks again as a submit would
            try:
                return job, self.submit(form, given, **options)
            except NotFound:
                pass
        return job, self.submit(job.procedure_name, given, **options)

    def run_pool(self, *, queues: Sequence[str] = (), concurrency: int = 4,
                 grace_s: float = 60.0) -> int:
        """`jobctl worker`: run in the foreground until SIGTERM/SIGINT (see pool.py)."""
        from .pool import Pool

        names = tuple(dict.fromkeys(check_queue_name(q) for q in queues))
        self.session.require_table(self.conn)
        with self.db() as conn:
            for name in names:
                require_queue(self.backend, conn, name)
            conn.commit()
        # the backend's settings: they hold a password asked for at the prompt
        pool = Pool(replace(self.settings, connection=self.backend.settings), queues=names,
                    concurrency=concurrency, grace_s=grace_s)
        self.close()  # the pool holds its own connections
        return pool.run()

    def workers(self) -> list[dict[str, Any]]:
        """The pools registered in JOB_WORKERS, each judged running, stopping or gone."""
        with self.db() as conn:
            try:
                judged = self.launcher.judged_pools(conn)
            except Exception as exc:
                conn.rollback()
                if self.backend.is_missing_table(exc):
                    raise DatabaseError("table JOB_WORKERS is missing: run jobctl db init "
                                        "to create it") from exc
                raise
        return [{"worker": w.worker_id, "host": w.host, "pid": w.pid,
                 "queues": ",".join(w.queues) or store.ALL_QUEUES, "concurrency": w.concurrency,
                 "running": w.running, "state": state,
                 "started_at": w.started_at, "heartbeat_at": w.heartbeat_at} for w, state in judged]

    def queue_set(self, name: str, *, max_running: int | None = None,
                  paused: bool | None = None) -> store.QueueState:
        """Set a queue's limit (creating the queue) or pause/resume it (only
        one that exists: NotFound, with the nearest names, otherwise)."""
        name = check_queue_name(name)
        if max_running is not None and not 0 <= max_running <= 1_000_000:
            raise UsageError("--max-running must be from 0 (unlimited) to 1000000")
        with self.db() as conn:
            if max_running is None:
                require_queue(self.backend, conn, name)
            store.set_queue(self.backend, conn, name, max_running=max_running, paused=paused)
            conn.commit()
        if paused is False or max_running is not None:
            self.launcher.start_workers([name])  # resumed, or more slots: start what may run now
        return next(q for q in self.queues() if q.name == name)

    def queue_delete(self, name: str) -> None:
        """Delete a queue that holds no queued or running job (UsageError
        otherwise); `default` always exists."""
        name = check_queue_name(name)
        if name == store.DEFAULT_QUEUE:
            raise UsageError(f"the {store.DEFAULT_QUEUE} queue cannot be deleted")
        with self.db() as conn:
            require_queue(self.backend, conn, name)
            conn.commit()
            self._refuse_if_a_pool_names(conn, name)
            # the row first: its lock (SQLite: the write transaction) keeps a
            # claim from reserving a job of it before the count is committed
            store.delete_queue(self.backend, conn, name)
            busy = store.unfinished_in_queue(self.backend, conn, name)
            if busy:
                conn.rollback()
                raise UsageError(f"queue {name} still holds {busy} queued or running job(s): cancel "
                                 "them or let them finish (`jobctl cleanup` writes down the lost "
                                 "ones), then delete it")
            conn.commit()

    def _refuse_if_a_pool_names(self, conn: Any, name: str) -> None:
        """A live pool started with `--queue NAME` claims from it every round
        (and would bring its row back): it must stop first."""
        try:
            judged = self.launcher.judged_pools(conn)
        except Exception:  # noqa: BLE001 - no JOB_WORKERS: no pool
            conn.rollback()
            return
        for w, state in judged:
            if name in w.queues and state != PoolState.GONE:
                raise UsageError(f"queue {name} is served by the worker pool {w.worker_id} on "
                                 f"{w.host} (pid {w.pid}): stop it, or start it without "
                                 f"--queue {name}, then delete the queue")

    def queues(self) -> list[store.QueueState]:
        with self.db() as conn:
            out = store.list_queues(self.backend, conn)
            conn.commit()
        if not self.launcher.healed and self.launcher.heal_once():
            with self.db() as conn:  # the workers it started took slots
                out = store.list_queues(self.backend, conn)
                conn.commit()
        return out

    def cancel(self, refs: Sequence[str]) -> list[CancelReport]:
        jobs = self.reader.get_many(refs)  # every id checked before anything is written
        out = []
        for job in jobs:
            with self.db() as conn:
                if job.status is JobStatus.ORPHANED:
                    self._end_orphan(conn, job)
                    action = JobStatus.CANCELLED.value
                elif job.external:
                    action = "external"  # another application's row: not ours to write
                elif job.status is JobStatus.QUEUED and \
                        self.lifecycle.cancel_queued(conn, job.job_id, utcnow()):
                    conn.commit()
                    self.lifecycle.cancel_dependents(conn, job.job_id, JobStatus.CANCELLED)
                    action = JobStatus.CANCELLED.value
                elif job.status in (JobStatus.QUEUED, JobStatus.RUNNING) and \
                        self.lifecycle.request_cancel(conn, job.job_id):
                    action = "requested"
                else:
                    action = JobStatus.LOST.value if job.status is JobStatus.LOST else FINISHED
                conn.commit()
                fresh = store.get(self.backend, conn, job.job_id) or job
                conn.commit()
            out.append(CancelReport(self.reader.effective(fresh), action))
        return out

    def _end_orphan(self, conn, job: Job) -> None:
        ended, statement = self.lifecycle.end_orphan(conn, job, utcnow())
        if not ended:
            todo = f"a DBA can run: {statement}" if statement else \
                f"ask a DBA to end server session {job.db_session}"
            raise DatabaseError(f"job {job.job_id} is orphaned (its worker is gone, server session "
                                f"{job.db_session} still runs the call) and jobctl could not end "
                                f"that session; {todo}")

    def cleanup(self, *, days: float, statuses: Sequence[str] | None = None,
                dry_run: bool = False) -> CleanupReport:
        if not 0 <= days <= MAX_CLEANUP_DAYS:  # also refuses nan
            raise UsageError(f"--days must be a number of days from 0 to {MAX_CLEANUP_DAYS}, not {days:g}")
        wanted = parse_statuses(statuses) or list(FINISHED_STATUSES)
        active = [s.value for s in wanted if not s.finished]
        if active:
            raise UsageError(f"cleanup never deletes {', '.join(active)} jobs")
        names = [s.value for s in wanted]
        with self.db() as conn:
            now = self.lifecycle.clock(conn)
            before = now - dt.timedelta(days=days)
            if dry_run:
                lost = self.lifecycle.mark_lost(conn, now, dry_run=True)
                count = store.count_finished_before(self.backend, conn, before=before, statuses=names)
                conn.commit()
                return CleanupReport(lost, count, True)
            lost = self.lifecycle.mark_lost(conn, now)
            deleted = 0
            while n := store.delete_finished_batch(self.backend, conn, before=before,
                                                   statuses=names, batch=CLEANUP_BATCH):
                deleted += n
            self.launcher.forget_gone_pools(conn, now)
        self.launcher.heal()  # the slots of lost jobs are free again: start what waits for them
        return CleanupReport(lost, deleted, False)

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
        with self.db() as conn:
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
            missing = set(COLUMNS) - store.table_columns(self.backend, conn)
            conn.commit()
        if missing:
            raise DatabaseError(f"ASYNC_JOBS still lacks columns {', '.join(sorted(missing))} after db init")
        return ran
