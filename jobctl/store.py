"""All SQL on ASYNC_JOBS, written once. Backends supply only small hooks:
paramstyle, row limits, percentiles and how times are bound."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, NamedTuple

from .jsontext import loads
from .model import Job, JobStatus

if TYPE_CHECKING:
    from .backends.base import Database

TABLE = "ASYNC_JOBS"


@dataclass(frozen=True)
class ProcedureFilter:
    """`--procedure`: a canonical name, or a LIKE pattern (escape character `\\`)."""

    value: str
    like: bool = False

    @classmethod
    def of(cls, procedure: ProcedureFilter | str | None) -> ProcedureFilter | None:
        """A bare string is one exact (already canonical) name."""
        return cls(procedure) if isinstance(procedure, str) else procedure

    def where(self, binds: dict[str, Any]) -> str:
        binds["procedure"] = self.value
        return ("procedure_name LIKE :procedure ESCAPE '\\'" if self.like
                else "procedure_name = :procedure")
COLUMNS = (
    "job_id", "status", "procedure_name", "start_time", "end_time", "duration", "result",
    "error_msg", "progress", "created_at", "params", "elapsed_s", "output", "worker_host",
    "worker_pid", "heartbeat_at", "cancel_requested", "timeout_s", "attempt", "max_attempts",
    "submitted_by", "unique_key", "signature", "claim_token", "db_session",
    "queue", "priority", "not_before", "after_jobs",
)
DEFAULT_QUEUE = "default"
#: a queue without a JOB_QUEUES row (or with MAX_RUNNING NULL) runs this many at once
DEFAULT_MAX_RUNNING = 4
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM {TABLE}"


def _exec(backend: Database, conn: Any, sql: str, binds: dict[str, Any] | None = None):
    """execute() with the status names the statement refers to (`:st_running`,
    ...) bound from JobStatus, so no status is spelled twice. Only the ones
    used are bound: Oracle refuses binds a statement does not name."""
    return backend.execute(conn, sql, {**(binds or {}), **_status_binds(sql)})


def _status_binds(sql: str) -> dict[str, str]:
    """The status names `sql` refers to (`:st_running`, ...), bound."""
    return {name: value for placeholder, name, value in _STATUS_BINDS if placeholder in sql}


#: (":st_running", "st_running", "running") for each status, once
_STATUS_BINDS = tuple((f":st_{s.value}", f"st_{s.value}", s.value) for s in JobStatus)


def _rows(backend: Database, cur) -> list[dict[str, Any]]:
    names = [d[0].lower() for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


def _jobs(backend: Database, cur) -> list[Job]:
    """The jobs a statement selecting COLUMNS returned. Named by COLUMNS, not
    by the cursor's description: building that costs more than the row (a
    pool reads one per job)."""
    return [row_to_job(backend, dict(zip(COLUMNS, row))) for row in cur.fetchall()]


def _read_text(value: Any) -> str | None:
    if value is None:
        return None
    if hasattr(value, "read"):  # an Oracle LOB when fetch_lobs was not turned off
        value = value.read()
    return str(value)


def _read_json(value: Any) -> Any:
    text = _read_text(value)
    if text is None or text == "":
        return None
    if isinstance(value, (dict, list)):
        return value
    try:
        return loads(text)
    except ValueError:
        return {"_raw": text}  # written by something other than jobctl


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


def row_to_job(backend: Database, row: dict[str, Any]) -> Job:
    status = row["status"]
    try:
        status = JobStatus(str(status).lower())
    except ValueError:
        status = JobStatus.FAILED if status else JobStatus.QUEUED
    progress = _num(row.get("progress")) or 0.0
    return Job(
        job_id=row["job_id"],
        status=status,
        procedure_name=row["procedure_name"],
        start_time=backend.from_db_time(row.get("start_time")),
        end_time=backend.from_db_time(row.get("end_time")),
        duration=row.get("duration"),
        result=_read_json(row.get("result")),
        error_msg=_read_text(row.get("error_msg")),
        progress=int(progress) if progress == int(progress) else progress,
        created_at=backend.from_db_time(row.get("created_at")),
        params=_read_json(row.get("params")),
        elapsed_s=_num(row.get("elapsed_s")),
        output=_read_text(row.get("output")),
        worker_host=row.get("worker_host"),
        worker_pid=int(row["worker_pid"]) if row.get("worker_pid") is not None else None,
        heartbeat_at=backend.from_db_time(row.get("heartbeat_at")),
        cancel_requested=bool(row.get("cancel_requested")),
        timeout_s=_num(row.get("timeout_s")),
        attempt=int(row["attempt"]) if row.get("attempt") is not None else None,
        max_attempts=int(row["max_attempts"]) if row.get("max_attempts") is not None else None,
        submitted_by=row.get("submitted_by"),
        unique_key=row.get("unique_key"),
        signature=_read_json(row.get("signature")),
        claim_token=row.get("claim_token"),
        db_session=row.get("db_session"),
        queue=row.get("queue") or DEFAULT_QUEUE,
        priority=int(row.get("priority") or 0),
        not_before=backend.from_db_time(row.get("not_before")),
        after_jobs=tuple(split_ids(_read_text(row.get("after_jobs")))),
    )


def split_ids(text: str | None) -> list[str]:
    """AFTER_JOBS holds job ids separated by commas."""
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def _t(backend: Database, value: dt.datetime | None) -> Any:
    return None if value is None else backend.to_db_time(value)


def _beat(backend: Database, binds: dict[str, Any], now: dt.datetime) -> str:
    """What a heartbeat (HEARTBEAT_AT of a job or a pool) is written with:
    the database server's clock, which the lost rule reads too (the hosts'
    clocks differ), or `now` bound as `:now` where there is one host
    (SQLite)."""
    clock = backend.clock_sql()
    if clock is not None:
        return clock
    binds["now"] = _t(backend, now)
    return ":now"


# -- writes from submit ------------------------------------------------------

_INSERT = f"""
    INSERT INTO {TABLE} (job_id, status, procedure_name, start_time, created_at, progress,
                         params, timeout_s, attempt, max_attempts, submitted_by,
                         unique_key, cancel_requested, signature,
                         queue, priority, not_before, after_jobs)
    VALUES (:job_id, :st_queued, :procedure_name, :now, :now, 0, :params, :timeout_s, 0,
            :max_attempts, :submitted_by, :unique_key, 0, :signature,
            :queue, :priority, :not_before, :after_jobs)"""


def _insert_binds(backend: Database, *, job_id: str, procedure_name: str, now: dt.datetime,
                  params_json: str, timeout_s: float | None, max_attempts: int,
                  submitted_by: str, unique_key: str | None, signature_json: str | None = None,
                  queue: str = DEFAULT_QUEUE, priority: int = 0,
                  not_before: dt.datetime | None = None,
                  after_jobs: Sequence[str] = ()) -> dict[str, Any]:
    return {"job_id": job_id, "procedure_name": procedure_name, "now": _t(backend, now),
            "params": params_json, "timeout_s": timeout_s, "max_attempts": max_attempts,
            "submitted_by": submitted_by, "unique_key": unique_key, "signature": signature_json,
            "queue": queue, "priority": priority, "not_before": _t(backend, not_before),
            "after_jobs": ",".join(after_jobs) or None}


def insert_job(backend: Database, conn: Any, **fields: Any) -> None:
    _exec(backend, conn, _INSERT, _insert_binds(backend, **fields))
    backend.announce_work(conn, fields.get("queue") or DEFAULT_QUEUE)


def insert_jobs(backend: Database, conn: Any, jobs: Sequence[dict[str, Any]]) -> None:
    """Many new queued rows in one round of the driver's batch (--params-file)."""
    statuses = _status_binds(_INSERT)
    backend.execute_many(conn, _INSERT,
                         [{**_insert_binds(backend, **fields), **statuses} for fields in jobs])
    for queue in sorted({fields.get("queue") or DEFAULT_QUEUE for fields in jobs}):
        backend.announce_work(conn, queue)


