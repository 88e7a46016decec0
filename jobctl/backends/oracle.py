"""Oracle Database through python-oracledb: thin mode (no Oracle Client) by
default, thick mode when a profile asks for it (`oracle_client`, `thick`).

No Oracle server runs where this was written. Every driver or database fact
the code relies on names its source: `ORACLE_NOTES "section"` is a section of
the project's shared Oracle notes, `src/...`, `tests/...` and
`samples/...` are paths in the oracle/python-oracledb repository. Points that
could not be confirmed are marked "unconfirmed" and coded defensively.

oracledb is imported here and nowhere else: this module loads only for an
`oracle://` DSN, so other commands never pay for the driver.
"""

from __future__ import annotations

import datetime as dt
import inspect
import os
import re
import threading
import typing
import weakref
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

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

#: one round trip at connect: stored times are UTC whatever the client's
#: zone, and the session's schema and instance are learnt while at it (the
#: watchdog needs the call session's instance while that session is busy)
SESSION_SETUP_SQL = """
BEGIN
    EXECUTE IMMEDIATE q'[ALTER SESSION SET TIME_ZONE = '+00:00']';
    :current_schema := SYS_CONTEXT('USERENV', 'CURRENT_SCHEMA');
    :instance := SYS_CONTEXT('USERENV', 'INSTANCE');
    :sid := SYS_CONTEXT('USERENV', 'SID');
END;"""

#: SERIAL# for thick mode, where `Connection.serial_num` does not exist
#: (src/oracledb/connection.py: "available only in python-oracledb Thin
#: mode"); needs SELECT on V_$SESSION, so best effort
SERIAL_SQL = "SELECT serial# FROM v$session WHERE sid = :sid"

NAME_RESOLVE_SQL = """
BEGIN
    DBMS_UTILITY.NAME_RESOLVE(name => :name, context => 1, schema => :schema,
                              part1 => :part1, part2 => :part2, dblink => :dblink,
                              part1_type => :part1_type, object_number => :object_number);
    :current_schema := SYS_CONTEXT('USERENV', 'CURRENT_SCHEMA');
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

#: `jobctl procedures`: every standalone and packaged procedure the user can
#: see, with its arguments, in one round trip. ALL_PROCEDURES lists
#: argument-less procedures that ALL_ARGUMENTS leaves out, hence the outer
#: join (ORACLE_NOTES "Reading the signature"); the join on OBJECT_ID and
#: SUBPROGRAM_ID (standalone: 1 in both views) is unconfirmed on a server.
#: Rows with POSITION 0 are packaged functions, dropped by the caller.
#: Oracle's own schemas (DBMS_*, ...) are left out; the pattern is matched
#: on the name without its owner, or a packaged procedure's own name.
PROCEDURE_LIST_SQL = """
SELECT p.owner, p.object_name, p.procedure_name, p.overload,
       SYS_CONTEXT('USERENV', 'CURRENT_SCHEMA') AS current_schema,
       a.position, a.argument_name, a.data_type, a.pls_type, a.type_owner, a.type_name,
       a.type_subname, a.in_out, a.defaulted
  FROM all_procedures p
  LEFT JOIN all_arguments a
    ON a.object_id = p.object_id AND a.subprogram_id = p.subprogram_id AND a.data_level = 0
 WHERE (p.object_type = 'PROCEDURE' OR (p.object_type = 'PACKAGE' AND p.procedure_name IS NOT NULL))
   AND p.owner NOT IN (SELECT u.username FROM all_users u WHERE u.oracle_maintained = 'Y')
   AND (NVL2(p.procedure_name, p.object_name || '.' || p.procedure_name, p.object_name)
            LIKE :pattern ESCAPE '\\' OR p.procedure_name LIKE :pattern ESCAPE '\\')
 ORDER BY p.owner, p.object_name, p.procedure_name, p.overload, a.position"""

#: RAC: V$ views show the local instance only and the watchdog's connection
#: may land on another one, so read GV$ by the call session's INST_ID and
#: fall back to V$ when GV$ is not granted (ORACLE_NOTES: Found in a
#: line-by-line review, "RAC")
GV_LONGOPS_SQL = """
SELECT sofar, totalwork
  FROM gv$session_longops
 WHERE inst_id = :inst_id AND sid = :sid AND serial# = :serial AND totalwork > 0
 ORDER BY last_update_time DESC
 FETCH FIRST 1 ROWS ONLY"""

LONGOPS_SQL = """
SELECT sofar, totalwork
  FROM v$session_longops
 WHERE sid = :sid AND serial# = :serial AND totalwork > 0
 ORDER BY last_update_time DESC
 FETCH FIRST 1 ROWS ONLY"""

GV_SESSION_ALIVE_SQL = """
SELECT COUNT(*)
  FROM gv$session
 WHERE inst_id = :inst_id AND sid = :sid AND serial# = :serial"""

