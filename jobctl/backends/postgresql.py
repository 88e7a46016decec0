"""PostgreSQL through psycopg 3.

Procedures are PostgreSQL `PROCEDURE`s, run with `CALL schema.proc(name =>
value, ...)`; INOUT / OUT parameters come back as the one result row. Inside a
procedure, `RAISE NOTICE 'jobctl:progress=40'` reports progress and every
other notice is captured as output, live, through a notice handler.

psycopg is imported inside this module only, so that a SQLite user never pays
for it (and need not have it installed).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from functools import lru_cache
from typing import Any, ClassVar

import psycopg
from psycopg import errors as pgerrors
from psycopg import sql as pgsql
from psycopg.types.json import Jsonb, set_json_loads

from .. import config, jsontext
from ..config import ConnectionSettings
from ..errors import DatabaseError, JobctlError, NotFound, SchemaMissing, UsageError
from ..model import (
    BOOLEAN, DATE, INTEGER, JSON, NUMBER, TEXT, TIMESTAMP, UNSUPPORTED, Param, Signature,
)
from ..params import to_json_value
from ..sqlfiles import segments
from .base import WORK_NEWS, CallContext

_UTC = dt.timezone.utc
DEFAULT_CONNECT_TIMEOUT = 10

# -- names -------------------------------------------------------------------

_PART = r'(?:[A-Za-z_][A-Za-z0-9_$]*|"(?:[^"]|"")+")'
_NAME = re.compile(rf"({_PART})(?:\.({_PART}))?")
_PLAIN = re.compile(r"[a-z_][a-z0-9_$]*")
_MAX_IDENT_BYTES = 63  # NAMEDATALEN - 1: longer names are silently truncated by the server


def _unquote(part: str) -> str:
    if part.startswith('"'):
        return part[1:-1].replace('""', '"')
    return part.lower()  # PostgreSQL folds unquoted identifiers to lower case


def _render(ident: str) -> str:
    """An identifier as it would be typed: bare when folding keeps it, else quoted."""
    return ident if _PLAIN.fullmatch(ident) else '"' + ident.replace('"', '""') + '"'


def split_name(name: str) -> tuple[str | None, str]:
    """`proc` / `schema.proc` (quoted parts allowed) → (schema or None, proc),
    folded as the server folds them. UsageError for anything else."""
    text = name.strip()
    m = _NAME.fullmatch(text)
    if not m:
        raise UsageError(
            f"invalid procedure name {name!r}: expected NAME or SCHEMA.NAME "
            "(letters, digits, _ and $, or a double-quoted identifier)"
        )
    parts = [_unquote(p) for p in m.groups() if p is not None]
    for p in parts:
        if "\x00" in p or len(p.encode("utf-8")) > _MAX_IDENT_BYTES:
            raise UsageError(f"invalid procedure name {name!r}: identifier {p!r} is too long "
                             f"(PostgreSQL keeps at most {_MAX_IDENT_BYTES} bytes)")
    return (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])


# -- binds -------------------------------------------------------------------

_BIND = re.compile(r"::|:([A-Za-z_][A-Za-z0-9_]*)|%")


@lru_cache(maxsize=256)
def convert_binds(sql: str, names: frozenset[str]) -> str:
    """`:name` → `%(name)s` for the names given, outside string literals,
    quoted identifiers, comments, dollar quotes and `::` casts; every other
    `%` is doubled, since psycopg reads the whole text for placeholders."""

    def code(m: re.Match) -> str:
        if m.group(0) == "%":
            return "%%"
        if m.group(1) in names:
            return f"%({m.group(1)})s"
        return m.group(0)

    return "".join(_BIND.sub(code, piece) if is_code else piece.replace("%", "%%")
                   for is_code, piece in segments(sql))


# -- types -------------------------------------------------------------------

_FAMILIES = {
    NUMBER: ("numeric", "float4", "float8"),
    INTEGER: ("int2", "int4", "int8", "oid"),
    TEXT: ("text", "varchar", "bpchar", "char", "name", "citext", "uuid", "xml", "inet",
           "cidr", "macaddr", "macaddr8", "interval", "time", "timetz"),
    DATE: ("date",),
    TIMESTAMP: ("timestamp", "timestamptz"),
    BOOLEAN: ("bool",),
    JSON: ("json", "jsonb"),
}
_FAMILY_OF = {typname: family for family, names in _FAMILIES.items() for typname in names}

_MODES = {"i": "IN", "o": "OUT", "b": "IN/OUT", "v": "IN", "t": "OUT"}

_PROCS_SQL = """
SELECT p.oid::int8 AS oid, n.nspname, p.proname, p.prokind, p.pronargdefaults,
       p.proargnames, p.proargmodes::text[] AS proargmodes,
       COALESCE(p.proallargtypes, p.proargtypes::oid[])::int8[] AS argtypes,
       pg_catalog.pg_get_function_identity_arguments(p.oid) AS identity,
       pg_catalog.has_schema_privilege(n.oid, 'USAGE') AS schema_usage,
       pg_catalog.has_function_privilege(p.oid, 'EXECUTE') AS can_execute,
       {pos} AS pos
  FROM pg_catalog.pg_proc p
  JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
  {join}
 WHERE p.proname = %(proc)s {where}
 ORDER BY pos, p.oid
