"""`jobctl doctor` on Oracle: the behaviours jobctl relies on that could only be
read about, never run, where jobctl was written. Each check exercises one of
them against the user's database and reports what came back, so that a
failing `jobctl doctor --format json` tells the maintainers which documented
fact does not hold there.

Facts cited by section of the project's Oracle notes ("Reading the
signature", "Output, identity, progress", "SQL", "Found in a line-by-line
review"); the session checks of the notes' "Second review" are in
checks_sessions.py. oracledb is imported here, so this module loads only for an
`oracle://` DSN, like the backend itself.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from typing import Any

import oracledb

from ...checks import FAIL, OK, PROBE_PROCEDURE, SKIP, WARN, BackendChecks, Catalog, Check, JobRows
from ...errors import JobctlError
from ...model import NUMBER, utcnow
from ..base import CallContext
from .checks_sessions import SessionChecks

NAMES = ("oracle_name_resolve_standalone", "oracle_name_resolve_packaged", "oracle_all_arguments",
          "oracle_dbms_output", "oracle_timestamp_binds", "oracle_clob_update",
          "oracle_job_identity", "oracle_set_progress", "oracle_session_reset",
          "oracle_session_time_zone", "oracle_commit_inside", "oracle_killed_session",
          "oracle_longops", "oracle_name_shadowing")

_CURRENT_SCHEMA = "SYS_CONTEXT('USERENV', 'CURRENT_SCHEMA')"

CATALOG = Catalog(
    version_sql=None,
    identity_sql=("SELECT 'user ' || USER || ', current schema ' || " + _CURRENT_SCHEMA +
                  " || ', service ' || SYS_CONTEXT('USERENV', 'SERVICE_NAME')"
                  " || ', instance ' || SYS_CONTEXT('USERENV', 'INSTANCE') FROM dual"),
    # the zone jobctl sets on its bookkeeping sessions (doctor's is one; a job's
    # keeps the client's: oracle_session_time_zone), and the server's clock in
    # UTC ("SQL": CURRENT_TIMESTAMP follows the session zone, SYSTIMESTAMP the host's)
    timezone_sql="SELECT SESSIONTIMEZONE, SYS_EXTRACT_UTC(SYSTIMESTAMP) FROM dual",
    utc_zones=("+00:00", "UTC", "GMT", "Etc/UTC"),
    indexes_sql=("SELECT index_name FROM all_indexes WHERE table_name = 'ASYNC_JOBS' "
                 "AND table_owner = " + _CURRENT_SCHEMA),
    helpers_sql=("SELECT object_name, status FROM all_objects WHERE owner = " + _CURRENT_SCHEMA +
                 " AND object_name IN ('V_ASYNC_JOBS_RECENT', 'CLEANUP_OLD_ASYNC_JOBS', "
                 "'JOBCTL_PROGRESS') AND object_type IN ('VIEW', 'PROCEDURE', 'PACKAGE', "
                 "'PACKAGE BODY')"),
    helpers={"V_ASYNC_JOBS_RECENT": "view of the last 24 hours, for SQL*Plus users",
             "CLEANUP_OLD_ASYNC_JOBS": "procedure for DBMS_SCHEDULER cleanup",
             "JOBCTL_PROGRESS": "package with SET_PROGRESS for procedures"},
    grant_remedy="as the owner of ASYNC_JOBS: GRANT SELECT, INSERT, UPDATE, DELETE ON ASYNC_JOBS "
                 "TO {user}",
    connect_remedy="check host, port and service name (or the TNS alias and config_dir / "
                   "TNS_ADMIN), the user and the password source; thin mode needs Oracle 12.1 or "
                   "later and cannot do Native Network Encryption",
    server_version=lambda conn: f"Oracle Database {conn.version}",
)

NAME_RESOLVE_SQL = """
BEGIN
    DBMS_UTILITY.NAME_RESOLVE(name => :name, context => 1, schema => :schema,
                              part1 => :part1, part2 => :part2, dblink => :dblink,
                              part1_type => :part1_type, object_number => :object_number);
