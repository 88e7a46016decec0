"""The claim: the next eligible job of a queue taken within its limit,
under the queue's row lock, skipping rows other claims hold."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NamedTuple

from ..model import COLUMNS, Job, JobStatus
from .queues import (
    NEXT_ORDER, OURS, QUEUES, blocking_dependency, cancel_dependent, claim_in, count_active,
    dependency_statuses, ensure_queue, in_queue, queue_row, queue_state,
)
from .rows import (
    DEFAULT_MAX_RUNNING, SELECT_JOBS, TABLE, beat_value, bind_time, execute, job_rows,
    read_text, split_ids, status_binds,
)

if TYPE_CHECKING:
    from ..backends.base import Database

#: how many waiting jobs one claim looks at past the ones whose dependency
#: or start time holds them back
CLAIM_SCAN = 50


class LockBounds(NamedTuple):
    """How long a claim waits for its queue's lock, and after how long a
    silent client inside the claim has its session ended by the server
    (backend.bound_lock_wait)."""

    wait_s: float
    silent_s: float


def _bound(backend: Database, conn: Any, bounds: LockBounds | None) -> None:
    if bounds is not None:
        backend.bound_lock_wait(conn, wait_s=bounds.wait_s, silent_s=bounds.silent_s)


def _locked_out(backend: Database, exc: BaseException) -> bool:
    """A claim in its own transaction that met its queue's lock held past
    its bound claims nothing, for now (the session holding the lock is
    stopped or cut off; the server ends it once it has been silent for the
    bound). Within the caller's transaction, the caller decides."""
    return isinstance(exc, Exception) and backend.is_lock_timeout(exc)


def _candidates(backend: Database, conn: Any, queue: str, now: dt.datetime,
                scan: int = CLAIM_SCAN) -> list[tuple[str, list[str]]]:
    """The queue's unreserved queued jobs whose start time has come, next
    first: (id, its dependencies)."""
    binds: dict[str, Any] = {"now": bind_time(backend, now), "n": scan}
    cur = execute(backend, conn, f"""
        SELECT job_id, after_jobs FROM {TABLE}
         WHERE status = :st_queued AND {claim_in(queue, binds)} AND claim_token IS NULL
           AND (not_before IS NULL OR not_before <= :now) AND {OURS}
         {NEXT_ORDER} {backend.limit_clause('n')}""",
        binds)
    return [(r[0], split_ids(read_text(r[1]))) for r in cur.fetchall()]


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
        if blocked is None or blocked[0] == "ended":
            return True
    return False


