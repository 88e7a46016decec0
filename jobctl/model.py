"""Plain data: job status, the job row, procedure signatures, durations."""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from .errors import UsageError


class JobStatus(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    LOST = "lost"
    #: worker gone, its database session still running the call: shown by
    #: reading commands, never stored (the row keeps saying running)
    ORPHANED = "orphaned"

    @property
    def finished(self) -> bool:
        return self not in (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.ORPHANED)

    def __str__(self) -> str:
        return self.value


FINISHED_STATUSES = tuple(s for s in JobStatus if s.finished)


class PoolState(str, Enum):
    """A `jobctl worker` pool's state in JOB_WORKERS (gone: judged, never stored)."""
    RUNNING = "running"
    STOPPING = "stopping"
    GONE = "gone"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Job:
    """One ASYNC_JOBS row. Times are timezone-aware UTC datetimes."""

    job_id: str
    status: JobStatus
    procedure_name: str
    start_time: dt.datetime | None
    end_time: dt.datetime | None = None
    duration: str | None = None
    result: dict | None = None
    error_msg: str | None = None
    progress: float = 0
    created_at: dt.datetime | None = None
    params: dict | None = None
    elapsed_s: float | None = None
    output: str | None = None
    worker_host: str | None = None
    worker_pid: int | None = None
    heartbeat_at: dt.datetime | None = None
    cancel_requested: bool = False
    timeout_s: float | None = None
    attempt: int | None = None
    max_attempts: int | None = None
    submitted_by: str | None = None
    unique_key: str | None = None
    #: what submit resolved (canonical name, overload, signature fingerprint),
    #: so the worker runs exactly what was validated
    signature: dict | None = None
    #: the claiming worker's token: the final write is guarded by it
    claim_token: str | None = None
    #: the database session running the call (PostgreSQL backend pid,
    #: Oracle SID,SERIAL#,@INST_ID), recorded at claim
    db_session: str | None = None
    #: the queue whose limit the job counts against (NULL in old rows: default)
    queue: str = "default"
    #: claims within a queue take the highest first
    priority: int = 0
    #: not claimed before this time (--at / --in)
    not_before: dt.datetime | None = None
    #: ids of jobs that must complete first (--after)
    after_jobs: tuple[str, ...] = ()
    #: the database's own code of the error that ended the job (SQLSTATE,
    #: ORA-nnnnn), when it gave one
    db_error_code: str | None = None
    #: the call committed inside its own transaction: True, False, or None
    #: when unknown (a row written before jobctl recorded it, a backend that
    #: cannot tell); such work stays whatever the job's outcome
    committed_inside: bool | None = None
    #: `submit --atomic`: all or nothing, a COMMIT inside the procedure refused
    atomic: bool = False
    #: why a queued job has not started (computed, never stored)
    waiting_for: str | None = None
    #: True when the row says `running` but the worker is gone; the status
    #: field then already reads LOST, this keeps the stored value knowable.
    lost_detected: bool = False
    #: a `running` row that no jobctl worker claimed (no WORKER_HOST): written
    #: by another application, so jobctl can neither judge nor write it
    external: bool = False
    #: why the reading command shows LOST or ORPHANED instead of the stored status
    status_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: snake_case keys, ISO 8601 times with offset."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if isinstance(value, dt.datetime):
                value = value.isoformat()
            elif isinstance(value, Enum):
                value = value.value
            elif isinstance(value, tuple):
                value = list(value)
            out[name] = value
        return out


# Type families that coercion understands. Each backend maps its own type
# names (NUMBER, numeric, VARCHAR2, timestamptz, ...) onto one of these.
NUMBER, INTEGER, TEXT, DATE, TIMESTAMP, BOOLEAN, JSON, UNSUPPORTED = (
    "number", "integer", "text", "date", "timestamp", "boolean", "json", "unsupported",
)


@dataclass(frozen=True)
class Param:
    name: str                 # as the database spells it
    type_name: str            # the database's own type name, for `describe`
    kind: str                 # one of the families above
    mode: str = "IN"          # IN, OUT, IN/OUT
    defaulted: bool = False
    array: bool = False       # PostgreSQL arrays of the family
    #: PostgreSQL VARIADIC: the last input, an array, passed as a JSON array
    #: or a repeated `-p name=...`
    variadic: bool = False

    @property
    def positional(self) -> bool:
        """An unnamed parameter, named "$1", "$2"... by its position."""
        return self.name.startswith("$")

    @property
    def is_input(self) -> bool:
        return self.mode in ("IN", "IN/OUT")

    @property
    def is_output(self) -> bool:
        return self.mode in ("OUT", "IN/OUT")

    @property
    def shown_type(self) -> str:
        """The type as `describe` shows it: `text[]`, `VARIADIC text[]`."""
        text = self.type_name + ("[]" if self.array and not self.type_name.endswith("]") else "")
        return f"VARIADIC {text}" if self.variadic else text

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "type": self.type_name, "mode": self.mode,
               "defaulted": self.defaulted}
        if self.variadic:
            out["variadic"] = True
        return out


