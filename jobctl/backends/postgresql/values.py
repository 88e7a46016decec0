"""Values on PostgreSQL: the arguments of a CALL as psql writes them
(named, positional `$n`, VARIADIC), the server-side check of every value at
submit, and what comes back turned into JSON a script can use (intervals in
ISO 8601 with their months, bytea as `\\x` hex, composites and records as
objects)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql as pgsql
from psycopg.adapt import Loader
from psycopg.types.json import Jsonb

from ... import jsontext
from ...errors import UsageError
from ...intervals import iso_from_postgres
from ...model import JSON, NUMBER, Param, Signature
from ...params import to_json_value
from .errors import diag_message


def render_args(sig: Signature, given: frozenset[str],
                value: Callable[[Param], pgsql.Composable], *,
                variable: Callable[[Param], pgsql.Composable] | None = None,
                ) -> list[pgsql.Composable]:
    """The arguments of `CALL proc(...)` for the inputs named in `given`
    (casefolded parameter names), in the signature's order: `value(p)`
    renders an input's value (a placeholder with its cast, or a literal).
    `variable(p)`, when given, renders every OUT and IN/OUT argument instead
    (a CALL inside PL/pgSQL takes them as variables, the caller declaring
    each, an IN/OUT one set to its value).

    Named notation (`name => value`) wherever it can be used; an unnamed
    parameter (`$1`) and every one before it is positional, as psql needs
    them. VARIADIC takes its array with the keyword: `VARIADIC name =>
    ARRAY[...]`. OUT parameters take a typed NULL (PostgreSQL 14+)."""
    def passed(p: Param) -> bool:
        # inside PL/pgSQL every OUT and IN/OUT argument takes its variable
        return p.mode == "OUT" or (p.is_input and p.name.casefold() in given) or (
            p.mode == "IN/OUT" and (not p.defaulted or variable is not None))

    unnamed = [i for i, p in enumerate(sig.params) if p.positional and passed(p)]
    last_positional = unnamed[-1] if unnamed else -1
    args: list[pgsql.Composable] = []
    for i, p in enumerate(sig.params):
        if not passed(p):
            if i < last_positional:
                later = sig.params[last_positional].name
                raise UsageError(f"{sig.name}: parameter {later} has no name, so it is passed by "
                                 f"position, and every parameter before it must be given too: "
                                 f"give {p.name}")
            continue
        if variable is not None and p.is_output:
            rendered = variable(p)
        elif p.is_input and p.name.casefold() in given:
            rendered = value(p)
        else:
            rendered = pgsql.SQL("NULL::{}").format(pgsql.SQL(p.type_name))
        if p.variadic and i > last_positional:
            rendered = pgsql.SQL("VARIADIC {} => {}").format(pgsql.Identifier(p.name), rendered)
        elif p.variadic:
            rendered = pgsql.SQL("VARIADIC {}").format(rendered)
        elif i > last_positional:
            rendered = pgsql.SQL("{} => {}").format(pgsql.Identifier(p.name), rendered)
        args.append(rendered)
    return args


def placeholder(p: Param) -> pgsql.Composable:
    """A bound value cast to the parameter's declared type, as psql's
    literal would be: the server's input function reads the text."""
    return pgsql.SQL("{}::{}").format(pgsql.Placeholder(), pgsql.SQL(p.type_name))


def bindable(p: Param, value: Any) -> Any:
    """A coerced value as psycopg binds it: text stays text of unknown type
    (cast by the server), numbers exact, JSON as jsonb."""
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


def _dumps(value: Any) -> str:
    return jsontext.dumps(to_json_value(value))


def check_values(conn: Any, sig: Signature, values: Mapping[str, Any]) -> None:
    """One statement casting every value to its parameter's declared type, in
    a READ ONLY transaction (a domain CHECK calling a function that writes
    cannot write), sent with the SET in one pipeline: one round trip. When it
    fails, each value alone finds the one to name (only then, and only until
    the bad one is found)."""
    given = frozenset(k.casefold() for k in values)
    render_args(sig, given, placeholder)  # a positional gap: refused here, before any row
    items = [(p, values[p.name]) for p in sig.params
             if p.is_input and p.name in values and values[p.name] is not None]
    if not items:
        return
    if _fails(conn, items) is None:
        return
    for p, v in items:
        exc = _fails(conn, [(p, v)])
        if exc is not None:
            shown = repr(v) if isinstance(v, str) else jsontext.dumps(to_json_value(v), default=str)
            raise UsageError(f"parameter {p.name} is {p.shown_type}: {shown} is refused by "
                             f"the server: {diag_message(exc)}") from None
    # together they fail, each alone passes (a server in trouble): say it whole
    exc = _fails(conn, items)
    if exc is not None:
        raise UsageError(f"{sig.name}: the values are refused by the server: {diag_message(exc)}")


def _fails(conn: Any, items: list[tuple[Param, Any]]) -> psycopg.Error | None:
    select = pgsql.SQL("SELECT {}").format(pgsql.SQL(", ").join(placeholder(p) for p, _ in items))
    cur = conn.cursor()
    try:
        with _pipeline(conn):
            cur.execute("SET TRANSACTION READ ONLY")
            cur.execute(select, [bindable(p, v) for p, v in items])
    except psycopg.errors.DataError as exc:
        conn.rollback()
        return exc
    except (psycopg.errors.SyntaxErrorOrAccessRuleViolation, psycopg.errors.IntegrityError,
            psycopg.errors.ProgrammingError) as exc:
        # an unknown label or name (regclass of no table: 42P01, a domain's
        # CHECK: 23514, an input the type's parser refuses: 22P02/42xxx)
        conn.rollback()
        return exc
    return None


