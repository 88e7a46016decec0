"""`jobctl doctor`: prove, against the user's real database, that jobctl works
there, and say what to do where it does not.

Every check yields a `Check` (name, result, detail, remedy). Results are `ok`,
`warn` (works, with a caveat), `fail` (jobctl will not work as documented) and
`skip` (a check this one depends on failed, so it could not run). The set of
check names is fixed per backend, so a script can look one up by name.

Doctor writes nothing but its own rows: a probe row inside a transaction that
is rolled back, and demo jobs tagged `submitted_by = 'jobctl-doctor@<host>'`
that it deletes by job id when it is done, whatever happened.

The catalog SQL each backend needs lives in `catalogs.py` (SQLite,
PostgreSQL) and with the backend's own checks (`backends/oracle/checks.py`),
which doctor finds through `backends.extra_checks`; the checks with real
jobs are in `demo.py`.
"""


from __future__ import annotations

import datetime as dt
import os
import uuid
from dataclasses import dataclass, replace
from typing import Any

from .. import __version__, store
from ..backends import extra_checks
from ..checks import FAIL, OK, PROBE_PROCEDURE, RESULTS, SKIP, WARN, Check, error_text, one_line
from ..config import Settings, config_path
from ..errors import NotFound
from ..lifecycle import Lifecycle
from ..model import utcnow
from .catalogs import catalog_for
from .demo import DELETE_JOB_SQL, EXACT_SUM, DemoJobChecks

__all__ = ["COMMON_CHECKS", "DELETE_JOB_SQL", "EXACT_SUM", "RESULTS", "Doctor", "Report", "run"]

#: doctor's own workers heartbeat this often at most, so that live progress
#: and cancel show within a second; it tests the mechanism, not the interval
DOCTOR_HEARTBEAT_S = 0.25
DOCTOR_POLL_S = 0.1

INDEXES = ("ix_async_jobs_status", "ix_async_jobs_start", "ix_async_jobs_proc_start",
           "ux_async_jobs_unique_active")

COMMON_CHECKS = ("connect", "time_zone", "table", "indexes", "privileges", "helper_objects",
                 "demo_procedures", "round_trip", "exact_values", "progress_output", "cancel")


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


def _tag() -> str:
    return f"jobctl-doctor@{os.uname().nodename}"[:128]


class Doctor(DemoJobChecks):
    """One run of the checks. `run()` returns the report; nothing raises."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.checks: list[Check] = []
        self.demo_ids: list[str] = []
        self.tag = _tag()
        self.jc: Any = None
        self.backend: Any = None
        self.conn: Any = None
        self.catalog = catalog_for(settings.connection.scheme)
        self.extra = extra_checks(settings.connection.scheme)

    # -- bookkeeping ---------------------------------------------------------------
    def add(self, name: str, result: str, detail: str, remedy: str = "") -> Check:
        check = Check(name, result, one_line(detail), one_line(remedy))
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

    def _run(self) -> None:
        from ..api import Jobctl
        from ..session import DEFAULT_ONLY

        extra = self.extra
        if extra is not None:
            try:
                self.checks.append(extra.driver_check())
            except Exception as exc:
                self.add("oracle_driver", FAIL, error_text(self.backend, exc))
        tun = self.settings.tunables
        # doctor's own workers report quickly; the user's jobs keep their settings
        fast = replace(self.settings, tunables=replace(
            tun, heartbeat_s=min(tun.heartbeat_s, DOCTOR_HEARTBEAT_S),
            poll_s=min(tun.poll_s, DOCTOR_POLL_S)))
        rest = COMMON_CHECKS[1:] + (extra.names if extra else ())
        try:
            self.jc = Jobctl(fast, create=DEFAULT_ONLY)  # a DSN's missing file is a finding
            self.backend = self.jc.backend
            self.conn = self.jc.conn
        except ImportError as exc:
            self.add("connect", FAIL, f"the database driver is not installed: {exc}",
                     "pip install 'jobctl[postgresql]' (psycopg) or oracledb, as the DSN needs")
            return self.skip(rest, "needs a connection")
        except Exception as exc:
            self.add("connect", FAIL, error_text(self.backend, exc), self.catalog.connect_remedy)
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
        if extra is not None:
            self.checks.extend(extra.run(self.backend, self.conn, jobs=self.jobs(), table_ok=table_ok,
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
            parts.append(f"server version unknown: {error_text(self.backend, exc)}")
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
            self.add("time_zone", FAIL, error_text(self.backend, exc))
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
                self.add("table", FAIL, f"cannot read ASYNC_JOBS: {error_text(self.backend, exc)}",
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
            self.add("indexes", WARN, f"cannot read the index catalog: {error_text(self.backend, exc)}")
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

    def jobs(self) -> Lifecycle:
        return Lifecycle(self.backend, self.settings.tunables)

    def _user(self) -> str:
        return self.settings.connection.user or "<this user>"

    def _privileges_check(self) -> bool:
        """A real INSERT, UPDATE and DELETE of a probe row, rolled back."""
        job_id = uuid.uuid4().hex
        step = "INSERT"
        try:
            jobs = self.jobs()
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
                     f"{step} on ASYNC_JOBS refused: {error_text(self.backend, exc)}",
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
            self.add("helper_objects", WARN, f"cannot read the catalog: {error_text(self.backend, exc)}")
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
                         f"{error_text(self.backend, exc)}")
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


def run(settings: Settings) -> Report:
    return Doctor(settings).run()
