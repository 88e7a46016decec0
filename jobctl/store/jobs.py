"""The statements on one job: written by submit, claimed, beaten and
finished by its worker, read, cancelled, declared lost, deleted by cleanup."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ..model import Job, JobStatus
from .queues import in_queue
from .rows import (
    DEFAULT_QUEUE, SELECT_JOBS, TABLE, beat_value, bind_time, dict_rows, execute, job_rows,
    ProcedureFilter, status_binds,
)

if TYPE_CHECKING:
    from ..backends.base import Database

# -- writes from submit ------------------------------------------------------

_INSERT = f"""
    INSERT INTO {TABLE} (job_id, status, procedure_name, start_time, created_at, progress,
                         params, timeout_s, attempt, max_attempts, submitted_by,
                         unique_key, cancel_requested, signature,
                         queue, priority, not_before, after_jobs, atomic)
    VALUES (:job_id, :st_queued, :procedure_name, :now, :now, 0, :params, :timeout_s, 0,
            :max_attempts, :submitted_by, :unique_key, 0, :signature,
            :queue, :priority, :not_before, :after_jobs, :atomic)"""


def _insert_binds(backend: Database, *, job_id: str, procedure_name: str, now: dt.datetime,
                  params_json: str, timeout_s: float | None, max_attempts: int,
                  submitted_by: str, unique_key: str | None, signature_json: str | None = None,
                  queue: str = DEFAULT_QUEUE, priority: int = 0,
                  not_before: dt.datetime | None = None,
                  after_jobs: Sequence[str] = (), atomic: bool = False) -> dict[str, Any]:
    return {"job_id": job_id, "procedure_name": procedure_name, "now": bind_time(backend, now),
            "params": params_json, "timeout_s": timeout_s, "max_attempts": max_attempts,
            "submitted_by": submitted_by, "unique_key": unique_key, "signature": signature_json,
            "queue": queue, "priority": priority, "not_before": bind_time(backend, not_before),
            "after_jobs": ",".join(after_jobs) or None, "atomic": 1 if atomic else 0}


def insert_job(backend: Database, conn: Any, **fields: Any) -> None:
    execute(backend, conn, _INSERT, _insert_binds(backend, **fields))
    backend.announce_work(conn, fields.get("queue") or DEFAULT_QUEUE)


def insert_jobs(backend: Database, conn: Any, jobs: Sequence[dict[str, Any]]) -> None:
    """Many new queued rows in one round of the driver's batch (--params-file)."""
    statuses = status_binds(_INSERT)
    backend.execute_many(conn, _INSERT,
                         [{**_insert_binds(backend, **fields), **statuses} for fields in jobs])
    for queue in sorted({fields.get("queue") or DEFAULT_QUEUE for fields in jobs}):
        backend.announce_work(conn, queue)


def fail_queued(backend: Database, conn: Any, job_id: str, now: dt.datetime, error: str) -> int:
    """The spawn failed: the job must not be left `queued` for ever."""
    cur = execute(backend, conn, f"""
        UPDATE {TABLE} SET status = :st_failed, end_time = :now, error_msg = :error
        WHERE job_id = :job_id AND status = :st_queued""",
        {"job_id": job_id, "now": bind_time(backend, now), "error": error})
    return cur.rowcount


def note_queued(backend: Database, conn: Any, job_id: str, note: str | None) -> int:
    """Why a queued job has not started yet (its worker waits for a connection),
    shown in ERROR_MSG until the claim; None clears it."""
    cur = execute(backend, conn, f"""
        UPDATE {TABLE} SET error_msg = :note
        WHERE job_id = :job_id AND status = :st_queued""",
        {"job_id": job_id, "note": note})
    return cur.rowcount


def find_active_unique(backend: Database, conn: Any, unique_key: str) -> list[Job]:
    cur = execute(backend, conn, f"""{SELECT_JOBS}
        WHERE unique_key = :unique_key AND status IN (:st_queued, :st_running)""",
        {"unique_key": unique_key})
    return job_rows(backend, cur)


# -- writes from the worker --------------------------------------------------