def param_key(name: str) -> str:
    """A parameter name as given, compared: case-insensitive, and `1` is
    the positional parameter `$1`."""
    text = name.strip()
    if text.isdigit():
        text = "$" + str(int(text))
    return text.casefold()


@dataclass(frozen=True)
class Signature:
    """One callable procedure (one overload, when the database has several)."""

    name: str                 # normalised, as stored in PROCEDURE_NAME
    params: tuple[Param, ...] = ()
    overload: str | None = None
    extra: dict = field(default_factory=dict, compare=False)  # backend's own data

    def param(self, name: str) -> Param | None:
        wanted = param_key(name)
        for p in self.params:
            if p.name.casefold() == wanted:
                return p
        return None

    @property
    def form(self) -> str:
        """The signature form that names this overload, as psql's \\df and
        ALL_ARGUMENTS show it: the name and its inputs' types,
        `ops.touch(integer)`, `PKG.PROC(NUMBER, VARCHAR2)`. Typed as the
        procedure's name, it picks this overload (lookup.choose)."""
        types = [p.shown_type for p in self.params if p.is_input]
        return f"{self.name}({', '.join(types)})"

    @property
    def shape(self) -> list[str]:
        """The parameters as one line each, for messages: `va numeric IN`."""
        return [f"{p.name} {p.shown_type} {p.mode}"
                + (" DEFAULT" if p.defaulted else "") for p in self.params]

    @functools.cached_property
    def fingerprint(self) -> str:
        """Changes when what a call binds could change: the parameters' names,
        types, modes and defaults, and the overload chosen. The worker compares
        it with the one submit recorded before it calls anything."""
        import hashlib
        import json

        text = json.dumps([self.overload, [[p.name.casefold(), p.type_name, p.kind, p.mode,
                                            p.defaulted, p.array]
                                           + (["variadic"] if p.variadic else [])
                                           for p in self.params]])
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def record(self) -> dict[str, Any]:
        """What the SIGNATURE column keeps for the worker."""
        return {"name": self.name, "overload": self.overload, "fingerprint": self.fingerprint,
                "params": self.shape, "form": self.form}

    def changes_since(self, recorded: dict[str, Any] | None) -> str | None:
        """None when this is what submit recorded; else why it is not."""
        if not recorded or recorded.get("fingerprint") in (None, self.fingerprint):
            return None
        was, now = recorded.get("params") or [], self.shape
        if recorded.get("overload") != self.overload:
            why = f"overload was {recorded.get('overload')}, now {self.overload}"
        else:
            why = f"parameters were ({', '.join(was)}), now ({', '.join(now)})"
        return f"procedure {recorded.get('name') or self.name} changed since submit: {why}"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def format_duration(seconds: float | None) -> str | None:
    """Human form as in the original table: `0.25s`, `1m30.25s`, `2h05m03.00s`."""
    if seconds is None:
        return None
    seconds = max(0.0, float(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours >= 1:
        return f"{int(hours)}h{int(minutes):02d}m{secs:05.2f}s"
    if minutes >= 1:
        return f"{int(minutes)}m{secs:05.2f}s"
    return f"{secs:.2f}s"


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


MAX_DURATION_S = 36500 * 86400.0


def parse_duration(text: str, *, option: str = "duration") -> float:
    """`90`, `30s`, `1m30s`, `2h`, `7d` → seconds. Bare numbers are seconds."""
    raw = text.strip().lower()
    try:
        value = float(raw)
    except ValueError:
        pos, total = 0, 0.0
        for m in _DURATION_PART.finditer(raw):
            if m.start() != pos:
                break
            total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
            pos = m.end()
        if pos != len(raw) or not raw:
            raise UsageError(
                f"invalid {option} {text!r}: use a number of seconds or units like 30s, 10m, 2h, 7d"
            ) from None
        value = total
    if value != value or value < 0 or value == float("inf"):
        raise UsageError(f"invalid {option} {text!r}: must be a non-negative number")
    if value > MAX_DURATION_S:  # past this, date arithmetic overflows
        raise UsageError(f"invalid {option} {text!r}: at most {MAX_DURATION_S / 86400:g}d (100 years)")
    return value


#: the columns of ASYNC_JOBS jobctl reads and writes, in the order it selects them
COLUMNS = (
    "job_id", "status", "procedure_name", "start_time", "end_time", "duration", "result",
    "error_msg", "progress", "created_at", "params", "elapsed_s", "output", "worker_host",
    "worker_pid", "heartbeat_at", "cancel_requested", "timeout_s", "attempt", "max_attempts",
    "submitted_by", "unique_key", "signature", "claim_token", "db_session",
    "queue", "priority", "not_before", "after_jobs", "db_error_code", "committed_inside",
    "atomic",
)


#: what CallContext.snapshot appends when a job's output reached its cap
OUTPUT_TRUNCATED_MARK = "[output truncated by jobctl]"


def output_lines(text: str | None) -> tuple[list[str], bool]:
    """A job's OUTPUT as lines, and whether jobctl capped it (the cap's
    marker line is not one of the procedure's lines)."""
    if not text:
        return [], False
    lines = text.split("\n")
    if lines[-1] == OUTPUT_TRUNCATED_MARK:
        return lines[:-1], True
    return lines, False
