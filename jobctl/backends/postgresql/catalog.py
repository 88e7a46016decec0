"""Finding a procedure and its signature in pg_proc, overloads and types."""

from __future__ import annotations

from dataclasses import replace
from collections.abc import Mapping
from typing import Any

from ...errors import DatabaseError, JobctlError, NotFound, UsageError
from ...model import (
    BOOLEAN, DATE, INTEGER, JSON, NUMBER, TEXT, TIMESTAMP, UNSUPPORTED, Param, Signature, param_key,
)
from .names import render_ident, split_name
from .shared import PostgresBase
from .values import check_values


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
       current_user AS who, {pos} AS pos,
       -- a body with no COMMIT, ROLLBACK or CALL cannot end a transaction
       -- (plpgsql refuses them in EXECUTE; SQL bodies cannot): such a
       -- procedure is called inside jobctl's transaction, as prepared
       (SELECT l.lanname IN ('plpgsql', 'sql') FROM pg_catalog.pg_language l
         WHERE l.oid = p.prolang)
       AND p.prosrc !~* '\\m(commit|rollback|call)\\M' AS cannot_commit
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
    """The family jobctl coerces a value of this type to. A type jobctl does
    not know (bytea, reg*, ranges, money, enums, composites, ...) is passed
    as text and cast by the server, as psql passes a literal; only the
    pseudo-types (anyelement, "any", internal, ...) cannot be passed."""
    if typname is None or typtype == "p":
        return UNSUPPORTED
    return _FAMILY_OF.get(typname, TEXT)

def _accepts(sig: Signature, given: frozenset[str]) -> bool:
    given = frozenset(param_key(g) for g in given)
    inputs = {p.name.casefold() for p in sig.params if p.is_input}
    required = {p.name.casefold() for p in sig.params if p.mode == "IN" and not p.defaulted}
    return given <= inputs and required <= given


class PostgresCatalog(PostgresBase):
    def normalize_name(self, name: str) -> str:
        schema, proc = split_name(name)
        return f"{render_ident(schema)}.{render_ident(proc)}" if schema else render_ident(proc)

    def resolve(self, conn: Any, name: str, given: frozenset[str]) -> Signature:
        """The overload `given` (the input names) picks; see overloads."""
        sigs = self.overloads(conn, name)
        if len(sigs) == 1:
            return sigs[0]
        fits = [s for s in sigs if _accepts(s, given)]
        if len(fits) != 1:
            listing = ", ".join(s.form for s in (fits or sigs))
            raise UsageError(f"{sigs[0].name} has {len(sigs)} overloads and the parameters given "
                             f"({', '.join(sorted(given)) or 'none'}) "
                             f"{'fit more than one' if fits else 'fit none'}: "
                             f"type one of these forms as the procedure: {listing}")
        return fits[0]

    def overloads(self, conn: Any, name: str) -> list[Signature]:
        """Every overload, named canonically: without its schema when the bare
        name resolves to the very same procedure (the first schema on the
        search_path that has it), so `suma_simple` and `public.suma_simple`
        are one PROCEDURE_NAME."""
        sigs = self._overloads(conn, name)
        schema, proc = split_name(name)
        if schema is not None and schema in self._path_schemas(conn):
            try:
                bare = {s.extra["oid"]: s.name for s in self._overloads(conn, render_ident(proc))}
            except JobctlError:
                return sigs
            sigs = [replace(s, name=bare[s.extra["oid"]]) if s.extra["oid"] in bare else s
                    for s in sigs]
        return sigs

    @staticmethod
    def _path_schemas(conn: Any) -> list[str]:
        cur = conn.cursor()
        cur.execute("SELECT pg_catalog.current_schemas(true)")
        return list(cur.fetchone()[0])

    def _overloads(self, conn: Any, name: str) -> list[Signature]:
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
        sigs = []
        for r in procs:
            sig = self._signature(shown, r, types)
            sig.extra.update(schema_usage=r["schema_usage"], can_execute=r["can_execute"],
                             who=r["who"])
            sigs.append(sig)
        return sigs

    def list_procedures(self, conn: Any, like: str | None) -> list[Signature]:
        # the catalog of one database is small: `like` is left to the caller
        cur = conn.cursor()
        cur.execute(_LIST_PROCS_SQL)
        names = [d.name for d in cur.description]
        rows = [dict(zip(names, r)) for r in cur.fetchall()]
        types = self._types(cur, {t for r in rows for t in r["argtypes"]})
        out = []
        for r in rows:
            shown = (render_ident(r["proname"]) if r["visible"]
                     else f"{render_ident(r['nspname'])}.{render_ident(r['proname'])}")
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
            # an unnamed parameter is named by its position, as in the
            # procedure's body: `-p 1=...` passes it (positionally in CALL)
            name = argnames[i] if i < len(argnames) and argnames[i] else f"${i + 1}"
            array = info.get("elem_name") is not None
            kind = (_family(info.get("elem_name"), info.get("elem_kind")) if array
                    else _family(info.get("base_name"), info.get("base_kind")))
            params.append(Param(name=name, type_name=info.get("type_name") or str(oid),
                                kind=kind, mode=_MODES.get(mode, "IN"),
                                defaulted=i in defaulted, array=array, variadic=mode == "v"))
        # the overload names its schema too: the fingerprint then changes if the
        # same bare name comes to mean a procedure in another schema
        # OUT composites come back as objects with their field names (values.shape_result)
        composites = {p.name.casefold(): p.type_name for p, oid in zip(params, argtypes)
                      if p.is_output and types.get(oid, {}).get("base_kind") == "c"}
        return Signature(
            name=shown, params=tuple(params),
            overload=f"{render_ident(row['nspname'])}.{render_ident(row['proname'])}({row['identity']})",
            extra={"oid": row["oid"], "schema": row["nspname"], "proc": row["proname"],
                   "composites": composites, "cannot_commit": bool(row.get("cannot_commit"))},
        )

    def check_values(self, conn: Any, sig: Signature, values: Mapping[str, Any]) -> None:
        check_values(conn, sig, values)

    def check_submit(self, sig: Signature) -> None:
        """The role may use the schema and execute the procedure (read with
        the catalog, so the message names what is missing)."""
        if sig.extra.get("schema_usage") is False:
            raise DatabaseError(f"permission denied for schema {sig.extra['schema']}: "
                                "the connecting role lacks USAGE on it")
        if sig.extra.get("can_execute") is False:
            raise DatabaseError(f"permission denied for procedure {sig.extra['schema']}."
                                f"{sig.extra['proc']}: role {sig.extra['who']} lacks EXECUTE on it")
