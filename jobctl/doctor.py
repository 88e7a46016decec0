"""`jobctl doctor`: prove, against the user's real database, that jobctl works
there, and say what to do where it does not.

Every check yields a `Check` (name, result, detail, remedy). Results are `ok`,
`warn` (works, with a caveat), `fail` (jobctl will not work as documented) and
`skip` (a check this one depends on failed, so it could not run). The set of
check names is fixed per backend, so a script can look one up by name.

Doctor writes nothing but its own rows: a probe row inside a transaction that
is rolled back, and demo jobs tagged `submitted_by = 'jobctl-doctor@<host>'`
that it deletes by job id when it is done, whatever happened.

The catalog SQL each backend needs lives here (SQLite, PostgreSQL) and in
`backends/oracle/checks.py` (Oracle), as named constants, like the backends'
own catalog queries.
"""

from __future__ import annotations

import datetime as dt
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from typing import Any

from . import __version__, store
from .config import Settings, config_path
from .errors import JobctlError, JobsUnfinished, NotFound
from .lifecycle import Lifecycle
from .model import Job, JobStatus, utcnow

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
RESULTS = (OK, WARN, FAIL, SKIP)

#: the exact round trip: 23 significant digits, more than a float holds
EXACT_A = "12345678901234567890.123"
EXACT_B = "0.1"
EXACT_SUM = Decimal("12345678901234567890.223")

#: how long a demo job may take to be claimed and finish on a healthy system
ROUND_TRIP_TIMEOUT_S = 30.0
#: DEMO_SLEEP length for the progress check: long enough that progress shows
#: at least twice before the end
PROGRESS_SLEEP_S = 3
#: DEMO_SLEEP length for the cancel check; cancel must end it long before
CANCEL_SLEEP_S = 60
#: doctor's own workers heartbeat this often at most, so that live progress
#: and cancel show within a second; it tests the mechanism, not the interval
DOCTOR_HEARTBEAT_S = 0.25
DOCTOR_POLL_S = 0.1

#: the probe row's procedure name; never a real procedure
PROBE_PROCEDURE = "JOBCTL_DOCTOR_PROBE"

INDEXES = ("ix_async_jobs_status", "ix_async_jobs_start", "ix_async_jobs_proc_start",
           "ux_async_jobs_unique_active")

DELETE_JOB_SQL = "DELETE FROM ASYNC_JOBS WHERE job_id = :job_id"

COMMON_CHECKS = ("connect", "time_zone", "table", "indexes", "privileges", "helper_objects",
                 "demo_procedures", "round_trip", "exact_values", "progress_output", "cancel")


@dataclass(frozen=True)
class Check:
    name: str
    result: str
    detail: str
    remedy: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "result": self.result, "detail": self.detail,
                "remedy": self.remedy}


@dataclass(frozen=True)
class Report:
    context: dict[str, Any]
    checks: tuple[Check, ...]

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.result == FAIL]

    def to_dict(self) -> dict[str, Any]:
        return {"context": self.context, "ok": not self.failed,
                "checks": [c.to_dict() for c in self.checks]}


@dataclass(frozen=True)
class Catalog:
    """What doctor asks a backend's catalog. `identity_sql` returns one row
    (who, where); `timezone_sql` one row (session zone, the server's UTC
    now) or is None where there is no session zone; `indexes_sql` the index
    names on ASYNC_JOBS; `helpers_sql` rows (NAME, STATUS) of the helper
    objects found, from `helpers` (name → what it is for)."""

    version_sql: str | None
    identity_sql: str | None
    timezone_sql: str | None
    utc_zones: tuple[str, ...]
    indexes_sql: str
    helpers_sql: str
    helpers: dict[str, str]
    grant_remedy: str
    connect_remedy: str
    server_version: Callable[[Any], str] | None = None


SQLITE = Catalog(
    version_sql="SELECT 'SQLite ' || sqlite_version()",
    identity_sql=None,
    timezone_sql=None,
    utc_zones=(),
    indexes_sql="SELECT lower(name) FROM sqlite_master "
                "WHERE type = 'index' AND lower(tbl_name) = 'async_jobs'",
    helpers_sql="SELECT upper(name), 'VALID' FROM sqlite_master "
                "WHERE type = 'view' AND upper(name) = 'V_ASYNC_JOBS_RECENT'",
    helpers={"V_ASYNC_JOBS_RECENT": "view of the last 24 hours, for sqlite3 users"},
    grant_remedy="make the database file, and the directory it is in, writable by this user",
    connect_remedy="check the path in the DSN (sqlite:////absolute/path.db) and that this user "
                   "may read and write it",
)

