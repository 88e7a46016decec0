"""Finding a procedure and reading its signature: DBMS_UTILITY.NAME_RESOLVE,
ALL_ARGUMENTS and ALL_PROCEDURES, Oracle type names as jobctl's type
families, overloads (ORACLE_NOTES "Reading the signature")."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import oracledb

from ...errors import NotFound, UsageError
from ...model import BOOLEAN, INTEGER, JSON, NUMBER, TEXT, TIMESTAMP, UNSUPPORTED, Param, Signature
from .errors import error_code
from .values import REF_CURSOR, base_type
from .shared import OracleBase

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


def arguments_sql(packaged: bool) -> str:
    return ARGUMENTS_SQL.format(
        package_filter="package_name = :package_name" if packaged else "package_name IS NULL")


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


#: written as text on the command line and turned into the driver's own
#: objects by the backend (values.py): ISO 8601 intervals, hex bytes. The
#: spellings are ALL_ARGUMENTS.DATA_TYPE's, precisions left out (unconfirmed
#: on a server: base_type drops any `(n)` either way)
_TEXT_WRITTEN = {"INTERVAL DAY TO SECOND", "INTERVAL YEAR TO MONTH", "RAW", "LONG RAW", "BLOB"}


def type_kind(data_type: str | None, pls_type: str | None = None) -> str:
    """The family of an ALL_ARGUMENTS DATA_TYPE (PLS_TYPE refines NUMBER).

    DATE maps to TIMESTAMP: an Oracle DATE holds a time of day, so
    `2024-05-01 13:30` must be accepted, and `2024-05-01` means midnight.
    Intervals, RAW and BLOB are text (ISO 8601, hex) for the command line."""
    data_type = base_type(data_type)
    if data_type in _TEXT_WRITTEN:
        return TEXT
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
    return UNSUPPORTED   # records, collections, REF CURSOR, objects, XMLTYPE, BFILE


def _display_type(row: Mapping[str, Any]) -> str:
    data_type = row["data_type"] or "UNKNOWN"
    if row.get("type_name"):
        named = ".".join(p for p in (row.get("type_owner"), row["type_name"], row.get("type_subname")) if p)
        return f"{data_type} {named}"
    pls_type = row.get("pls_type")
    if pls_type and pls_type != data_type and data_type == "NUMBER":
        return pls_type
    return data_type


def signature_form(sig: Signature) -> str:
    """How the user names one overload: `PKG.PROC(NUMBER, VARCHAR2)`, its
    inputs' types as ALL_ARGUMENTS spells them, in position order
    (Signature.form where the generic model has it)."""
    form = getattr(sig, "form", None)
    if isinstance(form, str):
        return form
    return f"{sig.name}(" + ", ".join(p.type_name for p in sig.params if p.is_input) + ")"


def is_plain_identifier(name: str) -> bool:
    return bool(re.fullmatch(r"[A-Z][A-Z0-9_$#]*", name))


def _quoted(name: str) -> str:
    """An identifier from the data dictionary as PL/SQL must spell it.
    Oracle identifiers cannot contain double quotes, so quoting is safe."""
    if '"' in name:
        raise UsageError(f"invalid identifier {name!r}")
    return name if is_plain_identifier(name) else f'"{name}"'


class OracleCatalog(OracleBase):
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
            if error_code(exc)[0] in (6564, 4047):
                raise NotFound(f"procedure {name} not found in {self.settings.display} "
                               "(or no EXECUTE privilege on it)") from None
            raise
        return {k: v.getvalue() for k, v in out.items()}

    def resolve(self, conn: Any, name: str, given: frozenset[str]) -> Signature:
        canonical, candidates = self._candidates(conn, name)
        return self._pick_overload(canonical, candidates, given)

    def overloads(self, conn: Any, name: str) -> list[Signature]:
        """Every overload of the procedure, in ALL_ARGUMENTS.OVERLOAD order
        (ORACLE_NOTES: Second review, "Overloads"); NotFound when none."""
        return self._candidates(conn, name)[1]

    def _candidates(self, conn: Any, name: str) -> tuple[str, list[Signature]]:
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
        if not all(is_plain_identifier(p) for p in canonical.split(".")):
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
                       "types": {row["argument_name"]: row["data_type"] for row in rows},
                       "pls_types": {row["argument_name"]: row.get("pls_type") for row in rows}}))
        if not candidates:
            raise UsageError(f"{name} is a function, not a procedure; jobctl runs procedures")
        return canonical, candidates

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
        kind = type_kind(row["data_type"], row.get("pls_type"))
        if base_type(row["data_type"]) == REF_CURSOR and mode == "OUT":
            # a REF CURSOR OUT comes back as an array of row objects (call.py);
            # IN or IN OUT, jobctl has no cursor to pass
            kind = JSON
        return Param(name=row["argument_name"], type_name=_display_type(row), kind=kind,
                     mode=mode, defaulted=(row["defaulted"] or "N").upper() == "Y")

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
            return signature_form(sig)

        listing = "; ".join(shown(s) for s in (fitting or candidates))
        if fitting:
            raise UsageError(f"{name} is overloaded and the given parameters fit more than one: "
                             f"{listing}; name one of these forms, or pass parameters that pick one")
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
                                 "parameters are scalar (docs/oracle-types.md lists them)")
            if not p.defaulted:
                raise UsageError(f"{sig.name}: parameter {p.name} is {p.type_name}, which jobctl "
                                 "cannot pass; wrap the procedure in one whose parameters are "
                                 "scalar (docs/oracle-types.md lists them)")
