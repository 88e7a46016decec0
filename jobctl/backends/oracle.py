"""Oracle Database through python-oracledb in thin mode (no Oracle Client).

No Oracle server runs where this was written. Every driver or database fact
the code relies on names its source: `ORACLE_NOTES §section` is the project's
shared notes (/work/shared/ORACLE_NOTES.md), `src/...`, `tests/...` and
`samples/...` are paths in the oracle/python-oracledb repository. Points that
could not be confirmed are marked "unconfirmed" and coded defensively.

oracledb is imported here and nowhere else: this module loads only for an
`oracle://` DSN, so other commands never pay for the driver.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, ClassVar

import oracledb

from .. import config
from ..errors import DatabaseError, JobctlError, NotFound, SchemaMissing, UsageError
from ..model import (BOOLEAN, INTEGER, JSON, NUMBER, TEXT, TIMESTAMP, UNSUPPORTED, Param,
                     Signature)
from ..params import to_json_value
from .base import CallContext

_UTC = dt.timezone.utc

#: DBMS_OUTPUT lines fetched per round trip, and the longest line PL/SQL
#: can put (ORACLE_NOTES "Output, identity, progress"; samples/dbms_output.py)
_OUTPUT_CHUNK = 100
_OUTPUT_LINE_MAX = 32767

# -- the SQL this backend sends besides store.py's (linted offline by
#    tests/test_oracle_offline.py with sqlglot's oracle dialect) ----------------

SESSION_UTC_SQL = "ALTER SESSION SET TIME_ZONE = '+00:00'"

NAME_RESOLVE_SQL = """
BEGIN
    DBMS_UTILITY.NAME_RESOLVE(name => :name, context => 1, schema => :schema,
                              part1 => :part1, part2 => :part2, dblink => :dblink,
                              part1_type => :part1_type, object_number => :object_number);
