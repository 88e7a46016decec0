"""Where jobctl connects, with which secret, and its timing knobs.

Order of precedence for the DSN: `--dsn`, `JOBCTL_DSN`, the profile named by
`--profile` / `JOBCTL_PROFILE` in `~/.config/jobctl/config.toml`, the file's
`default_profile`, the libpq environment (`PGHOST`, `PGDATABASE`,
`PGSERVICE`) or Oracle's `TWO_TASK`, then the embedded SQLite default under
`$XDG_DATA_HOME`.
"""

from __future__ import annotations

import os
import re
import stat
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from .errors import UsageError
from .tunables import MAX_TUNABLE_S, Tunables  # noqa: F401 - re-exported: config is where settings live
from .sqlfiles import session_statements

SCHEMES = {"sqlite": "sqlite", "postgresql": "postgresql", "postgres": "postgresql",
           "oracle": "oracle"}


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "jobctl" / "config.toml"


def default_sqlite_path() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "jobctl" / "jobs.db"


#: secrets a DSN's query string may carry (`?password=...` works with libpq);
#: the value runs to the next `&` or `#`, whatever characters it holds
_QUERY_SECRET = re.compile(r"([?&](?:password|passwd|wallet_password)=)([^&#]*)", re.IGNORECASE)
_SECRET_QUERY_KEYS = {"password", "passwd", "wallet_password"}


def _userinfo_split(rest: str) -> tuple[str | None, str]:
    """What follows `scheme://`, as (userinfo, host and the rest).

    The userinfo ends at the LAST `@` that is not inside a query-string
    secret, so a password may hold `@ : / % ? # &` unencoded and still never
    be taken for the host (issue 9 item 8: a password with `/` or `%` used to
    leak into "invalid DSN" messages)."""
    protected = [m.span(2) for m in _QUERY_SECRET.finditer(rest)]
    for i in range(len(rest) - 1, -1, -1):
        if rest[i] == "@" and not any(a <= i < b for a, b in protected):
            return rest[:i], rest[i + 1:]
    return None, rest


def _user_password(scheme: str, userinfo: str) -> tuple[str, str | None, bool]:
    """(user, password, sqlplus form). URL form `user:password` is
    percent-decoded; Oracle also takes SQL*Plus's `user/password`, verbatim
    (ORACLE_NOTES: Found in a line-by-line review, "sqlplus habits")."""
    colon, slash = userinfo.find(":"), userinfo.find("/")
    if SCHEMES.get(scheme.lower()) == "oracle" and slash != -1 and (colon == -1 or slash < colon):
        user, password = userinfo.split("/", 1)
        return user, password, True
    if colon != -1:
        user, password = userinfo.split(":", 1)
        return unquote(user), unquote(password), False
    return unquote(userinfo), None, False


def mask_dsn(dsn: str) -> str:
    """The DSN with every secret replaced by `***`, safe to print or log:
    whatever lies between the user name and the last `@` before the host,
    and any `password=` in the query string, on every backend."""
    if is_keyword_dsn(str(dsn)):
        return _KEYWORD_SECRET.sub(lambda m: m.group(1) + "***", str(dsn))
    text = _QUERY_SECRET.sub(lambda m: m.group(1) + "***", str(dsn))
    scheme, sep, rest = text.partition("://")
    if not sep:
        # not a URL at all: it may still be `user/password@host`
        userinfo, host = _userinfo_split(text)
        if userinfo is None:
            return text
        user = re.split(r"[:/]", userinfo, maxsplit=1)[0]
        return f"{user}/***@{host}" if user != userinfo else text
    userinfo, host = _userinfo_split(rest)
    if userinfo is None:
        return text
    user, password, sqlplus = _user_password(scheme, userinfo)
    if password is None or (sqlplus and not user and not password):
        return text                         # no password, or `/@alias` (external auth)
    if sqlplus:
        return f"{scheme}://{user}/***@{host}"
    shown = re.split(r"[:/]", userinfo, maxsplit=1)[0]
    return f"{scheme}://{shown}:***@{host}"


