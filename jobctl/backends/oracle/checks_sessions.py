"""`jobctl doctor` on Oracle, the session checks (issue 23): what the
offline tests can only assume about a job's session, proved on the user's
database (ORACLE_NOTES: Second review, "What the offline tests cannot see").

Each check opens its own probe connections and closes them; nothing is
written that outlives the check (the commit-inside probe runs jobctl's own
CLEANUP_OLD_ASYNC_JOBS with a 100-year horizon, which deletes nothing).
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import oracledb

from ...checks import FAIL, OK, SKIP, WARN, Check
from ...errors import DatabaseError, NotFound
from ..base import CallContext
from .connect import client_time_zone
from .jobsession import RESET_SQL

IDENTITY_SQL = ("SELECT SYS_CONTEXT('USERENV', 'CLIENT_IDENTIFIER'), "
                "SYS_CONTEXT('USERENV', 'MODULE'), SYS_CONTEXT('USERENV', 'ACTION') FROM dual")
CURRENT_JOB_SQL = "SELECT JOBCTL_PROGRESS.CURRENT_JOB_ID FROM dual"
ZONE_SQL = "SELECT SESSIONTIMEZONE FROM dual"
NLS_DATE_FORMAT_SQL = ("SELECT value FROM nls_session_parameters "
                       "WHERE parameter = 'NLS_DATE_FORMAT'")
#: what a job might do to its session: the reset must see it
ALTER_PROBE_SQL = "ALTER SESSION SET NLS_DATE_FORMAT = 'DD.MM.YYYY HH24:MI'"
#: the views the reset reads; all must answer for a connection to be reused
VIEW_PROBES = ("SELECT COUNT(*) FROM v$parameter WHERE ROWNUM <= 1",
               "SELECT COUNT(*) FROM v$lock WHERE ROWNUM <= 1",
               "SELECT COUNT(*) FROM v$tempseg_usage WHERE ROWNUM <= 1",
               "SELECT COUNT(*) FROM v$session WHERE ROWNUM <= 1")
PROBE_LINE = "SELECT 1 FROM dual"
#: 100 years: CLEANUP_OLD_ASYNC_JOBS deletes nothing, and commits
CLEANUP_HORIZON_DAYS = Decimal(36500)
REPORT = "report it with the output of `jobctl doctor --format json`"
VIEWS_REMEDY = ("optional: GRANT SELECT_CATALOG_ROLE (or SELECT on SYS.V_$PARAMETER, V_$LOCK, "
                "V_$TEMPSEG_USAGE, V_$SESSION) to this user, so a pool reuses clean connections")


def _one(conn: Any, sql: str) -> Any:
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchone()


def _current_job(conn: Any) -> tuple[bool, Any]:
    """(JOBCTL_PROGRESS installed?, the job it names)."""
    try:
        return True, _one(conn, CURRENT_JOB_SQL)[0]
    except oracledb.Error:
        return False, None


class SessionChecks:
    backend: Any
    conn: Any
    table_ok: bool

    # "Identity is per job, not per connection"
    def job_identity(self, name: str) -> Check:
        first_job, second_job = uuid.uuid4().hex, uuid.uuid4().hex
        conn = self.backend.connect()
        try:
            self.backend.start_job_session(conn, first_job)
            first = tuple(_one(conn, IDENTITY_SQL))
            with conn.cursor() as cur:
                cur.execute(RESET_SQL, {"jc_state": cur.var(str, 32767), "jc_seen": cur.var(int)})
            idle = tuple(_one(conn, IDENTITY_SQL))
            self.backend.start_job_session(conn, second_job)
            second = tuple(_one(conn, IDENTITY_SQL))
        finally:
            conn.close()
        watch_conn = self.backend.connect(job_id=first_job)
        try:
            watch = tuple(_one(watch_conn, IDENTITY_SQL))
        finally:
            watch_conn.close()
        problems = []
        if first != (first_job, "jobctl", first_job) or second != (second_job, "jobctl", second_job):
            problems.append(f"the call session read {first} for the first job and {second} for "
                            "the second on the same connection")
        if idle[0] is not None or idle[2] != "idle":
            problems.append(f"an idle slot reads {idle}, not a cleared identifier and ACTION idle")
        if watch[0] == first_job or watch[1] != "jobctl watch":
            problems.append(f"the watch session reads {watch}, not distinct from the call's")
        if problems:
            return Check(name, FAIL, "; ".join(problems), REPORT)
        return Check(name, OK, "CLIENT_IDENTIFIER and ACTION name each job on the call session "
                     "(two jobs in turn on one connection), are cleared when the slot is idle, "
                     "and the watch session says 'jobctl watch'")

    # "Session state between jobs"
    def session_reset(self, name: str) -> Check:
        job = uuid.uuid4().hex
        conn = self.backend.connect(job_id=job)
        try:
            self._probe_call(conn, job)
            installed, named = _current_job(conn)
            kept = self.backend.reset_job_session(conn)
            if not kept:
                if self._views_readable(conn):
                    return Check(name, FAIL, "the session read differently after a job that "
                                 "changed nothing: every job would get a new connection", REPORT)
                return Check(name, WARN, "the V$ views the reset reads are not readable here: "
                             "every job gets a new connection (clean, but a connect per job)",
                             VIEWS_REMEDY)
            _, after = _current_job(conn)
            self._probe_call(conn, job)
            with conn.cursor() as cur:
                cur.execute(ALTER_PROBE_SQL)          # as a job might
            changed_kept = self.backend.reset_job_session(conn)
        finally:
            conn.close()
        if changed_kept:
            return Check(name, FAIL, "a job's ALTER SESSION SET NLS_DATE_FORMAT was not seen by "
                         "the reset: the next job would inherit it", REPORT)
        if installed and (named != job or after is not None):
            return Check(name, FAIL, f"JOBCTL_PROGRESS named {named!r} during the job and "
                         f"{after!r} after the reset (expected the job, then nothing)", REPORT)
        return Check(name, OK, "package state is reset between jobs"
                     + (" (JOBCTL_PROGRESS's job cleared)" if installed else "")
                     + " and a job's ALTER SESSION is seen, so that connection is replaced")

    def _probe_call(self, conn: Any, job: str) -> CallContext:
        self.backend.start_job_session(conn, job)
        sig = self.backend.resolve(conn, "DBMS_OUTPUT.PUT_LINE", frozenset({"a"}))
        inputs = [p.name for p in sig.params if p.is_input]
        ctx = CallContext(job)
        self.backend.call(conn, sig, {inputs[0]: "jobctl doctor"}, ctx)
        conn.rollback()
        return ctx

    def _views_readable(self, conn: Any) -> bool:
        try:
            for sql in VIEW_PROBES:
                _one(conn, sql)
            return True
        except oracledb.Error:
            return False

    # "Session time zone", "NLS"
    def session_time_zone(self, name: str) -> Check:
        expected = client_time_zone().strip("'")
        job = uuid.uuid4().hex
        zones = []
        settings = self.backend.settings
        setup = getattr(settings, "session_setup", None) or settings.options.get("session_setup")
        date_format = None
        for opened in (lambda: self.backend.connect(job_id=job), self.backend.connect):
            conn = opened()
            try:
                self.backend.start_job_session(conn, job)
                zones.append(str(_one(conn, ZONE_SQL)[0]))
                date_format = _one(conn, NLS_DATE_FORMAT_SQL)[0]
            finally:
                conn.close()
        if expected != "DBTIMEZONE" and any(z.upper() != expected.upper() for z in zones):
            return Check(name, WARN, f"a job's session zone reads {zones[0]} (daemon-free) and "
                         f"{zones[1]} (pool), not {expected}, the zone SQL*Plus would give",
                         "set ORA_SDTZ for the workers, or put ALTER SESSION SET TIME_ZONE in "
                         "session_setup")
        detail = f"a job's session keeps the client's zone ({zones[0]}), on both paths"
        detail += (f"; session_setup ran, NLS_DATE_FORMAT is {date_format}" if setup
                   else f"; no session_setup (NLS_DATE_FORMAT is the database's {date_format})")
        return Check(name, OK, detail)

    # "Committed-inside detection", --atomic: jobctl's own CLEANUP_OLD_ASYNC_JOBS commits
    def commit_inside(self, name: str) -> Check:
        if not self.table_ok:
            return Check(name, SKIP, "needs ASYNC_JOBS with all its columns")
        job = uuid.uuid4().hex
        conn = self.backend.connect(job_id=job)
        try:
            try:
                sig = self.backend.resolve(conn, "CLEANUP_OLD_ASYNC_JOBS", frozenset({"p_days_old"}))
            except NotFound:
                return Check(name, SKIP, "needs CLEANUP_OLD_ASYNC_JOBS (`jobctl db init`)")
            days = next(p.name for p in sig.params if p.is_input)
            committing = CallContext(job)
            self.backend.call(conn, sig, {days: CLEANUP_HORIZON_DAYS}, committing)
            conn.rollback()
            plain = self._probe_call(conn, job)
            atomic = CallContext(job)
            atomic.atomic = True
            refused: DatabaseError | None = None
            try:
                self.backend.call(conn, sig, {days: CLEANUP_HORIZON_DAYS}, atomic)
            except DatabaseError as exc:
                refused = exc
            conn.rollback()
        finally:
            conn.close()
        if not committing.self_committed or plain.self_committed:
            return Check(name, FAIL, "DBMS_TRANSACTION.LOCAL_TRANSACTION_ID did not tell a "
                         f"committing call ({committing.self_committed}) from one that does not "
                         f"({plain.self_committed})", REPORT)
        if refused is None or refused.code != "ORA-00034":
            return Check(name, FAIL, "under --atomic (ALTER SESSION DISABLE COMMIT IN PROCEDURE) "
                         f"the COMMIT inside was not refused with ORA-00034: {refused}", REPORT)
        return Check(name, OK, "a COMMIT inside a procedure is detected (and recorded), and "
                     "--atomic refuses it with ORA-00034")

    # "A killed session lingers", "ORA-00031 is success", "Never retry a kill"
    def killed_session(self, name: str) -> Check:
        job = uuid.uuid4().hex
        victim = self.backend.connect(job_id=job)
        try:
            session = self.backend.session_id(victim)
            ended = self.backend.end_session(self.conn, session)
            if not ended:
                return Check(name, SKIP, "this user may not ALTER SYSTEM KILL SESSION: "
                             "`jobctl cancel` of an orphan prints the statement for a DBA")
            alive = self.backend.session_alive(self.conn, session)
            try:
                _one(victim, PROBE_LINE)
                seen: Any = None
            except oracledb.Error as exc:
                seen = self.backend.translate_error(exc)
        finally:
            try:
                victim.close()
            except oracledb.Error:
                pass
        if alive:
            return Check(name, FAIL, f"session {session} still reads alive after KILL SESSION",
                         REPORT)
        if not isinstance(seen, DatabaseError):
            return Check(name, FAIL, "the killed session's next statement succeeded", REPORT)
        if not seen.killed:
            return Check(name, WARN, f"the killed session's next statement read {seen.code or '?'} "
                         f"({seen.message}), not ORA-00028: such a job reads as a lost "
                         "connection, not a kill", REPORT)
        where = "not alive" if alive is False else "unknown (V$SESSION not readable)"
        return Check(name, OK, f"after KILL SESSION the session reads {where}, and its next "
                     f"statement fails with {seen.code}, taken as a kill (never retried)")