def claim_next(backend: Database, conn: Any, queue: str, *, now: dt.datetime, host: str,
               pid: int | None, token: str, commit: bool = True,
               bounds: LockBounds | None = None) -> str | None:
    """Reserve the next eligible job of `queue` for a worker, in one
    transaction that holds the queue's lock while it counts the slots taken
    (PostgreSQL/Oracle: the JOB_QUEUES row FOR UPDATE; SQLite: the write
    transaction its first statement opens), so two hosts never start a fifth
    job in a queue of four. The reservation (token, host, heartbeat) occupies
    the slot until that worker claims the job; the lost rule judges it by
    the reservation time. Jobs whose dependency ended badly are cancelled on
    the way. Commits (`commit=False`: the caller's transaction, which it
    commits or rolls back); returns the job id or None. `bounds`: how long
    the queue's lock is waited for, and held by a silent client."""

    def done(found: str | None) -> str | None:
        if commit:
            conn.commit()
        return found

    try:
        _bound(backend, conn, bounds)
        ensure_queue(backend, conn, queue)
        limit, paused = queue_row(backend, conn, queue, lock=True)
        if paused or (limit and count_active(backend, conn, queue) >= limit):
            return done(None)
        for job_id, after in _candidates(backend, conn, queue, now):
            if not _may_start(backend, conn, job_id, after, now):
                continue
            # a job another session is cancelling right now is skipped, not waited for
            cur = execute(backend, conn, f"""SELECT job_id FROM {TABLE}
                WHERE job_id = :job_id AND status = :st_queued AND claim_token IS NULL
                {backend.lock_clause(skip_locked=True)}""", {"job_id": job_id})
            if cur.fetchone() is None:
                continue
            binds = {"job_id": job_id, "token": token, "host": host, "pid": pid}
            execute(backend, conn, f"""UPDATE {TABLE}
                SET claim_token = :token, worker_host = :host, worker_pid = :pid,
                    heartbeat_at = {beat_value(backend, binds, now)}, error_msg = NULL
                WHERE job_id = :job_id AND status = :st_queued AND claim_token IS NULL""",
                binds)
            return done(job_id)
        return done(None)
    except BaseException as exc:
        if commit:
            conn.rollback()
            if _locked_out(backend, exc):
                return None
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
                limits: dict[str, int] | None = None,
                bounds: LockBounds | None = None) -> list[Job]:
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
        # where rows cannot be locked (SQLite), this first write is what makes
        # the claims of all processes take turns
        writes_queue_first = not backend.lock_clause(skip_locked=False) or not known_queue
        if writes_queue_first:
            # (the bound is a round trip, paid only where a lock may be waited for)
            _bound(backend, conn, bounds)
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
                # one statement too: it claims only while the queue has room
                # (its limit as it is now: one lowered meanwhile holds)
                job = _claim_first(backend, conn, queue, now=now, host=host, pid=pid, token=token,
                                   session=sessions[0], room_left=True)
            if job is not NotImplemented:
                return done([job] if job else [])
        binds: dict[str, Any] = {"now": bind_time(backend, now), "n": room + spare, "qname": queue}
        cur = execute(backend, conn, f"""
            SELECT job_id, after_jobs,
                   (SELECT max_running FROM {QUEUES} WHERE queue_name = :qname),
                   (SELECT paused FROM {QUEUES} WHERE queue_name = :qname)
              FROM {TABLE}
             WHERE status = :st_queued AND {claim_in(queue, binds)} AND claim_token IS NULL
               AND (not_before IS NULL OR not_before <= :now) AND {OURS}
             {NEXT_ORDER} {backend.limit_clause('n')}""",
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
            if not writes_queue_first:
                _bound(backend, conn, bounds)
            limit, paused = queue_row(backend, conn, queue, lock=True)
            if paused:
                return done([])
            if limit:
                room = min(room, limit - count_active(backend, conn, queue))
                if room <= 0:
                    return done([])
        candidates = [(r[0], split_ids(read_text(r[1]))) for r in rows]
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
                ending = f"{NEXT_ORDER} {first}"
            cur = execute(backend, conn, f"""{SELECT_JOBS}
                WHERE job_id IN ({', '.join(':' + k for k in binds if k != 'n')})
                  AND status = :st_queued AND claim_token IS NULL {ending}""", binds)
            held = job_rows(backend, cur)
            picked += sorted(held, key=lambda job: order[job.job_id])
        if not picked:
            return done([])
        update = f"UPDATE {TABLE} {_to_running(backend)} WHERE job_id = :job_id AND status = :st_queued"
        statuses = status_binds(update)
        claims = [{"job_id": job.job_id, "now": bind_time(backend, now), "host": host, "pid": pid,
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
    except BaseException as exc:
        if commit:
            conn.rollback()
            if _locked_out(backend, exc):
                return []
        raise


def _room_left(queue: str, binds: dict[str, Any]) -> str:
    """For a hand-over (see claim_batch): `queue` has a JOB_QUEUES row, is
    not paused, and is unlimited or runs fewer jobs under jobctl workers
    than its limit. A hand-over never adds to what takes the queue's slots
    (it frees one and takes one), so this count is there only for a limit
    lowered meanwhile, which then holds as running jobs end. It counts the
    running rows alone, which the claim index finds at once; the reserved
    ones (a daemon-free worker's, for a moment) are found only among every
    queued row, which would make each hand-over cost as much as the backlog."""
    taken = in_queue(queue, binds)
    return f"""EXISTS (SELECT 1 FROM {QUEUES} q WHERE q.queue_name = :qname AND q.paused = 0
                   AND (q.max_running = 0 OR
                        (SELECT COUNT(*) FROM {TABLE} WHERE status = :st_running AND {taken}
                            AND worker_host IS NOT NULL)
                        < COALESCE(q.max_running, {DEFAULT_MAX_RUNNING})))"""


def _claim_first_sql(backend: Database, queue: str, *, now: dt.datetime, host: str, pid: int,
                     token: str, session: str | None, where: str = "1 = 1",
                     room_left: bool = False) -> tuple[str, dict[str, Any]] | None:
    """The statement of _claim_first (None where there is none); `room_left`:
    it claims only while the queue has room (_room_left)."""
    returning = backend.returning_clause(COLUMNS)
    first = backend.lock_first_clause("one")
    if returning is None or first is None:
        return None
    binds: dict[str, Any] = {"now": bind_time(backend, now), "one": 1, "qname": queue, "host": host,
                             "pid": pid, "token": token, "db_session": session}
    if room_left:
        where = _room_left(queue, binds)
    sql = f"""UPDATE {TABLE} {_to_running(backend)}
        WHERE job_id = (SELECT job_id FROM {TABLE}
                         WHERE status = :st_queued AND {claim_in(queue, binds)}
                           AND claim_token IS NULL AND after_jobs IS NULL
                           AND (not_before IS NULL OR not_before <= :now) AND {OURS} AND {where}
                         {NEXT_ORDER} {first})
          AND status = :st_queued
        {returning}"""
    return sql, {**binds, **status_binds(sql)}


def _claim_first(backend: Database, conn: Any, queue: str, *, now: dt.datetime, host: str,
                 pid: int, token: str, session: str | None, where: str = "1 = 1",
                 room_left: bool = False) -> Any:
    """The next eligible job of `queue` with no dependencies, claimed in one
    statement: the update picks it with SKIP LOCKED and returns its row.
    The claimed Job, None when there is none, or NotImplemented where the
    database cannot do it in one statement (the caller takes the long way)."""
    stmt = _claim_first_sql(backend, queue, now=now, host=host, pid=pid, token=token,
                            session=session, where=where, room_left=room_left)
    if stmt is None:
        return NotImplemented
    jobs = job_rows(backend, execute(backend, conn, *stmt))
    return jobs[0] if jobs else None


def handover_sql(backend: Database, queue: str, *, now: dt.datetime, host: str, pid: int,
                 token: str, session: str | None) -> tuple[str, dict[str, Any]] | None:
    """A pool slot's hand-over (see claim_batch) as one statement returning
    the claimed row, for a backend to run in the call's last transaction,
    after the outcome (CallContext.hand_over): the queue's limit holds for
    the same reason, the freed slot and the taken one commit together. It
    claims nothing when the queue is paused or full, or has no JOB_QUEUES
    row (the slot then claims under the queue's lock, after). None where the
    database cannot claim in one statement."""
    return _claim_first_sql(backend, queue, now=now, host=host, pid=pid, token=token,
                            session=session, room_left=True)


def _may_start(backend: Database, conn: Any, job_id: str, after: Sequence[str],
               now: dt.datetime) -> bool:
    """Has every job `job_id` waits for completed? One that ended badly
    cancels it here, in the claim's transaction."""
    if not after:
        return True
    blocked = blocking_dependency(dependency_statuses(backend, conn, after), after)
    if blocked is not None and blocked[0] == "ended":
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
    cur = execute(backend, conn, f"""UPDATE {TABLE}
        SET claim_token = NULL, worker_host = NULL, worker_pid = NULL, heartbeat_at = NULL
        WHERE job_id = :job_id AND status = :st_queued AND claim_token = :token""",
        {"job_id": job_id, "token": token})
    return cur.rowcount


def savepoint(backend: Database, conn: Any, name: str) -> None:
    backend.execute(conn, f"SAVEPOINT {name}")


def rollback_to(backend: Database, conn: Any, name: str) -> None:
    backend.execute(conn, f"ROLLBACK TO SAVEPOINT {name}")