def fail_queued(backend: Database, conn: Any, job_id: str, now: dt.datetime, error: str) -> int:
    """The spawn failed: the job must not be left `queued` for ever."""
    cur = _exec(backend, conn, f"""
        UPDATE {TABLE} SET status = :st_failed, end_time = :now, error_msg = :error
        WHERE job_id = :job_id AND status = :st_queued""",
        {"job_id": job_id, "now": _t(backend, now), "error": error})
    return cur.rowcount


def note_queued(backend: Database, conn: Any, job_id: str, note: str | None) -> int:
    """Why a queued job has not started yet (its worker waits for a connection),
    shown in ERROR_MSG until the claim; None clears it."""
    cur = _exec(backend, conn, f"""
        UPDATE {TABLE} SET error_msg = :note
        WHERE job_id = :job_id AND status = :st_queued""",
        {"job_id": job_id, "note": note})
    return cur.rowcount


def find_active_unique(backend: Database, conn: Any, unique_key: str) -> list[Job]:
    cur = _exec(backend, conn, f"""{_SELECT}
        WHERE unique_key = :unique_key AND status IN (:st_queued, :st_running)""",
        {"unique_key": unique_key})
    return _jobs(backend, cur)


# -- writes from the worker --------------------------------------------------

def claim(backend: Database, conn: Any, job_id: str, *, now: dt.datetime, host: str, pid: int,
          token: str, session: str | None) -> int:
    """queued → running, once: the token guards every later write of the
    outcome, the session is the server session that will run the call. A
    job reserved for this worker (claim_next) carries the same token already;
    an unreserved one (a worker started by hand) is claimed only when no
    other worker holds a reservation on it."""
    binds = {"job_id": job_id, "now": _t(backend, now), "host": host, "pid": pid,
             "token": token, "db_session": session}
    cur = _exec(backend, conn, f"""
        UPDATE {TABLE}
           SET status = :st_running, start_time = :now, heartbeat_at = {_beat(backend, binds, now)},
               worker_host = :host, worker_pid = :pid, attempt = 1,
               claim_token = :token, db_session = :db_session
         WHERE job_id = :job_id AND status = :st_queued
           AND (claim_token IS NULL OR claim_token = :token)""", binds)
    return cur.rowcount


def heartbeat(backend: Database, conn: Any, job_id: str, *, now: dt.datetime, progress: float | None,
              output: str | None, write_progress: bool) -> bool | None:
    """Write the heartbeat (and progress/output when they changed); return the
    cancel flag, or None when the job is no longer ours to run."""
    binds: dict[str, Any] = {"job_id": job_id}
    beat = _beat(backend, binds, now)
    if write_progress:
        binds["output"] = output
        cur = _exec(backend, conn, f"""
            UPDATE {TABLE} SET heartbeat_at = {beat}, output = :output{_progress_set(progress, binds)}
             WHERE job_id = :job_id AND status = :st_running""", binds)
    else:
        cur = _exec(backend, conn, f"""
            UPDATE {TABLE} SET heartbeat_at = {beat}
             WHERE job_id = :job_id AND status = :st_running""", binds)
    if cur.rowcount == 0:
        conn.commit()
        return None
    cur = backend.execute(conn, f"SELECT cancel_requested FROM {TABLE} WHERE job_id = :job_id",
                          {"job_id": job_id})
    row = cur.fetchone()
    conn.commit()
    return bool(row and row[0])


def cancel_flag(backend: Database, conn: Any, job_id: str) -> bool | None:
    """The worker's cheap poll between heartbeats: the cancel flag, or None
    when the job is no longer running. A read only: it never waits for a
    writer (SQLite WAL), and ends its transaction at once."""
    cur = _exec(backend, conn, f"""
        SELECT cancel_requested, CASE WHEN status = :st_running THEN 1 ELSE 0 END
          FROM {TABLE} WHERE job_id = :job_id""", {"job_id": job_id})
    row = cur.fetchone()
    conn.commit()
    if row is None or not row[1]:
        return None
    return bool(row[0])


def next_attempt(backend: Database, conn: Any, job_id: str, attempt: int, error: str) -> None:
    _exec(backend, conn, f"""
        UPDATE {TABLE} SET attempt = :attempt, error_msg = :error, progress = 0
         WHERE job_id = :job_id AND status = :st_running""",
        {"job_id": job_id, "attempt": attempt, "error": error})


def finish(backend: Database, conn: Any, job_id: str, *, status: JobStatus, end_time: dt.datetime,
           duration: str | None, elapsed_s: float | None, result: str | None,
           error: str | None, output: str | None, progress: float | None,
           token: str | None = None) -> int:
    """The one final write, guarded so it cannot overwrite another outcome:
    the row must still be running and, given the claim token, still ours."""
    binds = {"job_id": job_id, "status": status.value, "end_time": _t(backend, end_time),
             "duration": duration, "elapsed_s": elapsed_s, "result": result, "error": error,
             "output": output}
    mine = ""
    if token is not None:
        binds["token"] = token
        mine = " AND claim_token = :token"
    cur = _exec(backend, conn, f"""
        UPDATE {TABLE}
           SET status = :status, end_time = :end_time, duration = :duration,
               elapsed_s = :elapsed_s, result = :result, error_msg = :error,
               output = :output, heartbeat_at = :end_time{_progress_set(progress, binds)}
         WHERE job_id = :job_id AND status = :st_running{mine}""", binds)
    return cur.rowcount