def _pipeline(conn: Any) -> Any:
    """Statements sent together, one round trip (libpq 14+); with an older
    libpq one after the other."""
    if psycopg.Pipeline.is_supported():
        return conn.pipeline()
    return contextlib.nullcontext()


# -- what comes back ----------------------------------------------------------------


class IntervalIsoLoader(Loader):
    """An interval as ISO 8601 text with its months kept (`P1M2DT3H4M5.5S`),
    not Python's timedelta, which turns months into days."""

    def load(self, data: Any) -> str:
        text = bytes(data).decode()
        return iso_from_postgres(text) or text


class ByteaHexLoader(Loader):
    """bytea as psql shows it and as it is typed back: `\\x` and hex."""

    def load(self, data: Any) -> str:
        return bytes(data).decode()


class TextLoader(Loader):
    """A value as the server's text (a composite's or record's, split later)."""

    def load(self, data: Any) -> str:
        return bytes(data).decode()


#: types the driver would turn into Python objects whose text is not the
#: server's (`[1, 10)` for `[1,10)`): RESULT keeps the server's text, which
#: is what psql shows and what the type reads back
_AS_TEXT = tuple(f"{t}{kind}" for t in ("int4", "int8", "num", "date", "ts", "tstz")
                 for kind in ("range", "multirange")) + (
    "inet", "cidr", "uuid", "money", "time", "timetz", "macaddr", "macaddr8", "xml")


def result_adapters(cur: Any) -> None:
    """Loaders for a CALL's result row on its cursor (text format)."""
    cur.adapters.register_loader("interval", IntervalIsoLoader)
    cur.adapters.register_loader("bytea", ByteaHexLoader)
    cur.adapters.register_loader("record", TextLoader)
    for name in _AS_TEXT:
        cur.adapters.register_loader(name, TextLoader)
    cur.adapters.register_loader("json", JsonbExactLoader)
    cur.adapters.register_loader("jsonb", JsonbExactLoader)


def shape_result(conn: Any, sig: Signature, names: list[str], row: Sequence[Any],
                 ready: Callable[[Any], Any]) -> dict[str, Any]:
    """The CALL's result row as RESULT: keys lower-case, each value made
    JSON-ready by `ready`, except an OUT composite, which becomes an object
    with its field names (the server's to_jsonb, numbers exact: one more
    statement, only when the procedure has one), and an OUT `record`, which
    has no field names on the wire: an object of f1, f2, ... (to_jsonb's
    names for an anonymous record) holding each field's text. Intervals
    in a composite are ISO 8601 as well. An array of a type the driver
    does not know (an enum's, a composite's) becomes a list the same way."""
    out: dict[str, Any] = {}
    composites: dict[str, tuple[str, str]] = {}
    for name, value in zip(names, row):
        key = name.lower()
        p = sig.param(name)
        type_name = sig.extra.get("composites", {}).get(name.casefold())
        if isinstance(value, str) and p is not None and p.array and value.startswith("{"):
            type_name = p.type_name  # an array of a type the driver does not know: a list
        if isinstance(value, str) and type_name is not None:
            composites[key] = (value, type_name)
        elif isinstance(value, str) and p is not None and p.type_name == "record":
            fields = record_fields(value)
            out[key] = ({f"f{i}": f for i, f in enumerate(fields, 1)} if fields is not None
                        else value)
        else:
            out[key] = ready(value)
    if composites:
        cur = conn.cursor()
        cur.adapters.register_loader("jsonb", JsonbExactLoader)
        select = pgsql.SQL("SELECT {}").format(pgsql.SQL(", ").join(
            pgsql.SQL("to_jsonb({}::{})").format(pgsql.Placeholder(), pgsql.SQL(t))
            for _, t in composites.values()))
        with _pipeline(conn):
            # intervals inside as ISO 8601 too; SET LOCAL: only until the
            # outcome's commit, which writes no interval
            cur.execute("SET LOCAL IntervalStyle = 'iso_8601'")
            cur.execute(select, [v for v, _ in composites.values()])
        for key, obj in zip(composites, cur.fetchone()):
            out[key] = obj
        out = {name.lower(): out[name.lower()] for name in names}  # the row's order
    return out


class JsonbExactLoader(Loader):
    """jsonb read with numbers exact (Decimal), as jsontext reads RESULT."""

    def load(self, data: Any) -> Any:
        return jsontext.loads(bytes(data))


def record_fields(text: str) -> list[str | None] | None:
    """A composite's text form `(1,"a b",,"x""y")` as its fields' texts
    (None for NULL); None when `text` is not one."""
    if not (text.startswith("(") and text.endswith(")")):
        return None
    fields: list[str | None] = []
    i, body, n = 0, text[1:-1], len(text) - 2
    while True:
        if i >= n or body[i] == ",":
            fields.append(None)  # an empty field is NULL
        else:
            chars, quoted = [], False
            while i < n and (quoted or body[i] != ","):
                c = body[i]
                if c == "\\" and i + 1 < n:
                    chars.append(body[i + 1])
                    i += 2
                    continue
                if c == '"':
                    if quoted and i + 1 < n and body[i + 1] == '"':
                        chars.append('"')
                        i += 2
                        continue
                    quoted = not quoted
                else:
                    chars.append(c)
                i += 1
            fields.append("".join(chars))
        if i >= n:
            return fields
        i += 1  # the comma