END;"""

#: one row per argument of every overload; DATA_LEVEL 0 leaves out the
#: attributes of composite types (ORACLE_NOTES "Reading the signature")
ARGUMENTS_SQL = """
SELECT overload, position, argument_name, data_type, pls_type, type_owner, type_name,
       type_subname, in_out, defaulted
  FROM all_arguments
 WHERE owner = :owner AND object_name = :object_name AND {package_filter}
   AND data_level = 0
 ORDER BY overload, position"""

#: procedures without arguments are missing from ALL_ARGUMENTS since
#: 12.1.0.2 (ORACLE_NOTES "Reading the signature")
PROCEDURES_SQL = """
SELECT object_type, overload
  FROM all_procedures
 WHERE owner = :owner AND {procedure_filter}"""

LONGOPS_SQL = """
SELECT sofar, totalwork
  FROM v$session_longops
 WHERE sid = :sid AND serial# = :serial AND totalwork > 0
 ORDER BY last_update_time DESC
 FETCH FIRST 1 ROWS ONLY"""

OUTPUT_ENABLE_SQL = "BEGIN DBMS_OUTPUT.ENABLE(NULL); END;"
OUTPUT_GET_LINES_SQL = "BEGIN DBMS_OUTPUT.GET_LINES(:lines, :num_lines); END;"

COMPILE_ERRORS_SQL = """
SELECT line, position, text
  FROM user_errors
 WHERE name = :name AND type = :type AND attribute = 'ERROR'
 ORDER BY sequence
 FETCH FIRST 5 ROWS ONLY"""


def arguments_sql(packaged: bool) -> str:
    return ARGUMENTS_SQL.format(
        package_filter="package_name = :package_name" if packaged else "package_name IS NULL")


def procedures_sql(packaged: bool) -> str:
    return PROCEDURES_SQL.format(
        procedure_filter=("object_name = :package_name AND procedure_name = :object_name"
                          if packaged else
                          "object_name = :object_name AND procedure_name IS NULL"))


# -- Oracle type names → jobctl's type families --------------------------------

_NUMBER_TYPES = {"NUMBER", "FLOAT", "BINARY_FLOAT", "BINARY_DOUBLE", "DECIMAL", "NUMERIC",
                 "REAL", "DOUBLE PRECISION"}
#: ALL_ARGUMENTS spells PLS_INTEGER/BINARY_INTEGER either way; PLS_TYPE names
#: integer subtypes of NUMBER (INTEGER, NATURAL, ...)
_INTEGER_TYPES = {"PLS_INTEGER", "BINARY_INTEGER", "PL/SQL PLS INTEGER", "PL/SQL BINARY INTEGER",
                  "INTEGER", "INT", "SMALLINT", "NATURAL", "NATURALN", "POSITIVE", "POSITIVEN",
                  "SIGNTYPE", "SIMPLE_INTEGER"}
_TEXT_TYPES = {"VARCHAR2", "VARCHAR", "CHAR", "NVARCHAR2", "NCHAR", "CLOB", "NCLOB", "LONG",
               "STRING"}
_BOOLEAN_TYPES = {"BOOLEAN", "PL/SQL BOOLEAN"}


def type_kind(data_type: str | None, pls_type: str | None = None) -> str:
    """The family of an ALL_ARGUMENTS DATA_TYPE (PLS_TYPE refines NUMBER).

    DATE maps to TIMESTAMP: an Oracle DATE holds a time of day, so
    `2024-05-01 13:30` must be accepted, and `2024-05-01` means midnight."""
    data_type = (data_type or "").upper()
    pls_type = (pls_type or "").upper()
    if data_type in _INTEGER_TYPES or (data_type == "NUMBER" and pls_type in _INTEGER_TYPES):
        return INTEGER
    if data_type in _NUMBER_TYPES:
        return NUMBER
    if data_type in _TEXT_TYPES:
        return TEXT
    if data_type == "DATE" or data_type.startswith("TIMESTAMP"):
        return TIMESTAMP
    if data_type in _BOOLEAN_TYPES:
        return BOOLEAN
    if data_type == "JSON":
        return JSON
    return UNSUPPORTED   # records, collections, REF CURSOR, objects, RAW, BLOB, intervals


def _display_type(row: Mapping[str, Any]) -> str:
    data_type = row["data_type"] or "UNKNOWN"
    if row.get("type_name"):
        named = ".".join(p for p in (row.get("type_owner"), row["type_name"], row.get("type_subname")) if p)
        return f"{data_type} {named}"
    pls_type = row.get("pls_type")
    if pls_type and pls_type != data_type and data_type == "NUMBER":
        return pls_type
    return data_type


#: driver types a plain Python value already binds as (src/oracledb/impl/base/
#: metadata.pyx `from_value`: int/Decimal → NUMBER, bool → BOOLEAN, date and
#: datetime → DATE); others need a typed variable
_PLAIN_BINDS = (oracledb.DB_TYPE_NUMBER, oracledb.DB_TYPE_BOOLEAN, oracledb.DB_TYPE_DATE)


def _is_plain_identifier(name: str) -> bool:
    return bool(re.fullmatch(r"[A-Z][A-Z0-9_$#]*", name))


def _quoted(name: str) -> str:
    """An identifier from the data dictionary as PL/SQL must spell it.
    Oracle identifiers cannot contain double quotes, so quoting is safe."""
    if '"' in name:
        raise UsageError(f"invalid identifier {name!r}")
    return name if _is_plain_identifier(name) else f'"{name}"'


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def _db_text(err: Any) -> str:
    """The database's message without the help URL that thin mode appends
    (src/oracledb/errors.py, `_Error._make_adjustments`)."""
    lines = [ln for ln in str(err.message).splitlines() if not ln.startswith("Help: ")]
    return "\n".join(lines).strip()


def _error_info(exc: BaseException) -> Any | None:
    """The driver's `_Error` (code, full_code, message, isrecoverable), or None."""
    if isinstance(exc, oracledb.Error) and exc.args and hasattr(exc.args[0], "full_code"):
        return exc.args[0]
    return None


def _code(exc: BaseException) -> tuple[int, str]:
    err = _error_info(exc)
    return (err.code, err.full_code) if err is not None else (-1, "")