POSTGRESQL = Catalog(
    version_sql="SELECT 'PostgreSQL ' || current_setting('server_version')",
    identity_sql="SELECT 'user ' || current_user || ', database ' || current_database()"
                 " || ', schema ' || COALESCE(current_schema(), '(none on the search_path)')",
    timezone_sql="SELECT current_setting('TimeZone'), now() AT TIME ZONE 'UTC'",
    utc_zones=("UTC", "Etc/UTC"),
    indexes_sql="""
        SELECT ic.relname
          FROM pg_catalog.pg_index i
          JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
         WHERE i.indrelid = to_regclass('async_jobs')""",
    helpers_sql="""
        SELECT upper(c.relname), 'VALID'
          FROM pg_catalog.pg_class c
         WHERE c.relkind = 'v' AND c.relname = 'v_async_jobs_recent'
           AND pg_catalog.pg_table_is_visible(c.oid)
        UNION ALL
        SELECT upper(p.proname), 'VALID'
          FROM pg_catalog.pg_proc p
         WHERE p.prokind = 'p' AND p.proname IN ('cleanup_old_async_jobs', 'jobctl_progress')
           AND pg_catalog.pg_function_is_visible(p.oid)""",
    helpers={"V_ASYNC_JOBS_RECENT": "view of the last 24 hours, for psql users",
             "CLEANUP_OLD_ASYNC_JOBS": "procedure for pg_cron / server-side cleanup",
             "JOBCTL_PROGRESS": "procedure a job calls to report progress"},
    grant_remedy="as the table's owner: GRANT SELECT, INSERT, UPDATE, DELETE ON async_jobs "
                 "TO {user}",
    connect_remedy="check host, port, database and user in the DSN, that the server accepts "
                   "this user from here (pg_hba.conf), and the password source",
)


def _catalog(backend_name: str) -> Catalog:
    if backend_name == "oracle":
        from .backends.oracle import checks as oracle_checks

        return oracle_checks.CATALOG
    return {"sqlite": SQLITE, "postgresql": POSTGRESQL}[backend_name]


def _tag() -> str:
    return f"jobctl-doctor@{os.uname().nodename}"[:128]


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _error_text(backend: Any, exc: BaseException) -> str:
    if isinstance(exc, JobctlError):
        return _one_line(exc.message)
    try:
        return _one_line(backend.translate_error(exc).message)
    except Exception:
        return _one_line(f"{type(exc).__name__}: {exc}")