def _progress_set(progress: float | None, binds: dict[str, Any]) -> str:
    """`, progress = :progress` only when there is one to write. Not
    COALESCE(:progress, progress): a NULL bind has no numeric type (the Oracle
    driver sends None as VARCHAR), and Oracle's COALESCE refuses to mix
    VARCHAR2 with NUMBER (ORA-00932)."""
    if progress is None:
        return ""
    binds["progress"] = progress
    return ", progress = :progress"


# -- reads -------------------------------------------------------------------

def get(backend: Database, conn: Any, job_id: str) -> Job | None:
    cur = backend.execute(conn, f"{_SELECT} WHERE job_id = :job_id", {"job_id": job_id})
    jobs = _jobs(backend, cur)
    return jobs[0] if jobs else None


def get_by_prefix(backend: Database, conn: Any, prefix: str) -> list[Job]:
    """Up to two jobs whose id starts with `prefix` (ids are lower-case hex, so
    the range [prefix, prefix+'g') is exactly the prefix, and uses the PK)."""
    cur = backend.execute(conn, f"""{_SELECT}
        WHERE job_id >= :lo AND job_id < :hi ORDER BY job_id {backend.limit_clause('n')}""",
        {"lo": prefix, "hi": prefix + "g", "n": 2})
    return _jobs(backend, cur)


def recent_jobs(backend: Database, conn: Any, limit: int) -> list[tuple[str, str, str]]:
    """(id, procedure, status as stored) of the newest jobs, for shell
    completion: one walk of the START_TIME index, no lifecycle."""
    cur = backend.execute(conn, f"SELECT job_id, procedure_name, status FROM {TABLE} "
                                f"ORDER BY start_time DESC {backend.limit_clause('n')}", {"n": limit})
    return [(row[0], row[1], row[2]) for row in cur.fetchall()]


def list_jobs(backend: Database, conn: Any, *, since: dt.datetime | None, statuses: Sequence[str] | None,
              procedure: ProcedureFilter | str | None, limit: int,
              queue: str | None = None) -> list[Job]:
    """Newest first. `since` bounds finished jobs only: a queued or running
    job is listed however long ago it started (None: no bound at all)."""
    filters: list[str] = []
    binds: dict[str, Any] = {"n": limit}
    if procedure := ProcedureFilter.of(procedure):
        filters.append(procedure.where(binds))
    if queue is not None:
        filters.append(_in_queue(queue, binds))

    def select(where: list[str], statuses: Sequence[str] | None, *, newest: bool,
               since_bind: Any = None) -> list[Job]:
        own = dict(binds)
        if since_bind is not None:
            own["since"] = since_bind
            where = ["start_time >= :since", *where]
        if statuses:
            own.update({f"s{i}": s for i, s in enumerate(statuses)})
            where = [*where, f"status IN ({', '.join(f':s{i}' for i in range(len(statuses)))})"]
        order = f" ORDER BY start_time DESC {backend.limit_clause('n')}" if newest else ""
        if not newest:
            own.pop("n")
        cur = backend.execute(conn, f"{_SELECT} WHERE {' AND '.join(where) or '1 = 1'}{order}", own)
        return _jobs(backend, cur)

    if since is None:
        return select(filters, statuses, newest=True)
    jobs = select(filters, statuses, newest=True, since_bind=_t(backend, since))
    # Queued and running jobs of any age, found through the status index in
    # a second query: one OR of both conditions makes planners walk the whole
    # start-time index when the window holds fewer rows than the limit.
    active = [s.value for s in (JobStatus.QUEUED, JobStatus.RUNNING) if not statuses or s.value in statuses]
    if active:
        seen = {j.job_id for j in jobs}
        jobs += [j for j in select(filters, active, newest=False) if j.job_id not in seen]
        jobs.sort(key=lambda j: j.start_time or dt.datetime.min.replace(tzinfo=dt.timezone.utc),
                  reverse=True)
    return jobs[:limit]


STAT_STATUSES = tuple(s.value for s in JobStatus)


def stats(backend: Database, conn: Any, *, since: dt.datetime | None,
          procedure: ProcedureFilter | str | None) -> list[dict[str, Any]]:
    """Per procedure: counts by stored status, duration figures. The counts
    are what the rows say; lifecycle corrects the few running/queued ones
    that its rule shows as lost or orphaned (see lifecycle.adjust_stats)."""
    done = "CASE WHEN status = :st_completed THEN elapsed_s END"
    counts = ",\n".join(f"SUM(CASE WHEN status = :st_{s} THEN 1 ELSE 0 END) AS {s}"
                        for s in STAT_STATUSES)
    binds: dict[str, Any] = {}
    procedure = ProcedureFilter.of(procedure)
    conditions = [procedure.where(binds)] if procedure else []
    if since is not None:
        conditions.append("start_time >= :since")
        binds["since"] = _t(backend, since)
    where = " AND ".join(conditions) or "1 = 1"
    cur = _exec(backend, conn, f"""
        SELECT procedure_name, COUNT(*) AS total,
               {counts},
               AVG({done}) AS avg_s,
               {backend.percentile_sql(0.5, done)} AS p50_s,
               {backend.percentile_sql(0.95, done)} AS p95_s,
               MAX({done}) AS max_s,
               MAX(start_time) AS last_run
          FROM {TABLE} WHERE {where}
         GROUP BY procedure_name ORDER BY procedure_name""", binds)
    out = []
    for r in _rows(backend, cur):
        row = {"procedure": r["procedure_name"], "total": int(r["total"])}
        for s in STAT_STATUSES:
            row[s] = int(r[s] or 0)
        for k in ("avg_s", "p50_s", "p95_s", "max_s"):
            row[k] = round(float(r[k]), 3) if r[k] is not None else None
        last = backend.from_db_time(r["last_run"])
        row["last_run"] = last
        out.append(row)
    return out