END;"""

ARGUMENTS_SQL = """
SELECT argument_name, position, data_type, in_out, defaulted, data_level, overload
  FROM all_arguments
 WHERE owner = :owner AND object_name = 'SUMA_SIMPLE' AND package_name IS NULL
 ORDER BY overload, position"""

ECHO_TIMESTAMP_SQL = "SELECT :t FROM dual"
PROBE_TIME_MATCH_SQL = "SELECT COUNT(*) FROM ASYNC_JOBS WHERE job_id = :job_id AND start_time = :t"
PROBE_OUTPUT_SQL = "UPDATE ASYNC_JOBS SET output = :output WHERE job_id = :job_id"
PROBE_READ_SQL = ("SELECT output, DBMS_LOB.GETLENGTH(output), progress FROM ASYNC_JOBS "
                  "WHERE job_id = :job_id")
PROBE_DELETE_SQL = "DELETE FROM ASYNC_JOBS WHERE job_id = :job_id"
#: as a call does it: the job named at the call's start (a package variable,
#: whatever CLIENT_IDENTIFIER says), then progress from inside
SET_PROGRESS_SQL = "BEGIN JOBCTL_PROGRESS.SET_JOB(:job_id); JOBCTL_PROGRESS.SET_PROGRESS(:pct); END;"
GV_LONGOPS_SQL = "SELECT COUNT(*) FROM gv$session_longops WHERE ROWNUM <= 1"
V_LONGOPS_SQL = "SELECT COUNT(*) FROM v$session_longops WHERE ROWNUM <= 1"
#: an object (or public synonym) named like the current schema shadows it
#: ("Found in a line-by-line review": name resolution shadows schemas)
SHADOWING_SQL = (
    "SELECT object_type, object_name FROM all_objects WHERE owner = " + _CURRENT_SCHEMA +
    " AND object_name = " + _CURRENT_SCHEMA + " AND object_type <> 'PACKAGE BODY'"
    " UNION ALL SELECT 'PUBLIC SYNONYM', synonym_name FROM all_synonyms"
    " WHERE owner = 'PUBLIC' AND synonym_name = " + _CURRENT_SCHEMA)

#: a multi-byte text of more than 4000 bytes: past the VARCHAR2 bind limit
CLOB_TEXT = "jobctl doctor ñ " * 400
PROGRESS_PROBE = 42
REPORT = "report it with the output of `jobctl doctor --format json`"


def _text(exc: BaseException) -> str:
    """The database's own words, up to the PLS line that says what is wrong."""
    if isinstance(exc, JobctlError):
        return exc.message
    lines = [ln.strip() for ln in str(exc).splitlines()
             if ln.strip() and not ln.startswith("Help: ")]
    return " ".join(lines[:3]) or type(exc).__name__


def _ora_number(exc: BaseException) -> int:
    if isinstance(exc, oracledb.Error) and exc.args and hasattr(exc.args[0], "code"):
        return exc.args[0].code
    return -1


def driver_check() -> Check:
    """Thin or thick, and the client library's version in thick mode."""
    version = getattr(oracledb, "__version__", "?")
    if oracledb.is_thin_mode():
        return Check("oracle_driver", OK, f"python-oracledb {version}, thin mode (no Oracle "
                     "Client library)")
    client = ".".join(str(p) for p in oracledb.clientversion())
    return Check("oracle_driver", OK, f"python-oracledb {version}, thick mode, Oracle Client {client}")


def name_resolve(conn: Any, name: str) -> dict[str, Any]:
    cur = conn.cursor()
    out = {k: cur.var(str, 4000) for k in ("schema", "part1", "part2", "dblink")}
    out["part1_type"] = cur.var(int)
    out["object_number"] = cur.var(int)
    cur.execute(NAME_RESOLVE_SQL, {"name": name, **out})
    return {k: v.getvalue() for k, v in out.items()}


def _shown(r: dict[str, Any]) -> str:
    return (f"schema={r['schema']} part1={r['part1']} part2={r['part2']} "
            f"part1_type={r['part1_type']}")


