"""Submitting: a job checked (procedure, values, placing) before anything
is written, written `queued`, then a worker started for its queue's free slot."""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import jsontext
from . import params as params_mod
from . import store
from .errors import JobctlError, NotFound, UsageError
from .launcher import Launcher
from .lookup import Lookup, split_form
from .model import MAX_DURATION_S, JobStatus, utcnow
from .session import Service, Session


@dataclass(frozen=True)
class Submitted:
    job_id: str
    created: bool  # False: `--unique` found the same work already queued or running


class Submitter(Service):
    def __init__(self, session: Session, launcher: Launcher, lookup: Lookup):
        super().__init__(session)
        self.launcher = launcher
        self.lookup = lookup

    def submit(self, procedure: str, given: dict[str, Any], *, timeout_s: float | None = None,
               retries: int = 0, unique: bool = False, submitted_by: str | None = None,
               queue: str | None = None, priority: int = 0, after: Sequence[str] = (),
               at: str | None = None, in_: str | None = None, atomic: bool = False) -> Submitted:
        """Write the job `queued`; when its queue has a free slot, start a
        worker for the next eligible job (see Queues in the README)."""
        placing = placing_of(queue=queue, priority=priority, at=at, in_=in_)
        bare, form = split_form(procedure)
        name = self.backend.normalize_name(bare)
        check_run_options(timeout_s, retries)
        with self.db() as conn:
            sig = self.lookup.resolve_for_submit(conn, name, [given], form)
            values = params_mod.bind(sig, given)
            # every value as the server's own types take it (range, enum,
            # domain CHECK, length), without side effects, before any row
            self.backend.check_values(conn, sig, values)
            placing["after_jobs"] = self.dependencies(conn, after)
            require_queue(self.backend, conn, placing["queue"])
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
                                       submitted_by=submitted_by or submitter_name(),
                                       unique_key=unique_key,
                                       signature_json=jsontext.dumps(sig.record()),
                                       atomic=atomic, **placing)
                conn.commit()
            except Exception as exc:
                if unique and self.backend.is_unique_violation(exc):
                    conn.rollback()  # another submit won the race: report its job
                    if found := already_active():
                        return found
                raise
            self.settle_ended_dependencies(conn, placing["after_jobs"])
        self.launcher.start_workers([placing["queue"]])
        self.launcher.wake_later(placing["queue"], placing["not_before"])
        return Submitted(job_id, created=True)

    def submit_many(self, procedure: str, lines: Sequence[str], *, timeout_s: float | None = None,
                    retries: int = 0, submitted_by: str | None = None, queue: str | None = None,
                    priority: int = 0, after: Sequence[str] = (), at: str | None = None,
                    in_: str | None = None, atomic: bool = False) -> list[str]:
        """--params-file: one JSON object of parameters per line. Every line
        is checked first (a bad one: UsageError naming it, nothing written),
        then all rows go in one transaction; workers start for the free slots."""
        placing = placing_of(queue=queue, priority=priority, at=at, in_=in_)
        bare, form = split_form(procedure)
        name = self.backend.normalize_name(bare)
        check_run_options(timeout_s, retries)
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

        with self.db() as conn:
            sig = self.lookup.resolve_for_submit(conn, name, [g for _, g in given_per_line], form)
            rows = []
            now = utcnow()
            who = submitted_by or submitter_name()
            signature_json = jsontext.dumps(sig.record())
            placing["after_jobs"] = self.dependencies(conn, after)
            require_queue(self.backend, conn, placing["queue"])
            for number, given in given_per_line:
                try:
                    values = params_mod.bind(sig, given)
                    self.backend.check_values(conn, sig, values)
                except JobctlError as exc:
                    raise UsageError(f"--params-file line {number}: {exc.message}") from None
                rows.append(dict(job_id=uuid.uuid4().hex, procedure_name=sig.name, now=now,
                                 params_json=params_mod.params_json(values), timeout_s=timeout_s,
                                 max_attempts=retries + 1, submitted_by=who, unique_key=None,
                                 signature_json=signature_json, atomic=atomic, **placing))
            conn.commit()
            self.lifecycle.enqueue_many(conn, rows)
            conn.commit()
            self.settle_ended_dependencies(conn, placing["after_jobs"])
        self.launcher.start_workers([placing["queue"]])
        self.launcher.wake_later(placing["queue"], placing["not_before"])
        return [r["job_id"] for r in rows]

    def dependencies(self, conn: Any, after: Sequence[str]) -> tuple[str, ...]:
        """--after: each id (or unique prefix) must name an existing job (exit
        3); naming one twice is refused (exit 2). A new job cannot close a
        cycle: no existing job can wait for an id that does not exist yet."""
        refs = [r.strip().lower() for chunk in after for r in chunk.split(",") if r.strip()]
        ids: list[str] = []
        for ref in refs:
            job = self.session.find(conn, ref)
            if job.job_id in ids:
                raise UsageError(f"--after names job {job.job_id} twice")
            ids.append(job.job_id)
        return tuple(ids)

    def settle_ended_dependencies(self, conn: Any, after: Sequence[str]) -> None:
        """A dependency that already ended without completing: the new jobs
        waiting for it end `cancelled` at once (as they would have, had it
        ended after the submit)."""
        if not after:
            return
        for dep, status in store.dependency_statuses(self.backend, conn, after).items():
            if status.finished and status is not JobStatus.COMPLETED:
                self.lifecycle.cancel_dependents(conn, dep, status)
        conn.commit()


def check_run_options(timeout_s: float | None, retries: int) -> None:
    if retries < 0:
        raise UsageError("--retries must be 0 or more")
    if timeout_s is not None and not 0 < timeout_s <= MAX_DURATION_S:  # also refuses nan
        raise UsageError(f"--timeout must be more than 0 and at most {MAX_DURATION_S:g} s")


def placing_of(*, queue: str | None, priority: int, at: str | None,
             in_: str | None) -> dict[str, Any]:
    """Queue, priority and start time, checked before any connection."""
    queue = check_queue_name(queue or store.DEFAULT_QUEUE)
    if not -1_000_000 <= priority <= 1_000_000:
        raise UsageError("--priority must be from -1000000 to 1000000")
    return {"queue": queue, "priority": priority, "not_before": start_time(at=at, in_=in_)}


def submitter_name() -> str:
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


def require_queue(backend: Any, conn: Any, name: str) -> None:
    """NotFound (exit 3), with the nearest names, unless queue `name`
    exists: a typo must not make an unlimited twin of a queue whose limit
    protects the database (pueue and Slurm refuse unknown groups and
    partitions alike). `queue set` is what creates a queue."""
    if store.queue_exists(backend, conn, name):
        return
    import difflib

    names = [q.name for q in store.list_queues(backend, conn)]
    conn.commit()
    near = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    maybe = f" (did you mean {' or '.join(near)}?)" if near else " (`jobctl queue list` shows them)"
    raise NotFound(f"no queue {name!r}{maybe}; `jobctl queue set {name} --max-running N` creates it")


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
