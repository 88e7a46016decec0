"""The shape of ASYNC_JOBS in Python: its columns selected, rows read back
into `Job`, times bound, and every statement run with the status names it
refers to (`:st_running`, ...) bound from JobStatus."""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..jsontext import loads
from ..model import COLUMNS, Job, JobStatus

if TYPE_CHECKING:
    from ..backends.base import Database

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
DEFAULT_QUEUE = "default"
#: a queue without a JOB_QUEUES row (or with MAX_RUNNING NULL) runs this many at once
DEFAULT_MAX_RUNNING = 4
SELECT_JOBS = f"SELECT {', '.join(COLUMNS)} FROM {TABLE}"


def execute(backend: Database, conn: Any, sql: str, binds: dict[str, Any] | None = None):
    """execute() with the status names the statement refers to (`:st_running`,
    ...) bound from JobStatus, so no status is spelled twice. Only the ones
    used are bound: Oracle refuses binds a statement does not name."""
    return backend.execute(conn, sql, {**(binds or {}), **status_binds(sql)})


def status_binds(sql: str) -> dict[str, str]:
    """The status names `sql` refers to (`:st_running`, ...), bound."""
    return dict(_status_pairs(sql))


@functools.lru_cache(maxsize=512)
def _status_pairs(sql: str) -> tuple[tuple[str, str], ...]:
    # a pool runs the same few statements for every job: each is looked at once
    return tuple((name, value) for placeholder, name, value in _STATUS_BINDS if placeholder in sql)


#: (":st_running", "st_running", "running") for each status, once
_STATUS_BINDS = tuple((f":st_{s.value}", f"st_{s.value}", s.value) for s in JobStatus)


def dict_rows(backend: Database, cur) -> list[dict[str, Any]]:
    names = [d[0].lower() for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


def job_rows(backend: Database, cur) -> list[Job]:
    """The jobs a statement selecting COLUMNS returned. Named by COLUMNS, not
    by the cursor's description: building that costs more than the row (a
    pool reads one per job)."""
    return [row_to_job(backend, dict(zip(COLUMNS, row))) for row in cur.fetchall()]


def read_text(value: Any) -> str | None:
    if value is None:
        return None
    if hasattr(value, "read"):  # an Oracle LOB when fetch_lobs was not turned off
        value = value.read()
    return str(value)


def _read_json(value: Any) -> Any:
    text = read_text(value)
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
        error_msg=read_text(row.get("error_msg")),
        progress=int(progress) if progress == int(progress) else progress,
        created_at=backend.from_db_time(row.get("created_at")),
        params=_read_json(row.get("params")),
        elapsed_s=_num(row.get("elapsed_s")),
        output=read_text(row.get("output")),
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
        after_jobs=tuple(split_ids(read_text(row.get("after_jobs")))),
        db_error_code=row.get("db_error_code"),
        committed_inside=(None if row.get("committed_inside") is None
                          else bool(row["committed_inside"])),
        atomic=bool(row.get("atomic")),
    )


def split_ids(text: str | None) -> list[str]:
    """AFTER_JOBS holds job ids separated by commas."""
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def beat_value(backend: Database, binds: dict[str, Any], now: dt.datetime) -> str:
    """What a heartbeat (HEARTBEAT_AT of a job or a pool) is written with:
    the database server's clock, which the lost rule reads too (the hosts'
    clocks differ), or `now` bound as `:now` where there is one host
    (SQLite)."""
    clock = backend.clock_sql()
    if clock is not None:
        return clock
    binds["now"] = bind_time(backend, now)
    return ":now"


def bind_time(backend: Database, value: dt.datetime | None) -> Any:
    return None if value is None else backend.to_db_time(value)