"""

#: `jobctl procedures`: every procedure the role may call, in any schema it
#: may use (the pg_ schemas are the system's); one row per overload. A name
#: is shown bare when the search_path finds it so (pg_function_is_visible).
_LIST_PROCS_SQL = """
SELECT p.oid::int8 AS oid, n.nspname, p.proname, p.pronargdefaults,
       p.proargnames, p.proargmodes::text[] AS proargmodes,
       COALESCE(p.proallargtypes, p.proargtypes::oid[])::int8[] AS argtypes,
       pg_catalog.pg_get_function_identity_arguments(p.oid) AS identity,
       pg_catalog.pg_function_is_visible(p.oid) AS visible
  FROM pg_catalog.pg_proc p
  JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
 WHERE p.prokind = 'p'
   AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
   AND pg_catalog.has_schema_privilege(n.oid, 'USAGE')
   AND pg_catalog.has_function_privilege(p.oid, 'EXECUTE')
 ORDER BY p.proname, n.nspname, p.oid
"""

_TYPES_SQL = """
SELECT t.oid::int8 AS oid, pg_catalog.format_type(t.oid, NULL) AS type_name,
       b.typname AS base_name, b.typtype AS base_kind,
       e.typname AS elem_name, e.typtype AS elem_kind
  FROM pg_catalog.pg_type t
  JOIN pg_catalog.pg_type b ON b.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
  LEFT JOIN pg_catalog.pg_type e0
         ON b.typcategory = 'A' AND b.typlen = -1 AND e0.oid = b.typelem
  LEFT JOIN pg_catalog.pg_type e
         ON e.oid = CASE WHEN e0.typtype = 'd' THEN e0.typbasetype ELSE e0.oid END
 WHERE t.oid = ANY(%(oids)s)
