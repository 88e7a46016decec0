"""Connecting to Oracle: the DSN, driver options from the DSN and the
profile, passwords and wallets, thick mode (ORACLE_NOTES "Versions and
connecting")."""

from __future__ import annotations

import inspect
import os
import re
import threading
import time
import typing
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import oracledb

from ... import config
from ...errors import DatabaseError, UsageError
from .errors import db_text, error_info, first_line
from .shared import OracleBase

#: one round trip at connect: the session's schema and instance (the
#: watchdog needs the call session's instance while that session is busy)
SESSION_INFO_SQL = """
BEGIN
    :current_schema := SYS_CONTEXT('USERENV', 'CURRENT_SCHEMA');
    :instance := SYS_CONTEXT('USERENV', 'INSTANCE');
    :sid := SYS_CONTEXT('USERENV', 'SID');
END;"""

#: the same round trip on a bookkeeping connection (no job: the CLI, doctor,
#: a pool's books): its session zone is UTC, as `doctor` checks. A job's
#: sessions keep the zone thin mode set from the client (ORA_SDTZ or the
#: local offset): jobctl's own clock is SYS_EXTRACT_UTC(SYSTIMESTAMP) and its
#: times are bound as UTC, so only the user's procedure sees the zone, and it
#: must see the one SQL*Plus would give it (ORACLE_NOTES: Second review,
#: "Session time zone")
SESSION_SETUP_SQL = """
BEGIN
    EXECUTE IMMEDIATE q'[ALTER SESSION SET TIME_ZONE = '+00:00']';
    :current_schema := SYS_CONTEXT('USERENV', 'CURRENT_SCHEMA');
    :instance := SYS_CONTEXT('USERENV', 'INSTANCE');
    :sid := SYS_CONTEXT('USERENV', 'SID');
END;"""

#: MODULE holds 48 bytes, ACTION 32, CLIENT_IDENTIFIER 64 (DBMS_APPLICATION_INFO,
#: DBMS_SESSION.SET_IDENTIFIER); a job id is 32 characters
MODULE_BOOKS = "jobctl"
MODULE_WATCH = "jobctl watch"
WATCH_PREFIX = "jobctl-watch:"


def client_time_zone() -> str:
    """The zone thin mode gives a new session: ORA_SDTZ, else the client's
    local UTC offset (ORACLE_NOTES: Second review, "Session time zone";
    src/oracledb/impl/thin/messages/auth.pyx, `_get_alter_timezone_statement`),
    as ALTER SESSION SET TIME_ZONE takes it. OS_TZ means the local offset and
    DB_TZ the database's zone, as for the Oracle Client."""
    raw = os.environ.get("ORA_SDTZ", "").strip()
    if raw.upper() == "DB_TZ":
        return "DBTIMEZONE"
    if raw and raw.upper() != "OS_TZ":
        if not re.fullmatch(r"[A-Za-z0-9_/+:.\- ]{1,64}", raw):
            raise UsageError(f"invalid ORA_SDTZ {raw!r}: expected a zone such as +02:00 or "
                             "Europe/Paris")
        return f"'{raw}'"
    offset = time.localtime().tm_gmtoff // 60
    sign = "+" if offset >= 0 else "-"
    hours, minutes = divmod(abs(offset), 60)
    return f"'{sign}{hours:02d}:{minutes:02d}'"


# -- driver options from the DSN query string and the profile -------------------

#: jobctl's own options in the DSN's query string (config reads them), not the driver's
JOBCTL_QUERY_OPTIONS = frozenset({"session_setup"})

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
            err = error_info(exc)
            text = first_line(db_text(err)) if err is not None else str(exc)
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


class OracleConnections(OracleBase):
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
            return config.read_password_file(str(opts["wallet_password_file"]))
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
            if key in JOBCTL_QUERY_OPTIONS:
                continue
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
            alias = os.environ.get("TWO_TASK", "").strip()
            if alias and s.dsn == f"oracle://{alias}":
                raise UsageError(f"TWO_TASK={alias} names a database but no user: set a DSN with "
                                 f"a user, e.g. JOBCTL_DSN=oracle://USER@{alias} (or --dsn, or "
                                 "a profile's dsn)")
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
            # write-only attributes, sent with the next round trip, the
            # session setup below (ORACLE_NOTES: Second review, "Identity is
            # per job, not per connection"). A connection opened for a job is
            # its watch session until start_job_session makes it the call's:
            # the two carry distinct values, so a DBA can tell them apart
            if job_id is not None:
                conn.client_identifier = WATCH_PREFIX + job_id
                conn.module = MODULE_WATCH
                conn.action = job_id[:32]
            else:
                conn.module = MODULE_BOOKS
            with conn.cursor() as cur:
                out = {"current_schema": cur.var(str, 128), "instance": cur.var(str, 40),
                       "sid": cur.var(str, 40)}
                cur.execute(SESSION_SETUP_SQL if job_id is None else SESSION_INFO_SQL, out)
                info = {k: v.getvalue() for k, v in out.items()}
                info["zone_forced"] = job_id is None
                self._remember(conn, info)
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