class Doctor:
    """One run of the checks. `run()` returns the report; nothing raises."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.checks: list[Check] = []
        self.demo_ids: list[str] = []
        self.tag = _tag()
        self.jc: Any = None
        self.backend: Any = None
        self.conn: Any = None
        self.catalog = _catalog(settings.connection.scheme)

    # -- bookkeeping ---------------------------------------------------------------
    def add(self, name: str, result: str, detail: str, remedy: str = "") -> Check:
        check = Check(name, result, _one_line(detail), _one_line(remedy))
        self.checks.append(check)
        return check

    def skip(self, names, why: str) -> None:
        for name in names:
            self.add(name, SKIP, why)

    def context(self) -> dict[str, Any]:
        s = self.settings
        source = s.password_source
        backend_settings = self.backend.settings if self.backend is not None else None
        if source is None and backend_settings is not None and backend_settings.password is not None:
            source = "prompt"   # the backend asked on the terminal
        path = config_path()
        return {"jobctl_version": __version__, "backend": s.connection.scheme,
                "dsn": s.connection.display, "profile": s.profile_name,
                "config_file": str(path), "config_file_exists": path.exists(),
                "password_source": source}

    def _end_transaction(self) -> None:
        try:
            self.conn.rollback()
        except Exception:
            pass

    # -- the run -------------------------------------------------------------------
    def run(self) -> Report:
        try:
            self._run()
        except Exception as exc:  # a bug in a check must not hide the others' findings
            self.add("doctor", FAIL, f"internal error after the checks above: "
                     f"{type(exc).__name__}: {exc}", "report it with `jobctl doctor --format json`")
        finally:
            self._delete_demo_jobs()
            if self.jc is not None:
                self.jc.close()
        return Report(self.context(), tuple(self.checks))

    def _oracle_checks(self):
        if self.settings.connection.scheme != "oracle":
            return None
        from .backends.oracle import checks as oracle_checks

        return oracle_checks

    def _run(self) -> None:
        from .api import Jobctl

        oracle = self._oracle_checks()
        if oracle is not None:
            try:
                self.checks.append(oracle.driver_check())
            except Exception as exc:
                self.add("oracle_driver", FAIL, _error_text(self.backend, exc))
        tun = self.settings.tunables
        # doctor's own workers report quickly; the user's jobs keep their settings
        fast = replace(self.settings, tunables=replace(
            tun, heartbeat_s=min(tun.heartbeat_s, DOCTOR_HEARTBEAT_S),
            poll_s=min(tun.poll_s, DOCTOR_POLL_S)))
        rest = COMMON_CHECKS[1:] + (oracle.CHECKS if oracle else ())
        try:
            self.jc = Jobctl(fast)
            self.backend = self.jc.backend
            self.conn = self.jc.conn
        except ImportError as exc:
            self.add("connect", FAIL, f"the database driver is not installed: {exc}",
                     "pip install 'jobctl[postgresql]' (psycopg) or oracledb, as the DSN needs")
            return self.skip(rest, "needs a connection")
        except Exception as exc:
            self.add("connect", FAIL, _error_text(self.backend, exc), self.catalog.connect_remedy)
            return self.skip(rest, "needs a connection")
        self._connect_check()
        self._time_zone_check()
        table_ok = self._table_check()
        if table_ok:
            self._indexes_check()
            writable = self._privileges_check()
        else:
            self.skip(("indexes", "privileges"), "needs ASYNC_JOBS with all its columns")
            writable = False
        self._helpers_check()
        demos = self._demos_check()
        if not writable:
            self.skip(("round_trip", "exact_values", "progress_output", "cancel"),
                      "needs ASYNC_JOBS that this user can write" if table_ok
                      else "needs ASYNC_JOBS with all its columns")
        elif not demos:
            self.skip(("round_trip", "exact_values", "progress_output", "cancel"),
                      "needs the demo procedures (`jobctl db init --examples`)")
        else:
            self._round_trip_checks()
        if oracle is not None:
            self.checks.extend(oracle.checks(self.backend, self.conn, table_ok=table_ok,
                                             demos_ok=demos, tag=self.tag))

    # -- checks --------------------------------------------------------------------
    def _query(self, sql: str, binds: dict[str, Any] | None = None) -> list[tuple]:
        try:
            cur = self.backend.execute(self.conn, sql, binds)
            return [tuple(r) for r in cur.fetchall()]
        finally:
            self._end_transaction()

    def _connect_check(self) -> None:
        cat = self.catalog
        parts = []
        try:
            if cat.server_version is not None:
                parts.append(cat.server_version(self.conn))
            elif cat.version_sql:
                parts.append(str(self._query(cat.version_sql)[0][0]))
            if cat.identity_sql:
                parts.append(str(self._query(cat.identity_sql)[0][0]))
        except Exception as exc:
            parts.append(f"server version unknown: {_error_text(self.backend, exc)}")
        if self.settings.connection.scheme == "sqlite":
            parts.append(f"file {self.settings.connection.database}")
        self.add("connect", OK, "; ".join(parts))

    def _time_zone_check(self) -> None:
        cat = self.catalog
        if cat.timezone_sql is None:
            self.add("time_zone", OK, "no session time zone: jobctl stores times as UTC text")
            return
        try:
            zone, server_now = self._query(cat.timezone_sql)[0]
        except Exception as exc:
            self.add("time_zone", FAIL, _error_text(self.backend, exc))
            return
        zone = str(zone)
        detail = f"session time zone {zone}"
        result, remedy = OK, ""
        if zone not in cat.utc_zones:
            result = FAIL
            detail += " (jobctl sets UTC on every session it opens; it did not take effect)"
            remedy = "check for a logon trigger or connection option that resets the time zone"
        skew = None
        if isinstance(server_now, dt.datetime):
            server_utc = server_now.replace(tzinfo=dt.timezone.utc) if server_now.tzinfo is None \
                else server_now.astimezone(dt.timezone.utc)
            skew = (server_utc - utcnow()).total_seconds()
            detail += ("; server clock in step with this host's" if abs(skew) < 0.5
                       else f"; server clock {skew:+.1f} s from this host's")
        if skew is not None and abs(skew) > 30 and result == OK:
            result = WARN
            remedy = ("synchronise the clocks (NTP): heartbeats written by one host are judged "
                      "by another, and the server-side cleanup and view use the server's clock")
        self.add("time_zone", result, detail, remedy)

    def _table_check(self) -> bool:
        try:
            present = store.table_columns(self.backend, self.conn)
        except Exception as exc:
            self._end_transaction()
            if self.backend.is_missing_table(exc):
                self.add("table", FAIL, f"table ASYNC_JOBS not found in {self.settings.connection.display}",
                         "run `jobctl db init` (creates the table, its indexes and helper objects)")
            else:
                self.add("table", FAIL, f"cannot read ASYNC_JOBS: {_error_text(self.backend, exc)}",
                         self.catalog.grant_remedy.format(user=self._user()))
            return False
        self._end_transaction()
        missing = [c for c in store.COLUMNS if c not in present]
        if missing:
            self.add("table", FAIL,
                     f"ASYNC_JOBS lacks {len(missing)} column(s) jobctl needs: "
                     f"{', '.join(c.upper() for c in missing)}",
                     "run `jobctl db init` (adds the missing columns and indexes; existing rows "
                     "are kept)")
            return False
        self.add("table", OK, f"ASYNC_JOBS has all {len(store.COLUMNS)} columns jobctl uses")
        return True

    def _indexes_check(self) -> None:
        try:
            found = {str(r[0]).lower() for r in self._query(self.catalog.indexes_sql)}
        except Exception as exc:
            self.add("indexes", WARN, f"cannot read the index catalog: {_error_text(self.backend, exc)}")
            return
        missing = [i for i in INDEXES if i not in found]
        if not missing:
            self.add("indexes", OK, ", ".join(i.upper() for i in INDEXES))
            return
        why = []
        if "ux_async_jobs_unique_active" in missing:
            why.append("without UX_ASYNC_JOBS_UNIQUE_ACTIVE two `submit --unique` can both win")
        if len(missing) > len(why):
            why.append("list, stats and cleanup scan the whole table")
        self.add("indexes", WARN, f"missing {', '.join(m.upper() for m in missing)}: {'; '.join(why)}",
                 "run `jobctl db init` (creates only the missing indexes)")

    def _user(self) -> str:
        return self.settings.connection.user or "<this user>"

    def _privileges_check(self) -> bool:
        """A real INSERT, UPDATE and DELETE of a probe row, rolled back."""
        job_id = uuid.uuid4().hex
        step = "INSERT"
        try:
            jobs = Lifecycle(self.backend, self.settings.tunables)
            jobs.enqueue(self.conn, job_id=job_id, procedure_name=PROBE_PROCEDURE,
                         now=utcnow(), params_json="{}", timeout_s=None, max_attempts=1,
                         submitted_by=self.tag, unique_key=None)
            step = "UPDATE"
            updated = jobs.fail_unstarted(self.conn, job_id, utcnow(), "jobctl doctor probe")
            step = "DELETE"
            deleted = self.backend.execute(self.conn, DELETE_JOB_SQL, {"job_id": job_id}).rowcount
        except Exception as exc:
            self._end_transaction()
            self.add("privileges", FAIL,
                     f"{step} on ASYNC_JOBS refused: {_error_text(self.backend, exc)}",
                     self.catalog.grant_remedy.format(user=self._user()))
            return False
        self._end_transaction()
        if updated != 1 or deleted != 1:
            self.add("privileges", FAIL,
                     f"the probe row was not seen by UPDATE ({updated} rows) or DELETE ({deleted} rows);"
                     " a row-level security policy or trigger may hide jobctl's rows",
                     "let this user see and change all rows of ASYNC_JOBS")
            return False
        self.add("privileges", OK, "INSERT, UPDATE and DELETE on ASYNC_JOBS work (probe rolled back)")
        return True

    def _helpers_check(self) -> None:
        helpers = self.catalog.helpers
        try:
            rows = self._query(self.catalog.helpers_sql)
        except Exception as exc:
            self.add("helper_objects", WARN, f"cannot read the catalog: {_error_text(self.backend, exc)}")
            return
        status: dict[str, str] = {}
        for name, state in rows:
            name = str(name).upper()
            # a package is valid only when its body is too
            if status.get(name) != "INVALID":
                status[name] = str(state).upper()
        missing = [n for n in helpers if n not in status]
        invalid = [n for n in helpers if status.get(n) == "INVALID"]
        if not missing and not invalid:
            self.add("helper_objects", OK, ", ".join(helpers))
            return
        problems = [f"{n} missing ({helpers[n]})" for n in missing]
        problems += [f"{n} invalid (does not compile)" for n in invalid]
        self.add("helper_objects", WARN, "; ".join(problems),
                 "run `jobctl db init` (jobctl itself works without them)")

    def _demos_check(self) -> bool:
        missing = []
        for proc in ("SUMA_SIMPLE", "DEMO_SLEEP"):
            try:
                self.backend.resolve(self.conn, self.backend.normalize_name(proc), frozenset())
            except NotFound:
                missing.append(proc)
            except Exception as exc:
                self._end_transaction()
                self.add("demo_procedures", FAIL, f"cannot read the signature of {proc}: "
                         f"{_error_text(self.backend, exc)}")
                return False
            finally:
                self._end_transaction()
        if missing:
            self.add("demo_procedures", WARN,
                     f"{', '.join(missing)} not installed, so the real round trip through a worker "
                     "is not checked",
                     "run `jobctl db init --examples` (creates SUMA_SIMPLE, DEMO_SLEEP, DEMO_FAIL)")
            return False
        self.add("demo_procedures", OK, "SUMA_SIMPLE and DEMO_SLEEP found, signatures readable")
        return True

    # -- real jobs through the detached worker ----------------------------------------
    def _submit(self, proc: str, params: dict[str, str], timeout_s: float) -> str:
        job_id = self.jc.submit(proc, params, timeout_s=timeout_s, submitted_by=self.tag).job_id
        self.demo_ids.append(job_id)
        return job_id

    def _worker_hint(self) -> str:
        from .runner import log_path

        return f"see the worker log {log_path()} and `jobctl status <id>`"

    def _round_trip_checks(self) -> None:
        job = self._round_trip()
        self._exact_check(job)
        self._progress_check()
        self._cancel_check()

    def _round_trip(self) -> Job | None:
        started = time.monotonic()
        try:
            job_id = self._submit("SUMA_SIMPLE", {"vA": EXACT_A, "vB": EXACT_B}, ROUND_TRIP_TIMEOUT_S)
            job = self.jc.wait([job_id], timeout_s=ROUND_TRIP_TIMEOUT_S)[0]
        except JobsUnfinished:
            self.add("round_trip", FAIL,
                     f"SUMA_SIMPLE was still not finished after {ROUND_TRIP_TIMEOUT_S:g} s: the "
                     "detached worker did not start, claim or finish it", self._worker_hint())
            return None
        except Exception as exc:
            self.add("round_trip", FAIL, f"SUMA_SIMPLE: {_error_text(self.backend, exc)}",
                     self._worker_hint())
            return None
        took = time.monotonic() - started
        if job.status is not JobStatus.COMPLETED:
            self.add("round_trip", FAIL,
                     f"SUMA_SIMPLE ended {job.status.value}: {job.error_msg or 'no error recorded'}",
                     self._worker_hint())
            return None
        self.add("round_trip", OK, f"SUMA_SIMPLE ran in a detached worker (pid {job.worker_pid}) "
                 f"and completed; submit to result in {took:.1f} s")
        return job

    def _exact_check(self, job: Job | None) -> None:
        if job is None:
            self.add("exact_values", SKIP, "needs a completed round trip")
            return
        result = job.result or {}
        got = result.get("vresult")
        try:
            exact = got is not None and not isinstance(got, float) and Decimal(str(got)) == EXACT_SUM
        except InvalidOperation:
            exact = False
        if exact:
            self.add("exact_values", OK, f"{EXACT_A} + {EXACT_B} = {got}, exactly")
        else:
            self.add("exact_values", FAIL,
                     f"{EXACT_A} + {EXACT_B} came back as {got!r}, expected {EXACT_SUM}: "
                     "the value lost digits between the command line, the database and RESULT",
                     "report it (jobctl doctor --format json): NUMBER values must travel exactly")

    def _progress_check(self) -> None:
        seen: list[float] = []

        def on_poll(jobs: list[Job]) -> None:
            for j in jobs:
                if j.status is JobStatus.RUNNING and 0 < j.progress < 100:
                    seen.append(j.progress)

        try:
            job_id = self._submit("DEMO_SLEEP", {"p_seconds": str(PROGRESS_SLEEP_S)},
                                  ROUND_TRIP_TIMEOUT_S + PROGRESS_SLEEP_S)
            job = self.jc.wait([job_id], timeout_s=ROUND_TRIP_TIMEOUT_S + PROGRESS_SLEEP_S,
                               on_poll=on_poll)[0]
        except JobsUnfinished:
            self.add("progress_output", FAIL,
                     f"DEMO_SLEEP({PROGRESS_SLEEP_S}) did not finish in "
                     f"{ROUND_TRIP_TIMEOUT_S + PROGRESS_SLEEP_S:g} s", self._worker_hint())
            return
        except Exception as exc:
            self.add("progress_output", FAIL, f"DEMO_SLEEP: {_error_text(self.backend, exc)}",
                     self._worker_hint())
            return
        if job.status is not JobStatus.COMPLETED:
            self.add("progress_output", FAIL,
                     f"DEMO_SLEEP ended {job.status.value}: {job.error_msg or 'no error recorded'}",
                     self._worker_hint())
            return
        lines = [ln for ln in (job.output or "").splitlines() if ln.strip()]
        if not lines:
            self.add("progress_output", FAIL, "DEMO_SLEEP completed but its output lines were "
                     "not captured into OUTPUT", "report it (jobctl doctor --format json)")
            return
        shown = ", ".join(f"{round(p, 1):g}%" for p in sorted(set(seen)))
        if not seen:
            self.add("progress_output", WARN,
                     f"output captured ({len(lines)} lines, e.g. {lines[0]!r}) but no progress "
                     "was seen while the job ran", "report it (jobctl doctor --format json)")
            return
        self.add("progress_output", OK, f"progress seen live ({shown}); {len(lines)} output "
                 f"line(s) captured, e.g. {lines[0]!r}")

    def _cancel_check(self) -> None:
        hb = self.jc.settings.tunables.heartbeat_s
        # the worker hears a cancel within a second; give far more
        limit = max(10.0, 10 * hb)
        try:
            job_id = self._submit("DEMO_SLEEP", {"p_seconds": str(CANCEL_SLEEP_S)}, CANCEL_SLEEP_S * 2)
            # cancel inside the call, not before it: the first progress comes a
            # second into DEMO_SLEEP; without progress (checked on its own
            # above), two seconds after the claim will do
            deadline = time.monotonic() + ROUND_TRIP_TIMEOUT_S
            running_since = None
            while True:
                job = self.jc.get(job_id)
                if job.status.finished:
                    self.add("cancel", FAIL, f"DEMO_SLEEP ended {job.status.value} before it "
                             f"could be cancelled: {job.error_msg or ''}", self._worker_hint())
                    return
                if job.status is JobStatus.RUNNING:
                    running_since = running_since or time.monotonic()
                    if job.progress > 0 or time.monotonic() - running_since > 2:
                        break
                elif time.monotonic() > deadline:
                    self.add("cancel", FAIL, f"DEMO_SLEEP was still {job.status.value} after "
                             f"{ROUND_TRIP_TIMEOUT_S:g} s: no worker claimed it", self._worker_hint())
                    return
                time.sleep(DOCTOR_POLL_S)
            asked = time.monotonic()
            self.jc.cancel([job_id])
            job = self.jc.wait([job_id], timeout_s=limit)[0]
            took = time.monotonic() - asked
        except JobsUnfinished:
            self.add("cancel", FAIL, f"DEMO_SLEEP was still running {limit:g} s after "
                     "`jobctl cancel`: the call was not interrupted",
                     "report it (jobctl doctor --format json); a DBA can end the session")
            return
        except Exception as exc:
            self.add("cancel", FAIL, f"DEMO_SLEEP: {_error_text(self.backend, exc)}", self._worker_hint())
            return
        if job.status is not JobStatus.CANCELLED:
            self.add("cancel", FAIL, f"DEMO_SLEEP ended {job.status.value} instead of cancelled: "
                     f"{job.error_msg or ''}", self._worker_hint())
            return
        self.add("cancel", OK, f"DEMO_SLEEP({CANCEL_SLEEP_S}) interrupted {took:.1f} s after "
                 f"`jobctl cancel`, at {round(job.progress, 1):g}%")

    def _delete_demo_jobs(self) -> None:
        """Doctor's demo jobs go, by id, whatever happened; a worker still
        running one finds its row gone at the next heartbeat and stops."""
        if not self.demo_ids or self.conn is None:
            return
        try:
            self._end_transaction()
            for job_id in self.demo_ids:
                self.backend.execute(self.conn, DELETE_JOB_SQL, {"job_id": job_id})
            self.conn.commit()
        except Exception:
            self._end_transaction()


def run(settings: Settings) -> Report:
    return Doctor(settings).run()