def lost_suspects(backend: Database, conn: Any, *, stale_before: dt.datetime, unclaimed_before: dt.datetime,
                  host: str, since: dt.datetime | None = None) -> list[Job]:
    """Every job the lifecycle rule could show as lost or orphaned: running
    (claimed by a jobctl worker) with a stale heartbeat or a worker on this
    host, whose pid and liveness the rule checks; queued and reserved for a
    worker that has not claimed it (a job waiting for its turn is not lost)."""
    binds: dict[str, Any] = {"stale": _t(backend, stale_before), "host": host,
                             "unclaimed": _t(backend, unclaimed_before)}
    extra = ""
    if since is not None:
        extra += " AND start_time >= :since"
        binds["since"] = _t(backend, since)
    cur = _exec(backend, conn, f"""{_SELECT}
        WHERE ((status = :st_running AND worker_host IS NOT NULL
                AND (heartbeat_at IS NULL OR heartbeat_at < :stale OR worker_host = :host))
            OR (status = :st_queued AND claim_token IS NOT NULL
                AND (heartbeat_at IS NULL OR heartbeat_at < :unclaimed OR worker_host = :host))){extra}""",
        binds)
    return _jobs(backend, cur)


# -- writes from cancel / cleanup -----------------------------------------------

def mark_lost(backend: Database, conn: Any, job: Job, *, now: dt.datetime, reason: str) -> int:
    """Guarded on the heartbeat read, so a worker that just came back to life
    is not marked lost under its feet. A row another session holds locked
    is left alone (0), not waited for: that session is writing it (a
    heartbeat, an outcome), or is the session of a host cut off before its
    commit, which the server may hold for hours; the next cleanup sees."""
    if lock := backend.lock_clause(skip_locked=True):
        cur = _exec(backend, conn, f"SELECT job_id FROM {TABLE} WHERE job_id = :job_id {lock}",
                    {"job_id": job.job_id})
        if cur.fetchone() is None:
            return 0
    hb_guard = "heartbeat_at IS NULL" if job.heartbeat_at is None else "heartbeat_at = :hb"
    binds = {"job_id": job.job_id, "now": _t(backend, now), "reason": reason,
             "seen": job.status.value}
    if job.heartbeat_at is not None:
        binds["hb"] = _t(backend, job.heartbeat_at)
    cur = _exec(backend, conn, f"""
        UPDATE {TABLE} SET status = :st_lost, end_time = :now, error_msg = :reason
         WHERE job_id = :job_id AND status = :seen AND {hb_guard}""", binds)
    return cur.rowcount


def cancel_queued(backend: Database, conn: Any, job_id: str, now: dt.datetime) -> int:
    cur = _exec(backend, conn, f"""
        UPDATE {TABLE} SET status = :st_cancelled, end_time = :now, cancel_requested = 1,
                           error_msg = 'cancelled before it started'
         WHERE job_id = :job_id AND status = :st_queued""",
        {"job_id": job_id, "now": _t(backend, now)})
    return cur.rowcount


def request_cancel(backend: Database, conn: Any, job_id: str) -> int:
    """Set the cancel flag of a running job; where the backend can announce
    it (PostgreSQL: NOTIFY), the announcement commits with the flag, so the
    worker hears of it at once rather than at its next poll."""
    cur = _exec(backend, conn, f"""
        UPDATE {TABLE} SET cancel_requested = 1 WHERE job_id = :job_id AND status = :st_running""",
        {"job_id": job_id})
    if cur.rowcount:
        backend.announce_cancel(conn, job_id)
    return cur.rowcount


def _finished_where(statuses: Iterable[str]) -> tuple[str, dict[str, Any]]:
    binds = {f"s{i}": s for i, s in enumerate(statuses)}
    return f"status IN ({', '.join(':' + k for k in binds)})", binds


def count_finished_before(backend: Database, conn: Any, *, before: dt.datetime,
                          statuses: Sequence[str]) -> int:
    cond, binds = _finished_where(statuses)
    binds["before"] = _t(backend, before)
    cur = backend.execute(conn, f"SELECT COUNT(*) FROM {TABLE} WHERE start_time < :before AND {cond}",
                          binds)
    return int(cur.fetchone()[0])


def delete_finished_batch(backend: Database, conn: Any, *, before: dt.datetime, statuses: Sequence[str],
                          batch: int) -> int:
    """Delete up to `batch` finished jobs older than `before`; commit per batch
    so a large cleanup never holds one long transaction."""
    cond, binds = _finished_where(statuses)
    binds.update(before=_t(backend, before), n=batch)
    cur = backend.execute(conn, f"""SELECT job_id FROM {TABLE}
        WHERE start_time < :before AND {cond} {backend.limit_clause('n')}""", binds)
    ids = [r[0] for r in cur.fetchall()]
    if not ids:
        return 0
    id_binds = {f"id{i}": v for i, v in enumerate(ids)}
    backend.execute(conn, f"DELETE FROM {TABLE} WHERE job_id IN ({', '.join(':' + k for k in id_binds)})",
                    id_binds)
    conn.commit()
    return len(ids)


def table_columns(backend: Database, conn: Any) -> set[str]:
    cur = backend.execute(conn, f"SELECT * FROM {TABLE} WHERE 1 = 0")
    cur.fetchall()
    return {d[0].lower() for d in cur.description}


# -- queues: limits, the claim, dependencies ------------------------------------

QUEUES = "JOB_QUEUES"


#: the order in which a queue's jobs are claimed, the claim index's own
#: (IX_ASYNC_JOBS_NEXT): the next job is one index entry away, not a sort
_NEXT_ORDER = "ORDER BY priority DESC, start_time, job_id"


def _claim_in(queue: str, binds: dict[str, Any]) -> str:
    """The claim's rows of `queue`: a row jobctl's submit wrote always names
    its queue (the column's default filled it in rows older than queues),
    so no `OR queue IS NULL` keeps the claim index from serving it."""
    binds["queue"] = queue
    return "queue = :queue"


def _in_queue(queue: str, binds: dict[str, Any]) -> str:
    """Rows of `queue`; a NULL QUEUE (a row older than queues, or written by
    another application) belongs to the default queue."""
    binds["queue"] = queue
    return "(queue = :queue OR queue IS NULL)" if queue == DEFAULT_QUEUE else "queue = :queue"


#: what occupies a slot: a job running under a jobctl worker, or reserved for
#: one that is starting (claim_next); rows of other applications do not
_ACTIVE = ("worker_host IS NOT NULL AND (status = :st_running"
           " OR (status = :st_queued AND claim_token IS NOT NULL))")


#: a queued row jobctl's submit wrote (it records the resolved signature); a
#: queued row of another application is never run by a jobctl worker
_OURS = "signature IS NOT NULL"


@dataclass(frozen=True)
class QueueState:
    name: str
    max_running: int          # 0: unlimited
    paused: bool
    running: int              # slots taken (running, or reserved for a starting worker)
    queued: int = 0

    @property
    def free(self) -> bool:
        return not self.paused and (self.max_running == 0 or self.running < self.max_running)


