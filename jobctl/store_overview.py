"""The store's reads for the overviews: `jobctl top` and `jobctl stats --chart`.

A part of the store, kept apart from the store package so that only these
views load it: the SQL of these two views, one statement each, and the plain
data they return.

`read_frame` is everything one frame of `jobctl top` shows, read in ONE
statement (a UNION ALL of small branches, each served by an index of the
schema files), so a refresh costs one round trip however many queues and
procedures there are:

- `q`: each configured queue (JOB_QUEUES: its limit, paused);
- `a`: per queue, the queued and running jobs and why queued ones wait
  (status prefix of IX_ASYNC_JOBS_NEXT);
- `w`: per queue, procedure and time bucket, the jobs that finished in the
  window (range of IX_ASYNC_JOBS_START): the queues' progress, each
  procedure's failure rate and its sparkline of durations;
- `p`: the median duration, in the window, of each procedure running now
  (IX_ASYNC_JOBS_PROC_START), for the ETA of a job that reports no progress;
- `r`: the running jobs, with the tail of their output (IX_ASYNC_JOBS_STATUS);
- `f`: the last failures, with the head of their error (IX_ASYNC_JOBS_START).

Every branch returns the same columns (`_COLUMNS`), NULL where it has
nothing to say. Dialects: only what the store already uses on every backend
(CASE, COALESCE, SUBSTR/LENGTH, the backend's row limit and percentile),
time buckets compared with bound times (no date arithmetic in SQL), and
GROUP BY over an inline view's columns rather than over expressions with
binds (Oracle's ORA-00979). Large texts (OUTPUT, ERROR_MSG, CLOBs on
Oracle) come back cut to `TEXT_SLICE` characters.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .model import Job, JobStatus
from .store import ProcedureFilter

if TYPE_CHECKING:
    from .backends.base import Database
    from .lifecycle import Lifecycle

TABLE = "ASYNC_JOBS"
QUEUES = "JOB_QUEUES"
DEFAULT_QUEUE = "default"
#: as store.DEFAULT_MAX_RUNNING: a queue without a limit of its own
DEFAULT_MAX_RUNNING = 4
#: how many time buckets a procedure's sparkline has over the window
SPARK_BUCKETS = 20
#: how many of the last failures a frame shows
FAILURES = 5
#: characters of OUTPUT (its end) and ERROR_MSG (its start) a frame reads:
#: enough for a line, and at most 4,000 bytes in any character set
TEXT_SLICE = 1000
#: the statuses top counts as failures
FAILED = (JobStatus.FAILED.value, JobStatus.TIMED_OUT.value, JobStatus.LOST.value)
FINISHED = tuple(s.value for s in JobStatus if s.finished)


# -- plain data ------------------------------------------------------------------------

@dataclass(frozen=True)
class QueueLine:
    name: str
    max_running: int           # 0: unlimited
    paused: bool
    running: int = 0           # running jobs, jobctl's and other applications'
    slots: int = 0             # slots taken: running under jobctl, or starting
    queued: int = 0            # every queued job, starting ones too
    starting: int = 0          # reserved for a worker that is starting
    later: int = 0             # not before a time still ahead (--at, --in)
    after: int = 0             # waiting for dependencies (--after)
    foreign: int = 0           # queued by another application
    done: int = 0              # finished in the window
    failed: int = 0            # of them: failed, timed out, lost

    @property
    def progress(self) -> float | None:
        """done / (done + running + queued), None when there is nothing."""
        total = self.done + self.running + self.queued
        return self.done / total if total else None

    @property
    def full(self) -> bool:
        return bool(self.max_running) and self.slots >= self.max_running

    def waiting(self) -> list[str]:
        """Why its queued jobs wait, most telling first (see `status`'s waiting line)."""
        if not self.queued:
            return []
        out = []
        if self.paused:
            out.append("paused")
        elif self.full:
            out.append("full")  # LIMIT and RUN say how full
        for count, what in ((self.starting, "starting"), (self.later, "later"),
                            (self.after, "deps"), (self.foreign, "external")):
            if count:
                out.append(f"{count} {what}")
        ready = self.queued - self.starting - self.later - self.after - self.foreign
        if ready > 0 and not self.paused and not self.full:
            out.append(f"{ready} ready")  # eligible, no worker has taken them yet
        return out


@dataclass(frozen=True)
class RunningLine:
    job: Job                   # as the lifecycle judges it (lost, orphaned, external)
    typical_s: float | None    # median duration of the procedure's runs in the window
    last_line: str             # the latest line of its output ("" without any)


@dataclass(frozen=True)
class FailureLine:
    job_id: str
    procedure: str
    queue: str
    status: str
    start_time: dt.datetime | None
    end_time: dt.datetime | None
    first_line: str


@dataclass(frozen=True)
class ProcedureLine:
    name: str
    queues: tuple[str, ...]
    finished: int
    completed: int
    failed: int
    #: average seconds of the completed runs per time bucket, oldest first (None: no run)
    spark: tuple[float | None, ...]

    @property
    def failure_pct(self) -> float | None:
        return 100.0 * self.failed / self.finished if self.finished else None


@dataclass(frozen=True)
class Frame:
    now: dt.datetime
    since: dt.datetime
    queues: tuple[QueueLine, ...]
    running: tuple[RunningLine, ...]
    failures: tuple[FailureLine, ...]
    procedures: tuple[ProcedureLine, ...]
    queue_filter: str | None = None


# -- the statement -----------------------------------------------------------------------

_COLUMNS = ("kind", "queue", "name", "job_id", "host", "status", "extra",
            "n1", "n2", "n3", "n4", "n5", "n6", "n7", "t1", "t2", "txt")


def _select(kind: str, **given: str) -> str:
    """One branch's select list: `given` columns, NULL for the rest."""
    unknown = set(given) - set(_COLUMNS)
    assert not unknown, unknown
    cells = [f"'{kind}'"] + [given.get(c, "NULL") for c in _COLUMNS[1:]]
    return "SELECT " + ", ".join(f"{cell} AS {name}" for cell, name in zip(cells, _COLUMNS))


_QUEUE = f"COALESCE(queue, '{DEFAULT_QUEUE}')"


def _queue_where(queue: str | None, binds: dict[str, Any], column: str = "queue") -> str:
    """Rows of `queue` (a NULL QUEUE is the default queue's), or every row."""
    if queue is None:
        return "1 = 1"
    binds["qname"] = queue
    if queue == DEFAULT_QUEUE and column == "queue":
        return "(queue = :qname OR queue IS NULL)"
    return f"{column} = :qname"


def _statuses(values: Sequence[str], binds: dict[str, Any], prefix: str) -> str:
    names = []
    for i, value in enumerate(values):
        binds[f"{prefix}{i}"] = value
        names.append(f":{prefix}{i}")
    return f"status IN ({', '.join(names)})"


def _bucket_case(edges: Sequence[Any], binds: dict[str, Any]) -> str:
    """The time bucket of START_TIME, 0 (oldest) .. len(edges): comparisons
    with bound times, so no backend needs date arithmetic."""
    whens = []
    for i in range(len(edges), 0, -1):
        binds[f"b{i}"] = edges[i - 1]
        whens.append(f"WHEN start_time >= :b{i} THEN {i}")
    return f"CASE {' '.join(whens)} ELSE 0 END" if whens else "0"


def bucket_edges(since: dt.datetime, now: dt.datetime, buckets: int) -> list[dt.datetime]:
    """The starts of buckets 1 .. buckets-1 of [since, now]."""
    step = (now - since) / buckets
    return [since + step * i for i in range(1, buckets)]


def frame_sql(backend: Database, *, now: dt.datetime, since: dt.datetime,
              queue: str | None) -> tuple[str, dict[str, Any]]:
    """The one statement of a frame, and its binds."""
    t = backend.to_db_time
    binds: dict[str, Any] = {"now": t(now), "since": t(since), "st_queued": JobStatus.QUEUED.value,
                             "st_running": JobStatus.RUNNING.value,
                             "st_completed": JobStatus.COMPLETED.value, "nf": FAILURES}
    in_queue = _queue_where(queue, binds)
    queued = "status = :st_queued"
    count = "SUM(CASE WHEN {} THEN 1 ELSE 0 END)".format
    # the running jobs first: a value of its own type in every column, so that
    # PostgreSQL, which types a UNION pair by pair, never meets NULL UNION NULL
    # (text) before the branch that gives a column its type
    branches = [
        _select("r", queue=_QUEUE, name="procedure_name", job_id="job_id", host="worker_host",
                status="status", extra="db_session", n1="progress", n2="worker_pid",
                n3="cancel_requested", n4="attempt", n5="timeout_s", n6="max_attempts",
                n7="priority", t1="start_time", t2="heartbeat_at",
                txt=f"CASE WHEN LENGTH(output) > {TEXT_SLICE} "
                    f"THEN SUBSTR(output, LENGTH(output) - {TEXT_SLICE - 1}) ELSE output END")
        + f" FROM {TABLE} WHERE status = :st_running AND {in_queue}",

        _select("q", queue="queue_name", n1="max_running", n2="paused")
        + f" FROM {QUEUES} WHERE {_queue_where(queue, binds, 'queue_name')}",

        _select("a", queue="qq",
                n1=count("status = :st_running"),
                n2=count("status = :st_running AND worker_host IS NOT NULL")
                + " + " + count(f"{queued} AND claim_token IS NOT NULL AND worker_host IS NOT NULL"),
                n3=count(queued),
                n4=count(f"{queued} AND claim_token IS NOT NULL"),
                n5=count(f"{queued} AND claim_token IS NULL AND not_before > :now"),
                n6=count(f"{queued} AND claim_token IS NULL AND (not_before IS NULL OR "
                         f"not_before <= :now) AND after_jobs IS NOT NULL"),
                n7=count(f"{queued} AND signature IS NULL"))
        + f""" FROM (SELECT {_QUEUE} AS qq, status, worker_host, claim_token, not_before,
                            CASE WHEN after_jobs IS NULL THEN NULL ELSE 1 END AS after_jobs,
                            CASE WHEN signature IS NULL THEN NULL ELSE 1 END AS signature
                       FROM {TABLE} WHERE status IN (:st_queued, :st_running) AND {in_queue}) a
             GROUP BY qq""",

        _select("w", queue="qq", name="procedure_name", n1="bucket",
                n2=count("status = :st_completed"),
                n3=count(_statuses(FAILED, binds, "sf")),
                n4="COUNT(*)",
                n5="SUM(CASE WHEN status = :st_completed THEN elapsed_s END)",
                n6="SUM(CASE WHEN status = :st_completed AND elapsed_s IS NOT NULL "
                   "THEN 1 ELSE 0 END)")
        + f""" FROM (SELECT {_QUEUE} AS qq, procedure_name, status, elapsed_s,
                            {_bucket_case([t(e) for e in bucket_edges(since, now, SPARK_BUCKETS)], binds)} AS bucket
                       FROM {TABLE}
                      WHERE start_time >= :since AND {_statuses(FINISHED, binds, 'sd')}
                        AND {in_queue}) w
             GROUP BY qq, procedure_name, bucket""",

        _select("p", name="procedure_name",
                n1=backend.percentile_sql(0.5, "elapsed_s"))
        + f""" FROM {TABLE}
             WHERE status = :st_completed AND start_time >= :since AND elapsed_s IS NOT NULL
               AND procedure_name IN (SELECT procedure_name FROM {TABLE}
                                       WHERE status = :st_running)
             GROUP BY procedure_name""",

        _select("f", queue="qq", name="procedure_name", job_id="job_id", status="status",
                t1="start_time", t2="end_time", txt="error_head")
        + f""" FROM (SELECT {_QUEUE} AS qq, procedure_name, job_id, status, start_time, end_time,
                            SUBSTR(error_msg, 1, {TEXT_SLICE}) AS error_head
                       FROM {TABLE}
                      WHERE {_statuses(FAILED, binds, 'sx')} AND start_time >= :since AND {in_queue}
                      ORDER BY start_time DESC {backend.limit_clause('nf')}) f""",
    ]
    return "\nUNION ALL\n".join(branches), binds


def _int(value: Any) -> int:
    return 0 if value is None else int(value)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if hasattr(value, "read"):  # an Oracle LOB, had fetch_lobs been left on
        value = value.read()
    return str(value)


def last_line(text: str) -> str:
    lines = [line for line in text.replace("\r", "\n").split("\n") if line.strip()]
    return lines[-1].strip() if lines else ""


def first_line(text: str) -> str:
    for line in text.replace("\r", "\n").split("\n"):
        if line.strip():
            return line.strip()
    return ""


def read_frame(backend: Database, conn: Any, lifecycle: Lifecycle, *, now: dt.datetime,
               since: dt.datetime, queue: str | None = None) -> Frame:
    """One frame of `jobctl top`: one statement; the caller commits. A running
    job whose worker looks gone is judged as `status` judges it (which asks
    the server about its session only then)."""
    sql, binds = frame_sql(backend, now=now, since=since, queue=queue)
    cur = backend.execute(conn, sql, binds)
    rows = [dict(zip(_COLUMNS, r)) for r in cur.fetchall()]
    return build_frame(backend, conn, lifecycle, rows, now=now, since=since, queue=queue)


def build_frame(backend: Database, conn: Any, lifecycle: Lifecycle, rows: list[dict[str, Any]],
                *, now: dt.datetime, since: dt.datetime, queue: str | None) -> Frame:
    configured: dict[str, tuple[int, bool]] = {}
    active: dict[str, dict[str, int]] = {}
    done: dict[str, list[int]] = {}
    procs: dict[str, dict[str, Any]] = {}
    typical: dict[str, float | None] = {}
    running: list[Job] = []
    texts: dict[str, str] = {}
    failures: list[FailureLine] = []
    for r in rows:
        kind = str(r["kind"]).strip()
        if kind == "q":
            configured[r["queue"]] = (DEFAULT_MAX_RUNNING if r["n1"] is None else _int(r["n1"]),
                                      bool(_int(r["n2"])))
        elif kind == "a":
            active[r["queue"]] = {"running": _int(r["n1"]), "slots": _int(r["n2"]),
                                  "queued": _int(r["n3"]), "starting": _int(r["n4"]),
                                  "later": _int(r["n5"]), "after": _int(r["n6"]),
                                  "foreign": _int(r["n7"])}
        elif kind == "w":
            counts = done.setdefault(r["queue"], [0, 0])
            counts[0] += _int(r["n4"])
            counts[1] += _int(r["n3"])
            p = procs.setdefault(r["name"], {"queues": set(), "finished": 0, "completed": 0,
                                             "failed": 0, "sum": [0.0] * SPARK_BUCKETS,
                                             "n": [0] * SPARK_BUCKETS})
            p["queues"].add(r["queue"])
            p["finished"] += _int(r["n4"])
            p["completed"] += _int(r["n2"])
            p["failed"] += _int(r["n3"])
            bucket = min(max(_int(r["n1"]), 0), SPARK_BUCKETS - 1)
            p["sum"][bucket] += _float(r["n5"]) or 0.0
            p["n"][bucket] += _int(r["n6"])
        elif kind == "p":
            typical[r["name"]] = _float(r["n1"])
        elif kind == "r":
            job = Job(job_id=r["job_id"], status=JobStatus.RUNNING, procedure_name=r["name"],
                      start_time=backend.from_db_time(r["t1"]), progress=_float(r["n1"]) or 0.0,
                      worker_host=r["host"], worker_pid=None if r["n2"] is None else _int(r["n2"]),
                      heartbeat_at=backend.from_db_time(r["t2"]),
                      cancel_requested=bool(_int(r["n3"])),
                      attempt=None if r["n4"] is None else _int(r["n4"]), timeout_s=_float(r["n5"]),
                      max_attempts=None if r["n6"] is None else _int(r["n6"]),
                      priority=_int(r["n7"]),
                      db_session=r["extra"], queue=r["queue"] or DEFAULT_QUEUE)
            running.append(job)
            texts[job.job_id] = last_line(_text(r["txt"]))
        elif kind == "f":
            failures.append(FailureLine(
                job_id=r["job_id"], procedure=r["name"], queue=r["queue"] or DEFAULT_QUEUE,
                status=str(r["status"]), start_time=backend.from_db_time(r["t1"]),
                end_time=backend.from_db_time(r["t2"]), first_line=first_line(_text(r["txt"]))))
    names = set(configured) | set(active) | set(done)
    if queue is None:
        names.add(DEFAULT_QUEUE)  # as `queue list`: always there
    elif queue in configured or queue in active or queue in done:
        names = {queue}
    queues = []
    for name in sorted(names):
        limit, paused = configured.get(name, (DEFAULT_MAX_RUNNING, False))
        finished, failed = done.get(name, [0, 0])
        queues.append(QueueLine(name, limit, paused, done=finished, failed=failed,
                                **active.get(name, {})))
    judged = [lifecycle.judge(conn, job, now) for job in running]
    judged.sort(key=lambda j: (j.start_time or now, j.job_id))
    procedures = []
    for name, p in procs.items():
        spark = tuple(p["sum"][i] / p["n"][i] if p["n"][i] else None for i in range(SPARK_BUCKETS))
        procedures.append(ProcedureLine(name, tuple(sorted(p["queues"])), p["finished"],
                                        p["completed"], p["failed"], spark))
    procedures.sort(key=lambda p: (-p.finished, p.name))
    return Frame(now=now, since=since, queues=tuple(queues),
                 running=tuple(RunningLine(j, typical.get(j.procedure_name), texts[j.job_id])
                               for j in judged),
                 failures=tuple(sorted(failures, key=lambda f: f.start_time or now, reverse=True)),
                 procedures=tuple(procedures), queue_filter=queue)


# -- stats --chart ------------------------------------------------------------------------

@dataclass(frozen=True)
class Chart:
    """What `stats --chart` draws, over the jobs `stats` counted."""

    #: upper edges (seconds) of the duration buckets; the last bucket is open
    edges: tuple[float, ...]
    #: completed runs per duration bucket (len(edges) + 1)
    durations: tuple[int, ...]
    #: (local day start, completed, failed) per day, oldest first
    days: tuple[tuple[dt.datetime, int, int], ...]


def chart_sql(backend: Database, *, since: dt.datetime | None,
              procedure: ProcedureFilter | None, days: Sequence[dt.datetime],
              edges: Sequence[float]) -> tuple[str, dict[str, Any]]:
    """Per (day, duration bucket, status): the completed and failed jobs
    among those `stats` counts (its procedure filter and window)."""
    binds: dict[str, Any] = {"st_completed": JobStatus.COMPLETED.value,
                             "st_failed": JobStatus.FAILED.value}
    conditions = [procedure.where(binds)] if procedure else []
    if since is not None:
        conditions.append("start_time >= :since")
        binds["since"] = backend.to_db_time(since)
    day_case = ["CASE"]
    for i in range(len(days) - 1, -1, -1):
        binds[f"d{i}"] = backend.to_db_time(days[i])
        day_case.append(f"WHEN start_time >= :d{i} THEN {i}")
    day_case.append("ELSE -1 END")
    dur_case = ["CASE WHEN elapsed_s IS NULL THEN NULL"]
    for i, edge in enumerate(edges):
        binds[f"e{i}"] = edge
        dur_case.append(f"WHEN elapsed_s < :e{i} THEN {i}")
    dur_case.append(f"ELSE {len(edges)} END")
    where = " AND ".join([*conditions, "status IN (:st_completed, :st_failed)"])
    return f"""
        SELECT day_no, bucket_no, status, COUNT(*)
          FROM (SELECT {' '.join(day_case)} AS day_no,
                       CASE WHEN status = :st_completed THEN {' '.join(dur_case)} END AS bucket_no,
                       status
                  FROM {TABLE} WHERE {where}) c
         GROUP BY day_no, bucket_no, status""", binds


def read_chart(backend: Database, conn: Any, *, since: dt.datetime | None,
               procedure: ProcedureFilter | None, days: Sequence[dt.datetime],
               edges: Sequence[float]) -> Chart:
    """`stats --chart`: one statement over stats' own filter; the caller commits."""
    sql, binds = chart_sql(backend, since=since, procedure=procedure, days=days, edges=edges)
    cur = backend.execute(conn, sql, binds)
    durations = [0] * (len(edges) + 1)
    per_day = [[0, 0] for _ in days]
    for day, bucket, status, n in cur.fetchall():
        n = _int(n)
        completed = str(status) == JobStatus.COMPLETED.value
        if completed and bucket is not None:
            durations[_int(bucket)] += n
        if day is not None and 0 <= _int(day) < len(days):
            per_day[_int(day)][0 if completed else 1] += n
    return Chart(tuple(edges), tuple(durations),
                 tuple((d, c, f) for d, (c, f) in zip(days, per_day)))


#: the upper edges of the duration buckets of `stats --chart` (seconds): 1-2-5
#: steps up to a minute, then the clock's own; the chart shows the span of
#: buckets that hold runs
DURATION_STEPS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600,
                  1200, 1800, 3600, 7200, 14400, 28800, 86400, 172800, 604800)
#: per-day bars for the last this many days at most
CHART_DAYS = 31


def chart_days(now: dt.datetime, since_s: float | None) -> tuple[dt.datetime, ...]:
    """The local midnights (as aware UTC times) that start each day of the
    window, oldest first: the window's days, the last CHART_DAYS at most."""
    local = now.astimezone()
    today = local.replace(hour=0, minute=0, second=0, microsecond=0)
    span = CHART_DAYS if since_s is None else min(CHART_DAYS, int(since_s // 86400) + 1)
    out = []
    for back in range(span - 1, -1, -1):
        # a day's midnight, its offset recomputed for that day (DST)
        day = (today - dt.timedelta(days=back)).replace(tzinfo=None).astimezone()
        out.append(day.astimezone(dt.timezone.utc))
    return tuple(out)