#: a libpq connection string, `host=db1 dbname=prod user=etl` (what psql
#: takes): it starts with a keyword and `=`, which no URL scheme does
_KEYWORD_START = re.compile(r"\s*[A-Za-z_]+\s*=")
_KEYWORD = re.compile(r"([A-Za-z_]+)\s*=\s*")
#: its password's value: quoted (`'it\'s'`, escapes included) or up to
#: the next blank; a value that is cut short (`password='abc`) is masked to the end
_KEYWORD_SECRET = re.compile(
    r"(\b(?:password|passwd)\s*=\s*)('(?:[^'\\]|\\.)*(?:'|$)|(?:[^\s\\]|\\.)*)",
    re.IGNORECASE | re.DOTALL)


def is_keyword_dsn(dsn: str) -> bool:
    return bool(_KEYWORD_START.match(dsn))


def _keyword_pairs(dsn: str) -> dict[str, str]:
    """`key=value ...` as libpq parses it: values are bare words or single-
    quoted, and a backslash escapes the next character in either."""
    pairs: dict[str, str] = {}
    i, n = 0, len(dsn)
    while True:
        while i < n and dsn[i].isspace():
            i += 1
        if i >= n:
            return pairs
        m = _KEYWORD.match(dsn, i)
        if not m:
            raise UsageError(f"invalid DSN {mask_dsn(dsn)!r}: expected key=value pairs such as "
                             "host=db1 dbname=prod user=etl")
        key, i = m.group(1).lower(), m.end()
        value: list[str] = []
        quoted = i < n and dsn[i] == "'"
        i += quoted
        while i < n and (quoted or not dsn[i].isspace()):
            if dsn[i] == "\\" and i + 1 < n:
                value.append(dsn[i + 1])
                i += 2
                continue
            if quoted and dsn[i] == "'":
                break
            value.append(dsn[i])
            i += 1
        if quoted:
            if i >= n:
                raise UsageError(f"invalid DSN {mask_dsn(dsn)!r}: unterminated quoted value of {key}")
            i += 1
        pairs[key] = "".join(value)