def ensure_queue(backend: Database, conn: Any, queue: str) -> None:
    """The queue's JOB_QUEUES row, created with the default limit when missing.
    On SQLite this first write also opens the claim's write transaction."""
    sql = backend.insert_if_missing_sql(QUEUES, "queue_name", ("queue_name", "max_running", "paused"))
    try:
        backend.execute(conn, sql, {"queue_name": queue, "max_running": None, "paused": 0})
    except Exception as exc:
        if not backend.is_unique_violation(exc):  # another session created it first
            raise


def _queue_row(backend: Database, conn: Any, queue: str, *, lock: bool) -> tuple[int, bool]:
    suffix = backend.lock_clause(skip_locked=False) if lock else ""
    cur = backend.execute(conn, f"SELECT max_running, paused FROM {QUEUES} "
                                f"WHERE queue_name = :queue {suffix}", {"queue": queue})
    row = cur.fetchone()
    if row is None:
        return DEFAULT_MAX_RUNNING, False
    limit = DEFAULT_MAX_RUNNING if row[0] is None else int(row[0])
    return limit, bool(row[1])


def count_active(backend: Database, conn: Any, queue: str) -> int:
    # two counts rather than one with an OR of the statuses: each one reads
    # only its status's part of the claim index, not every row of the table
    binds: dict[str, Any] = {}
    where = _in_queue(queue, binds)
    cur = _exec(backend, conn, f"""
        SELECT COUNT(*) FROM {TABLE} WHERE status = :st_running AND {where}
           AND worker_host IS NOT NULL
        UNION ALL
        SELECT COUNT(*) FROM {TABLE} WHERE status = :st_queued AND {where}
           AND claim_token IS NOT NULL AND worker_host IS NOT NULL""", binds)
    return sum(int(r[0]) for r in cur.fetchall())


def live_workers(backend: Database, conn: Any, queue: str, fresh_after: dt.datetime) -> int:
    """Slots of `queue` whose worker gave a sign of life since `fresh_after`."""
    binds: dict[str, Any] = {"fresh": _t(backend, fresh_after)}
    cur = _exec(backend, conn, f"""SELECT COUNT(*) FROM {TABLE}
        WHERE {_in_queue(queue, binds)} AND {_ACTIVE} AND heartbeat_at >= :fresh""", binds)
    return int(cur.fetchone()[0])


def queue_state(backend: Database, conn: Any, queue: str) -> QueueState:
    limit, paused = _queue_row(backend, conn, queue, lock=False)
    return QueueState(queue, limit, paused, count_active(backend, conn, queue))


def dependency_statuses(backend: Database, conn: Any, ids: Sequence[str]) -> dict[str, JobStatus]:
    """The stored status of each id that exists (PK lookups)."""
    if not ids:
        return {}
    binds = {f"id{i}": v for i, v in enumerate(ids)}
    cur = backend.execute(conn, f"SELECT job_id, status FROM {TABLE} WHERE job_id IN "
                                f"({', '.join(':' + k for k in binds)})", binds)
    out = {}
    for job_id, status in cur.fetchall():
        try:
            out[job_id] = JobStatus(str(status).lower())
        except ValueError:
            out[job_id] = JobStatus.FAILED
    return out


def blocking_dependency(statuses: dict[str, JobStatus], ids: Sequence[str]) -> tuple[str, str] | None:
    """("failed"|"waiting", why) for the first dependency that is not completed."""
    waiting = None
    for dep in ids:
        status = statuses.get(dep)
        if status is None:
            return "failed", f"dependency {dep} no longer exists"
        if status.finished and status is not JobStatus.COMPLETED:
            return "failed", f"dependency {dep} ended {status.value}"
        if status is not JobStatus.COMPLETED and waiting is None:
            waiting = ("waiting", f"dependency {dep} not finished ({status.value})")
    return waiting


def cancel_dependent(backend: Database, conn: Any, job_id: str, now: dt.datetime, reason: str) -> int:
    cur = _exec(backend, conn, f"""
        UPDATE {TABLE} SET status = :st_cancelled, end_time = :now, error_msg = :reason
         WHERE job_id = :job_id AND status = :st_queued AND claim_token IS NULL""",
        {"job_id": job_id, "now": _t(backend, now), "reason": reason})
    return cur.rowcount


def queued_dependents(backend: Database, conn: Any, job_id: str) -> list[tuple[str, str]]:
    """Queued jobs that name `job_id` in AFTER_JOBS: (id, its queue).
    The LIKE only narrows the queued rows; the ids are compared exactly."""
    cur = _exec(backend, conn, f"""SELECT job_id, after_jobs, queue FROM {TABLE}
        WHERE status = :st_queued AND after_jobs LIKE :pattern""", {"pattern": f"%{job_id}%"})
    out = []
    for dep_id, after, queue in cur.fetchall():
        if job_id in split_ids(_read_text(after)):
            out.append((dep_id, queue or DEFAULT_QUEUE))
    return out


#: how many waiting jobs one claim looks at past the ones whose dependency
#: or start time holds them back
CLAIM_SCAN = 50


def _candidates(backend: Database, conn: Any, queue: str, now: dt.datetime,
                scan: int = CLAIM_SCAN) -> list[tuple[str, list[str]]]:
    """The queue's unreserved queued jobs whose start time has come, next
    first: (id, its dependencies)."""
    binds: dict[str, Any] = {"now": _t(backend, now), "n": scan}
    cur = _exec(backend, conn, f"""
        SELECT job_id, after_jobs FROM {TABLE}
         WHERE status = :st_queued AND {_claim_in(queue, binds)} AND claim_token IS NULL
           AND (not_before IS NULL OR not_before <= :now) AND {_OURS}
         {_NEXT_ORDER} {backend.limit_clause('n')}""",
        binds)
    return [(r[0], split_ids(_read_text(r[1]))) for r in cur.fetchall()]


def claimable(backend: Database, conn: Any, queue: str, now: dt.datetime) -> bool:
    """Read only: would claim_next find work (or a job to cancel) in `queue`
    now? Lets reading commands skip the claim's write transaction, which on
    SQLite would wait behind a running job's writes."""
    if not queue_state(backend, conn, queue).free:
        return False
    for _, after in _candidates(backend, conn, queue, now):
        if not after:
            return True
        blocked = blocking_dependency(dependency_statuses(backend, conn, after), after)
        if blocked is None or blocked[0] == "failed":
            return True
    return False