SESSION_ALIVE_SQL = """
SELECT COUNT(*)
  FROM v$session
 WHERE sid = :sid AND serial# = :serial"""

#: before each call: a savepoint to return to if the call must be repeated
#: (ORA-04068), and DBMS_OUTPUT without a size limit, in one round trip
CALL_START_SQL = "BEGIN SAVEPOINT jobctl_call; DBMS_OUTPUT.ENABLE(NULL); END;"
CALL_UNDO_SQL = "ROLLBACK TO SAVEPOINT jobctl_call"
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

#: ORA-04068 existing state of packages has been discarded, ORA-04061
#: existing state of a package has been invalidated
_PACKAGE_STATE_DISCARDED = frozenset({4068, 4061})


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


def _summary(text: str) -> str:
    """The first line plus every PLS-nnnnn line, as one line: ORA-06550 says
    only where (`line 5, column 9:`), the PLS line says what is wrong
    (issue 8 defect 3)."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return text.strip()
    pls = [ln for ln in lines[1:] if re.match(r"PLS-\d{5}:", ln)]
    return " ".join(dict.fromkeys([lines[0], *pls]))


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


def _created_object(sql: str) -> tuple[str, str, bool] | None:
    """(object type, name, OR REPLACE?) of a CREATE statement, or None."""
    m = re.match(r"\s*CREATE\s+(OR\s+REPLACE\s+)?(?:(?:NON)?EDITIONABLE\s+)?"
                 r"(PACKAGE\s+BODY|TYPE\s+BODY|PACKAGE|PROCEDURE|FUNCTION|TRIGGER|TYPE|VIEW)\s+"
                 r"(?:\"?[\w$#]+\"?\s*\.\s*)?\"?([\w$#]+)\"?", sql, re.IGNORECASE)
    if not m:
        return None
    return " ".join(m.group(2).upper().split()), m.group(3).upper(), bool(m.group(1))


def _code(exc: BaseException) -> tuple[int, str]:
    err = _error_info(exc)
    return (err.code, err.full_code) if err is not None else (-1, "")


# -- driver options from the DSN query string and the profile -------------------

#: set from the DSN itself or by jobctl's own secret handling, never as options
_NOT_OPTIONS = frozenset({"user", "proxy_user", "password", "newpassword", "wallet_password",
                          "host", "port", "service_name", "sid", "externalauth",
                          "handle"})

#: minutes between probes on an idle call connection, so a call whose peer
#: vanished behind a firewall fails instead of hanging for ever (thin mode
#: has no ENABLE=BROKEN: ORACLE_NOTES: Found in a line-by-line review,
#: "Dead peers")
DEFAULT_EXPIRE_TIME_MIN = 3


def _scalar_options() -> dict[str, type]:
    """`ConnectParams` keywords that take one str/int/float/bool, read from
    the installed driver's own signature, so a new driver's options work and
    a misspelt one is refused."""
    out: dict[str, type] = {}
    hints = typing.get_type_hints(oracledb.ConnectParams.__init__)
    for name in inspect.signature(oracledb.ConnectParams.__init__).parameters:
        args = [a for a in typing.get_args(hints.get(name)) if a is not type(None)]
        if name not in _NOT_OPTIONS and len(args) == 1 and args[0] in (str, int, float, bool):
            out[name] = args[0]
    return out


DRIVER_OPTIONS = _scalar_options()

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _option_value(name: str, raw: Any, kind: type, where: str) -> Any:
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _TRUE | _FALSE:
            return text in _TRUE
    elif kind is str:
        return str(raw)
    else:
        try:
            value = kind(raw)
            if value >= 0:
                return value
        except (TypeError, ValueError):
            pass
    what = {bool: "true or false", int: "a whole number >= 0", float: "a number >= 0"}[kind]
    raise UsageError(f"invalid {name} {raw!r} in {where}: must be {what}")


# -- thick mode: loaded at most once per process ----------------------------------

_client_lock = threading.Lock()
_client_loaded = False


def load_client(lib_dir: str | None, config_dir: str | None = None) -> None:
    """`oracledb.init_oracle_client` once per process, before any connection
    (CLI and worker alike: both connect through OracleBackend.connect).
    DPI-1047 (no library there) becomes one line, exit 4. In thick mode the
    Oracle Client reads tnsnames.ora and sqlnet.ora from `config_dir` given
    here, not from the connect keyword (src/oracledb/connect_params.py,
    `config_dir`), and gets the connect string unchanged, which external
    authentication with a wallet needs (the wallet is keyed by the alias)."""
    global _client_loaded
    with _client_lock:
        if _client_loaded:
            return
        try:
            oracledb.init_oracle_client(lib_dir=lib_dir, config_dir=config_dir)
        except oracledb.Error as exc:
            err = _error_info(exc)
            text = _first_line(_db_text(err)) if err is not None else str(exc)
            text = re.sub(r"\s*See https?://\S+ for help\.?$", "", text)
            where = lib_dir or "the system library path"
            raise DatabaseError(
                f"cannot load the Oracle Client library from {where} for thick mode: {text}; "
                "install Oracle Instant Client there, or remove oracle_client / "
                "JOBCTL_ORACLE_CLIENT / thick to use thin mode") from None
        _client_loaded = True


def client_info() -> dict[str, Any]:
    """What `doctor` reports: the driver mode in this process and, in thick
    mode, the Oracle Client version."""
    if oracledb.is_thin_mode():
        return {"mode": "thin", "client_version": None, "driver_version": oracledb.__version__}
    return {"mode": "thick", "client_version": ".".join(map(str, oracledb.clientversion())),
            "driver_version": oracledb.__version__}


class OracleBackend:
    name: ClassVar[str] = "oracle"
    script_style: ClassVar[str] = "sqlplus"

    def __init__(self, settings: config.ConnectionSettings):
        self.settings = settings
        #: which LONGOPS view still answers: GV$, then V$, then none (not granted)
        self._longops_views = [GV_LONGOPS_SQL, LONGOPS_SQL]
        #: per connection: (current schema, instance number, SID) learnt at connect
        self._sessions: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()

    # -- connections ---------------------------------------------------------------
    def client_lib_dir(self) -> tuple[bool, str | None]:
        """(thick mode?, Oracle Client directory or None for the system path).
        Thin mode cannot do Native Network Encryption, external authentication
        or databases before 12.1 (ORACLE_NOTES "Versions and connecting"), so
        a profile may opt in with `oracle_client = "/path"` (or the
        JOBCTL_ORACLE_CLIENT variable) or `thick = true`."""
        opts = self.settings.options
        lib_dir = opts.get("oracle_client") or os.environ.get("JOBCTL_ORACLE_CLIENT") or None
        thick = lib_dir is not None
        if opts.get("thick") not in (None, ""):
            # an explicit `thick = false` wins, e.g. over a JOBCTL_ORACLE_CLIENT
            # exported for other profiles
            thick = _option_value("thick", opts["thick"], bool, "the profile")
        return thick, (os.path.expanduser(str(lib_dir)) if lib_dir else None)

    def connect_dsn(self) -> str:
        """What `oracledb.connect(dsn=...)` receives: Easy Connect
        `host[:port][/service]`, or a tnsnames alias for `oracle://user@alias`
        (ORACLE_NOTES "Versions and connecting")."""
        s = self.settings
        if not s.host:
            raise UsageError(f"invalid DSN {s.display!r}: expected oracle://user@host:port/service, "
                             "oracle://user@tns_alias or user/password@connect_identifier")
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

    def _driver_options(self) -> dict[str, Any]:
        """Easy Connect / ConnectParams options from the profile and the DSN's
        query string (`?expire_time=2&retry_count=3`); the query string wins.
        An unknown name in the query string is refused: it is the user's
        typing, whereas the profile also holds jobctl's own settings."""
        opts = self.settings.options
        out: dict[str, Any] = {"expire_time": DEFAULT_EXPIRE_TIME_MIN}
        query = dict(parse_qsl(urlsplit(self.settings.dsn).query, keep_blank_values=True))
        for key, raw in opts.items():
            if key in DRIVER_OPTIONS and key not in query and raw not in (None, ""):
                out[key] = _option_value(key, raw, DRIVER_OPTIONS[key], "the profile")
        for key, raw in query.items():
            if key not in DRIVER_OPTIONS:
                raise UsageError(f"unknown option {key!r} in the DSN's query string; Oracle takes "
                                 "ConnectParams options such as expire_time, retry_count, "
                                 "retry_delay, tcp_connect_timeout, https_proxy, "
                                 "ssl_server_dn_match, config_dir, wallet_location")
            out[key] = _option_value(key, raw, DRIVER_OPTIONS[key], "the DSN")
        for key in ("config_dir", "wallet_location"):
            if key in out:
                out[key] = os.path.expanduser(out[key])
        return out

    def connect_params(self) -> dict[str, Any]:
        """Keyword arguments for `oracledb.connect`, password excluded."""
        s = self.settings
        thick, _ = self.client_lib_dir()
        wallet_password = self._wallet_password()     # its own message before "unknown option"
        params: dict[str, Any] = {"dsn": self.connect_dsn(), **self._driver_options()}
        if s.external_auth:
            if not thick:
                raise UsageError("/@alias (external authentication: wallet, OS or Kerberos) needs "
                                 "thick mode: set oracle_client = \"/path/to/instantclient\" or "
                                 "thick = true in the profile, or JOBCTL_ORACLE_CLIENT")
            # no user, no password: the wallet or the OS vouches. Whether a
            # standalone thick connection needs externalauth=True or merely
            # no credentials is unconfirmed; the flag is valid either way
            # (src/oracledb/connect_params.py, `externalauth`)
            params["externalauth"] = True
        elif not s.user:
            raise UsageError(f"DSN {s.display!r} names no user: write oracle://USER@host:port/service, "
                             "oracle://USER@tns_alias or USER/PASSWORD@connect_identifier "
                             "(external authentication: /@alias with thick mode)")
        else:
            params["user"] = s.user
        if wallet_password is not None:
            params["wallet_password"] = wallet_password
        return params

    def connect(self, *, job_id: str | None = None) -> Any:
        params = self.connect_params()
        thick, lib_dir = self.client_lib_dir()
        if thick:
            load_client(lib_dir, params.get("config_dir"))
        if self.settings.password is None and not self.settings.external_auth:
            # thin mode cannot authenticate with a wallet alone (ORACLE_NOTES
            # "Versions and connecting"), so ask even when a wallet is
            # configured; once per process
            prompted = config.prompt_password(self.settings)
            if prompted is not None:
                self.settings = self.settings.with_password(prompted)
        try:
            if self.settings.external_auth:
                conn = oracledb.connect(**params)
            else:
                conn = oracledb.connect(password=self.settings.password, **params)
        except oracledb.Error as exc:
            raise self.translate_error(exc) from None
        try:
            if job_id is not None:
                # sent with the next round trip, the session setup below
                # (ORACLE_NOTES "Output, identity, progress");
                # JOBCTL_PROGRESS.SET_PROGRESS finds its job through it
                conn.client_identifier = job_id
                conn.module = "jobctl"
                conn.action = f"job {job_id[:8]}"
            with conn.cursor() as cur:
                out = {"current_schema": cur.var(str, 128), "instance": cur.var(str, 40),
                       "sid": cur.var(str, 40)}
                cur.execute(SESSION_SETUP_SQL, out)
                self._remember(conn, {k: v.getvalue() for k, v in out.items()})
        except oracledb.Error as exc:
            conn.close()
            raise self.translate_error(exc) from None
        return conn

    def _remember(self, conn: Any, info: Mapping[str, Any]) -> None:
        try:
            self._sessions[conn] = dict(info)
        except TypeError:      # not weak-referenceable: then simply not cached
            pass

    def _session_info(self, conn: Any) -> dict[str, Any]:
        try:
            return self._sessions.get(conn) or {}
        except TypeError:
            return {}

    # -- the call's server session (issue 9 item 2: orphaned sessions) ----------------
    def session_id(self, conn: Any) -> str:
        """"SID,SERIAL#,@INST_ID" of the session behind `conn`, as ALTER SYSTEM
        KILL SESSION takes it (ORACLE_NOTES: Found in a line-by-line review,
        "A break is only a marker"). Thin mode knows SID and SERIAL# locally;
        thick mode asks V$SESSION (best effort: SERIAL# may stay unknown)."""
        info = self._session_info(conn)
        instance = info.get("instance")
        sid = serial = None
        try:
            sid, serial = conn.session_id, conn.serial_num
        except (AttributeError, oracledb.Error):
            pass
        if sid is None or instance is None:
            with conn.cursor() as cur:
                out = {"current_schema": cur.var(str, 128), "instance": cur.var(str, 40),
                       "sid": cur.var(str, 40)}
                cur.execute(SESSION_SETUP_SQL, out)
                info = {k: v.getvalue() for k, v in out.items()}
                self._remember(conn, info)
            instance = info.get("instance")
            sid = sid if sid is not None else info.get("sid")
        if serial is None:
            try:
                with conn.cursor() as cur:
                    cur.execute(SERIAL_SQL, {"sid": int(sid)})
                    row = cur.fetchone()
                    serial = row[0] if row else None
            except oracledb.Error:
                serial = None
        return f"{int(sid)},{'' if serial is None else int(serial)},@{int(instance or 1)}"

    @staticmethod
    def _parse_session(session: str) -> tuple[int, int, int]:
        m = re.fullmatch(r"\s*(\d+)\s*,\s*(\d+)\s*,\s*@(\d+)\s*", session or "")
        if not m:
            raise UsageError(f"invalid Oracle session {session!r}: expected SID,SERIAL#,@INST_ID")
        return int(m.group(1)), int(m.group(2)), int(m.group(3))

    def session_alive(self, conn: Any, session: str) -> bool | None:
        """Whether the session still exists: GV$SESSION (any RAC instance), or
        V$SESSION when only that is granted and the session is on this
        connection's instance; None when neither may be read."""
        try:
            sid, serial, inst_id = self._parse_session(session)
        except UsageError:
            return None        # SERIAL# was not known when it was recorded
        try:
            cur = self.execute(conn, GV_SESSION_ALIVE_SQL,
                               {"inst_id": inst_id, "sid": sid, "serial": serial})
            return bool(cur.fetchone()[0])
        except oracledb.Error as exc:
            if _code(exc)[0] not in (942, 1031):
                raise self.translate_error(exc) from None
        here = self._session_info(conn).get("instance")
        if here is None or int(here) != inst_id:
            return None
        try:
            cur = self.execute(conn, SESSION_ALIVE_SQL, {"sid": sid, "serial": serial})
            return bool(cur.fetchone()[0])
        except oracledb.Error as exc:
            if _code(exc)[0] in (942, 1031):
                return None
            raise self.translate_error(exc) from None

    def kill_session_sql(self, session: str) -> str:
        """The statement a DBA runs to end the session for good."""
        sid, serial, inst_id = self._parse_session(session)
        return f"ALTER SYSTEM KILL SESSION '{sid},{serial},@{inst_id}' IMMEDIATE"

    def end_session(self, conn: Any, session: str) -> bool:
        """`jobctl cancel` of an orphaned job: kill its session when this user
        holds ALTER SYSTEM; False (the caller then prints kill_session_sql for
        a DBA) when it does not. A break cannot reach a session whose client
        died (ORACLE_NOTES: Found in a line-by-line review, "A break is only a
        marker"), so killing it is the only way to stop the work."""
        try:
            statement = self.kill_session_sql(session)
        except UsageError:
            return False       # SERIAL# unknown: only a DBA can pick the session
        try:
            with conn.cursor() as cur:
                cur.execute(statement)
        except oracledb.Error as exc:
            code = _code(exc)[0]
            if code == 30:     # ORA-00030: the session is already gone
                return True
            if code == 1031:   # ORA-01031: insufficient privileges
                return False
            raise self.translate_error(exc) from None
        return self.session_alive(conn, session) is False

    def liveness_dir(self) -> None:
        return None  # the heartbeat row is written on its own connection, never blocked by the call

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
        try:
            cur.execute(sql, values, fetch_lobs=False)
        except oracledb.Error as exc:
            created = _created_object(sql)
            if _code(exc)[0] == 955 and created and created[2]:
                # CREATE OR REPLACE replaces its own kind only: ORA-00955 means
                # another object type owns the name (ORACLE_NOTES: Found in a
                # line-by-line review, "ORA-00955 on CREATE OR REPLACE")
                obj_type, obj_name, _ = created
                raise DatabaseError(
                    f"cannot create {obj_type} {obj_name}: another kind of object already has "
                    f"that name (ORA-00955); see SELECT object_type FROM user_objects WHERE "
                    f"object_name = '{obj_name}', then rename or drop it") from None
            raise
        warning = cur.warning
        if warning is not None and warning.full_code == "DPY-7000":
            error = self._compile_error(conn, sql)
            if error is not None:
                raise error
        return cur

    def _compile_error(self, conn: Any, sql: str) -> DatabaseError | None:
        """A PL/SQL unit created with compilation errors: DDL "succeeds" with
        warning DPY-7000 (ORACLE_NOTES "SQL"; src/oracledb/errors.py maps
        ORA-24344 to it). Name the object and its first errors. With
        PLSQL_WARNINGS enabled the same warning comes for warnings alone:
        no ATTRIBUTE = 'ERROR' row in USER_ERRORS means the unit is valid
        (ORACLE_NOTES: Found in a line-by-line review), so None."""
        created = _created_object(sql)
        if not created:
            return DatabaseError(f"{self.settings.display}: PL/SQL compiled with errors")
        obj_type, obj_name, _ = created
        try:
            with conn.cursor() as cur:
                cur.execute(COMPILE_ERRORS_SQL, {"name": obj_name, "type": obj_type})
                details = [f"line {line}:{pos} {text.strip()}" for line, pos, text in cur]
        except oracledb.Error:
            return DatabaseError(f"{obj_type} {obj_name} was created with compilation errors "
                                 "(see USER_ERRORS)")
        if not details:
            return None
        return DatabaseError(f"{obj_type} {obj_name} was created with compilation errors: "
                             + "; ".join(details))

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

    def is_undefined_column(self, exc: BaseException) -> bool:
        """ORA-00904 invalid identifier: a column of jobctl's that an
        original-shaped ASYNC_JOBS lacks (then `db init` upgrades it)."""
        return _code(exc)[0] == 904

    def is_unique_violation(self, exc: BaseException) -> bool:
        return _code(exc)[0] == 1

    #: ORA-00955 name already used, ORA-01430 column exists, ORA-01408 column
    #: list already indexed, ORA-02260 table has a primary key, ORA-02261 such
    #: a unique/primary key exists, ORA-02275 such a referential constraint exists
    _ALREADY_EXISTS = frozenset({955, 1430, 1408, 2260, 2261, 2275})

    def is_already_exists(self, exc: BaseException) -> bool:
        return _code(exc)[0] in self._ALREADY_EXISTS

    #: ORA-00060 deadlock, ORA-00054 resource busy (ORACLE_NOTES "Errors →
    #: what jobctl says"). ORA-04068/04061 are not here: `call` retries the
    #: call itself once on them, and no bookkeeping write can raise them. A
    #: connection storm: ORA-00018 sessions / ORA-00020 processes exceeded.
    _TRANSIENT_CODES = frozenset({60, 54, 18, 20})
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
            # jobctl calls through an anonymous block, which runs with the
            # session's enabled roles, so a role grant does count
            # (ORACLE_NOTES "Errors → what jobctl says")
            return NotFound(f"{name}: procedure not found, or this user may not execute it, in "
                            f"{where}: grant EXECUTE on it to the user directly or through a "
                            f"role enabled in the session ({_summary(text)})")
        if code in (6564, 4047):
            return NotFound(f"procedure not found in {where}: {_summary(text)}")
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
        if full == "DPY-3001":
            return DatabaseError(f"cannot connect to {where}: {_summary(text)}; this needs thick "
                                 "mode: set oracle_client = \"/path/to/instantclient\" or "
                                 "thick = true in the profile (README: Oracle Database, thick mode)")
        if full == "DPY-4011":
            return DatabaseError(f"{where}: the database or network closed the connection",
                                 transient=True)
        if code == 1013:
            return DatabaseError(f"{where}: call cancelled (ORA-01013)")
        if full == "DPY-4024":
            return DatabaseError(f"{where}: call timed out ({_first_line(text)})", transient=True)
        if code == 1031:
            return DatabaseError(f"{where}: insufficient privileges (ORA-01031)")
        return DatabaseError(f"{where}: {_summary(text)}", transient=transient)

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
        out["current_schema"] = cur.var(str, 128)
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

        # Leave the owner out when it is the session's own schema: in A.B
        # Oracle looks for an object A in the current schema before a schema
        # A, so OWNER.PROC fails with PLS-00302 when the schema owns an object
        # named like itself (ORACLE_NOTES: Found in a line-by-line review,
        # "Name resolution shadows schemas"). The same spelling is the
        # canonical PROCEDURE_NAME, so `x`, `SCOTT.X` and `scott.x` are one.
        shown_owner = None if owner == r.get("current_schema") else owner
        call_name = ".".join(_quoted(p) for p in (shown_owner, package, obj) if p)
        canonical = ".".join(p for p in (shown_owner, package, obj) if p)
        if not all(_is_plain_identifier(p) for p in canonical.split(".")):
            canonical = name      # a quoted name cannot be typed back: keep the user's
        candidates = []
        for overload, rows in overloads.items():
            if any(row["position"] == 0 for row in rows):
                continue      # POSITION 0 is a function's return value
            # before 12.1.0.2 a procedure without arguments had one row with
            # no ARGUMENT_NAME: skip it
            rows = [row for row in rows if row["argument_name"] is not None]
            candidates.append(Signature(
                canonical, tuple(self._param(row) for row in rows), overload=overload,
                extra={"call_name": call_name,
                       "types": {row["argument_name"]: row["data_type"] for row in rows}}))
        if not candidates:
            raise UsageError(f"{name} is a function, not a procedure; jobctl runs procedures")
        return self._pick_overload(canonical, candidates, given)

    def list_procedures(self, conn: Any, like: str | None) -> list[Signature]:
        # unquoted Oracle names are upper case, and so is the pattern then
        cur = self.execute(conn, PROCEDURE_LIST_SQL, {"pattern": (like or "%").upper()})
        names = [d[0].lower() for d in cur.description]
        units: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        for row in cur.fetchall():
            rec = dict(zip(names, row))
            key = (rec["owner"], rec["object_name"], rec["procedure_name"], rec["overload"],
                   rec["current_schema"])
            units.setdefault(key, []).append(rec)
        out = []
        for (owner, object_name, procedure_name, overload, current), rows in units.items():
            if any(r["position"] == 0 for r in rows):
                continue  # a packaged function's return value
            # named as resolve names it: the owner only when it is not the session's
            parts = [owner if owner != current else None, object_name, procedure_name]
            shown = ".".join(p for p in parts if p)
            args = [r for r in rows if r["argument_name"] is not None]
            out.append(Signature(shown, tuple(self._param(r) for r in args), overload=overload))
        return out

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

    def check_submit(self, sig: Signature) -> None:
        """Refuse at submit (exit 2, nothing written) what the worker could
        only fail on: an OUT or IN OUT parameter of a type jobctl cannot
        receive, or a required input it cannot pass (REF CURSOR, records,
        collections, object types, XMLTYPE; issue 8 defect 6)."""
        for p in sig.params:
            if p.kind != UNSUPPORTED:
                continue
            if p.is_output:
                raise UsageError(f"{sig.name}: parameter {p.name} ({p.mode}) is {p.type_name}, "
                                 "which jobctl cannot receive; wrap the procedure in one whose "
                                 "parameters are NUMBER, VARCHAR2, DATE, TIMESTAMP, CLOB or BOOLEAN")
            if not p.defaulted:
                raise UsageError(f"{sig.name}: parameter {p.name} is {p.type_name}, which jobctl "
                                 "cannot pass; wrap the procedure in one whose parameters are "
                                 "NUMBER, VARCHAR2, DATE, TIMESTAMP, CLOB or BOOLEAN")

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
        if db_type is oracledb.DB_TYPE_NVARCHAR:
            var = cur.var(db_type, max(1, len(value or "")))
        else:
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
            if data_type in ("NVARCHAR2", "NCHAR"):
                # national character set: a plain str binds as VARCHAR and
                # loses what the database character set cannot hold
                # (ORACLE_NOTES: Found in a line-by-line review, "National
                # character types")
                return oracledb.DB_TYPE_NVARCHAR
        return None

    def _out_var(self, cur: Any, p: Param, data_type: str) -> Any:
        """A variable for an OUT or IN OUT parameter."""
        data_type = (data_type or "").upper()
        if p.kind == NUMBER:
            # NUMBER holds 38 digits: a Decimal variable returns them all,
            # where the driver's default would hand back a float
            return cur.var(Decimal)
        if p.kind == INTEGER:
            return cur.var(int)
        if p.kind == TEXT and data_type in ("NVARCHAR2", "NCHAR"):
            return cur.var(oracledb.DB_TYPE_NVARCHAR, _OUTPUT_LINE_MAX)
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
            cur.execute(CALL_START_SQL)
            try:
                cur.callproc(call_name, keyword_parameters=keyword_parameters)
            except oracledb.Error as exc:
                if _code(exc)[0] not in _PACKAGE_STATE_DISCARDED or not self._undo_call(cur):
                    raise
                # a package was recompiled since this session used it; its
                # state is reset now, so the call is repeated once from the
                # savepoint (ORACLE_NOTES "Errors → what jobctl says": retry once)
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

    @staticmethod
    def _undo_call(cur: Any) -> bool:
        """Back to the state before the call. ORA-04068 may come half way,
        when the procedure reaches a package after doing work; a procedure
        that committed has no savepoint left (ORA-01086): then no retry,
        since its work cannot be undone."""
        try:
            cur.execute(CALL_UNDO_SQL)
            return True
        except oracledb.Error:
            return False

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
        another session: GV$SESSION_LONGOPS by the call session's instance
        (RAC), else V$SESSION_LONGOPS; a view that answers ORA-00942/01031 is
        not granted and is not asked again (ORACLE_NOTES "Output, identity,
        progress"). Oracle also lists its own long operations (scans over
        6 s) there; the most recently updated one wins."""
        if not self._longops_views or conn is None or call_conn is None:
            return
        try:
            sid, serial = call_conn.session_id, call_conn.serial_num
        except (AttributeError, oracledb.Error):
            return             # thick mode: no local SID/SERIAL#; progress via the package
        instance = self._session_info(call_conn).get("instance")
        while self._longops_views:
            sql = self._longops_views[0]
            if sql is GV_LONGOPS_SQL and instance is None:
                self._longops_views.pop(0)
                continue
            binds = {"sid": sid, "serial": serial}
            if sql is GV_LONGOPS_SQL:
                binds["inst_id"] = int(instance)
            try:
                row = self.execute(conn, sql, binds).fetchone()
                break
            except oracledb.Error as exc:
                if _code(exc)[0] in (942, 1031):
                    self._longops_views.pop(0)
                    continue
                return
        else:
            return
        if row and row[1]:
            ctx.progress(100.0 * float(row[0] or 0) / float(row[1]))

    def schema_files(self, *, examples: bool) -> list[str]:
        files = ["create_async_jobs_table.sql"]
        if examples:
            files.append("examples.sql")
        return files


BACKEND = OracleBackend
