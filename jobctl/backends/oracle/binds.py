"""Values as the call binds them: the driver type for each Oracle parameter
type, OUT variables, and the check at submit that every value is one the
parameter's type accepts (ORACLE_NOTES "Calling a procedure", mapping list;
issue 24: "an anonymous block assigning to a typed variable")."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import oracledb

from ...errors import UsageError
from ...model import BOOLEAN, INTEGER, JSON, NUMBER, TEXT, TIMESTAMP, Param, Signature
from .catalog import is_plain_identifier
from .errors import db_text, error_info, first_line
from .shared import UTC as _UTC
from .shared import OracleBase
from .values import (BINARY_TYPES, INTERVAL_DS, INTERVAL_YM, REF_CURSOR, base_type, parse_hex,
                     parse_interval_ds, parse_interval_ym)

#: the longest VARCHAR2/RAW a PL/SQL variable holds; also the OUT size
#: (the driver's default is 4000)
MAX_PLSQL = 32767

#: driver types a plain Python value already binds as (src/oracledb/impl/base/
#: metadata.pyx `from_value`: int/Decimal → NUMBER, bool → BOOLEAN, date and
#: datetime → DATE); others need a typed variable
_PLAIN_BINDS = (oracledb.DB_TYPE_NUMBER, oracledb.DB_TYPE_BOOLEAN, oracledb.DB_TYPE_DATE)

#: what check_values declares for each parameter type: an allow-list, so no
#: text from the data dictionary is ever pasted into the block. Formal
#: parameters carry no size (PL/SQL forbids it), so the variables hold the
#: most their type can: intervals with 9-digit precisions, 32767-byte text.
#: NOT NULL subtypes need an initial value to be declared at all.
_CHECK_TYPES = {
    "NUMBER": "NUMBER", "FLOAT": "FLOAT", "DECIMAL": "NUMBER", "NUMERIC": "NUMBER",
    "REAL": "REAL", "DOUBLE PRECISION": "DOUBLE PRECISION",
    "BINARY_FLOAT": "BINARY_FLOAT", "BINARY_DOUBLE": "BINARY_DOUBLE",
    "INTEGER": "INTEGER", "INT": "INTEGER", "SMALLINT": "SMALLINT",
    "PLS_INTEGER": "PLS_INTEGER", "BINARY_INTEGER": "BINARY_INTEGER",
    "PL/SQL PLS INTEGER": "PLS_INTEGER", "PL/SQL BINARY INTEGER": "BINARY_INTEGER",
    "NATURAL": "NATURAL", "POSITIVE": "POSITIVE", "SIGNTYPE": "SIGNTYPE",
    "NATURALN": "NATURALN := 0", "POSITIVEN": "POSITIVEN := 1",
    "SIMPLE_INTEGER": "SIMPLE_INTEGER := 0",
    "VARCHAR2": f"VARCHAR2({MAX_PLSQL})", "VARCHAR": f"VARCHAR2({MAX_PLSQL})",
    "STRING": f"VARCHAR2({MAX_PLSQL})", "CHAR": f"CHAR({MAX_PLSQL})",
    "DATE": "DATE", "TIMESTAMP": "TIMESTAMP(9)",
    "TIMESTAMP WITH TIME ZONE": "TIMESTAMP(9) WITH TIME ZONE",
    "TIMESTAMP WITH LOCAL TIME ZONE": "TIMESTAMP(9) WITH LOCAL TIME ZONE",
    INTERVAL_DS: "INTERVAL DAY(9) TO SECOND(9)", INTERVAL_YM: "INTERVAL YEAR(9) TO MONTH",
    "RAW": f"RAW({MAX_PLSQL})", "BOOLEAN": "BOOLEAN", "PL/SQL BOOLEAN": "BOOLEAN",
    "JSON": "JSON",
}


def check_type(data_type: str | None, pls_type: str | None) -> str | None:
    """The variable type check_values declares, or None: not checked (CLOB,
    BLOB, LONG: any value of the family fits; NVARCHAR2/NCHAR: their limit in
    characters depends on the national character set, and a variable sized
    for the worst would refuse what the call takes; records and the like are
    refused before)."""
    dtype = base_type(data_type)
    pls = base_type(pls_type)
    if dtype == "NUMBER" and pls in _CHECK_TYPES:
        return _CHECK_TYPES[pls]        # INTEGER, NATURAL, ... are NUMBER in DATA_TYPE
    return _CHECK_TYPES.get(dtype)


def check_values_sql(types: list[str]) -> str:
    """One anonymous block: each value assigned to a variable of its
    parameter's type, the first refusal reported by position with SQLERRM.
    Nothing is written, nothing called."""
    declare = "".join(f"    v_{i} {t};\n" for i, t in enumerate(types, 1))
    body = "".join(
        f"    IF v_bad = 0 THEN\n"
        f"        BEGIN v_{i} := :v{i}; EXCEPTION WHEN OTHERS THEN v_bad := {i}; v_err := SQLERRM; END;\n"
        f"    END IF;\n" for i in range(1, len(types) + 1))
    return ("DECLARE\n    v_bad PLS_INTEGER := 0;\n    v_err VARCHAR2(4000);\n" + declare +
            "BEGIN\n" + body + "    :jc_bad := v_bad;\n    :jc_err := v_err;\nEND;")


class OracleBinds(OracleBase):
    @staticmethod
    def _in_value(p: Param, data_type: str, value: Any) -> Any:
        """The Python value the driver binds for a coerced input: intervals,
        RAW and BLOB are written as text on the command line and become the
        driver's own objects here (UsageError naming the parameter)."""
        if value is None:
            return None
        dtype = base_type(data_type)
        if dtype == INTERVAL_DS:
            return parse_interval_ds(value, p.name)
        if dtype == INTERVAL_YM:
            return parse_interval_ym(value, p.name)
        if dtype in BINARY_TYPES:
            return parse_hex(value, p.name, dtype)
        if p.kind == TIMESTAMP and isinstance(value, dt.datetime) and value.tzinfo is not None:
            if "TIME ZONE" in dtype:
                # thin mode sends a zoned value's wall time labelled +00:00
                # (python-oracledb issue 374): the instant is right once it is UTC
                value = value.astimezone(_UTC).replace(tzinfo=None)
            else:
                # a DATE or TIMESTAMP holds no zone: the wall time as written,
                # as Oracle keeps it when a TIMESTAMP WITH TIME ZONE literal is
                # assigned to one (and PostgreSQL's timestamp does); done here,
                # so it does not rest on a conversion unconfirmed on a server
                value = value.replace(tzinfo=None)
        return value

    def _in_bind(self, cur: Any, p: Param, data_type: str, value: Any) -> Any:
        """A coerced input as callproc should bind it: a NULL of a non-string
        type, and the types the driver would guess wrong, get a typed
        variable. For a parameter WITH [LOCAL] TIME ZONE a timestamp with an
        offset binds as the instant (TIMESTAMP WITH TIME ZONE, UTC) and one
        without as a wall time in the session's zone, as SQL*Plus reads a
        literal; a DATE or TIMESTAMP gets the wall time as written."""
        aware = isinstance(value, dt.datetime) and value.tzinfo is not None
        value = self._in_value(p, data_type, value)
        db_type = self._db_type(p, (data_type or "").upper())
        if db_type in (oracledb.DB_TYPE_TIMESTAMP_TZ, oracledb.DB_TYPE_TIMESTAMP_LTZ):
            # with an offset: the instant, converted by the server to the
            # parameter's type; without: a wall time in the session's zone
            db_type = oracledb.DB_TYPE_TIMESTAMP_TZ if aware else oracledb.DB_TYPE_TIMESTAMP
        if db_type is None or (value is not None and db_type in _PLAIN_BINDS):
            return value
        if db_type is oracledb.DB_TYPE_NVARCHAR:
            var = cur.var(db_type, max(1, len(value or "")))
        elif db_type is oracledb.DB_TYPE_RAW:
            var = cur.var(db_type, max(1, len(value or b"")))
        else:
            var = cur.var(db_type)
        var.setvalue(0, value)
        return var

    @staticmethod
    def _db_type(p: Param, data_type: str) -> Any:
        """The driver type for a parameter, or None where a plain Python value
        binds correctly (str → VARCHAR, int/Decimal → NUMBER, DATE)."""
        dtype = base_type(data_type)
        if dtype == INTERVAL_DS:
            return oracledb.DB_TYPE_INTERVAL_DS
        if dtype == INTERVAL_YM:
            return oracledb.DB_TYPE_INTERVAL_YM
        if dtype in ("RAW", "LONG RAW"):
            return oracledb.DB_TYPE_RAW
        if dtype == "BLOB":
            return oracledb.DB_TYPE_BLOB
        if dtype == REF_CURSOR:
            return oracledb.DB_TYPE_CURSOR
        if p.kind in (NUMBER, INTEGER):
            return oracledb.DB_TYPE_NUMBER
        if p.kind == BOOLEAN:
            return oracledb.DB_TYPE_BOOLEAN
        if p.kind == JSON:
            return oracledb.DB_TYPE_JSON
        if p.kind == TIMESTAMP:
            if dtype == "DATE":
                return oracledb.DB_TYPE_DATE
            if "LOCAL TIME ZONE" in dtype:
                return oracledb.DB_TYPE_TIMESTAMP_LTZ
            if "TIME ZONE" in dtype:
                return oracledb.DB_TYPE_TIMESTAMP_TZ
            return oracledb.DB_TYPE_TIMESTAMP      # keeps fractional seconds
        if p.kind == TEXT:
            if dtype == "CLOB":
                return oracledb.DB_TYPE_CLOB
            if dtype == "NCLOB":
                return oracledb.DB_TYPE_NCLOB
            if dtype in ("NVARCHAR2", "NCHAR"):
                # national character set: a plain str binds as VARCHAR and
                # loses what the database character set cannot hold
                # (ORACLE_NOTES: Found in a line-by-line review, "National
                # character types")
                return oracledb.DB_TYPE_NVARCHAR
        return None

    def _out_var(self, cur: Any, p: Param, data_type: str) -> Any:
        """A variable for an OUT or IN OUT parameter."""
        dtype = base_type(data_type)
        if p.kind == NUMBER:
            # NUMBER holds 38 digits: a Decimal variable returns them all,
            # where the driver's default would hand back a float
            return cur.var(Decimal)
        if p.kind == INTEGER:
            return cur.var(int)
        if dtype in ("RAW", "LONG RAW"):
            return cur.var(oracledb.DB_TYPE_RAW, MAX_PLSQL)
        if p.kind == TEXT and dtype in ("NVARCHAR2", "NCHAR"):
            return cur.var(oracledb.DB_TYPE_NVARCHAR, MAX_PLSQL)
        db_type = self._db_type(p, dtype)
        if p.kind == TEXT and db_type is None:
            return cur.var(str, MAX_PLSQL)
        if db_type is None:
            raise UsageError(f"parameter {p.name} is {p.type_name}, which jobctl cannot receive")
        return cur.var(db_type)

    @staticmethod
    def _keyword(name: str) -> str:
        """A parameter name as callproc pastes it: `NAME => :n`."""
        keyword = name if is_plain_identifier(name) else f'"{name}"'
        if '"' in name or not oracledb.is_simple_sql_name(keyword):
            raise UsageError(f"invalid parameter name {name!r}")
        return keyword

    def check_values(self, conn: Any, sig: Signature, values: Mapping[str, Any]) -> None:
        """Every input value assigned, on the server, to a variable of its
        parameter's type, in one anonymous block: one round trip, no side
        effect (an assignment writes nothing). What the call would refuse for
        type, range, length or NOT NULL is a UsageError naming the parameter.
        A value jobctl itself cannot read (an interval, hex) is refused before
        the round trip. CLOB, BLOB and LONG values are not sent: any text or
        bytes fit them."""
        types = sig.extra.get("types", {})
        pls_types = sig.extra.get("pls_types", {})
        cur = conn.cursor()
        checked: list[tuple[Param, str]] = []
        binds: dict[str, Any] = {}
        for p in sig.params:
            if not p.is_input or p.name not in values:
                continue
            data_type = types.get(p.name, "")
            self._in_value(p, data_type, values[p.name])     # client-side refusals, no variable
            declared = check_type(data_type, pls_types.get(p.name))
            if declared is None:
                continue          # (a CLOB variable would cost a temporary LOB)
            checked.append((p, declared))
            binds[f"v{len(checked)}"] = self._in_bind(cur, p, data_type, values[p.name])
        if not checked:
            return
        bad, err = cur.var(int), cur.var(str, 4000)
        try:
            cur.execute(check_values_sql([t for _, t in checked]),
                        {**binds, "jc_bad": bad, "jc_err": err})
        except oracledb.Error as exc:
            info = error_info(exc)
            if info is not None and info.code == 6550:
                # the block did not compile: jobctl's fault, not the value's;
                # the call checks the values itself
                return
            # a bind the server cannot even take (it names no variable)
            raise UsageError(f"{sig.name}: the values were refused by the database: "
                             f"{first_line(db_text(info)) if info else exc}") from None
        index = bad.getvalue() or 0
        if index:
            p = checked[index - 1][0]
            shown = values[p.name]
            raise UsageError(f"parameter {p.name} is {p.type_name}: {str(shown)!r} is refused by "
                             f"the database: {first_line(str(err.getvalue() or ''))}")