def claim_next(backend: Database, conn: Any, queue: str, *, now: dt.datetime, host: str,
               pid: int | None, token: str, commit: bool = True) -> str | None:
    """Reserve the next eligible job of `queue` for a worker, in one
    transaction that holds the queue's lock while it counts the slots taken
    (PostgreSQL/Oracle: the JOB_QUEUES row FOR UPDATE; SQLite: the write
    transaction its first statement opens), so two hosts never start a fifth
    job in a queue of four. The reservation (token, host, heartbeat) occupies
    the slot until that worker claims the job; the lost rule judges it by
    the reservation time. Jobs whose dependency ended badly are cancelled on
    the way. Commits (`commit=False`: the caller's transaction, which it
    commits or rolls back); returns the job id or None."""

    def done(found: str | None) -> str | None:
        if commit:
            conn.commit()
        return found

    try:
        ensure_queue(backend, conn, queue)
        limit, paused = _queue_row(backend, conn, queue, lock=True)
        if paused or (limit and count_active(backend, conn, queue) >= limit):
            return done(None)
        for job_id, after in _candidates(backend, conn, queue, now):
            if not _may_start(backend, conn, job_id, after, now):
                continue
            # a job another session is cancelling right now is skipped, not waited for
            cur = _exec(backend, conn, f"""SELECT job_id FROM {TABLE}
                WHERE job_id = :job_id AND status = :st_queued AND claim_token IS NULL
                {backend.lock_clause(skip_locked=True)}""", {"job_id": job_id})
            if cur.fetchone() is None:
                continue
            binds = {"job_id": job_id, "token": token, "host": host, "pid": pid}
            _exec(backend, conn, f"""UPDATE {TABLE}
                SET claim_token = :token, worker_host = :host, worker_pid = :pid,
                    heartbeat_at = {_beat(backend, binds, now)}, error_msg = NULL
                WHERE job_id = :job_id AND status = :st_queued AND claim_token IS NULL""",
                binds)
            return done(job_id)
        return done(None)
    except BaseException:
        if commit:
            conn.rollback()
        raise


def _to_running(backend: Database) -> str:
    """A pool's claim: queued → running under its token, run by its session
    (binds :now, with which SQLite's heartbeat is written too)."""
    return f"""SET status = :st_running, start_time = :now,
        heartbeat_at = {backend.clock_sql() or ':now'},
        worker_host = :host, worker_pid = :pid, attempt = 1, claim_token = :token,
        db_session = :db_session, error_msg = NULL"""


#: a claim looks at this many candidates past the ones it wants (a pool: as
#: many as it has slots), so that claims side by side skip each other's
#: locked rows rather than come back empty
CLAIM_SPARE = 4


def claim_batch(backend: Database, conn: Any, queue: str, *, now: dt.datetime, host: str,
                pid: int, token: str, sessions: Sequence[str | None],
                known_queue: bool = False, commit: bool = True,
                spare: int = CLAIM_SPARE, handover: bool = False,
                limits: dict[str, int] | None = None) -> list[Job]:
    """A pool's claim: up to len(sessions) eligible jobs of `queue`, straight
    to `running` (the pool runs them at once, so no reservation is needed),
    the i-th recorded as run by server session sessions[i]. A limited queue
    takes the same lock and count as claim_next, so its limit holds against
    every other worker and pool; an unlimited one has nothing to count, and
    SKIP LOCKED keeps two claims from taking one job. `known_queue`: its
    JOB_QUEUES row exists (this pool claimed from it before). Commits
    (`commit=False`: the caller's transaction); returns the claimed jobs.

    Few round trips, since a pool pays them for every job: the candidates
    come with their queue's limit and pause switch; their rows are read,
    locked, in a second statement; one update claims them. A claim in its
    own transaction (`commit`) commits without waiting for the disk (see
    relax_commit): a limited queue's lock is then held for a few round
    trips, not for a flush. `limits` receives the queue's limit.

    `handover`: a pool slot's next job, claimed in the transaction that
    records its current job's outcome (one commit for both). It takes no
    queue lock: the job it claims replaces the one it finishes, so the
    queue's running count after its commit is never above the count before
    it, which every locked claim respected; the count is still read (a limit
    lowered meanwhile, a paused queue: no hand-over)."""

    def done(jobs: list[Job]) -> list[Job]:
        if commit:
            conn.commit()
        return jobs

    try:
        if commit:
            backend.relax_commit(conn)
        if not backend.lock_clause(skip_locked=False) or not known_queue:
            # where rows cannot be locked (SQLite), this first write is what
            # makes the claims of all processes take turns
            ensure_queue(backend, conn, queue)
        room = len(sessions)
        if handover and room == 1:
            # (jobs with dependencies are left to the claim that checks them)
            if limits is not None and limits.get(queue) == 0:
                # unlimited when last seen: one statement, which claims
                # nothing unless the queue still is, and is not paused
                job = _claim_first(backend, conn, queue, now=now, host=host, pid=pid, token=token,
                                   session=sessions[0], where=f"""EXISTS (SELECT 1 FROM {QUEUES}
                                       WHERE queue_name = :qname AND max_running = 0 AND paused = 0)""")
            else:
                limit, paused, active = _queue_now(backend, conn, queue)
                if limits is not None:
                    limits[queue] = limit
                if paused or (limit and active >= limit):
                    return done([])
                job = _claim_first(backend, conn, queue, now=now, host=host, pid=pid, token=token,
                                   session=sessions[0])
            if job is not NotImplemented:
                return done([job] if job else [])
        binds: dict[str, Any] = {"now": _t(backend, now), "n": room + spare, "qname": queue}
        cur = _exec(backend, conn, f"""
            SELECT job_id, after_jobs,
                   (SELECT max_running FROM {QUEUES} WHERE queue_name = :qname),
                   (SELECT paused FROM {QUEUES} WHERE queue_name = :qname)
              FROM {TABLE}
             WHERE status = :st_queued AND {_claim_in(queue, binds)} AND claim_token IS NULL
               AND (not_before IS NULL OR not_before <= :now) AND {_OURS}
             {_NEXT_ORDER} {backend.limit_clause('n')}""",
            binds)
        rows = cur.fetchall()
        if not rows:
            return done([])
        limit = DEFAULT_MAX_RUNNING if rows[0][2] is None else int(rows[0][2])
        if limits is not None:
            limits[queue] = limit
        if bool(rows[0][3]):
            return done([])
        if limit:
            limit, paused = _queue_row(backend, conn, queue, lock=True)
            if paused:
                return done([])
            if limit:
                room = min(room, limit - count_active(backend, conn, queue))
                if room <= 0:
                    return done([])
        candidates = [(r[0], split_ids(_read_text(r[1]))) for r in rows]
        if any(after for _, after in candidates):
            candidates = _eligible(backend, conn, queue, now, candidates, room + spare)
        ids = [job_id for job_id, _ in candidates]
        if not ids:
            return done([])
        if room == 1 and not any(after for _, after in candidates):
            job = _claim_first(backend, conn, queue, now=now, host=host, pid=pid, token=token,
                               session=sessions[0])
            if job is not NotImplemented:
                return done([job] if job else [])
        # lock only as many as wanted, the next ones when some were taken
        # by a claim running beside this one (locks held until the commit
        # would only make the next claim skip them too)
        picked: list[Job] = []
        first = backend.lock_first_clause("n")
        pos = 0
        while len(picked) < room and pos < len(ids):
            # all the candidates, locking the first `room` free ones; where
            # a limit cannot go with a lock, as many candidates as wanted
            chunk = ids[pos:] if first else ids[pos:pos + room - len(picked)]
            pos += len(chunk)
            binds = {f"id{i}": v for i, v in enumerate(chunk)}
            order = {job_id: i for i, job_id in enumerate(chunk)}
            ending = backend.lock_clause(skip_locked=True)
            if first:
                binds["n"] = room - len(picked)
                ending = f"{_NEXT_ORDER} {first}"
            cur = _exec(backend, conn, f"""{_SELECT}
                WHERE job_id IN ({', '.join(':' + k for k in binds if k != 'n')})
                  AND status = :st_queued AND claim_token IS NULL {ending}""", binds)
            held = _jobs(backend, cur)
            picked += sorted(held, key=lambda job: order[job.job_id])
        if not picked:
            return done([])
        update = f"UPDATE {TABLE} {_to_running(backend)} WHERE job_id = :job_id AND status = :st_queued"
        statuses = _status_binds(update)
        claims = [{"job_id": job.job_id, "now": _t(backend, now), "host": host, "pid": pid,
                   "token": token, "db_session": session, **statuses}
                  for job, session in zip(picked, sessions)]
        if len(claims) == 1:
            backend.execute(conn, update, claims[0])
        else:
            backend.execute_many(conn, update, claims)
        return done([replace(job, status=JobStatus.RUNNING, start_time=now, heartbeat_at=now,
                             worker_host=host, worker_pid=pid, attempt=1, claim_token=token,
                             db_session=session, error_msg=None)
                     for job, session in zip(picked, sessions)])
    except BaseException:
        if commit:
            conn.rollback()
        raise