def _keyword_value(value: str) -> str:
    if value and not re.search(r"[\s'\\]", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _parse_keyword_dsn(dsn: str, options: dict[str, Any] | None) -> ConnectionSettings:
    """A libpq keyword string is PostgreSQL, as for psql. Its password is
    taken out of the DSN kept (and printed, and sent to the worker); every
    other keyword travels as a connection option."""
    pairs = _keyword_pairs(dsn)
    password = pairs.pop("password", None)
    opts = dict(options or {})
    port: int | None = None
    if pairs.get("port", "").isdigit():
        port = int(pairs["port"])
    elif "port" in pairs:
        opts["port"] = pairs["port"]           # `5432,5433` for several hosts
    opts.update({k: v for k, v in pairs.items() if k not in ("host", "port", "dbname", "user")})
    clean = " ".join(f"{k}={_keyword_value(v)}" for k, v in pairs.items())
    return ConnectionSettings(scheme="postgresql", dsn=clean, user=pairs.get("user") or None,
                              host=pairs.get("host") or None, port=port,
                              database=pairs.get("dbname") or None, options=opts,
                              password=password)


def _without_query_secrets(query: str) -> tuple[str, str | None]:
    """The query string without `password=`-like items, and that password."""
    kept, password = [], None
    for item in query.split("&") if query else []:
        key, _, value = item.partition("=")
        if key.lower() in _SECRET_QUERY_KEYS:
            if key.lower() != "wallet_password":
                password = unquote(value)
                continue
        kept.append(item)
    return "&".join(kept), password


@dataclass(frozen=True)
class ConnectionSettings:
    """A parsed DSN plus the profile's connection options and the secret."""

    scheme: str                      # sqlite | postgresql | oracle
    dsn: str                         # as given, password removed
    user: str | None = None
    host: str | None = None
    port: int | None = None
    database: str | None = None      # sqlite path, PG dbname, Oracle service or TNS alias
    options: dict[str, Any] = field(default_factory=dict)
    password: str | None = field(default=None, repr=False)
    #: the SQLite default file: created with its schema on first use
    is_default: bool = False
    #: SQLite: how long a write waits for another writer's lock (JOBCTL_BUSY_TIMEOUT)
    busy_timeout_s: float = 30.0

    def __post_init__(self) -> None:  # a bad session_setup is refused here: exit 2
        session_statements(self.scheme, self.session_setup)

    @property
    def session_setup(self) -> str | None:  # SQL each job's session runs first (.psqlrc)
        return self.options.get("session_setup")

    @property
    def display(self) -> str:
        """The DSN to print: `user:***@host` when a password is in use."""
        if is_keyword_dsn(self.dsn):
            return mask_dsn(self.dsn) + (" password=***" if self.password is not None else "")
        if self.dsn == "postgresql://":
            return "postgresql:// (libpq environment)"   # "cannot connect to postgresql://" says nothing
        if self.password is None or self.scheme == "sqlite" or self.external_auth:
            return mask_dsn(self.dsn)
        scheme, _, rest = self.dsn.partition("://")
        userinfo, host = _userinfo_split(rest)
        if not userinfo:
            return mask_dsn(self.dsn)
        user = re.split(r"[:/]", userinfo, maxsplit=1)[0]
        return mask_dsn(f"{scheme}://{user}:***@{host}")

    @property
    def external_auth(self) -> bool:
        """Oracle's `/@alias`: the wallet or the OS vouches for the user, no
        password is asked (thick mode only)."""
        return self.scheme == "oracle" and self.dsn.partition("://")[2].startswith("/@")

    def with_password(self, password: str | None) -> ConnectionSettings:
        return replace(self, password=password)

    def to_payload(self) -> dict[str, Any]:
        """For the worker, sent over a pipe: never argv, never the environment."""
        dsn = self.dsn
        if self.scheme == "sqlite" and self.database:
            # the worker runs in /: a relative sqlite:///jobs.db must reach the
            # file the caller meant, which parse_dsn made absolute
            query = dsn.partition("?")[2]
            dsn = f"sqlite:///{quote(self.database)}" + (f"?{query}" if query else "")
        return {"dsn": dsn, "options": self.options, "password": self.password,
                "is_default": self.is_default, "busy_timeout_s": self.busy_timeout_s}

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> ConnectionSettings:
        s = parse_dsn(data["dsn"], options=data.get("options") or {})
        return replace(s, password=data.get("password"), is_default=bool(data.get("is_default")),
                       busy_timeout_s=float(data.get("busy_timeout_s", cls.busy_timeout_s)))


def parse_dsn(dsn: str, *, options: dict[str, Any] | None = None) -> ConnectionSettings:
    if is_keyword_dsn(dsn):
        return _parse_keyword_dsn(dsn, options)
    scheme, sep, _ = dsn.partition("://")
    if not sep and re.fullmatch(r"[\w$#]*/\S*@\S+", dsn):
        # SQL*Plus's `user/password@connect_identifier` (ORACLE_NOTES: Found
        # in a line-by-line review, "sqlplus habits")
        dsn = "oracle://" + dsn
        scheme, sep, _ = dsn.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        raise UsageError(
            f"invalid DSN {mask_dsn(dsn)!r}: expected sqlite:///path, "
            "postgresql://user@host:port/db, host=... dbname=... (libpq) "
            "or oracle://user@host:port/service"
        )
    kind = SCHEMES[scheme.lower()]
    opts = dict(options or {})
    if kind == "sqlite":
        # as in SQLAlchemy: sqlite:///relative.db, sqlite:////absolute/path.db
        path = dsn[len(scheme) + 3:]
        path = path[1:] if path.startswith("/") else path
        path, _, query = path.partition("?")
        query, _ = _without_query_secrets(query)
        opts.update(parse_qsl(query))
        dsn = dsn.split("?", 1)[0] + (f"?{query}" if query else "")
        if not path:
            raise UsageError("invalid DSN: sqlite needs a file path, e.g. sqlite:///var/lib/jobs.db")
        # absolute now, so a detached worker in another directory finds the same file
        return ConnectionSettings(scheme=kind, dsn=dsn, options=opts,
                                  database=os.path.abspath(os.path.expanduser(unquote(path))))
    rest = dsn[len(scheme) + 3:]
    userinfo, hostpart = _userinfo_split(rest)
    user: str | None = None
    password: str | None = None
    sqlplus = False
    if userinfo is not None:
        user, password, sqlplus = _user_password(scheme, userinfo)
    if kind == "oracle" and hostpart.startswith("//"):
        hostpart = hostpart[2:]                # sqlplus's `user/pw@//host:port/svc`
    try:
        parts = urlsplit("//" + hostpart)
        port = parts.port
    except ValueError as exc:
        raise UsageError(f"invalid DSN {mask_dsn(dsn)!r}: {exc}") from None
    query, query_password = _without_query_secrets(parts.query)
    opts.update(parse_qsl(query))
    if password is None and query_password is not None:
        password = query_password
    clean_host = hostpart if query == parts.query else (
        hostpart.split("?", 1)[0] + (f"?{query}" if query else ""))
    external = sqlplus and not user and not password
    if external:
        clean = f"{scheme}:///@{clean_host}"
    elif user:
        clean = f"{scheme}://{quote(user, safe='')}@{clean_host}"
    else:
        clean = f"{scheme}://{clean_host}"
    if userinfo is not None and not sqlplus and password is None and query_password is None:
        clean = dsn                             # nothing secret to take out: keep it as typed
    database = unquote(parts.path.lstrip("/")) or None
    return ConnectionSettings(
        scheme=kind, dsn=clean, user=user or None,
        host=parts.hostname, port=port, database=database, options=opts,
        password=None if external else password,
    )


def load_config_file(path: Path | None = None) -> dict[str, Any]:
    path = path or config_path()
    if not path.exists():
        return {}
    import tomllib

    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None


def read_password_file(name: str) -> str:
    path = Path(os.path.expanduser(name))
    try:
        st = path.stat()
    except OSError as exc:
        raise UsageError(f"password_file {path}: {exc.strerror}") from None
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise UsageError(
            f"password_file {path} is readable by others (mode {stat.S_IMODE(st.st_mode):o}); "
            f"run `chmod 600 {path}`"
        )
    return path.read_text().strip("\r\n")


@dataclass(frozen=True)
class Settings:
    connection: ConnectionSettings
    tunables: Tunables
    profile_name: str | None = None
    #: where the password came from, for `jobctl doctor`: "JOBCTL_PASSWORD",
    #: "password_env VAR", "password_file PATH", "dsn", "wallet", or None
    #: (doctor reports "prompt" when the backend had to ask)
    password_source: str | None = None
    #: environment variables that carried a secret; the worker's environment drops them
    secret_env: tuple[str, ...] = ()
    #: how the DSN was chosen, for `jobctl config`: "--dsn", "JOBCTL_DSN",
    #: "profile NAME (...)", "libpq environment: PGHOST=...", "TWO_TASK=...",
    #: "SQLite default"
    dsn_origin: str = "SQLite default"


#: what makes psql connect without a connection string: with one of these
#: set and no DSN, jobctl is PostgreSQL too, and libpq reads them itself
LIBPQ_TARGET_ENV = ("PGHOST", "PGHOSTADDR", "PGDATABASE", "PGSERVICE")
#: what libpq also takes from the environment, shown by `jobctl config`
LIBPQ_OTHER_ENV = ("PGPORT", "PGUSER", "PGSERVICEFILE", "PGSSLMODE", "PGCONNECT_TIMEOUT",
                   "PGPASSFILE", "PGAPPNAME", "PGOPTIONS", "PGTARGETSESSIONATTRS")


def _environment_dsn() -> tuple[str, str] | None:
    """(DSN, origin) from the variables psql and sqlplus obey, when jobctl
    was given no DSN and no profile names one."""
    target = [name for name in LIBPQ_TARGET_ENV if os.environ.get(name)]
    if target:
        # no host, no database: libpq fills in every part from PG* itself,
        # in this process and in the worker, which inherits the environment
        shown = ", ".join(f"{name}={os.environ[name]}" for name in target
                          + [n for n in ("PGPORT", "PGUSER") if os.environ.get(n)])
        return "postgresql://", f"libpq environment: {shown}"
    alias = os.environ.get("TWO_TASK", "").strip()
    if alias:
        # sqlplus's default connect identifier, a TNS alias that the driver
        # looks up in $TNS_ADMIN (ORACLE_NOTES: Versions and connecting). It
        # names no user: connecting then says to give a DSN with one
        return f"oracle://{alias}", f"TWO_TASK={alias} (Oracle)"
    return None


def _secret_env(prof: dict[str, Any], scheme: str) -> tuple[str, ...]:
    names = ["JOBCTL_PASSWORD"] if "JOBCTL_PASSWORD" in os.environ else []
    env_dsn = os.environ.get("JOBCTL_DSN")
    if env_dsn and mask_dsn(env_dsn) != env_dsn:
        names.append("JOBCTL_DSN")
    # what jobctl reads itself, and what the driver reads on jobctl's behalf
    for name in (prof.get("password_env"), prof.get("wallet_password_env"),
                 "PGPASSWORD" if scheme == "postgresql" else None):
        if isinstance(name, str) and name in os.environ:
            names.append(name)
    return tuple(names)


def resolve_settings(dsn: str | None = None, profile: str | None = None) -> Settings:
    origin = "--dsn" if dsn else "JOBCTL_DSN"
    profile_origin = "--profile" if profile else "JOBCTL_PROFILE"
    dsn = dsn or os.environ.get("JOBCTL_DSN") or None
    profile = profile or os.environ.get("JOBCTL_PROFILE") or None
    cfg = load_config_file()
    profiles = cfg.get("profiles", {})
    if profile is None and dsn is None:
        profile = cfg.get("default_profile")
        profile_origin = "default_profile"
    prof: dict[str, Any] = {}
    if profile is not None:
        if profile not in profiles:
            known = ", ".join(sorted(profiles)) or "none defined"
            raise UsageError(f"unknown profile {profile!r} in {config_path()} ({known})")
        prof = dict(profiles[profile])
        for key in ("dsn", "password_env", "password_file"):
            if key in prof and not isinstance(prof[key], str):
                raise UsageError(f"profile {profile!r} in {config_path()}: {key} must be a string "
                                 f"in quotes, not {prof[key]!r}")
    if dsn is None and prof.get("dsn"):
        dsn = prof["dsn"]
        origin = f"profile {profile} ({profile_origin})"
    if dsn is None and (from_env := _environment_dsn()) is not None:
        dsn, origin = from_env
    options = {k: v for k, v in prof.items()
               if k not in ("dsn", "password_env", "password_file", "modules")}
    for where in (cfg, prof):
        if not isinstance(where.get("modules", []), list) or \
                not all(isinstance(m, str) for m in where.get("modules", [])):
            raise UsageError(f"modules in {config_path()} must be a list of strings "
                             "(module names or .py paths)")
    modules = list(cfg.get("modules", [])) + list(prof.get("modules", []))
    env_modules = os.environ.get("JOBCTL_MODULES")
    if env_modules:
        modules += [m for m in env_modules.split(os.pathsep) if m]
    # a module given by path is found from here: the worker runs in /
    modules = [os.path.abspath(os.path.expanduser(m)) if m.endswith(".py") or "/" in m else m
               for m in modules]
    if modules:
        # travels with the connection settings so the worker loads them too
        options["modules"] = modules
    tunables = Tunables.from_sources(prof)
    if dsn is None:
        origin = "SQLite default"
        path = default_sqlite_path()
        conn = ConnectionSettings(scheme="sqlite", dsn=f"sqlite:///{path}", database=str(path),
                                  options=options, is_default=True)
    else:
        conn = parse_dsn(dsn, options=options)

    source = "dsn" if conn.password is not None else None
    password = os.environ.get("JOBCTL_PASSWORD")
    if password is not None:
        source = "JOBCTL_PASSWORD"
    if password is None and prof.get("password_env"):
        password = os.environ.get(prof["password_env"])
        if password is None:
            raise UsageError(f"profile {profile!r}: environment variable {prof['password_env']} is not set")
        source = f"password_env {prof['password_env']}"
    if password is None and prof.get("password_file"):
        password = read_password_file(prof["password_file"])
        source = f"password_file {prof['password_file']}"
    if password is not None:
        conn = conn.with_password(password)
    elif source is None and conn.options.get("wallet_location"):
        source = "wallet"
    conn = replace(conn, busy_timeout_s=tunables.busy_timeout_s)

    return Settings(connection=conn, tunables=tunables, profile_name=profile,
                    password_source=source, secret_env=_secret_env(prof, conn.scheme),
                    dsn_origin=origin)


def prompt_password(settings: ConnectionSettings) -> str | None:
    """Ask on a terminal; None when there is no terminal to ask on."""
    if not sys.stdin.isatty():
        return None
    import getpass

    return getpass.getpass(f"Password for {settings.display}: ")


def describe(settings: Settings) -> dict[str, Any]:
    """What `jobctl config` shows: where jobctl would connect and why, read
    from the settings, the files and the environment only (never connects)."""
    conn = settings.connection
    path = config_path()
    password = settings.password_source
    if password is None:
        password = _driver_password_source(conn)
    notes: list[str] = []
    database_exists = None
    if conn.scheme == "sqlite":
        database_exists = os.path.exists(conn.database or "")
        if not database_exists:
            notes.append("the default SQLite file does not exist yet: jobctl submit or "
                         "jobctl db init creates it; other commands exit 4 until then"
                         if conn.is_default else "the SQLite file the DSN names does not exist: "
                         "only jobctl db init creates it; other commands exit 4 until then")
    environment: dict[str, str] = {}
    if conn.scheme == "postgresql":
        for name in LIBPQ_TARGET_ENV + LIBPQ_OTHER_ENV:
            if os.environ.get(name):
                environment[name] = os.environ[name]
        if environment and settings.dsn_origin.startswith("libpq"):
            notes.append("libpq fills in what the DSN leaves out from the PG* variables")
        elif environment:
            notes.append("libpq fills in from the PG* variables only what the DSN leaves out")
    if conn.scheme == "oracle":
        for name in ("TWO_TASK", "TNS_ADMIN", "ORACLE_HOME", "JOBCTL_ORACLE_CLIENT"):
            if os.environ.get(name):
                environment[name] = os.environ[name]
        if conn.port is None and not conn.database and conn.host:
            where = conn.options.get("config_dir")
            where = (f"config_dir {where}" if where else
                     f"$TNS_ADMIN ({os.environ['TNS_ADMIN']})" if os.environ.get("TNS_ADMIN") else
                     "$ORACLE_HOME/network/admin (TNS_ADMIN is not set)")
            notes.append(f"{conn.host} is a TNS alias, looked up in tnsnames.ora in {where}")
        if not conn.user and not conn.external_auth:
            notes.append("the DSN names no user: connecting will fail; give a DSN such as "
                         f"oracle://USER@{conn.host or 'host:port/service'}")
    # the DSN as written (masked): `user:***@` only when the password is in it,
    # not when it comes from a password_file or the environment (said below)
    shown = conn.display if settings.password_source == "dsn" else replace(conn, password=None).display
    return {"backend": conn.scheme, "dsn": shown, "dsn_source": settings.dsn_origin,
            "profile": settings.profile_name, "config_file": str(path),
            "config_file_exists": path.exists(), "password_source": password,
            "database": conn.database, "database_exists": database_exists,
            "environment": environment, "notes": notes}


def _driver_password_source(conn: ConnectionSettings) -> str | None:
    """Where the driver itself would find a password, for `jobctl config`."""
    if conn.scheme == "postgresql":
        if os.environ.get("PGPASSWORD"):
            return "PGPASSWORD (read by libpq)"
        passfile = os.environ.get("PGPASSFILE") or os.path.join(os.path.expanduser("~"), ".pgpass")
        if os.path.exists(passfile):
            return f"{passfile} (read by libpq)"
    if conn.scheme == "oracle" and conn.external_auth:
        return "external (wallet or OS)"
    if conn.scheme != "sqlite":
        return "prompt at a terminal, if the database asks"
    return None