class _OracleChecks(SessionChecks):
    def __init__(self, backend: Any, conn: Any, *, jobs: JobRows, table_ok: bool, demos_ok: bool,
                 tag: str):
        self.backend, self.conn, self.jobs = backend, conn, jobs
        self.table_ok, self.demos_ok, self.tag = table_ok, demos_ok, tag
        self.owner: str | None = None

    def run(self) -> list[Check]:
        out = []
        for name in NAMES:
            method = getattr(self, name.removeprefix("oracle_"))
            try:
                out.append(method(name))
            except Exception as exc:
                out.append(Check(name, FAIL, " ".join(_text(exc).split()), REPORT))
            finally:
                try:
                    self.conn.rollback()
                except Exception:
                    pass
        return out

    def _execute(self, sql: str, binds: dict[str, Any] | None = None) -> Any:
        return self.backend.execute(self.conn, sql, binds)

    # "Reading the signature": which of part1/part2 holds a standalone
    # procedure's name is unconfirmed; the detail records what came back
    def name_resolve_standalone(self, name: str) -> Check:
        if not self.demos_ok:
            return Check(name, SKIP, "needs SUMA_SIMPLE (`jobctl db init --examples`)")
        r = name_resolve(self.conn, "SUMA_SIMPLE")
        self.owner = r["schema"]
        where = "part1" if r["part1"] == "SUMA_SIMPLE" else "part2" if r["part2"] == "SUMA_SIMPLE" else None
        if r["part1_type"] == 7 and where:
            return Check(name, OK, f"SUMA_SIMPLE: {_shown(r)} (the name is in {where})")
        return Check(name, FAIL, f"SUMA_SIMPLE: {_shown(r)}; expected part1_type 7 (procedure) "
                     "and the name in part1 or part2", REPORT)

    def name_resolve_packaged(self, name: str) -> Check:
        r = name_resolve(self.conn, "DBMS_OUTPUT.PUT_LINE")
        if r["part1_type"] == 9 and r["part1"] == "DBMS_OUTPUT" and r["part2"] == "PUT_LINE":
            return Check(name, OK, f"DBMS_OUTPUT.PUT_LINE: {_shown(r)}")
        return Check(name, FAIL, f"DBMS_OUTPUT.PUT_LINE: {_shown(r)}; expected part1_type 9 "
                     "(package), part1 DBMS_OUTPUT, part2 PUT_LINE", REPORT)

    def all_arguments(self, name: str) -> Check:
        if not self.demos_ok or not self.owner:
            return Check(name, SKIP, "needs SUMA_SIMPLE resolved")
        rows = self._execute(ARGUMENTS_SQL, {"owner": self.owner}).fetchall()
        shown = ", ".join(f"{a} {pos} {io} {dtype}{' DEFAULTED' if d == 'Y' else ''}"
                          f"{'' if lvl == 0 else f' level {lvl}'}"
                          for a, pos, dtype, io, d, lvl, _ in rows)
        expected = [("VA", 1, "NUMBER", "IN", "N", 0), ("VB", 2, "NUMBER", "IN", "Y", 0),
                    ("VRESULT", 3, "NUMBER", "OUT", "N", 0)]
        got = [(a, int(pos), dtype, io, d, int(lvl)) for a, pos, dtype, io, d, lvl, _ in rows]
        if got != expected:
            return Check(name, FAIL, f"ALL_ARGUMENTS for SUMA_SIMPLE: {shown or 'no rows'}; "
                         "expected VA 1 IN NUMBER, VB 2 IN NUMBER DEFAULTED, VRESULT 3 OUT NUMBER",
                         REPORT)
        sig = self.backend.resolve(self.conn, "SUMA_SIMPLE", frozenset({"va", "vb"}))
        read = [(p.name, p.mode, p.defaulted, p.kind) for p in sig.params]
        if read != [("VA", "IN", False, NUMBER), ("VB", "IN", True, NUMBER),
                    ("VRESULT", "OUT", False, NUMBER)]:
            return Check(name, FAIL, f"ALL_ARGUMENTS rows as expected ({shown}) but jobctl read "
                         f"the signature as {read}", REPORT)
        return Check(name, OK, f"SUMA_SIMPLE: {shown}")

    # "Output, identity, progress": DBMS_OUTPUT is read after the call, in
    # the same session; this goes through jobctl's own call path
    def dbms_output(self, name: str) -> Check:
        sig = self.backend.resolve(self.conn, "DBMS_OUTPUT.PUT_LINE", frozenset({"a"}))
        inputs = [p.name for p in sig.params if p.is_input]
        marker = f"jobctl doctor {uuid.uuid4().hex[:8]} ñ€"
        ctx = CallContext(uuid.uuid4().hex)
        self.backend.call(self.conn, sig, {inputs[0]: marker}, ctx)
        _, text, _ = ctx.snapshot()
        if text and marker in text:
            return Check(name, OK, f"a line put with DBMS_OUTPUT.PUT_LINE came back: {marker!r}")
        return Check(name, FAIL, f"DBMS_OUTPUT.PUT_LINE ran but the line was not read back "
                     f"(got {text!r})", REPORT)

    def _insert_probe(self, now: dt.datetime) -> str:
        job_id = uuid.uuid4().hex
        self.jobs.enqueue(self.conn, job_id=job_id, procedure_name=PROBE_PROCEDURE,
                          now=now, params_json="{}", timeout_s=None, max_attempts=1,
                          submitted_by=self.tag, unique_key=None)
        return job_id

    # "Reading the signature" / "SQL": a datetime bound without
    # DB_TYPE_TIMESTAMP loses its fractional seconds, and the heartbeat guard
    # compares a stored TIMESTAMP with a bound one for equality
    def timestamp_binds(self, name: str) -> Check:
        t = utcnow().replace(microsecond=123456)
        naive = self.backend.to_db_time(t)
        echoed = self._execute(ECHO_TIMESTAMP_SQL, {"t": naive}).fetchone()[0]
        if not isinstance(echoed, dt.datetime) or echoed.microsecond != 123456:
            return Check(name, FAIL, f"a TIMESTAMP bind came back as {echoed!r}, without its "
                         "microseconds", REPORT)
        if not self.table_ok:
            return Check(name, OK, "microseconds survive a TIMESTAMP bind (ASYNC_JOBS not "
                         "checked: see table)")
        job_id = self._insert_probe(t)
        matches = self._execute(PROBE_TIME_MATCH_SQL, {"job_id": job_id, "t": naive}).fetchone()[0]
        if matches != 1:
            return Check(name, FAIL, "START_TIME stored with microseconds does not compare equal "
                         "to the same bound value: heartbeat guards would never match", REPORT)
        return Check(name, OK, "microseconds survive a TIMESTAMP bind and an equality match on "
                     "ASYNC_JOBS.START_TIME (probe rolled back)")

    def clob_update(self, name: str) -> Check:
        if not self.table_ok:
            return Check(name, SKIP, "needs ASYNC_JOBS with all its columns")
        job_id = self._insert_probe(utcnow())
        self._execute(PROBE_OUTPUT_SQL, {"output": CLOB_TEXT, "job_id": job_id})
        text, length, _ = self._execute(PROBE_READ_SQL, {"job_id": job_id}).fetchone()
        size = len(CLOB_TEXT.encode())
        if text != CLOB_TEXT:
            return Check(name, FAIL, f"a {size}-byte OUTPUT came back as {length} characters, "
                         "not the text written", REPORT)
        return Check(name, OK, f"a {size}-byte UTF-8 text ({len(CLOB_TEXT)} characters) written "
                     "to and read from a CLOB column (probe rolled back)")

    def set_progress(self, name: str) -> Check:
        if not self.table_ok:
            return Check(name, SKIP, "needs ASYNC_JOBS with all its columns")
        job_id = self._insert_probe(utcnow())
        # committed and running, as a real job is: the autonomous transaction
        # in SET_PROGRESS cannot see (and would wait on) an uncommitted row
        self.jobs.claim(self.conn, job_id, now=utcnow(), pid=os.getpid(),
                        token=uuid.uuid4().hex, session=None)
        self.conn.commit()
        try:
            # a watch-named connection: the package variable, not
            # CLIENT_IDENTIFIER, finds the job (ORACLE_NOTES: Second review,
            # "Identity is per job, not per connection")
            call_conn = self.backend.connect(job_id=job_id)
            try:
                with call_conn.cursor() as cur:
                    cur.execute(SET_PROGRESS_SQL, {"job_id": job_id, "pct": PROGRESS_PROBE})
                call_conn.rollback()   # SET_PROGRESS commits on its own
            except oracledb.Error as exc:
                if _ora_number(exc) == 6550 and ("PLS-00201" in str(exc) or "PLS-00302" in str(exc)):
                    return Check(name, WARN, "JOBCTL_PROGRESS is not installed, older than this "
                                 f"jobctl, or not executable here: {' '.join(_text(exc).split())}",
                                 "run `jobctl db init`; procedures report progress with "
                                 "JOBCTL_PROGRESS.SET_PROGRESS(pct)")
                raise
            finally:
                call_conn.close()
            progress = self._execute(PROBE_READ_SQL, {"job_id": job_id}).fetchone()[2]
            self.conn.rollback()
        finally:
            self._execute(PROBE_DELETE_SQL, {"job_id": job_id})
            self.conn.commit()
        if progress is None or float(progress) != PROGRESS_PROBE:
            return Check(name, FAIL, f"JOBCTL_PROGRESS.SET_PROGRESS({PROGRESS_PROBE}) ran but the "
                         f"row's PROGRESS is {progress}", REPORT)
        return Check(name, OK, f"JOBCTL_PROGRESS.SET_PROGRESS({PROGRESS_PROBE}) from PL/SQL "
                     "reached the job's row")

    # "Output, identity, progress" and "Found in a line-by-line review" (RAC):
    # LONGOPS is optional; GV$ covers every instance
    def longops(self, name: str) -> Check:
        readable: dict[str, oracledb.Error | None] = {}
        for view, sql in (("GV$SESSION_LONGOPS", GV_LONGOPS_SQL), ("V$SESSION_LONGOPS", V_LONGOPS_SQL)):
            try:
                self._execute(sql).fetchone()
                readable[view] = None
            except oracledb.Error as exc:
                if _ora_number(exc) not in (942, 1031):
                    raise
                readable[view] = exc
        if readable["GV$SESSION_LONGOPS"] is None:
            return Check(name, OK, "GV$SESSION_LONGOPS readable: progress from "
                         "DBMS_APPLICATION_INFO.SET_SESSION_LONGOPS is picked up")
        remedy = ("optional: GRANT SELECT ON SYS.GV_$SESSION_LONGOPS (and V_$SESSION_LONGOPS) TO "
                  "this user; JOBCTL_PROGRESS.SET_PROGRESS works without it")
        if readable["V$SESSION_LONGOPS"] is None:
            return Check(name, WARN, "V$SESSION_LONGOPS readable but GV$ is not: on RAC, LONGOPS "
                         "progress from another instance is missed", remedy)
        return Check(name, WARN, "V$SESSION_LONGOPS is not readable (ORA-00942): LONGOPS progress "
                     "is not picked up", remedy)

    def name_shadowing(self, name: str) -> Check:
        rows = self._execute(SHADOWING_SQL).fetchall()
        if not rows:
            return Check(name, OK, "no object or public synonym is named like the current schema")
        found = ", ".join(f"{kind} {obj}" for kind, obj in rows)
        schema = rows[0][1]
        old_package = any(kind == "PACKAGE" and obj == "JOBCTL" for kind, obj in rows)
        remedy = ("rename or drop it, or call this schema's procedures unqualified "
                  "(never as " + f"{schema}.PROC)")
        if old_package:
            remedy = ("it is jobctl's old progress package: after `jobctl db init` installs "
                      "JOBCTL_PROGRESS, change callers of JOBCTL.SET_PROGRESS and DROP PACKAGE JOBCTL")
        return Check(name, WARN, f"{found} is named like the schema {schema}: Oracle resolves "
                     f"{schema}.X to it before the schema, so a call written {schema}.PROC fails "
                     "with PLS-00302", remedy)


def run(backend: Any, conn: Any, *, jobs: JobRows, table_ok: bool, demos_ok: bool,
        tag: str) -> list[Check]:
    return _OracleChecks(backend, conn, jobs=jobs, table_ok=table_ok, demos_ok=demos_ok,
                         tag=tag).run()


CHECKS = BackendChecks(catalog=CATALOG, names=NAMES, driver_check=driver_check, run=run)