def _queue_now(backend: Database, conn: Any, queue: str) -> tuple[int, bool, int]:
    """(limit, paused, slots taken) of `queue`, in one statement, unlocked."""
    binds: dict[str, Any] = {"qname": queue}
    where = _in_queue(queue, binds)
    cur = _exec(backend, conn, f"""SELECT max_running, paused,
        (SELECT COUNT(*) FROM {TABLE} WHERE status = :st_running AND {where}
            AND worker_host IS NOT NULL),
        (SELECT COUNT(*) FROM {TABLE} WHERE status = :st_queued AND {where}
            AND claim_token IS NOT NULL AND worker_host IS NOT NULL)
        FROM {QUEUES} WHERE queue_name = :qname""", binds)
    row = cur.fetchone()
    if row is None:
        return DEFAULT_MAX_RUNNING, False, count_active(backend, conn, queue)
    limit = DEFAULT_MAX_RUNNING if row[0] is None else int(row[0])
    return limit, bool(row[1]), int(row[2]) + int(row[3])


def _claim_first(backend: Database, conn: Any, queue: str, *, now: dt.datetime, host: str,
                 pid: int, token: str, session: str | None, where: str = "1 = 1") -> Any:
    """The next eligible job of `queue` with no dependencies, claimed in one
    statement: the update picks it with SKIP LOCKED and returns its row.
    The claimed Job, None when there is none, or NotImplemented where the
    database cannot do it in one statement (the caller takes the long way)."""
    returning = backend.returning_clause(COLUMNS)
    first = backend.lock_first_clause("one")
    if returning is None or first is None:
        return NotImplemented
    binds: dict[str, Any] = {"now": _t(backend, now), "one": 1, "qname": queue, "host": host,
                             "pid": pid, "token": token, "db_session": session}
    cur = _exec(backend, conn, f"""UPDATE {TABLE} {_to_running(backend)}
        WHERE job_id = (SELECT job_id FROM {TABLE}
                         WHERE status = :st_queued AND {_claim_in(queue, binds)}
                           AND claim_token IS NULL AND after_jobs IS NULL
                           AND (not_before IS NULL OR not_before <= :now) AND {_OURS} AND {where}
                         {_NEXT_ORDER} {first})
          AND status = :st_queued
        {returning}""", binds)
    jobs = _jobs(backend, cur)
    return jobs[0] if jobs else None


def _may_start(backend: Database, conn: Any, job_id: str, after: Sequence[str],
               now: dt.datetime) -> bool:
    """Has every job `job_id` waits for completed? One that ended badly
    cancels it here, in the claim's transaction."""
    if not after:
        return True
    blocked = blocking_dependency(dependency_statuses(backend, conn, after), after)
    if blocked is not None and blocked[0] == "failed":
        cancel_dependent(backend, conn, job_id, now, f"cancelled: {blocked[1]}, so it never ran")
    return blocked is None


def _eligible(backend: Database, conn: Any, queue: str, now: dt.datetime,
              candidates: list[tuple[str, list[str]]], want: int) -> list[tuple[str, list[str]]]:
    """Candidates whose dependencies all completed (those whose dependency
    ended badly are cancelled on the way), looking further down the queue
    when some are held back."""
    out: list[tuple[str, list[str]]] = []
    for scan in (None, CLAIM_SCAN):
        held_back = 0
        for job_id, after in (candidates if scan is None
                              else _candidates(backend, conn, queue, now, scan=scan)):
            if len(out) >= want:
                break
            if any(job_id == seen for seen, _ in out):
                continue
            if not _may_start(backend, conn, job_id, after, now):
                held_back += 1
                continue
            out.append((job_id, after))
        if not held_back or len(out) >= want:
            break
    return out


def unreserve(backend: Database, conn: Any, job_id: str, token: str) -> int:
    cur = _exec(backend, conn, f"""UPDATE {TABLE}
        SET claim_token = NULL, worker_host = NULL, worker_pid = NULL, heartbeat_at = NULL
        WHERE job_id = :job_id AND status = :st_queued AND claim_token = :token""",
        {"job_id": job_id, "token": token})
    return cur.rowcount