def claim(backend: Database, conn: Any, job_id: str, *, now: dt.datetime, host: str, pid: int,
          token: str, session: str | None) -> int:
    """queued → running, once: the token guards every later write of the
    outcome, the session is the server session that will run the call. A
    job reserved for this worker (claim_next) carries the same token already;
    an unreserved one (a worker started by hand) is claimed only when no
    other worker holds a reservation on it."""
    binds = {"job_id": job_id, "now": bind_time(backend, now), "host": host, "pid": pid,
             "token": token, "db_session": session}
    cur = execute(backend, conn, f"""
        UPDATE {TABLE}
           SET status = :st_running, start_time = :now, heartbeat_at = {beat_value(backend, binds, now)},
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
    beat = beat_value(backend, binds, now)
    if write_progress:
        binds["output"] = output
        cur = execute(backend, conn, f"""
            UPDATE {TABLE} SET heartbeat_at = {beat}, output = :output{_progress_set(progress, binds)}
             WHERE job_id = :job_id AND status = :st_running""", binds)
    else:
        cur = execute(backend, conn, f"""
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


#: the marker table: a row per job whose call committed inside (see commit_marker)
MARKS = "JOB_COMMIT_MARKS"


def note_committed(backend: Database, conn: Any, job_id: str) -> int:
    """COMMITTED_INSIDE = 1 on a running job once its call's first
    transaction committed the marker: a worker killed later leaves a row
    that says its commits stay. 1 when written (the caller commits)."""
    cur = execute(backend, conn, f"""
        UPDATE {TABLE} SET committed_inside = 1
         WHERE job_id = :job_id AND status = :st_running
           AND EXISTS (SELECT 1 FROM {MARKS} m WHERE m.job_id = :job_id)""", {"job_id": job_id})
    return cur.rowcount


def commit_marker(job_id: str) -> tuple[str, dict[str, Any]]:
    """The statement a backend runs on the call connection in the call's
    first transaction (CallContext.marker): its row exists exactly when that
    transaction committed, whatever becomes of the worker."""
    return f"INSERT INTO {MARKS} (job_id) VALUES (:mark_job_id)", {"mark_job_id": job_id}


def has_commit_mark(backend: Database, conn: Any, job_id: str, *, quietly: bool = False) -> bool:
    """The job's marker row is there. `quietly`: inside a transaction that
    must go on whatever happens (a role that may not read JOB_COMMIT_MARKS,
    a table db init has not made yet): False then."""
    sql = f"SELECT 1 FROM {MARKS} WHERE job_id = :job_id"
    if not quietly:
        return backend.execute(conn, sql, {"job_id": job_id}).fetchone() is not None
    backend.execute(conn, "SAVEPOINT jobctl_mark")
    try:
        return backend.execute(conn, sql, {"job_id": job_id}).fetchone() is not None
    except Exception:  # noqa: BLE001 - unknown reads as no mark
        backend.execute(conn, "ROLLBACK TO SAVEPOINT jobctl_mark")
        return False


def delete_commit_marks(backend: Database, conn: Any, job_ids: Sequence[str]) -> None:
    if job_ids:
        binds = {f"id{i}": v for i, v in enumerate(job_ids)}
        backend.execute(conn, f"DELETE FROM {MARKS} WHERE job_id IN "
                              f"({', '.join(':' + k for k in binds)})", binds)


def record_session(backend: Database, conn: Any, job_id: str, token: str,
                   session: str | None) -> int:
    """The server session that runs the call now (a reconnect, a replaced
    connection): DB_SESSION follows it."""
    cur = execute(backend, conn, f"""
        UPDATE {TABLE} SET db_session = :db_session
         WHERE job_id = :job_id AND claim_token = :token AND status = :st_running""",
        {"job_id": job_id, "token": token, "db_session": session})
    return cur.rowcount


def final_output(backend: Database, conn: Any, job_id: str, token: str, output: str | None,
                 committed: bool) -> int:
    """OUTPUT (and the fact of commits inside) of a job whose outcome the call
    wrote in its own last transaction (PostgreSQL): the notices reach the
    worker, not the server, so they follow a moment after."""
    binds: dict[str, Any] = {"job_id": job_id, "token": token, "output": output}
    extra = ", committed_inside = 1" if committed else ""
    cur = execute(backend, conn, f"""
        UPDATE {TABLE} SET output = :output{extra}
         WHERE job_id = :job_id AND claim_token = :token""", binds)
    return cur.rowcount


def cancel_flag(backend: Database, conn: Any, job_id: str) -> bool | None:
    """The worker's cheap poll between heartbeats: the cancel flag, or None
    when the job is no longer running. A read only: it never waits for a
    writer (SQLite WAL), and ends its transaction at once."""
    cur = execute(backend, conn, f"""
        SELECT cancel_requested, CASE WHEN status = :st_running THEN 1 ELSE 0 END
          FROM {TABLE} WHERE job_id = :job_id""", {"job_id": job_id})
    row = cur.fetchone()
    conn.commit()
    if row is None or not row[1]:
        return None
    return bool(row[0])


def next_attempt(backend: Database, conn: Any, job_id: str, attempt: int, error: str) -> None:
    execute(backend, conn, f"""
        UPDATE {TABLE} SET attempt = :attempt, error_msg = :error, progress = 0
         WHERE job_id = :job_id AND status = :st_running""",
        {"job_id": job_id, "attempt": attempt, "error": error})


def finish_sent(backend: Database, conn: Any, job_id: str, *, status: JobStatus,
                end_time: dt.datetime, duration: str | None, elapsed_s: float | None,
                result: str | None, error: str | None, output: str | None,
                progress: float | None, token: str | None = None,
                db_error_code: str | None = None,
                committed_inside: bool | None = None) -> Callable[[], int]:
    """The one final write, guarded so it cannot overwrite another outcome:
    the row must still be running and, given the claim token, still ours.
    COMMITTED_INSIDE is never turned back from 1 (a heartbeat saw the mark).
    Returns its row count to read later: in Database.batched, once the
    statements sent with it are answered."""
    binds = {"job_id": job_id, "status": status.value, "end_time": bind_time(backend, end_time),
             "duration": duration, "elapsed_s": elapsed_s, "result": result, "error": error,
             "output": output, "db_error_code": db_error_code}
    committed = ""
    if committed_inside is not None:  # unknown leaves what a heartbeat may have seen
        binds["committed"] = int(committed_inside)
        committed = ", committed_inside = CASE WHEN committed_inside = 1 THEN 1 ELSE :committed END"
    mine = ""
    if token is not None:
        binds["token"] = token
        mine = " AND claim_token = :token"
    cur = execute(backend, conn, f"""
        UPDATE {TABLE}
           SET status = :status, end_time = :end_time, duration = :duration,
               elapsed_s = :elapsed_s, result = :result, error_msg = :error,
               output = :output, heartbeat_at = :end_time,
               db_error_code = :db_error_code{committed}{_progress_set(progress, binds)}
         WHERE job_id = :job_id AND status = :st_running{mine}""", binds)
    return lambda: cur.rowcount


def finish_in_call(backend: Database, job_id: str, token: str) -> tuple[str, dict[str, Any]]:
    """`finish` as completed, for a backend to run at the end of the call's
    last transaction (CallContext.outcome): the :call_* values are the
    backend's, from the call (its OUT values, the time it ended, whether it
    committed inside). OUTPUT follows from the worker (final_output)."""
    sql = f"""UPDATE {TABLE}
           SET status = :st_completed, end_time = :call_end_time, duration = :call_duration,
               elapsed_s = :call_elapsed_s, result = :call_result, error_msg = NULL,
               heartbeat_at = :call_end_time, progress = 100, db_error_code = NULL,
               committed_inside = CASE WHEN committed_inside = 1 THEN 1 ELSE :call_committed END
         WHERE job_id = :job_id AND status = :st_running AND claim_token = :token"""
    return sql, {"job_id": job_id, "token": token, **status_binds(sql)}


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
    cur = backend.execute(conn, f"{SELECT_JOBS} WHERE job_id = :job_id", {"job_id": job_id})
    jobs = job_rows(backend, cur)
    return jobs[0] if jobs else None


def get_by_prefix(backend: Database, conn: Any, prefix: str) -> list[Job]:
    """Up to two jobs whose id starts with `prefix` (ids are lower-case hex, so
    the range [prefix, prefix+'g') is exactly the prefix, and uses the PK)."""
    cur = backend.execute(conn, f"""{SELECT_JOBS}
        WHERE job_id >= :lo AND job_id < :hi ORDER BY job_id {backend.limit_clause('n')}""",
        {"lo": prefix, "hi": prefix + "g", "n": 2})
    return job_rows(backend, cur)


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
        filters.append(in_queue(queue, binds))

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
        cur = backend.execute(conn, f"{SELECT_JOBS} WHERE {' AND '.join(where) or '1 = 1'}{order}", own)
        return job_rows(backend, cur)

    if since is None:
        return select(filters, statuses, newest=True)
    jobs = select(filters, statuses, newest=True, since_bind=bind_time(backend, since))
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
    # ELAPSED_S, or, in a row another writer finished without it, the time
    # from START_TIME to END_TIME
    seconds = f"COALESCE(elapsed_s, {backend.seconds_between_sql('start_time', 'end_time')})"
    done = f"CASE WHEN status = :st_completed THEN {seconds} END"
    counts = ",\n".join(f"SUM(CASE WHEN status = :st_{s} THEN 1 ELSE 0 END) AS {s}"
                        for s in STAT_STATUSES)
    binds: dict[str, Any] = {}
    procedure = ProcedureFilter.of(procedure)
    conditions = [procedure.where(binds)] if procedure else []
    if since is not None:
        conditions.append("start_time >= :since")
        binds["since"] = bind_time(backend, since)
    where = " AND ".join(conditions) or "1 = 1"
    cur = execute(backend, conn, f"""
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
    for r in dict_rows(backend, cur):
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
    binds: dict[str, Any] = {"stale": bind_time(backend, stale_before), "host": host,
                             "unclaimed": bind_time(backend, unclaimed_before)}
    extra = ""
    if since is not None:
        extra += " AND start_time >= :since"
        binds["since"] = bind_time(backend, since)
    cur = execute(backend, conn, f"""{SELECT_JOBS}
        WHERE ((status = :st_running AND worker_host IS NOT NULL
                AND (heartbeat_at IS NULL OR heartbeat_at < :stale OR worker_host = :host))
            OR (status = :st_queued AND claim_token IS NOT NULL
                AND (heartbeat_at IS NULL OR heartbeat_at < :unclaimed OR worker_host = :host))){extra}""",
        binds)
    return job_rows(backend, cur)


# -- writes from cancel / cleanup -----------------------------------------------

def mark_lost(backend: Database, conn: Any, job: Job, *, now: dt.datetime, reason: str,
              committed: bool = False) -> int:
    """Guarded on the heartbeat read, so a worker that just came back to life
    is not marked lost under its feet. A row another session holds locked
    is left alone (0), not waited for: that session is writing it (a
    heartbeat, an outcome), or is the session of a host cut off before its
    commit, which the server may hold for hours; the next cleanup sees."""
    if lock := backend.lock_clause(skip_locked=True):
        cur = execute(backend, conn, f"SELECT job_id FROM {TABLE} WHERE job_id = :job_id {lock}",
                      {"job_id": job.job_id})
        if cur.fetchone() is None:
            return 0
    hb_guard = "heartbeat_at IS NULL" if job.heartbeat_at is None else "heartbeat_at = :hb"
    binds = {"job_id": job.job_id, "now": bind_time(backend, now), "reason": reason,
             "seen": job.status.value}
    if job.heartbeat_at is not None:
        binds["hb"] = bind_time(backend, job.heartbeat_at)
    extra = ", committed_inside = 1" if committed else ""
    cur = execute(backend, conn, f"""
        UPDATE {TABLE} SET status = :st_lost, end_time = :now, error_msg = :reason{extra}
         WHERE job_id = :job_id AND status = :seen AND {hb_guard}""", binds)
    return cur.rowcount


def cancel_queued(backend: Database, conn: Any, job_id: str, now: dt.datetime) -> int:
    cur = execute(backend, conn, f"""
        UPDATE {TABLE} SET status = :st_cancelled, end_time = :now, cancel_requested = 1,
                           error_msg = 'cancelled before it started'
         WHERE job_id = :job_id AND status = :st_queued""",
        {"job_id": job_id, "now": bind_time(backend, now)})
    return cur.rowcount


def request_cancel(backend: Database, conn: Any, job_id: str) -> int:
    """Set the cancel flag of a running job; where the backend can announce
    it (PostgreSQL: NOTIFY), the announcement commits with the flag, so the
    worker hears of it at once rather than at its next poll."""
    cur = execute(backend, conn, f"""
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
    binds["before"] = bind_time(backend, before)
    cur = backend.execute(conn, f"SELECT COUNT(*) FROM {TABLE} WHERE start_time < :before AND {cond}",
                          binds)
    return int(cur.fetchone()[0])


def delete_finished_batch(backend: Database, conn: Any, *, before: dt.datetime, statuses: Sequence[str],
                          batch: int) -> int:
    """Delete up to `batch` finished jobs older than `before`; commit per batch
    so a large cleanup never holds one long transaction."""
    cond, binds = _finished_where(statuses)
    binds.update(before=bind_time(backend, before), n=batch)
    cur = backend.execute(conn, f"""SELECT job_id FROM {TABLE}
        WHERE start_time < :before AND {cond} {backend.limit_clause('n')}""", binds)
    ids = [r[0] for r in cur.fetchall()]
    if not ids:
        return 0
    id_binds = {f"id{i}": v for i, v in enumerate(ids)}
    backend.execute(conn, f"DELETE FROM {TABLE} WHERE job_id IN ({', '.join(':' + k for k in id_binds)})",
                    id_binds)
    delete_commit_marks(backend, conn, ids)
    conn.commit()
    return len(ids)


def table_columns(backend: Database, conn: Any) -> set[str]:
    cur = backend.execute(conn, f"SELECT * FROM {TABLE} WHERE 1 = 0")
    cur.fetchall()
    return {d[0].lower() for d in cur.description}