"""


def _family(typname: str | None, typtype: str | None) -> str:
    if typname is None:
        return UNSUPPORTED
    if typtype == "e":  # enum: passed as its label
        return TEXT
    return _FAMILY_OF.get(typname, UNSUPPORTED)


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _diag_message(exc: BaseException) -> str:
    diag: Any = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    if not primary:
        text = re.sub(r"\s+", " ", _one_line(str(exc)))  # libpq's "FATAL:  ..." and tabs
        return text.removeprefix("connection failed: ") or type(exc).__name__
    out = primary
    if diag.message_detail:
        out += f" (DETAIL: {diag.message_detail})"
    if diag.message_hint:
        out += f" (HINT: {diag.message_hint})"
    return _one_line(out)


def _json_ready(value: Any) -> Any:
    value = to_json_value(value)
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, float, bool, Decimal)):
        return value
    return str(value)  # interval, uuid, inet, ...: their text form


def _dumps(value: Any) -> str:
    return jsontext.dumps(to_json_value(value))


_MISSING_JOBS_TABLE = re.compile(r'"(?:[^"]*\.)?async_jobs"', re.IGNORECASE)
_IN_PREFIX = re.compile(r"(\(|, )IN ")  # `IN a integer` reads as `a integer`
_PROGRESS = re.compile(r"\s*jobctl:progress\s*=\s*(-?\d+(?:\.\d+)?)\s*%?\s*", re.IGNORECASE)


#: refusals at connect that pass on their own: max_connections or a role's
#: CONNECTION LIMIT (53300), slots reserved for superusers, a restart
_PASSING_FATAL = re.compile(r"too many (connections|clients)|remaining connection slots|"
                            r"the database system is (starting up|shutting down|in recovery|"
                            r"not yet accepting)|terminating connection")

#: the channel workers listen on: `jobctl cancel` announces a job id there,
#: submit the queue it added work to (WORK_NEWS + name)
CANCEL_CHANNEL = "jobctl_cancel"


class PostgresBackend:
    name: ClassVar[str] = "postgresql"
    script_style: ClassVar[str] = "semicolon"

    def __init__(self, settings: ConnectionSettings):
        self.settings = settings
        self._statements: dict[tuple[str, str, frozenset[str]], str] = {}

    # -- connections and SQL ---------------------------------------------------
    def _conninfo(self, job_id: str | None) -> dict[str, Any]:
        s = self.settings
        known = _libpq_keywords()
        kwargs: dict[str, Any] = {k: str(v) for k, v in s.options.items()
                                  if k in known and v is not None}
        for key, value in (("host", s.host), ("port", s.port), ("dbname", s.database),
                           ("user", s.user), ("password", s.password)):
            if value is not None:
                kwargs[key] = str(value)
        kwargs.setdefault("connect_timeout", str(DEFAULT_CONNECT_TIMEOUT))
        kwargs["application_name"] = f"jobctl:{job_id}" if job_id else "jobctl"
        return kwargs

    def connect(self, *, job_id: str | None = None) -> Any:
        kwargs = self._conninfo(job_id)
        try:
            conn = psycopg.connect(autocommit=False, **kwargs)
        except psycopg.Error as exc:
            if self.settings.password is None and "no password supplied" in str(exc):
                password = config.prompt_password(self.settings)
                if password:
                    self.settings = self.settings.with_password(password)
                    return self.connect(job_id=job_id)
            raise DatabaseError(f"cannot connect to {self.settings.display}: {_diag_message(exc)}",
                                transient=self.is_transient(exc)) from exc
        # json/jsonb OUT values keep their numbers exact, as PARAMS does
        set_json_loads(jsontext.loads, conn)
        try:
            conn.execute("SET TIME ZONE 'UTC'")
            conn.commit()
        except psycopg.Error as exc:
            conn.close()
            raise self.translate_error(exc) from exc
        return conn

    def execute(self, conn: Any, sql: str, binds: Mapping[str, Any] | None = None) -> Any:
        cur = conn.cursor()
        if not binds:
            cur.execute(sql)
        else:
            cur.execute(convert_binds(sql, frozenset(binds)), dict(binds))
        return cur

    def execute_many(self, conn: Any, sql: str, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            with conn.cursor() as cur:
                cur.executemany(convert_binds(sql, frozenset(rows[0])), [dict(r) for r in rows])

    def limit_clause(self, bind: str) -> str:
        return f"LIMIT :{bind}"

    def lock_clause(self, *, skip_locked: bool) -> str:
        return "FOR UPDATE SKIP LOCKED" if skip_locked else "FOR UPDATE"

    def lock_first_clause(self, bind: str) -> str | None:
        return f"LIMIT :{bind} FOR UPDATE SKIP LOCKED"  # locks only the rows it returns

    def returning_clause(self, columns: Sequence[str]) -> str | None:
        return "RETURNING " + ", ".join(columns)

    def keeps_transaction(self, exc: BaseException) -> bool:
        return False  # a failed statement aborts the transaction, a failed commit ends it

    def in_transaction(self, conn: Any) -> bool:
        return conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE

    def writes_without_waiting(self, conn: Any) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()  # MVCC, and claims skip locked rows

    def relax_commit(self, conn: Any) -> None:
        # a later durable commit on this connection (the job's outcome)
        # flushes the WAL past this one too
        self.execute(conn, "SET LOCAL synchronous_commit TO OFF")

    def insert_if_missing_sql(self, table: str, key: str, columns: Sequence[str]) -> str:
        return (f"INSERT INTO {table} ({', '.join(columns)}) "
                f"VALUES ({', '.join(':' + c for c in columns)}) ON CONFLICT ({key}) DO NOTHING")

    def percentile_sql(self, fraction: float, expr: str) -> str:
        return (f"PERCENTILE_CONT({float(fraction)!r}) WITHIN GROUP "
                f"(ORDER BY CAST({expr} AS DOUBLE PRECISION))")

    def to_db_time(self, value: dt.datetime) -> Any:
        if value.tzinfo is None:
            return value
        return value.astimezone(_UTC).replace(tzinfo=None)

    def clock_sql(self) -> str:
        # the statement's time, not the transaction's (now()): a pool's
        # hand-over claim is written in the transaction of a long call
        return "(statement_timestamp() AT TIME ZONE 'UTC')"

    def server_time(self, conn: Any) -> dt.datetime | None:
        return self.from_db_time(self.execute(conn, f"SELECT {self.clock_sql()}").fetchone()[0])

    def from_db_time(self, value: Any) -> dt.datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=_UTC)
        return value.astimezone(_UTC)

    # -- errors ------------------------------------------------------------------
    def is_missing_table(self, exc: BaseException) -> bool:
        return (isinstance(exc, pgerrors.UndefinedTable)
                and _MISSING_JOBS_TABLE.search(_diag_message(exc)) is not None)

    def is_undefined_column(self, exc: BaseException) -> bool:
        return isinstance(exc, pgerrors.UndefinedColumn)

    def is_unique_violation(self, exc: BaseException) -> bool:
        return isinstance(exc, pgerrors.UniqueViolation)

    def is_already_exists(self, exc: BaseException) -> bool:
        return isinstance(exc, (pgerrors.DuplicateTable, pgerrors.DuplicateObject,
                                pgerrors.DuplicateColumn))

    _TRANSIENT_STATES = frozenset({"57P01", "57P02", "57P03", "40P01", "40001", "53300"})

    def is_transient(self, exc: BaseException) -> bool:
        if isinstance(exc, DatabaseError):
            return exc.transient
        if not isinstance(exc, psycopg.Error):
            return False
        state = exc.sqlstate
        if state is None:  # no server answer: connection refused, lost, closed
            if not isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
                return False
            # a refused connection carries no sqlstate, only the server's FATAL
            # text: a storm or a restart passes, a bad password or database does not
            text = str(exc)
            return "FATAL:" not in text or bool(_PASSING_FATAL.search(text))
        return state.startswith("08") or state in self._TRANSIENT_STATES

    def translate_error(self, exc: BaseException) -> JobctlError:
        if isinstance(exc, JobctlError):
            return exc
        if self.is_missing_table(exc):
            return SchemaMissing(self.settings.display)
        message = _diag_message(exc)
        if isinstance(exc, psycopg.Error) and exc.sqlstate is None and self.is_transient(exc):
            message = f"{self.settings.display}: {message}"
        return DatabaseError(message, transient=self.is_transient(exc))

    # -- procedures ----------------------------------------------------------------
    def normalize_name(self, name: str) -> str:
        schema, proc = split_name(name)
        return f"{_render(schema)}.{_render(proc)}" if schema else _render(proc)

    def resolve(self, conn: Any, name: str, given: frozenset[str]) -> Signature:
        """The signature, named canonically: without its schema when the bare
        name resolves to the very same procedure (the first schema on the
        search_path that has it), so `suma_simple` and `public.suma_simple`
        are one PROCEDURE_NAME."""
        sig = self._resolve(conn, name, given)
        schema, proc = split_name(name)
        if schema is not None and schema in self._path_schemas(conn):
            try:
                bare = self._resolve(conn, _render(proc), given)
            except JobctlError:
                return sig
            if bare.extra["oid"] == sig.extra["oid"]:
                return replace(sig, name=bare.name)
        return sig

    @staticmethod
    def _path_schemas(conn: Any) -> list[str]:
        cur = conn.cursor()
        cur.execute("SELECT pg_catalog.current_schemas(true)")
        return list(cur.fetchone()[0])

    def _resolve(self, conn: Any, name: str, given: frozenset[str]) -> Signature:
        schema, proc = split_name(name)
        shown = self.normalize_name(name)
        if schema is not None:
            query = _PROCS_SQL.format(pos="0", join="", where="AND n.nspname = %(schema)s")
        else:
            query = _PROCS_SQL.format(
                pos="s.pos",
                join="JOIN pg_catalog.unnest(pg_catalog.current_schemas(true)) "
                     "WITH ORDINALITY AS s(nspname, pos) ON s.nspname = n.nspname",
                where="")
        cur = conn.cursor()
        cur.execute(query, {"proc": proc, "schema": schema})
        names = [d.name for d in cur.description]
        rows = [dict(zip(names, r)) for r in cur.fetchall()]

        procs = [r for r in rows if r["prokind"] == "p"]
        if not procs:
            if rows:
                kind = {"a": "an aggregate", "w": "a window function"}.get(rows[0]["prokind"],
                                                                           "a function")
                raise UsageError(f"{shown} is {kind}, not a procedure: jobctl runs procedures "
                                 "(CREATE PROCEDURE ... ; CALL)")
            if schema is not None:
                raise NotFound(f"procedure {shown} not found")
            cur.execute("SELECT pg_catalog.array_to_string(pg_catalog.current_schemas(false), ', ')")
            path = cur.fetchone()[0] or "empty"
            raise NotFound(f"procedure {shown} not found on the search_path ({path})")

        if schema is None:  # an earlier schema hides the same signature further down the path
            seen: set[str] = set()
            kept = []
            for r in procs:
                if r["identity"] not in seen:
                    seen.add(r["identity"])
                    kept.append(r)
            procs = kept

        types = self._types(cur, {t for r in procs for t in r["argtypes"]})
        sigs = [self._signature(shown, r, types) for r in procs]
        chosen = sigs[0]
        if len(sigs) > 1:
            fits = [s for s in sigs if _accepts(s, given)]
            if len(fits) != 1:
                listing = "; ".join(_shown_signature(s) for s in (fits or sigs))
                given_txt = ", ".join(sorted(given)) or "none"
                why = ("cannot tell which one is meant" if fits
                       else "none of them accepts them")
                raise UsageError(f"{shown} has {len(sigs)} overloads and the parameters given "
                                 f"({given_txt}) {why}; candidates: {listing}")
            chosen = fits[0]

        row = next(r for r in procs if r["oid"] == chosen.extra["oid"])
        if not row["schema_usage"]:
            raise DatabaseError(f"permission denied for schema {row['nspname']}: "
                                "the connecting role lacks USAGE on it")
        if not row["can_execute"]:
            cur.execute("SELECT current_user")
            who = cur.fetchone()[0]
            raise DatabaseError(f"permission denied for procedure {row['nspname']}.{row['proname']}:"
                                f" role {who} lacks EXECUTE on it")
        return chosen

    def list_procedures(self, conn: Any, like: str | None) -> list[Signature]:
        # the catalog of one database is small: `like` is left to the caller
        cur = conn.cursor()
        cur.execute(_LIST_PROCS_SQL)
        names = [d.name for d in cur.description]
        rows = [dict(zip(names, r)) for r in cur.fetchall()]
        types = self._types(cur, {t for r in rows for t in r["argtypes"]})
        out = []
        for r in rows:
            shown = (_render(r["proname"]) if r["visible"]
                     else f"{_render(r['nspname'])}.{_render(r['proname'])}")
            out.append(self._signature(shown, r, types))
        return out

    @staticmethod
    def _types(cur: Any, oids: set[int]) -> dict[int, dict[str, Any]]:
        if not oids:
            return {}
        cur.execute(_TYPES_SQL, {"oids": sorted(oids)})
        names = [d.name for d in cur.description]
        return {r[0]: dict(zip(names, r)) for r in cur.fetchall()}

    @staticmethod
    def _signature(shown: str, row: dict[str, Any], types: dict[int, dict[str, Any]]) -> Signature:
        argtypes = list(row["argtypes"])
        modes = row["proargmodes"] or ["i"] * len(argtypes)
        argnames = row["proargnames"] or [""] * len(argtypes)
        inputs = [i for i, m in enumerate(modes) if m in ("i", "b", "v")]
        defaulted = set(inputs[len(inputs) - (row["pronargdefaults"] or 0):])
        params = []
        for i, (oid, mode) in enumerate(zip(argtypes, modes)):
            info = types.get(oid, {})
            name = argnames[i] if i < len(argnames) and argnames[i] else f"${i + 1}"
            array = info.get("elem_name") is not None
            kind = (_family(info.get("elem_name"), info.get("elem_kind")) if array
                    else _family(info.get("base_name"), info.get("base_kind")))
            if mode == "v" or (name.startswith("$") and mode in ("i", "b")):
                kind = UNSUPPORTED  # VARIADIC, or an input that cannot be named in CALL
            params.append(Param(name=name, type_name=info.get("type_name") or str(oid),
                                kind=kind, mode=_MODES.get(mode, "IN"),
                                defaulted=i in defaulted, array=array))
        # the overload names its schema too: the fingerprint then changes if the
        # same bare name comes to mean a procedure in another schema
        return Signature(
            name=shown, params=tuple(params),
            overload=f"{_render(row['nspname'])}.{_render(row['proname'])}({row['identity']})",
            extra={"oid": row["oid"], "schema": row["nspname"], "proc": row["proname"]},
        )

    def check_submit(self, sig: Signature) -> None:
        return None  # nothing to refuse before the call

    def call(self, conn: Any, sig: Signature, values: Mapping[str, Any],
             ctx: CallContext) -> dict[str, Any]:
        given = {k.casefold(): v for k, v in values.items()}
        binds = [_bindable(p, given[p.name.casefold()]) for p in sig.params
                 if p.is_input and p.name.casefold() in given]
        stmt = self._call_statement(conn, sig, frozenset(given))

        def on_notice(diag: Any) -> None:
            text = diag.message_primary or ""
            m = _PROGRESS.fullmatch(text)
            if m:
                ctx.progress(float(m.group(1)))
            elif diag.severity_nonlocalized in (None, "NOTICE", "INFO", "LOG", "DEBUG"):
                ctx.log(text)
            else:
                ctx.log(f"{diag.severity_nonlocalized}: {text}")

        conn.add_notice_handler(on_notice)
        try:
            cur = conn.cursor()
            cur.execute(stmt, binds)
            row = cur.fetchone() if cur.description is not None else None
        except psycopg.Error as exc:
            # the job's ERROR_MSG: the server's message on one line, not the
            # driver's class name and a multi-line CONTEXT
            raise DatabaseError(_diag_message(exc), transient=self.is_transient(exc)) from exc
        finally:
            conn.remove_notice_handler(on_notice)
        if row is None:
            return {}
        return {d.name.lower(): _json_ready(v) for d, v in zip(cur.description, row)}

    def _call_statement(self, conn: Any, sig: Signature, given: frozenset[str]) -> str:
        """`CALL proc(name => %s::type, ...)` for these inputs, composed once
        per procedure and set of inputs (a pool calls the same one for many
        jobs; composing it cost as much as the call's round trip)."""
        key = (sig.name, sig.fingerprint, given)
        stmt = self._statements.get(key)
        if stmt is not None:
            return stmt
        if "schema" in sig.extra:
            schema, proc = sig.extra["schema"], sig.extra["proc"]
        else:
            schema, proc = split_name(sig.name)
        target = (pgsql.SQL("{}.{}").format(pgsql.Identifier(schema), pgsql.Identifier(proc))
                  if schema else pgsql.Identifier(proc))
        args: list[pgsql.Composable] = []
        for p in sig.params:
            if p.is_input and p.name.casefold() in given:
                args.append(pgsql.SQL("{} => {}::{}").format(
                    pgsql.Identifier(p.name), pgsql.Placeholder(), pgsql.SQL(p.type_name)))
            elif p.mode == "OUT" or (p.mode == "IN/OUT" and not p.defaulted):
                # PostgreSQL 14+: OUT arguments take a placeholder in CALL
                args.append(pgsql.SQL("{} => NULL::{}").format(pgsql.Identifier(p.name),
                                                               pgsql.SQL(p.type_name)))
        stmt = pgsql.SQL("CALL {}({})").format(target, pgsql.SQL(", ").join(args)).as_string(conn)
        if len(self._statements) > 256:
            self._statements.clear()
        self._statements[key] = stmt
        return stmt

    def interrupt(self, conn: Any) -> None:
        try:
            conn.cancel_safe(timeout=5.0)
        except Exception:  # an older libpq, or the connection is already gone
            try:
                conn.cancel()
            except Exception:
                pass

    def poll_progress(self, conn: Any, call_conn: Any, ctx: CallContext) -> None:
        return None  # notices arrive on the call's own connection

    # -- cancel news: LISTEN/NOTIFY ------------------------------------------------
    # A NOTIFY is delivered when its transaction commits, and only then: the
    # worker that hears one knows CANCEL_REQUESTED is set, within milliseconds
    # of `jobctl cancel` committing. Every worker hears every cancel on the
    # channel; the payload (the job id) says whose it is.
    def announce_cancel(self, conn: Any, job_id: str) -> None:
        self.execute(conn, f"SELECT pg_notify('{CANCEL_CHANNEL}', :job_id)", {"job_id": job_id})

    def listen_cancel(self, conn: Any) -> bool:
        self.execute(conn, f"LISTEN {CANCEL_CHANNEL}")
        return True

    def cancel_wait_fd(self, conn: Any) -> int:
        return conn.fileno()

    def announce_work(self, conn: Any, queue: str) -> None:
        self.execute(conn, f"SELECT pg_notify('{CANCEL_CHANNEL}', :news)",
                     {"news": WORK_NEWS + queue})

    def announcements(self, conn: Any) -> list[str]:
        # timeout=0: what arrived during other statements (psycopg keeps those
        # aside), then whatever the socket holds now, without waiting
        return [notify.payload for notify in conn.notifies(timeout=0.0)]

    def schema_files(self, *, examples: bool) -> list[str]:
        return ["create_async_jobs_table.sql"] + (["examples.sql"] if examples else [])

    # -- sessions ----------------------------------------------------------------
    # DB_SESSION is "PID:BACKEND_START": the start time tells a later session
    # that reuses the pid apart from the one that ran the call.
    def session_id(self, conn: Any) -> str | None:
        cur = conn.cursor()
        cur.execute("SELECT pid, backend_start FROM pg_catalog.pg_stat_activity"
                    " WHERE pid = pg_catalog.pg_backend_pid()")
        row = cur.fetchone()
        conn.commit()
        if row is None or row[1] is None:
            return None
        return f"{row[0]}:{row[1].astimezone(_UTC).isoformat()}"

    @staticmethod
    def _split_session(session: str) -> tuple[int, dt.datetime]:
        pid, _, start = session.partition(":")
        return int(pid), dt.datetime.fromisoformat(start)

    def _session_row(self, conn: Any, session: str) -> tuple[str | None, bool] | None:
        """(state, visible) of `session`, None when it is gone. The snapshot
        of pg_stat_activity is per transaction, so each look commits."""
        pid, start = self._split_session(session)
        cur = conn.cursor()
        cur.execute("SELECT state, backend_start FROM pg_catalog.pg_stat_activity WHERE pid = %(pid)s",
                    {"pid": pid})
        row = cur.fetchone()
        conn.commit()
        if row is None:
            return None
        if row[1] is None:  # another role's session, without pg_read_all_stats
            return None, False
        if row[1] != start:
            return None  # the pid now belongs to another session
        return row[0], True

    def session_alive(self, conn: Any, session: str) -> bool | None:
        seen = self._session_row(conn, session)
        if seen is None:
            return False
        state, visible = seen
        if not visible:
            return None
        # idle in transaction: the server waits for its client, runs nothing,
        # and ends the session itself once it finds the client gone
        return state == "active"

    def kill_session_sql(self, session: str) -> str:
        return f"SELECT pg_terminate_backend({self._split_session(session)[0]});"

    def end_session(self, conn: Any, session: str, *, wait_s: float = 5.0) -> bool:
        import time

        pid, start = self._split_session(session)

        def signal(function: str) -> bool:
            try:
                cur = conn.cursor()
                cur.execute(f"SELECT pg_catalog.{function}(pid) FROM pg_catalog.pg_stat_activity"
                            " WHERE pid = %(pid)s AND backend_start = %(start)s",
                            {"pid": pid, "start": start})
                cur.fetchall()
                conn.commit()
                return True
            except psycopg.Error:
                conn.rollback()  # not a member of its role, nor of pg_signal_backend
                return False

        def gone_within(seconds: float, *, idle_is_enough: bool) -> bool:
            deadline = time.monotonic() + seconds
            while True:
                seen = self._session_row(conn, session)
                if seen is None or (idle_is_enough and seen[1] and seen[0] != "active"):
                    return True
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.1)

        if self._session_row(conn, session) is None:
            return True
        # cancel first: the statement stops and its transaction rolls back
        # cleanly; then end the session, which holds nothing worth keeping
        if not signal("pg_cancel_backend"):
            return False
        gone_within(min(2.0, wait_s), idle_is_enough=True)
        if not signal("pg_terminate_backend"):
            return False
        return gone_within(wait_s, idle_is_enough=False)

    def liveness_dir(self) -> None:
        return None  # the heartbeat row is written on its own connection, never blocked by the call


def _shown_signature(sig: Signature) -> str:
    return _IN_PREFIX.sub(r"\1", sig.overload or "")


def _accepts(sig: Signature, given: frozenset[str]) -> bool:
    inputs = {p.name.casefold() for p in sig.params if p.is_input}
    required = {p.name.casefold() for p in sig.params if p.mode == "IN" and not p.defaulted}
    return given <= inputs and required <= given


def _bindable(p: Param, value: Any) -> Any:
    if value is None:
        return None
    if p.array and isinstance(value, (list, tuple)):
        return [_scalar(p.kind, v) for v in value]
    return _scalar(p.kind, value)


def _scalar(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind == JSON:
        return Jsonb(value, dumps=_dumps)
    if kind == NUMBER and isinstance(value, (int, float)) and not isinstance(value, bool):
        return Decimal(str(value))  # one type across an array, exact for the cast
    return value


@lru_cache(maxsize=1)
def _libpq_keywords() -> frozenset[str]:
    return frozenset(o.keyword.decode() for o in psycopg.pq.Conninfo.get_defaults())


BACKEND = PostgresBackend