def savepoint(backend: Database, conn: Any, name: str) -> None:
    backend.execute(conn, f"SAVEPOINT {name}")


def rollback_to(backend: Database, conn: Any, name: str) -> None:
    backend.execute(conn, f"ROLLBACK TO SAVEPOINT {name}")


def queued_with_dependencies(backend: Database, conn: Any) -> list[tuple[str, list[str], str]]:
    """Every queued job that waits for others: (id, the ids, its queue)."""
    cur = _exec(backend, conn, f"""SELECT job_id, after_jobs, queue FROM {TABLE}
        WHERE status = :st_queued AND after_jobs IS NOT NULL""")
    return [(r[0], split_ids(_read_text(r[1])), r[2] or DEFAULT_QUEUE) for r in cur.fetchall()]


def queues_needing_workers(backend: Database, conn: Any, now: dt.datetime) -> list[str]:
    """Queues holding queued jobs that no worker has reserved and whose start
    time has come: a worker may be missing for them."""
    cur = _exec(backend, conn, f"""SELECT DISTINCT COALESCE(queue, '{DEFAULT_QUEUE}') FROM {TABLE}
        WHERE status = :st_queued AND claim_token IS NULL
          AND (not_before IS NULL OR not_before <= :now) AND {_OURS}""", {"now": _t(backend, now)})
    return sorted(r[0] for r in cur.fetchall())


def set_queue(backend: Database, conn: Any, queue: str, *, max_running: int | None = None,
              paused: bool | None = None) -> None:
    ensure_queue(backend, conn, queue)
    sets: list[str] = []
    binds: dict[str, Any] = {"queue": queue}
    if max_running is not None:
        sets.append("max_running = :max_running")
        binds["max_running"] = max_running
    if paused is not None:
        sets.append("paused = :paused")
        binds["paused"] = int(paused)
    if sets:
        backend.execute(conn, f"UPDATE {QUEUES} SET {', '.join(sets)} WHERE queue_name = :queue", binds)


def list_queues(backend: Database, conn: Any) -> list[QueueState]:
    """Every configured queue and every queue holding queued or running jobs."""
    configured = {}
    for name, limit, paused in backend.execute(
            conn, f"SELECT queue_name, max_running, paused FROM {QUEUES}").fetchall():
        configured[name] = (DEFAULT_MAX_RUNNING if limit is None else int(limit), bool(paused))
    cur = _exec(backend, conn, f"""
        SELECT COALESCE(queue, '{DEFAULT_QUEUE}') AS q,
               SUM(CASE WHEN status = :st_queued AND claim_token IS NULL THEN 1 ELSE 0 END),
               SUM(CASE WHEN {_ACTIVE} THEN 1 ELSE 0 END)
          FROM {TABLE} WHERE status IN (:st_queued, :st_running)
         GROUP BY COALESCE(queue, '{DEFAULT_QUEUE}')""")
    counts = {r[0]: (int(r[1] or 0), int(r[2] or 0)) for r in cur.fetchall()}
    out = []
    for name in sorted(set(configured) | set(counts) | {DEFAULT_QUEUE}):
        limit, paused = configured.get(name, (DEFAULT_MAX_RUNNING, False))
        queued, running = counts.get(name, (0, 0))
        out.append(QueueState(name, limit, paused, running, queued))
    return out


# -- worker pools (`jobctl worker`) ---------------------------------------------

WORKERS = "JOB_WORKERS"

#: QUEUES of a pool that serves every queue
ALL_QUEUES = "*"


class WorkerRow(NamedTuple):
    """A JOB_WORKERS row (a NamedTuple, not a dataclass: this module is on
    the path of `jobctl status`, whose start-up a dataclass would cost)."""

    worker_id: str
    host: str
    pid: int
    queues: tuple[str, ...]       # empty: every queue
    concurrency: int
    running: int
    state: str                    # running | stopping
    started_at: dt.datetime | None
    heartbeat_at: dt.datetime | None

    def serves(self, queue: str) -> bool:
        return not self.queues or queue in self.queues


def register_worker(backend: Database, conn: Any, *, worker_id: str, host: str, pid: int,
                    queues: Sequence[str], concurrency: int, now: dt.datetime) -> None:
    binds = {"worker_id": worker_id, "host": host, "pid": pid,
             "queues": ",".join(queues) or ALL_QUEUES, "concurrency": concurrency,
             "now": _t(backend, now)}
    backend.execute(conn, f"""INSERT INTO {WORKERS}
        (worker_id, host, pid, queues, concurrency, running, state, started_at, heartbeat_at)
        VALUES (:worker_id, :host, :pid, :queues, :concurrency, 0, 'running', :now,
                {_beat(backend, binds, now)})""", binds)


def worker_heartbeat(backend: Database, conn: Any, worker_id: str, *, now: dt.datetime,
                     running: int, state: str) -> int:
    """0: the row is gone (cleanup judged the pool gone while it was frozen)."""
    binds: dict[str, Any] = {"worker_id": worker_id, "running": running, "state": state}
    cur = backend.execute(conn, f"""UPDATE {WORKERS}
        SET heartbeat_at = {_beat(backend, binds, now)}, running = :running, state = :state
        WHERE worker_id = :worker_id""", binds)
    return cur.rowcount


def deregister_worker(backend: Database, conn: Any, worker_id: str) -> None:
    backend.execute(conn, f"DELETE FROM {WORKERS} WHERE worker_id = :worker_id",
                    {"worker_id": worker_id})


def list_workers(backend: Database, conn: Any) -> list[WorkerRow]:
    cur = backend.execute(conn, f"""SELECT worker_id, host, pid, queues, concurrency, running,
        state, started_at, heartbeat_at FROM {WORKERS} ORDER BY started_at, worker_id""")
    out = []
    for r in cur.fetchall():
        queues = _read_text(r[3]) or ALL_QUEUES
        out.append(WorkerRow(
            worker_id=r[0], host=r[1], pid=int(r[2]),
            queues=() if queues == ALL_QUEUES else tuple(split_ids(queues)),
            concurrency=int(r[4]), running=int(r[5] or 0), state=str(r[6]),
            started_at=backend.from_db_time(r[7]), heartbeat_at=backend.from_db_time(r[8])))
    return out


def delete_workers(backend: Database, conn: Any, worker_ids: Sequence[str]) -> int:
    deleted = 0
    for worker_id in worker_ids:
        cur = backend.execute(conn, f"DELETE FROM {WORKERS} WHERE worker_id = :worker_id",
                              {"worker_id": worker_id})
        deleted += cur.rowcount
    return deleted
