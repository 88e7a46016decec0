"""Reading jobs: every job as the lifecycle reads it (lost and orphaned
judged, never written), why a queued one waits, and following one to its end."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from . import store
from .errors import JobsUnfinished, NotFound, UsageError
from .launcher import Launcher
from .lookup import Lookup
from .model import MAX_DURATION_S, Job, JobStatus, output_lines, utcnow
from .session import Service, Session
from .submitting import check_queue_name

if TYPE_CHECKING:
    from . import store_overview


#: `list --limit` above this is a typo, and would overflow a bind on some databases
MAX_LIST_LIMIT = 1_000_000


class Reader(Service):
    def __init__(self, session: Session, launcher: Launcher, lookup: Lookup):
        super().__init__(session)
        self.launcher = launcher
        self.lookup = lookup
        #: the server's clock less this host's, read at the first frame of
        #: `top`: later frames judge by it without a statement of their own
        self._clock_offset: dt.timedelta | None = None

    def effective(self, job: Job, now: dt.datetime | None = None,
                   states: dict[str, store.QueueState] | None = None,
                   served: dict[str, bool] | None = None) -> Job:
        """`states`, `served`: what one reading command learnt of each queue
        (its state; whether a pool serves it), asked once for all its jobs."""
        with self.db() as conn:
            job = self.lifecycle.effective(conn, job, now)
            if job.status is JobStatus.QUEUED:
                job = replace(job, waiting_for=self.waiting_for(
                    conn, job, now or utcnow(), {} if states is None else states,
                    {} if served is None else served))
            return job

    def waiting_for(self, conn: Any, job: Job, now: dt.datetime,
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
            served[job.queue] = self.launcher.pool_serves(conn, job.queue)
        if served[job.queue]:
            return f"waiting for a `jobctl worker` serving queue {job.queue} to take it"
        return "no live worker has taken it: `jobctl cleanup --days N` starts one"

    def get(self, ref: str) -> Job:
        ref = ref.strip().lower()
        with self.db() as conn:
            found = self.session.find(conn, ref)
        if self.launcher.heal_once():
            with self.db() as conn:  # a worker was started: maybe for this job
                found = self.session.find(conn, found.job_id)
        return self.effective(found)

    def get_many(self, refs: Sequence[str]) -> list[Job]:
        return [self.get(r) for r in refs]

    def list_jobs(self, *, statuses: Sequence[str] | None = None, procedure: str | None = None,
                  since_s: float | None = 86400, limit: int = 50,
                  queue: str | None = None) -> list[Job]:
        """Newest first. `since_s` bounds finished jobs; queued and running
        ones are always listed. None: all of them."""
        wanted = parse_statuses(statuses)
        check_since(since_s)
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise UsageError(f"--limit must be from 1 to {MAX_LIST_LIMIT}")
        proc = self.lookup.procedure_filter(procedure)
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
            with self.db() as conn:
                jobs = store.list_jobs(self.backend, conn, since=ago(now, since_s),
                                       statuses=sorted(sql_statuses) if sql_statuses else None,
                                       procedure=proc, limit=limit, queue=queue)
                conn.commit()
            return jobs

        with self.db() as conn:
            now = self.lifecycle.clock(conn)  # the clock heartbeats are written with
        jobs = read()
        if self.launcher.heal_once():
            jobs = read()  # workers were started: show what they took
        states: dict[str, store.QueueState] = {}
        served: dict[str, bool] = {}
        jobs = [self.effective(j, now, states, served) for j in jobs]
        if wanted:
            jobs = [j for j in jobs if j.status in wanted]
        return jobs

    def stats(self, *, since_s: float | None = 7 * 86400,
              procedure: str | None = None) -> list[dict[str, Any]]:
        check_since(since_s)
        proc = self.lookup.procedure_filter(procedure)
        with self.db() as conn:
            now = self.lifecycle.clock(conn)
            since = ago(now, since_s)
            rows = store.stats(self.backend, conn, since=since, procedure=proc)
            conn.commit()
            return self.lifecycle.adjust_stats(conn, rows, now, since=since)

    # -- overviews: `jobctl top` and `stats --chart` (their SQL: store_overview) ----------
    def top_frame(self, *, since_s: float | None = 86400,
                  queue: str | None = None) -> store_overview.Frame:
        """`jobctl top`: what one frame shows, read in one statement. A live
        view needs a window (not `--since all`); an unknown queue is exit 2."""
        from . import store_overview  # lazily: only top reads it

        if since_s is None:
            raise UsageError("--since all is not for a live view: give a window such as 24h or 7d")
        check_since(since_s)
        queue = None if queue is None else check_queue_name(queue)
        if self._clock_offset is None:
            with self.db() as conn:
                self._clock_offset = self.lifecycle.clock(conn) - utcnow()
        now = utcnow() + self._clock_offset
        with self.db() as conn:
            frame = store_overview.read_frame(self.backend, conn, self.lifecycle, now=now,
                                              since=now - dt.timedelta(seconds=since_s), queue=queue)
            conn.commit()
        if queue is not None and not frame.queues:
            raise UsageError(f"no queue {queue}: none is configured by that name, and no job of it "
                             "is queued, running or finished in the window (see jobctl queue list)")
        return frame

    def stats_chart(self, *, since_s: float | None = 7 * 86400,
                    procedure: str | None = None) -> store_overview.Chart:
        """`stats --chart`: per duration and per day, the completed and failed
        jobs among those `stats` counts (its filter, its window)."""
        from . import store_overview

        check_since(since_s)
        proc = self.lookup.procedure_filter(procedure)
        now = utcnow()
        with self.db() as conn:
            chart = store_overview.read_chart(
                self.backend, conn, since=ago(now, since_s), procedure=proc,
                days=store_overview.chart_days(now, since_s),
                edges=store_overview.DURATION_STEPS)
            conn.commit()
        return chart

    def typical_duration(self, procedure_name: str, *, since_s: float = 30 * 86400) -> float | None:
        """The median run time of the procedure's completed jobs in the last
        `since_s` (its canonical name, as stored); None without any."""
        with self.db() as conn:
            rows = store.stats(self.backend, conn, since=ago(utcnow(), since_s),
                               procedure=store.ProcedureFilter(procedure_name))
            conn.commit()
        return rows[0]["p50_s"] if rows else None

    def recent_jobs(self, limit: int = 50) -> list[tuple[str, str, str]]:
        """(id, procedure, status as stored) of the newest jobs, for shell
        completion: one cheap indexed read; the status is the row's, without
        the lifecycle's reading of it."""
        with self.db() as conn:
            jobs = store.recent_jobs(self.backend, conn, limit)
            conn.commit()
        return jobs

    def wait(self, refs: Sequence[str], *, timeout_s: float | None = None,
             on_poll: Callable[[list[Job]], None] | None = None) -> list[Job]:
        ids = [j.job_id for j in self.get_many(refs)]
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            with self.db() as conn:
                now = self.lifecycle.clock(conn)
                rows = [store.get(self.backend, conn, i) for i in ids]
                conn.commit()
            jobs = [self.effective(j, now) for j in rows if j is not None]
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
        job = self.get(ref)
        seen: list[str] = []
        capped_said = False
        first = True
        last_look = job.status.finished  # it ended before: its output is all there
        while True:
            lines, capped = output_lines(job.output)
            fresh, continuous = new_lines(seen, lines)
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
                if last_look:
                    return job
                # seen ending: after a top-level call the output its notices
                # brought follows the outcome by a round trip (see
                # claiming.settle_in_call), so one more look
                last_look = True
            time.sleep(self.settings.tunables.poll_s)
            with self.db() as conn:
                now = self.lifecycle.clock(conn)
                fresh_row = store.get(self.backend, conn, job.job_id)
                conn.commit()
            if fresh_row is None:
                raise NotFound(f"job {job.job_id} was deleted while following it")
            job = self.effective(fresh_row, now)


def ago(now: dt.datetime, seconds: float | None) -> dt.datetime | None:
    return None if seconds is None else now - dt.timedelta(seconds=seconds)


def new_lines(seen: list[str], current: list[str]) -> tuple[list[str], bool]:
    """Lines of `current` after those already `seen`, and whether `current`
    continues `seen`. If it does not (lines dropped at the front), the new
    lines start after the longest run of seen lines that `current` begins with."""
    if current[:len(seen)] == seen:
        return current[len(seen):], True
    for k in range(min(len(seen), len(current)), 0, -1):
        if seen[-k:] == current[:k]:
            return current[k:], False
    return current, False


def check_since(since_s: float | None) -> None:
    if since_s is None:  # --since all
        return
    # a window past a century overflows date arithmetic: the caller's mistake
    if not 0 <= since_s <= MAX_DURATION_S:  # also refuses nan
        raise UsageError(f"--since must be from 0 to {MAX_DURATION_S:g} s, not {since_s:g}")


def parse_statuses(statuses: Sequence[str] | None) -> list[JobStatus]:
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