class OracleBackend:
    name: ClassVar[str] = "oracle"
    script_style: ClassVar[str] = "sqlplus"

    def __init__(self, settings: config.ConnectionSettings):
        self.settings = settings
        #: set once V$SESSION_LONGOPS answered ORA-00942: not granted, stop asking
        self._longops_denied = False

    # -- connections ---------------------------------------------------------------
    def connect_dsn(self) -> str:
        """What `oracledb.connect(dsn=...)` receives: Easy Connect
        `host[:port][/service]`, or a tnsnames alias for `oracle://user@alias`
        (ORACLE_NOTES "Versions and connecting")."""
        s = self.settings
        if not s.host:
            raise UsageError(f"invalid DSN {s.display!r}: expected oracle://user@host:port/service "
                             "or oracle://user@tns_alias")
        if s.port is None and not s.database:
            return s.host                      # a TNS alias, looked up in config_dir / TNS_ADMIN
        host = f"[{s.host}]" if ":" in s.host else s.host
        return host + (f":{s.port}" if s.port else "") + (f"/{s.database}" if s.database else "")

    def _wallet_password(self) -> str | None:
        opts = self.settings.options
        if opts.get("wallet_password") is not None:
            raise UsageError("wallet_password may not be given in plain text (it would show in "
                             "argv or the config file); use wallet_password_env = \"VAR\" or "
                             "wallet_password_file = \"path\" (mode 0600) in the profile")
        if opts.get("wallet_password_env"):
            name = str(opts["wallet_password_env"])
            value = os.environ.get(name)
            if value is None:
                raise UsageError(f"wallet_password_env: environment variable {name} is not set")
            return value
        if opts.get("wallet_password_file"):
            return config._read_password_file(str(opts["wallet_password_file"]))
        return None

    def connect_params(self) -> dict[str, Any]:
        """Keyword arguments for `oracledb.connect`, password excluded."""
        opts = self.settings.options
        params: dict[str, Any] = {"user": self.settings.user, "dsn": self.connect_dsn()}
        for key in ("config_dir", "wallet_location"):
            if opts.get(key):
                params[key] = os.path.expanduser(str(opts[key]))
        if opts.get("tcp_connect_timeout") not in (None, ""):
            try:
                params["tcp_connect_timeout"] = float(opts["tcp_connect_timeout"])
            except (TypeError, ValueError):
                raise UsageError(f"invalid tcp_connect_timeout {opts['tcp_connect_timeout']!r}: "
                                 "must be a number of seconds") from None
        wallet_password = self._wallet_password()
        if wallet_password is not None:
            params["wallet_password"] = wallet_password
        return params

    def connect(self, *, job_id: str | None = None) -> Any:
        params = self.connect_params()
        if self.settings.password is None:
            # Thin mode cannot authenticate with a wallet alone (external auth
            # is thick only: ORACLE_NOTES "Versions and connecting"), so ask
            # even when a wallet is configured; once per process.
            prompted = config.prompt_password(self.settings)
            if prompted is not None:
                self.settings = self.settings.with_password(prompted)
        try:
            conn = oracledb.connect(password=self.settings.password, **params)
        except oracledb.Error as exc:
            raise self.translate_error(exc) from None
        try:
            if job_id is not None:
                # sent with the next round trip, the ALTER SESSION below
                # (ORACLE_NOTES "Output, identity, progress"); JOBCTL.SET_PROGRESS
                # finds its job through CLIENT_IDENTIFIER
                conn.client_identifier = job_id
                conn.module = "jobctl"
                conn.action = f"job {job_id[:8]}"
            with conn.cursor() as cur:
                # stored times are UTC whatever the client's zone; jobctl also
                # binds UTC values itself (ORACLE_NOTES "SQL")
                cur.execute(SESSION_UTC_SQL)
        except oracledb.Error as exc:
            conn.close()
            raise self.translate_error(exc) from None
        return conn

    # -- SQL -----------------------------------------------------------------------
    def execute(self, conn: Any, sql: str, binds: Mapping[str, Any] | None = None) -> Any:
        """Named `:name` binds are Oracle's own. Datetimes bind as TIMESTAMP,
        not the driver's default DATE, which drops fractional seconds
        (src/oracledb/impl/base/metadata.pyx `from_value`) and would make
        `heartbeat_at = :hb` never match a stored heartbeat. Booleans bind as
        1/0: SQL has no BOOLEAN before 23ai. Long strings for CLOB columns
        are left to the driver, which sends them as LONG binds
        (tests/test_1900_lob_var.py binds str into CLOB columns)."""
        values: dict[str, Any] = {}
        sizes: dict[str, Any] = {}
        for key, value in (binds or {}).items():
            if isinstance(value, bool):
                value = int(value)
            elif isinstance(value, dt.datetime):
                sizes[key] = oracledb.DB_TYPE_TIMESTAMP
            values[key] = value
        cur = conn.cursor()
        if sizes:
            cur.setinputsizes(**sizes)
        cur.execute(sql, values, fetch_lobs=False)
        warning = cur.warning
        if warning is not None and warning.full_code == "DPY-7000":
            raise self._compile_error(conn, sql)
        return cur

    def _compile_error(self, conn: Any, sql: str) -> DatabaseError:
        """A PL/SQL unit created with compilation errors: DDL "succeeds" with
        warning DPY-7000 (ORACLE_NOTES "SQL"; src/oracledb/errors.py maps
        ORA-24344 to it). Name the object and its first errors."""
        m = re.match(r"\s*CREATE\s+(?:OR\s+REPLACE\s+)?(?:(?:NON)?EDITIONABLE\s+)?"
                     r"(PACKAGE\s+BODY|TYPE\s+BODY|PACKAGE|PROCEDURE|FUNCTION|TRIGGER|TYPE|VIEW)\s+"
                     r"(?:\"?[\w$#]+\"?\s*\.\s*)?\"?([\w$#]+)\"?", sql, re.IGNORECASE)
        if not m:
            return DatabaseError(f"{self.settings.display}: PL/SQL compiled with errors")
        obj_type = " ".join(m.group(1).upper().split())
        obj_name = m.group(2).upper()
        details = []
        try:
            with conn.cursor() as cur:
                cur.execute(COMPILE_ERRORS_SQL, {"name": obj_name, "type": obj_type})
                details = [f"line {line}:{pos} {text.strip()}" for line, pos, text in cur]
        except oracledb.Error:
            pass
        suffix = ": " + "; ".join(details) if details else " (see USER_ERRORS)"
        return DatabaseError(f"{obj_type} {obj_name} was created with compilation errors{suffix}")

    def limit_clause(self, bind: str) -> str:
        return f"FETCH FIRST :{bind} ROWS ONLY"

    def percentile_sql(self, fraction: float, expr: str) -> str:
        return f"PERCENTILE_CONT({float(fraction)!r}) WITHIN GROUP (ORDER BY {expr})"

    def to_db_time(self, value: dt.datetime) -> dt.datetime:
        """TIMESTAMP columns hold UTC wall time, naive."""
        if value.tzinfo is not None:
            value = value.astimezone(_UTC).replace(tzinfo=None)
        return value

    def from_db_time(self, value: Any) -> dt.datetime | None:
        if value is None:
            return None
        if not isinstance(value, dt.datetime):   # a DATE-only value from elsewhere
            value = dt.datetime(value.year, value.month, value.day)
        if value.tzinfo is None:
            return value.replace(tzinfo=_UTC)
        return value.astimezone(_UTC)

    # -- errors --------------------------------------------------------------------
    def is_missing_table(self, exc: BaseException) -> bool:
        return _code(exc)[0] == 942

    def is_unique_violation(self, exc: BaseException) -> bool:
        return _code(exc)[0] == 1

    #: ORA-00955 name already used, ORA-01430 column exists, ORA-01408 column
    #: list already indexed, ORA-02260 table has a primary key, ORA-02261 such
    #: a unique/primary key exists, ORA-02275 such a referential constraint exists
    _ALREADY_EXISTS = frozenset({955, 1430, 1408, 2260, 2261, 2275})

    def is_already_exists(self, exc: BaseException) -> bool:
        return _code(exc)[0] in self._ALREADY_EXISTS

    #: ORA-00060 deadlock, ORA-04068/04061 package state discarded (retry once),
    #: ORA-00054 resource busy; ORACLE_NOTES "Errors → what jobctl says". A
    #: connection storm: ORA-00018 sessions / ORA-00020 processes exceeded.
    _TRANSIENT_CODES = frozenset({60, 54, 4068, 4061, 18, 20})
    #: connection lost, call timed out, cannot connect (database restarting)
    _TRANSIENT_DPY = frozenset({"DPY-4011", "DPY-4024", "DPY-6005"})
    #: the listener refusing for now (thin mode: DPY-6000 "Similar to ORA-125xx"):
    #: no free handler (12516, 12519) or instance blocked, e.g. starting (12520, 12528)
    _TRANSIENT_LISTENER = re.compile(r"ORA-(12516|12519|12520|12528)\b")

    def is_transient(self, exc: BaseException) -> bool:
        err = _error_info(exc)
        if err is None:
            return False
        return bool(err.isrecoverable or err.code in self._TRANSIENT_CODES
                    or err.full_code in self._TRANSIENT_DPY
                    or (err.full_code == "DPY-6000" and self._TRANSIENT_LISTENER.search(err.message)))

    def translate_error(self, exc: BaseException) -> JobctlError:
        """A driver exception as one line with the DSN (password masked) and
        what it means, per the table in ORACLE_NOTES "Errors → what jobctl says".
        Driver (DPY) errors have code 0 and are matched on full_code."""
        if isinstance(exc, JobctlError):
            return exc
        err = _error_info(exc)
        where = self.settings.display
        if err is None:
            return DatabaseError(f"{where}: {exc}")
        code, full = err.code, err.full_code
        text = _db_text(err)
        lines = text.splitlines() or [""]
        cause = lines[1].strip() if full.startswith("DPY-") and len(lines) > 1 else ""
        transient = self.is_transient(exc)
        if code == 942 and ("ASYNC_JOBS" in text.upper() or '"' not in lines[0]):
            # before 23ai ORA-00942 does not name the table; jobctl's own
            # statements touch only ASYNC_JOBS
            return SchemaMissing(where)
        if code == 6550 and "PLS-00201" in text:
            m = re.search(r"PLS-00201: identifier '([^']+)'", text)
            name = m.group(1) if m else "the procedure"
            return NotFound(f"{name}: procedure not found or no EXECUTE privilege on it in "
                            f"{where} (a grant through a role does not count in PL/SQL)")
        if code in (6564, 4047):
            return NotFound(f"procedure not found in {where}: {_first_line(text)}")
        if code == 1017 or "ORA-01017" in text:
            return DatabaseError(f"cannot connect to {where}: invalid username or password (ORA-01017)")
        if full == "DPY-4001":
            return DatabaseError(f"cannot connect to {where}: no password; set JOBCTL_PASSWORD, "
                                 "password_env or password_file in a profile, or run on a terminal "
                                 "to be asked")
        if full == "DPY-6005" or code == 12541:
            reason = cause or _first_line(text)
            s = self.settings
            target = (f"{s.host}:{s.port or 1521}" if s.port or s.database
                      else f"the address of TNS alias {s.host}")
            if "refused" in reason.lower() or code == 12541:
                reason = f"nothing is listening at {target} ({reason})"
            return DatabaseError(f"cannot connect to {where}: {reason}", transient=True)
        if full in ("DPY-6001", "DPY-6003") or code in (12514, 12505):
            return DatabaseError(f"cannot connect to {where}: unknown service: "
                                 f"{_first_line(text).split(': ', 1)[-1]}")
        if full == "DPY-4000":
            return DatabaseError(f"cannot connect to {where}: unknown TNS alias: "
                                 f"{_first_line(text).split(': ', 1)[-1]}; check config_dir or TNS_ADMIN")
        if full in ("DPY-4026", "DPY-4027"):
            return DatabaseError(f"cannot connect to {where}: {_first_line(text).split(': ', 1)[-1]}; "
                                 "a TNS alias needs tnsnames.ora in the profile's config_dir or "
                                 "$TNS_ADMIN, or use oracle://user@host:port/service")
        if full == "DPY-4011":
            return DatabaseError(f"{where}: the database or network closed the connection",
                                 transient=True)
        if code == 1013:
            return DatabaseError(f"{where}: call cancelled (ORA-01013)")
        if full == "DPY-4024":
            return DatabaseError(f"{where}: call timed out ({_first_line(text)})", transient=True)
        if code == 1031:
            return DatabaseError(f"{where}: insufficient privileges (ORA-01031)")
        return DatabaseError(f"{where}: {_first_line(text)}", transient=transient)

    # -- procedures ------------------------------------------------------------------
    def normalize_name(self, name: str) -> str:
        """PROC, PKG.PROC or SCHEMA.PKG.PROC, unquoted; checked before any
        connection because callproc pastes the name into PL/SQL
        (ORACLE_NOTES "Calling a procedure")."""
        raw = (name or "").strip()
        hint = "expected PROC, PKG.PROC or SCHEMA.PKG.PROC"
        if not raw:
            raise UsageError(f"invalid procedure name {name!r}: {hint}")
        if "@" in raw:
            raise UsageError(f"invalid procedure name {name!r}: database links are not supported")
        if '"' in raw:
            raise UsageError(f"invalid procedure name {name!r}: quoted identifiers are not "
                             f"supported; {hint}")
        if not oracledb.is_qualified_sql_name(raw):
            raise UsageError(f"invalid procedure name {name!r}: {hint}")
        parts = [p.strip() for p in raw.split(".")]
        if len(parts) > 3 or not all(oracledb.is_simple_sql_name(p) for p in parts):
            raise UsageError(f"invalid procedure name {name!r}: {hint}")
        normalized = ".".join(parts).upper()
        if len(normalized) > 200:   # PROCEDURE_NAME is VARCHAR2(200)
            raise UsageError(f"invalid procedure name {name!r}: longer than 200 characters")
        return normalized

    def _name_resolve(self, conn: Any, name: str) -> dict[str, Any]:
        cur = conn.cursor()
        out = {k: cur.var(str, 4000) for k in ("schema", "part1", "part2", "dblink")}
        out["part1_type"] = cur.var(int)
        out["object_number"] = cur.var(int)
        try:
            cur.execute(NAME_RESOLVE_SQL, {"name": name, **out})
        except oracledb.Error as exc:
            if _code(exc)[0] in (6564, 4047):
                raise NotFound(f"procedure {name} not found in {self.settings.display} "
                               "(or no EXECUTE privilege on it)") from None
            raise
        return {k: v.getvalue() for k, v in out.items()}

    def resolve(self, conn: Any, name: str, given: frozenset[str]) -> Signature:
        name = self.normalize_name(name)
        r = self._name_resolve(conn, name)
        if r["dblink"]:
            raise UsageError(f"{name} resolves through database link {r['dblink']}, "
                             "which jobctl does not support")
        owner, part1, part2, ptype = r["schema"], r["part1"], r["part2"], r["part1_type"]
        # DBMS_UTILITY documents part1_type 7 procedure, 8 function, 9 package.
        # Which of part1/part2 names a top-level unit is unconfirmed
        # (ORACLE_NOTES "Reading the signature"): take whichever is set.
        if ptype == 8:
            raise UsageError(f"{name} is a function, not a procedure; jobctl runs procedures")
        if ptype == 9:
            if not part2:
                raise UsageError(f"{name} is a package; name one of its procedures, e.g. {name}.PROC")
            package, obj = part1, part2
        elif ptype == 7:
            package, obj = None, part2 or part1
        else:
            raise NotFound(f"{name} is not a procedure (object type {ptype})")
        if not owner or not obj:
            raise NotFound(f"procedure {name} not found in {self.settings.display}")

        binds: dict[str, Any] = {"owner": owner, "object_name": obj}
        if package:
            binds["package_name"] = package
        cur = self.execute(conn, arguments_sql(package is not None), binds)
        names = [d[0].lower() for d in cur.description]
        overloads: dict[str | None, list[dict[str, Any]]] = {}
        for row in cur.fetchall():
            rec = dict(zip(names, row))
            overloads.setdefault(rec["overload"], []).append(rec)
        cur = self.execute(conn, procedures_sql(package is not None), binds)
        for object_type, overload in cur.fetchall():
            if object_type == "FUNCTION":
                raise UsageError(f"{name} is a function, not a procedure; jobctl runs procedures")
            # no arguments: absent from ALL_ARGUMENTS. That both views spell
            # OVERLOAD alike (NULL, '1', '2', ...) is unconfirmed; a mismatch
            # would show as an extra argument-less version, never a lost one
            overloads.setdefault(overload, [])
        if not overloads:
            raise NotFound(f"procedure {name} not found in {self.settings.display} "
                           "(or no EXECUTE privilege on it)")

        call_name = ".".join(_quoted(p) for p in (owner, package, obj) if p)
        candidates = []
        for overload, rows in overloads.items():
            if any(row["position"] == 0 for row in rows):
                continue      # POSITION 0 is a function's return value
            # before 12.1.0.2 a procedure without arguments had one row with
            # no ARGUMENT_NAME: skip it
            rows = [row for row in rows if row["argument_name"] is not None]
            candidates.append(Signature(
                name, tuple(self._param(row) for row in rows), overload=overload,
                extra={"call_name": call_name,
                       "types": {row["argument_name"]: row["data_type"] for row in rows}}))
        if not candidates:
            raise UsageError(f"{name} is a function, not a procedure; jobctl runs procedures")
        return self._pick_overload(name, candidates, given)

    @staticmethod
    def _param(row: Mapping[str, Any]) -> Param:
        mode = {"IN": "IN", "OUT": "OUT", "IN/OUT": "IN/OUT"}.get((row["in_out"] or "IN").upper(), "IN")
        return Param(name=row["argument_name"], type_name=_display_type(row),
                     kind=type_kind(row["data_type"], row.get("pls_type")), mode=mode,
                     defaulted=(row["defaulted"] or "N").upper() == "Y")

    @staticmethod
    def _pick_overload(name: str, candidates: list[Signature], given: frozenset[str]) -> Signature:
        """The overload whose inputs cover the given names and whose required
        inputs are all given. One overload: itself, and params.bind explains
        any mismatch. Several that fit: the user must say more."""
        if len(candidates) == 1:
            return candidates[0]

        def fits(sig: Signature) -> bool:
            inputs = {p.name.casefold() for p in sig.params if p.is_input}
            required = {p.name.casefold() for p in sig.params if p.mode == "IN" and not p.defaulted}
            return given <= inputs and required <= given

        fitting = [s for s in candidates if fits(s)]
        if len(fitting) == 1:
            return fitting[0]

        def shown(sig: Signature) -> str:
            return f"{name}(" + ", ".join(f"{p.name} {p.mode} {p.type_name}" for p in sig.params) + ")"

        listing = "; ".join(shown(s) for s in (fitting or candidates))
        if fitting:
            raise UsageError(f"{name} is overloaded and the given parameters fit more than one: "
                             f"{listing}; pass parameters that pick one")
        raise UsageError(f"{name} is overloaded and no version takes exactly the given parameters: "
                         f"{listing}")

    # -- calling -------------------------------------------------------------------
    @staticmethod
    def _prepare(p: Param, value: Any) -> Any:
        if p.kind == TIMESTAMP and isinstance(value, dt.datetime) and value.tzinfo is not None:
            # the session zone is UTC, and thin mode sends TIMESTAMP WITH TIME
            # ZONE values with offset +00:00 (src/oracledb/impl/base/encoders.pyx
            # encode_timestamp_tz): UTC wall time is right for every flavour
            value = value.astimezone(_UTC).replace(tzinfo=None)
        return value

    def _in_bind(self, cur: Any, p: Param, data_type: str, value: Any) -> Any:
        """A coerced input as callproc should bind it (ORACLE_NOTES "Calling a
        procedure", mapping list): a NULL of a non-string type, and the types
        the driver would guess wrong, get a typed variable."""
        value = self._prepare(p, value)
        db_type = self._db_type(p, (data_type or "").upper())
        if db_type is None or (value is not None and db_type in _PLAIN_BINDS):
            return value
        var = cur.var(db_type)
        var.setvalue(0, value)
        return var

    @staticmethod
    def _db_type(p: Param, data_type: str) -> Any:
        """The driver type for a parameter, or None where a plain Python value
        binds correctly (str → VARCHAR, int/Decimal → NUMBER, DATE)."""
        if p.kind in (NUMBER, INTEGER):
            return oracledb.DB_TYPE_NUMBER
        if p.kind == BOOLEAN:
            return oracledb.DB_TYPE_BOOLEAN
        if p.kind == JSON:
            return oracledb.DB_TYPE_JSON
        if p.kind == TIMESTAMP:
            if data_type == "DATE":
                return oracledb.DB_TYPE_DATE
            if "LOCAL TIME ZONE" in data_type:
                return oracledb.DB_TYPE_TIMESTAMP_LTZ
            if "TIME ZONE" in data_type:
                return oracledb.DB_TYPE_TIMESTAMP_TZ
            return oracledb.DB_TYPE_TIMESTAMP      # keeps fractional seconds
        if p.kind == TEXT:
            if data_type == "CLOB":
                return oracledb.DB_TYPE_CLOB
            if data_type == "NCLOB":
                return oracledb.DB_TYPE_NCLOB
        return None

    def _out_var(self, cur: Any, p: Param, data_type: str) -> Any:
        """A variable for an OUT or IN OUT parameter."""
        data_type = (data_type or "").upper()
        if p.kind == NUMBER:
            return cur.var(Decimal)               # exact; to_json_value makes it int/float
        if p.kind == INTEGER:
            return cur.var(int)
        if p.kind == TEXT and data_type not in ("CLOB", "NCLOB"):
            return cur.var(str, _OUTPUT_LINE_MAX)  # the default size is 4000
        db_type = self._db_type(p, data_type)
        if db_type is None:
            raise UsageError(f"parameter {p.name} is {p.type_name}, which jobctl cannot receive")
        return cur.var(db_type)

    @staticmethod
    def _keyword(name: str) -> str:
        """A parameter name as callproc pastes it: `NAME => :n`."""
        keyword = name if _is_plain_identifier(name) else f'"{name}"'
        if '"' in name or not oracledb.is_simple_sql_name(keyword):
            raise UsageError(f"invalid parameter name {name!r}")
        return keyword

    def call(self, conn: Any, sig: Signature, values: Mapping[str, Any],
             ctx: CallContext) -> dict[str, Any]:
        call_name = sig.extra.get("call_name") or self.normalize_name(sig.name)
        types = sig.extra.get("types", {})
        for p in sig.params:
            if p.kind == UNSUPPORTED and (p.is_output or p.name in values):
                raise UsageError(f"{sig.name}: parameter {p.name} is {p.type_name}, which jobctl "
                                 "cannot pass or receive")
        cur = conn.cursor()
        keyword_parameters: dict[str, Any] = {}
        out_vars: dict[str, Any] = {}
        for p in sig.params:
            keyword = self._keyword(p.name)
            data_type = types.get(p.name, "")
            if p.is_output:
                var = self._out_var(cur, p, data_type)
                if p.is_input and values.get(p.name) is not None:
                    var.setvalue(0, self._prepare(p, values[p.name]))
                keyword_parameters[keyword] = var
                out_vars[p.name] = var
            elif p.name in values:
                keyword_parameters[keyword] = self._in_bind(cur, p, data_type, values[p.name])
            # an IN parameter not given is left out, so its DEFAULT applies

        try:
            # unlimited buffer: the 20000-byte default raises ORU-10027 and
            # would fail the job (ORACLE_NOTES "Output, identity, progress")
            cur.execute(OUTPUT_ENABLE_SQL)
            cur.callproc(call_name, keyword_parameters=keyword_parameters)
        except oracledb.Error as exc:
            self._read_output(conn, ctx)       # lines put before the error still help
            raise self._job_error(exc, sig.name) from None
        self._read_output(conn, ctx)
        result = {}
        for pname, var in out_vars.items():
            value = var.getvalue()
            if hasattr(value, "read"):        # an OUT CLOB arrives as a LOB
                value = value.read()
            result[pname.lower()] = to_json_value(value)
        return result

    def _job_error(self, exc: BaseException, name: str) -> JobctlError:
        """What ERROR_MSG records: the database's own text (ORA-20001 ...
        ORA-06512 ...), except where a translation says more."""
        err = _error_info(exc)
        if err is None:
            return DatabaseError(f"{name}: {exc}")
        if (err.code == 6550 and "PLS-00201" in err.message) or (
                err.full_code.startswith("DPY-") and err.full_code != "DPY-4024"):
            return self.translate_error(exc)
        return DatabaseError(_db_text(err), transient=self.is_transient(exc))

    def _read_output(self, conn: Any, ctx: CallContext) -> None:
        """DBMS_OUTPUT lines, readable only now and in this session
        (samples/dbms_output.py). Best effort: a dead connection has none."""
        try:
            cur = conn.cursor()
            lines_var = cur.arrayvar(str, _OUTPUT_CHUNK, _OUTPUT_LINE_MAX)
            count_var = cur.var(int)
            while True:
                count_var.setvalue(0, _OUTPUT_CHUNK)
                cur.execute(OUTPUT_GET_LINES_SQL, {"lines": lines_var, "num_lines": count_var})
                count = count_var.getvalue() or 0
                for line in lines_var.getvalue()[:count]:
                    ctx.log(line or "")
                if count < _OUTPUT_CHUNK:
                    break
        except oracledb.Error:
            pass

    def interrupt(self, conn: Any) -> None:
        """From the watchdog thread: thin mode's cancel() breaks the running
        call, which raises ORA-01013; the connection stays usable and the
        runner rolls back (ORACLE_NOTES "Long calls, cancel, timeout";
        tests/test_1100_connection.py test_1126)."""
        if conn is not None:
            conn.cancel()

    def poll_progress(self, conn: Any, call_conn: Any, ctx: CallContext) -> None:
        """Progress a procedure publishes with SET_SESSION_LONGOPS, read from
        another session. Non-DBA users get ORA-00942 unless granted SELECT on
        V_$SESSION_LONGOPS: then stop asking (ORACLE_NOTES "Output, identity,
        progress"). Oracle also lists its own long operations (scans over 6 s)
        there; the most recently updated one wins."""
        if self._longops_denied or conn is None or call_conn is None:
            return
        try:
            sid, serial = call_conn.session_id, call_conn.serial_num
            cur = self.execute(conn, LONGOPS_SQL, {"sid": sid, "serial": serial})
            row = cur.fetchone()
        except oracledb.Error as exc:
            if _code(exc)[0] in (942, 1031):
                self._longops_denied = True
            return
        if row and row[1]:
            ctx.progress(100.0 * float(row[0] or 0) / float(row[1]))

    def schema_files(self, *, examples: bool) -> list[str]:
        files = ["create_async_jobs_table.sql"]
        if examples:
            files.append("examples.sql")
        return files


BACKEND = OracleBackend
