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
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from . import jsontext
from . import params as params_mod
from . import store
from .backends import get_backend
from .config import Settings
from .errors import DatabaseError, JobctlError, JobsUnfinished, NotFound, SchemaOutdated, UsageError
from .lifecycle import Lifecycle
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
    action: str  # cancelled | requested | finished | lost | external


class Jobctl:
    def __init__(self, settings: Settings, *, create: bool = True):
        """`create=False`: a read that finds no default SQLite file says so
        rather than create an empty one and answer from it, so a cron job
        that lost its JOBCTL_DSN cannot look healthy."""
        self.settings = settings
        self.backend = get_backend(settings.connection)
        self._conn: Any = None
        self._create = create
        self.lifecycle = Lifecycle(self.backend, settings.tunables)
        self._healed = False

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
            self._require_default_database()
            self._conn = self.backend.connect()
        return self._conn

    def _require_default_database(self) -> None:
        settings = self.settings.connection
        if self._create or not settings.is_default or os.path.exists(settings.database or ""):
            return
        raise DatabaseError(f"no jobs database at {settings.database}; "
                            "set JOBCTL_DSN or run jobctl submit first")

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
            if missing := self._missing_columns(exc):
                raise SchemaOutdated(missing) from exc
            raise self.backend.translate_error(exc) from exc

    def _missing_columns(self, exc: Exception) -> int:
        """After a failed statement: how many of jobctl's columns an
        original-shaped ASYNC_JOBS lacks (0 when that was not the cause).
        Asked only on the error path, so the normal path costs nothing."""
        if not self.backend.is_undefined_column(exc):
            return 0
        if self.backend.is_missing_table(exc) or self._conn is None:
            return 0
        try:
            have = store.table_columns(self.backend, self._conn)
            self._conn.commit()
        except Exception:
            self._rollback()
            return 0
        return len(set(store.COLUMNS) - have)

    def _rollback(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.rollback()

    # -- liveness: the rule lives in lifecycle; reading commands never write ----------
    def _effective(self, job: Job, now: dt.datetime | None = None,
                   states: dict[str, store.QueueState] | None = None,
                   served: dict[str, bool] | None = None) -> Job:
        """`states`, `served`: what one reading command learnt of each queue
        (its state; whether a pool serves it), asked once for all its jobs."""
        with self._db() as conn:
            job = self.lifecycle.effective(conn, job, now)
            if job.status is JobStatus.QUEUED:
                job = replace(job, waiting_for=self._waiting_for(
                    conn, job, now or utcnow(), {} if states is None else states,
                    {} if served is None else served))
            return job

    # -- submit ------------------------------------------------------------------------
    def submit(self, procedure: str, given: dict[str, Any], *, timeout_s: float | None = None,
               retries: int = 0, unique: bool = False, submitted_by: str | None = None,
               queue: str | None = None, priority: int = 0, after: Sequence[str] = (),
               at: str | None = None, in_: str | None = None) -> Submitted:
        """Write the job `queued`; when its queue has a free slot, start a
        worker for the next eligible job (see Queues in the README)."""
        placing = self._placing(queue=queue, priority=priority, at=at, in_=in_)
        name = self.backend.normalize_name(procedure)
        self._check_run_options(timeout_s, retries)
        with self._db() as conn:
            sig = self._resolve_for_submit(conn, name, [given])
            values = params_mod.bind(sig, given)
            placing["after_jobs"] = self._dependencies(conn, after)
            conn.commit()  # resolve may have opened a read transaction
            # one name per procedure: the one the database resolved, so every
            # spelling of it is the same work for --unique, list and stats
            name = sig.name
            params_json = params_mod.params_json(values)
            unique_key: str | None = None

            def already_active() -> Submitted | None:
                assert unique_key is not None  # asked with --unique only
                existing = store.find_active_unique(self.backend, conn, unique_key)
                conn.commit()
                return Submitted(existing[0].job_id, created=False) if existing else None

            if unique:
                import hashlib

                unique_key = hashlib.sha256(f"{name}\n{params_json}".encode()).hexdigest()
                self.lifecycle.mark_lost(conn)
                if found := already_active():
                    return found
            import uuid

            job_id = uuid.uuid4().hex
            try:
                self.lifecycle.enqueue(conn, job_id=job_id, procedure_name=name, now=utcnow(),
                                       params_json=params_json, timeout_s=timeout_s,
                                       max_attempts=retries + 1,
                                       submitted_by=submitted_by or _submitter(),
                                       unique_key=unique_key,
                                       signature_json=jsontext.dumps(sig.record()), **placing)
                conn.commit()
            except Exception as exc:
                if unique and self.backend.is_unique_violation(exc):
                    conn.rollback()  # another submit won the race: report its job
                    if found := already_active():
                        return found
                raise
            self._settle_ended_dependencies(conn, placing["after_jobs"])
        self.start_workers([placing["queue"]])
        self._wake_later(placing["queue"], placing["not_before"])
        return Submitted(job_id, created=True)

    def resubmit(self, ref: str, overrides: dict[str, Any] | None = None, *,
                 timeout_s: float | None = None, retries: int | None = None,
                 unique: bool = False) -> tuple[Job, Submitted]:
        """Submit job `ref`'s procedure again with its parameters as stored
        (exact: numbers stay Decimal), `overrides` replacing values by name
        (case-insensitive). The timeout and retries are the original job's
        unless given. Validated as `submit` validates; returns (the original
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
        return job, self.submit(job.procedure_name, given, timeout_s=timeout_s, retries=retries,
                                unique=unique, queue=job.queue, priority=job.priority or 0)

    def submit_many(self, procedure: str, lines: Sequence[str], *, timeout_s: float | None = None,
                    retries: int = 0, submitted_by: str | None = None, queue: str | None = None,
                    priority: int = 0, after: Sequence[str] = (), at: str | None = None,
                    in_: str | None = None) -> list[str]:
        """--params-file: one JSON object of parameters per line. Every line
        is checked first (a bad one: UsageError naming it, nothing written),
        then all rows go in one transaction; workers start for the free slots."""
        placing = self._placing(queue=queue, priority=priority, at=at, in_=in_)
        name = self.backend.normalize_name(procedure)
        self._check_run_options(timeout_s, retries)
        given_per_line: list[tuple[int, dict[str, Any]]] = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue  # a blank line (the last newline of a file) is no job
            try:
                given = jsontext.loads(line)
            except ValueError as exc:
                raise UsageError(f"--params-file line {number}: not JSON: {exc}") from None
            if not isinstance(given, dict):
                raise UsageError(f"--params-file line {number}: expected a JSON object of "
                                 f"parameters, got {type(given).__name__}")
            given_per_line.append((number, given))
        if not given_per_line:
            raise UsageError("--params-file holds no job (no line with a JSON object)")
        import uuid

        with self._db() as conn:
            sig = self._resolve_for_submit(conn, name, [g for _, g in given_per_line])
            rows = []
            now = utcnow()
            who = submitted_by or _submitter()
            signature_json = jsontext.dumps(sig.record())
            placing["after_jobs"] = self._dependencies(conn, after)
            for number, given in given_per_line:
                try:
                    values = params_mod.bind(sig, given)
                except JobctlError as exc:
                    raise UsageError(f"--params-file line {number}: {exc.message}") from None
                rows.append(dict(job_id=uuid.uuid4().hex, procedure_name=sig.name, now=now,
                                 params_json=params_mod.params_json(values), timeout_s=timeout_s,
                                 max_attempts=retries + 1, submitted_by=who, unique_key=None,
                                 signature_json=signature_json, **placing))
            conn.commit()
            self.lifecycle.enqueue_many(conn, rows)
            conn.commit()
            self._settle_ended_dependencies(conn, placing["after_jobs"])
        self.start_workers([placing["queue"]])
        self._wake_later(placing["queue"], placing["not_before"])
        return [r["job_id"] for r in rows]

    def _check_run_options(self, timeout_s: float | None, retries: int) -> None:
        if retries < 0:
            raise UsageError("--retries must be 0 or more")
        if timeout_s is not None and not 0 < timeout_s <= MAX_DURATION_S:  # also refuses nan
            raise UsageError(f"--timeout must be more than 0 and at most {MAX_DURATION_S:g} s")

    def _resolve_for_submit(self, conn: Any, name: str, given: Sequence[dict[str, Any]]) -> Signature:
        names = frozenset(k.casefold() for g in given[:1] for k in g)
        try:
            sig = self.backend.resolve(conn, name, names)
        except NotFound as exc:
            # on a database without ASYNC_JOBS the first thing to do is
            # `db init`, not to hunt for the procedure
            self._require_table(conn)
            raise self._with_suggestion(conn, name, exc) from None
        # a backend may refuse, before any row is written, a procedure whose
        # parameters it can neither pass nor read back (Oracle: REF CURSOR
        # OUT, records, collections); `describe` still shows it
        self.backend.check_submit(sig)
        return sig

    @staticmethod
    def _placing(*, queue: str | None, priority: int, at: str | None,
                 in_: str | None) -> dict[str, Any]:
        """Queue, priority and start time, checked before any connection."""
        queue = check_queue_name(queue or store.DEFAULT_QUEUE)
        if not -1_000_000 <= priority <= 1_000_000:
            raise UsageError("--priority must be from -1000000 to 1000000")
        return {"queue": queue, "priority": priority, "not_before": start_time(at=at, in_=in_)}

    def _dependencies(self, conn: Any, after: Sequence[str]) -> tuple[str, ...]:
        """--after: each id (or unique prefix) must name an existing job (exit
        3); naming one twice is refused (exit 2). A new job cannot close a
        cycle: no existing job can wait for an id that does not exist yet."""
        refs = [r.strip().lower() for chunk in after for r in chunk.split(",") if r.strip()]
        ids: list[str] = []
        for ref in refs:
            job = self._find(conn, ref)
            if job.job_id in ids:
                raise UsageError(f"--after names job {job.job_id} twice")
            ids.append(job.job_id)
        return tuple(ids)

    def _settle_ended_dependencies(self, conn: Any, after: Sequence[str]) -> None:
        """A dependency that already ended without completing: the new jobs
        waiting for it end `cancelled` at once (as they would have, had it
        ended after the submit)."""
        if not after:
            return
        for dep, status in store.dependency_statuses(self.backend, conn, after).items():
            if status.finished and status is not JobStatus.COMPLETED:
                self.lifecycle.cancel_dependents(conn, dep, status)
        conn.commit()

    # -- starting workers: no daemon; a worker drains its queue, then exits ------------
    def _wake_later(self, queue: str, not_before: dt.datetime | None) -> None:
        """A job that may not start yet: a sleeping timer process (no
        connection) starts a worker for its queue then."""
        if not_before is None or not_before <= utcnow():
            return
        from . import runner

        runner.spawn_timer(replace(self.settings, connection=self.backend.settings), queue, not_before)

    def start_workers(self, queues: Sequence[str]) -> int:
        """Reserve the next eligible job of each queue while it has a free
        slot, and start a detached worker for each reservation. The worker
        claims that job, then the next ones of its queue, until none is
        eligible. Returns how many started."""
        from . import runner  # lazily: only a free slot spawns
        import uuid

        started = 0
        for queue in queues:
            with self._db() as conn:
                if self._pool_serves(conn, queue):
                    continue  # its pool heard of the work and claims it
            while True:
                token = uuid.uuid4().hex
                with self._db() as conn:
                    job_id = self.lifecycle.claim_next(conn, queue, token=token)
                if job_id is None:
                    break
                try:
                    # the backend's settings: they hold a password asked for at the prompt
                    runner.spawn(replace(self.settings, connection=self.backend.settings),
                                 job_id, token)
                except OSError as exc:
                    reason = f"could not start the worker: {exc}"
                    with self._db() as conn:
                        self.lifecycle.fail_unstarted(conn, job_id, utcnow(), reason)
                        conn.commit()
                    raise JobctlError(f"job {job_id} failed: {reason}") from exc
                started += 1
        return started

    def heal(self, *, every_free_slot: bool = True) -> int:
        """Start a worker for each free slot of every queue holding eligible
        jobs that no worker has reserved (a host that rebooted, a worker
        killed between jobs). `cleanup` fills every free slot, right after
        marking lost jobs lost. Reading commands (status, list, wait, cancel,
        queue list) act only on queues where no worker is alive at all: where
        one is, it takes the next job itself as soon as it finishes its own,
        and a worker started beside it in that moment would only overlap it."""
        self._healed = True
        with self._db() as conn:
            now = self.lifecycle.clock(conn)  # a sign of life is judged by the server's clock
            fresh = now - dt.timedelta(seconds=self.settings.tunables.lost_after_s)
            queues = [q for q in store.queues_needing_workers(self.backend, conn, now)
                      if store.claimable(self.backend, conn, q, now)
                      and (every_free_slot or not store.live_workers(self.backend, conn, q, fresh))]
            conn.commit()
        return self.start_workers(queues) if queues else 0

    def _heal_once(self) -> int:
        """heal() for reading commands, after their own read worked: at most
        once each, and never their failure (a read-only account, a busy
        database): they still show what they read. A read never waits for
        another writer: with the write lock taken, the reservation is left
        to the next command (or to the writer, often a worker itself)."""
        if self._healed:
            return 0
        try:
            with self._db() as conn, self.backend.writes_without_waiting(conn):
                return self.heal(every_free_slot=False)
        except JobctlError as exc:
            if isinstance(exc, DatabaseError) and exc.transient:
                return 0  # the lock is taken (or the connection went): next time
            from . import talk

            talk.say(f"notice: could not start a worker for waiting jobs: {exc.message}")
            return 0

    def _find(self, conn: Any, ref: str) -> Job:
        if len(ref) < MIN_PREFIX or any(c not in "0123456789abcdef" for c in ref):
            raise UsageError(f"invalid job id {ref!r}: use the id or a unique prefix of at least "
                             f"{MIN_PREFIX} hex characters")
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
        return found[0]

    # -- worker pools ----------------------------------------------------------------------
    def run_pool(self, *, queues: Sequence[str] = (), concurrency: int = 4,
                 grace_s: float = 60.0) -> int:
        """`jobctl worker`: run in the foreground until SIGTERM/SIGINT (see pool.py)."""
        from .pool import Pool

        names = tuple(dict.fromkeys(check_queue_name(q) for q in queues))
        self._require_table(self.conn)
        # the backend's settings: they hold a password asked for at the prompt
        pool = Pool(replace(self.settings, connection=self.backend.settings), queues=names,
                    concurrency=concurrency, grace_s=grace_s)
        self.close()  # the pool holds its own connections
        return pool.run()

    def workers(self) -> list[dict[str, Any]]:
        """The pools registered in JOB_WORKERS, each judged running, stopping or gone."""
        with self._db() as conn:
            try:
                judged = self._judged_pools(conn)
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

    def _judged_pools(self, conn: Any,
                      now: dt.datetime | None = None) -> list[tuple[store.WorkerRow, str]]:
        """Each JOB_WORKERS row with its state (running, stopping or gone:
        pool.describe_worker); commits. Raises when the table cannot be read."""
        from .pool import describe_worker

        rows = store.list_workers(self.backend, conn)
        conn.commit()
        if rows and now is None:
            now = self.lifecycle.clock(conn)  # the clock their heartbeats are written with
        return [(w, describe_worker(w, host=self.lifecycle.host,
                                    lost_after_s=self.settings.tunables.lost_after_s, now=now))
                for w in rows]

    def _forget_gone_pools(self, conn: Any, now: dt.datetime) -> None:
        """cleanup: the JOB_WORKERS rows of pools that are gone (killed, or a
        host that rebooted); their jobs were judged by the lost rule above."""
        try:
            gone = [w.worker_id for w, state in self._judged_pools(conn, now) if state == "gone"]
            store.delete_workers(self.backend, conn, gone)
            conn.commit()
        except Exception:  # noqa: BLE001 - no pool table (an older schema): nothing to forget
            conn.rollback()

    def _pool_serves(self, conn: Any, queue: str) -> bool:
        """A live `jobctl worker` serves `queue`: submit leaves the job to it.
        A database without JOB_WORKERS (or a role that may not read it) has none."""
        try:
            judged = self._judged_pools(conn)
        except Exception:  # noqa: BLE001 - no pool table: daemon-free workers only
            conn.rollback()
            return False
        return any(w.serves(queue) and state == "running" for w, state in judged)

    # -- queues ----------------------------------------------------------------------------
    def queue_set(self, name: str, *, max_running: int | None = None,
                  paused: bool | None = None) -> store.QueueState:
        name = check_queue_name(name)
        if max_running is not None and not 0 <= max_running <= 1_000_000:
            raise UsageError("--max-running must be from 0 (unlimited) to 1000000")
        with self._db() as conn:
            store.set_queue(self.backend, conn, name, max_running=max_running, paused=paused)
            conn.commit()
        if paused is False or max_running is not None:
            self.start_workers([name])  # resumed, or more slots: start what may run now
        return next(q for q in self.queues() if q.name == name)

    def queues(self) -> list[store.QueueState]:
        with self._db() as conn:
            out = store.list_queues(self.backend, conn)
            conn.commit()
        if not self._healed and self._heal_once():
            with self._db() as conn:  # the workers it started took slots
                out = store.list_queues(self.backend, conn)
                conn.commit()
        return out

    def _waiting_for(self, conn: Any, job: Job, now: dt.datetime,
                     states: dict[str, store.QueueState], served: dict[str, bool]) -> str:
        """Why a queued job has not started: the first thing that holds it."""
        if job.claim_token and job.worker_host:
            return f"starting: a worker on {job.worker_host} was started for it"
        if job.signature is None:
            return "not submitted by jobctl: no jobctl worker runs it"
        if job.queue not in states:
            states[job.queue] = store.queue_state(self.backend, conn, job.queue)
            conn.commit()
        state = states[job.queue]
        if state.paused:
            return f"queue {job.queue} is paused (jobctl queue resume {job.queue})"
        if job.not_before and job.not_before > now:
            return f"not before {job.not_before.astimezone().isoformat(timespec='seconds')}"
        if job.after_jobs:
            statuses = store.dependency_statuses(self.backend, conn, job.after_jobs)
            conn.commit()
            blocked = store.blocking_dependency(statuses, job.after_jobs)
            if blocked is not None:
                kind, why = blocked
                return why if kind == "waiting" else f"{why}: it is cancelled at the next claim"
        if not state.free:
            return (f"no free slot: {state.running} running of limit {state.max_running} "
                    f"in queue {job.queue}")
        if job.queue not in served:
            served[job.queue] = self._pool_serves(conn, job.queue)
        if served[job.queue]:
            return f"waiting for a `jobctl worker` serving queue {job.queue} to take it"
        return "no live worker has taken it: `jobctl cleanup --days N` starts one"

    def _require_table(self, conn) -> None:
        try:
            have = store.table_columns(self.backend, conn)
            conn.commit()
        except Exception as exc:
            conn.rollback()
            if self.backend.is_missing_table(exc):
                raise self.backend.translate_error(exc) from exc
            return
        if missing := len(set(store.COLUMNS) - have):
            raise SchemaOutdated(missing)

    # -- reading -------------------------------------------------------------------------
    def get(self, ref: str) -> Job:
        ref = ref.strip().lower()
        with self._db() as conn:
            found = self._find(conn, ref)
        if self._heal_once():
            with self._db() as conn:  # a worker was started: maybe for this job
                found = self._find(conn, found.job_id)
        return self._effective(found)

    def get_many(self, refs: Sequence[str]) -> list[Job]:
        return [self.get(r) for r in refs]

    def list_jobs(self, *, statuses: Sequence[str] | None = None, procedure: str | None = None,
                  since_s: float | None = 86400, limit: int = 50,
                  queue: str | None = None) -> list[Job]:
        """Newest first. `since_s` bounds finished jobs; queued and running
        ones are always listed. None: all of them."""
        wanted = _parse_statuses(statuses)
        _check_since(since_s)
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise UsageError(f"--limit must be from 1 to {MAX_LIST_LIMIT}")
        proc = self._procedure_filter(procedure)
        if queue is not None:
            queue = check_queue_name(queue)
        sql_statuses = None
        if wanted:
            sql_statuses = {s.value for s in wanted}
            if JobStatus.LOST in wanted or JobStatus.ORPHANED in wanted:
                sql_statuses.add(JobStatus.RUNNING.value)  # the rows still say running
            if JobStatus.LOST in wanted:
                sql_statuses.add(JobStatus.QUEUED.value)  # reserved, never claimed

        def read() -> list[Job]:
            with self._db() as conn:
                jobs = store.list_jobs(self.backend, conn, since=_ago(now, since_s),
                                       statuses=sorted(sql_statuses) if sql_statuses else None,
                                       procedure=proc, limit=limit, queue=queue)
                conn.commit()
            return jobs

        with self._db() as conn:
            now = self.lifecycle.clock(conn)
        jobs = read()
        if self._heal_once():
            jobs = read()  # workers were started: show what they took
        states: dict[str, store.QueueState] = {}
        served: dict[str, bool] = {}
        jobs = [self._effective(j, now, states, served) for j in jobs]
        if wanted:
            jobs = [j for j in jobs if j.status in wanted]
        return jobs

    def stats(self, *, since_s: float | None = 7 * 86400,
              procedure: str | None = None) -> list[dict[str, Any]]:
        _check_since(since_s)
        proc = self._procedure_filter(procedure)
        with self._db() as conn:
            now = self.lifecycle.clock(conn)
            since = _ago(now, since_s)
            rows = store.stats(self.backend, conn, since=since, procedure=proc)
            conn.commit()
            return self.lifecycle.adjust_stats(conn, rows, now, since=since)

    def typical_duration(self, procedure_name: str, *, since_s: float = 30 * 86400) -> float | None:
        """The median run time of the procedure's completed jobs in the last
        `since_s` (its canonical name, as stored); None without any."""
        with self._db() as conn:
            rows = store.stats(self.backend, conn, since=_ago(utcnow(), since_s),
                               procedure=store.ProcedureFilter(procedure_name))
            conn.commit()
        return rows[0]["p50_s"] if rows else None

    def _procedure_filter(self, procedure: str | None) -> store.ProcedureFilter | None:
        """`--procedure`: any spelling of a procedure means its canonical
        name, as submit stored it; with a `%` it is a LIKE pattern in which
        only `%` is a wildcard (`_`, common in names, matches itself)."""
        if not procedure:
            return None
        if "%" in procedure:
            token = "jobctlpct"  # a letter run that folds like a name and survives validation
            shaped = self.backend.normalize_name(procedure.replace("%", token))
            escaped = shaped.replace("\\", "\\\\").replace("_", "\\_")
            return store.ProcedureFilter(re.sub(token, "%", escaped, flags=re.IGNORECASE), like=True)
        name = self.backend.normalize_name(procedure)
        with self._db() as conn:
            try:
                name = self.backend.resolve(conn, name, frozenset()).name
            except JobctlError:
                pass  # no longer there, or overloaded: the spelling as normalised
            conn.commit()
        return store.ProcedureFilter(name)

    def describe(self, procedure: str) -> Signature:
        name = self.backend.normalize_name(procedure)
        with self._db() as conn:
            try:
                sig = self.backend.resolve(conn, name, frozenset())
            except NotFound as exc:
                raise self._with_suggestion(conn, name, exc) from None
            conn.commit()
        return sig

    def procedures(self, pattern: str | None = None) -> list[Signature]:
        """The procedures the connected user can call, one Signature per
        overload, sorted by name. `pattern` matches names without regard to
        case: `*` or `%` any run, `?` one character; with neither, any name
        containing it. A schema or owner in front of a name may be left out."""
        like, matches = name_pattern(pattern)
        with self._db() as conn:
            sigs = self.backend.list_procedures(conn, like)
            conn.commit()
        return sorted((s for s in sigs if matches(s.name)),
                      key=lambda s: (s.name.casefold(), s.overload or ""))

    def procedure_names(self) -> list[str]:
        """Every callable procedure's name once (shell completion)."""
        return sorted({s.name for s in self.procedures()}, key=str.casefold)

    def recent_jobs(self, limit: int = 50) -> list[tuple[str, str, str]]:
        """(id, procedure, status as stored) of the newest jobs, for shell
        completion: one cheap indexed read; the status is the row's, without
        the lifecycle's reading of it."""
        with self._db() as conn:
            jobs = store.recent_jobs(self.backend, conn, limit)
            conn.commit()
        return jobs

    def _with_suggestion(self, conn, name: str, exc: NotFound) -> NotFound:
        """The backend's "not found", with the closest callable names."""
        import difflib

        conn.rollback()  # the failed lookup may have left a transaction open
        try:
            names = {s.name for s in self.backend.list_procedures(conn, None)}
            conn.commit()
        except Exception:  # no right to read the catalog: the message without hints
            self._rollback()
            return exc
        by_folded = {n.casefold(): n for n in names}
        close = difflib.get_close_matches(name.casefold(), list(by_folded), n=3, cutoff=0.6)
        if close:
            hint = "did you mean " + " or ".join(by_folded[c] for c in close) + "?"
        else:
            hint = "`jobctl procedures` lists the ones you can call"
        return NotFound(f"{exc.message}; {hint}")

    # -- acting ----------------------------------------------------------------------------
    def cancel(self, refs: Sequence[str]) -> list[CancelReport]:
        jobs = self.get_many(refs)  # every id checked before anything is written
        out = []
        for job in jobs:
            with self._db() as conn:
                if job.status is JobStatus.ORPHANED:
                    self._end_orphan(conn, job)
                    action = "cancelled"
                elif job.external:
                    action = "external"  # another application's row: not ours to write
                elif job.status is JobStatus.QUEUED and \
                        self.lifecycle.cancel_queued(conn, job.job_id, utcnow()):
                    conn.commit()
                    self.lifecycle.cancel_dependents(conn, job.job_id, JobStatus.CANCELLED)
                    action = "cancelled"
                elif job.status in (JobStatus.QUEUED, JobStatus.RUNNING) and \
                        self.lifecycle.request_cancel(conn, job.job_id):
                    action = "requested"
                else:
                    action = "lost" if job.status is JobStatus.LOST else "finished"
                conn.commit()
                fresh = store.get(self.backend, conn, job.job_id) or job
                conn.commit()
            out.append(CancelReport(self._effective(fresh), action))
        return out

    def _end_orphan(self, conn, job: Job) -> None:
        ended, statement = self.lifecycle.end_orphan(conn, job, utcnow())
        if not ended:
            todo = f"a DBA can run: {statement}" if statement else \
                f"ask a DBA to end server session {job.db_session}"
            raise DatabaseError(f"job {job.job_id} is orphaned (its worker is gone, server session "
                                f"{job.db_session} still runs the call) and jobctl could not end "
                                f"that session; {todo}")

    def wait(self, refs: Sequence[str], *, timeout_s: float | None = None,
             on_poll: Callable[[list[Job]], None] | None = None) -> list[Job]:
        ids = [j.job_id for j in self.get_many(refs)]
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            with self._db() as conn:
                now = self.lifecycle.clock(conn)
                rows = [store.get(self.backend, conn, i) for i in ids]
                conn.commit()
            jobs = [self._effective(j, now) for j in rows if j is not None]
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

    def follow(self, ref: str, on_lines: Callable[[list[str]], None], *, tail: int | None = None,
               on_note: Callable[[str], None] | None = None) -> Job:
        """Stream the job's output: call `on_lines` with each batch of new
        lines (the first batch cut to the last `tail`) until the job has
        finished; return the finished job. It only reads the row, so it works
        from any host. jobctl rewrites OUTPUT whole at each heartbeat: new lines
        are what follows the lines already seen."""
        from .render import output_lines

        job = self.get(ref)
        seen: list[str] = []
        capped_said = False
        first = True
        while True:
            lines, capped = output_lines(job.output)
            fresh, continuous = _new_lines(seen, lines)
            if not continuous and on_note:
                on_note(f"the output of {job.job_id[:8]} was rewritten; continuing from its "
                        "last line seen")
            if first and tail is not None:
                fresh = fresh[-tail:] if tail else []
            first = False
            seen = lines
            if fresh:
                on_lines(fresh)
            if capped and not capped_said and on_note:
                capped_said = True
                on_note(f"the output of {job.job_id[:8]} reached jobctl's cap; later lines "
                        "were not kept")
            if job.status.finished:
                return job
            time.sleep(self.settings.tunables.poll_s)
            with self._db() as conn:
                now = self.lifecycle.clock(conn)
                fresh_row = store.get(self.backend, conn, job.job_id)
                conn.commit()
            if fresh_row is None:
                raise NotFound(f"job {job.job_id} was deleted while following it")
            job = self._effective(fresh_row, now)

    def cleanup(self, *, days: float, statuses: Sequence[str] | None = None,
                dry_run: bool = False) -> CleanupReport:
        if not 0 <= days <= MAX_CLEANUP_DAYS:  # also refuses nan
            raise UsageError(f"--days must be a number of days from 0 to {MAX_CLEANUP_DAYS}, not {days:g}")
        wanted = _parse_statuses(statuses) or list(FINISHED_STATUSES)
        active = [s.value for s in wanted if not s.finished]
        if active:
            raise UsageError(f"cleanup never deletes {', '.join(active)} jobs")
        names = [s.value for s in wanted]
        with self._db() as conn:
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
            self._forget_gone_pools(conn, now)
        self.heal()  # the slots of lost jobs are free again: start what waits for them
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


def name_pattern(pattern: str | None) -> tuple[str | None, Callable[[str], bool]]:
    """`procedures PATTERN` as (a LIKE pattern with `\\` escapes, for a
    backend to narrow its catalog with; a test on a whole name). `*`/`%` is
    any run and `?` one character, `_` is itself (names are full of it);
    without a wildcard the pattern matches names that contain it. A name
    also matches when one of its dotted tails does (PKG.PROC for
    SCOTT.PKG.PROC)."""
    if not pattern or not pattern.strip():
        return None, lambda name: True
    text = pattern.strip()
    if not any(c in text for c in "*%?"):
        text = f"*{text}*"
    like, rx = [], []
    for c in text:
        if c in "*%":
            like.append("%")
            rx.append(".*")
        elif c == "?":
            like.append("_")
            rx.append(".")
        else:
            like.append("\\" + c if c in "\\_" else c)
            rx.append(re.escape(c))
    compiled = re.compile("".join(rx), re.IGNORECASE | re.DOTALL)

    def matches(name: str) -> bool:
        parts = name.split(".")
        return any(compiled.fullmatch(".".join(parts[i:])) for i in range(len(parts)))

    return "".join(like), matches


def _ago(now: dt.datetime, seconds: float | None) -> dt.datetime | None:
    return None if seconds is None else now - dt.timedelta(seconds=seconds)


def _new_lines(seen: list[str], current: list[str]) -> tuple[list[str], bool]:
    """Lines of `current` after those already `seen`, and whether `current`
    continues `seen`. If it does not (lines dropped at the front), the new
    lines start after the longest run of seen lines that `current` begins with."""
    if current[:len(seen)] == seen:
        return current[len(seen):], True
    for k in range(min(len(seen), len(current)), 0, -1):
        if seen[-k:] == current[:k]:
            return current[k:], False
    return current, False


def _check_since(since_s: float | None) -> None:
    if since_s is None:  # --since all
        return
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
    import getpass  # lazily: only submit needs it (start-up time)

    try:
        user = getpass.getuser()
    except Exception:
        user = str(os.getuid())
    return f"{user}@{os.uname().nodename}"[:128]


QUEUE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def check_queue_name(name: str) -> str:
    if not QUEUE_NAME.fullmatch(name):
        raise UsageError(f"invalid queue name {name!r}: use up to 100 letters, digits, "
                         "'_', '.' or '-', starting with a letter or digit")
    return name


_CLOCK = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")


def start_time(*, at: str | None, in_: str | None, now: dt.datetime | None = None) -> dt.datetime | None:
    """--at / --in as the UTC time before which the job is not claimed.
    --at takes an ISO 8601 date and time (local time unless it carries an
    offset) or HH:MM, the next time the local clock shows it; --in takes a
    duration (30s, 10m, 2h, 1d)."""
    if at is not None and in_ is not None:
        raise UsageError("give --at or --in, not both")
    now = now or utcnow()
    if in_ is not None:
        from .model import parse_duration

        return now + dt.timedelta(seconds=parse_duration(in_, option="--in"))
    if at is None:
        return None
    text = at.strip()
    if m := _CLOCK.fullmatch(text):
        hour, minute, second = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
        if hour > 23 or minute > 59 or second > 59:
            raise UsageError(f"invalid --at {at!r}: no such time of day")
        local_now = now.astimezone()
        when = local_now.replace(hour=hour, minute=minute, second=second, microsecond=0)
        if when <= local_now:
            when += dt.timedelta(days=1)
        # replace() keeps today's offset: recompute it for that day (DST)
        when = when.replace(tzinfo=None).astimezone()
        return when.astimezone(dt.timezone.utc)
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"invalid --at {at!r}: use 2026-12-01T02:00 (local time, or with an "
                         "offset) or 02:00 (its next occurrence)") from None
    if when.tzinfo is None:
        when = when.astimezone()  # the local time zone, as a user at this host means it
    return when.astimezone(dt.timezone.utc)
