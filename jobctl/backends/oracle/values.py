"""Oracle values that JSON has no type for, both ways: INTERVAL DAY TO SECOND
and YEAR TO MONTH as ISO 8601 durations (months kept apart from days), RAW
and BLOB as hex (`\\x0a1b`, as psql shows bytea), and result sets (a REF
CURSOR OUT, DBMS_SQL.RETURN_RESULT's implicit results) as arrays of row
objects, bounded (ORACLE_NOTES: Second review, "Implicit results and REF
CURSORs").

The driver's own value objects are the ones bound and read back:
`datetime.timedelta` for DB_TYPE_INTERVAL_DS, `oracledb.IntervalYM` for
DB_TYPE_INTERVAL_YM, `bytes` for DB_TYPE_RAW (python-oracledb
doc/src/user_guide/sql_execution.rst, "Fetched Data Types"; the type
objects are oracledb.DB_TYPE_*)."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal, InvalidOperation
from typing import Any

import oracledb

from ...errors import UsageError
from ...params import to_json_value


def base_type(data_type: str | None) -> str:
    """An ALL_ARGUMENTS DATA_TYPE without precisions, upper case, single
    spaced: `INTERVAL DAY(2) TO SECOND(6)` → `INTERVAL DAY TO SECOND`."""
    text = re.sub(r"\(\s*\d+(\s*,\s*\d+)?\s*\)", "", data_type or "")
    return " ".join(text.upper().split())


INTERVAL_DS = "INTERVAL DAY TO SECOND"
INTERVAL_YM = "INTERVAL YEAR TO MONTH"
BINARY_TYPES = frozenset({"RAW", "LONG RAW", "BLOB"})
REF_CURSOR = "REF CURSOR"


# -- intervals -------------------------------------------------------------------

#: a sign before the P, or on each field as PostgreSQL's iso_8601 style
#: writes it (`P-1Y-2M`, `PT-1H-30M`): jobctl writes the latter for every
#: database, so a RESULT reads the same whichever database it came from
_NUM = r"([+-]?\d+(?:[.,]\d+)?)"
_ISO = re.compile(rf"(?P<sign>[-+])?P(?:{_NUM}Y)?(?:{_NUM}M)?(?:{_NUM}W)?(?:{_NUM}D)?"
                  rf"(?:T(?:{_NUM}H)?(?:{_NUM}M)?(?:{_NUM}S)?)?", re.IGNORECASE)
#: Oracle's own literals: `[-]D HH:MI:SS[.f]` and `[-]Y-M`
_ORACLE_DS = re.compile(r"(?P<sign>[-+])?(\d+) (\d{1,2}):(\d{1,2}):(\d{1,2}(?:\.\d+)?)")
_ORACLE_YM = re.compile(r"(?P<sign>[-+])?(\d+)-(\d{1,2})")
_MICRO = Decimal("0.000001")


def _dec(text: str | None) -> Decimal:
    return Decimal(text.replace(",", ".")) if text else Decimal(0)


def _iso_parts(text: str) -> tuple[int, list[Decimal]] | None:
    m = _ISO.fullmatch(text.strip())
    if not m or text.strip().upper().rstrip("T").endswith("P") or text.strip().upper().endswith("T"):
        return None
    sign = -1 if m.group("sign") == "-" else 1
    return sign, [_dec(g) for g in m.groups()[1:]]


def parse_interval_ds(raw: Any, name: str) -> dt.timedelta:
    """ISO 8601 (`P1DT2H3M4.5S`, `-PT90M`) or Oracle's `1 02:03:04.5`."""
    if isinstance(raw, dt.timedelta):
        return raw
    text = str(raw).strip()
    hint = (f"parameter {name} is INTERVAL DAY TO SECOND: {text!r} is not an ISO 8601 duration "
            "such as P1DT2H3M4.5S (or Oracle's 1 02:03:04.5)")
    seconds: Decimal
    m = _ORACLE_DS.fullmatch(text)
    if m:
        sign = -1 if m.group("sign") == "-" else 1
        d, h, mi, s = (_dec(g) for g in m.groups()[1:])
        seconds = sign * (d * 86400 + h * 3600 + mi * 60 + s)
    else:
        parts = _iso_parts(text)
        if parts is None:
            raise UsageError(hint)
        sign, (y, mo, w, d, h, mi, s) = parts
        if y or mo:
            raise UsageError(f"parameter {name} is INTERVAL DAY TO SECOND: {text!r} has years or "
                             "months, which such an interval cannot hold; write days (P30D)")
        seconds = sign * (w * 7 * 86400 + d * 86400 + h * 3600 + mi * 60 + s)
    try:
        micro = (seconds / _MICRO).to_integral_exact()
    except InvalidOperation:
        raise UsageError(hint) from None
    if seconds != micro * _MICRO:
        raise UsageError(f"parameter {name} is INTERVAL DAY TO SECOND: {text!r} is finer than "
                         "a microsecond")
    try:
        return dt.timedelta(microseconds=int(micro))
    except OverflowError:
        raise UsageError(f"parameter {name} is INTERVAL DAY TO SECOND: {text!r} is out of range") from None


def parse_interval_ym(raw: Any, name: str) -> Any:
    """ISO 8601 (`P1Y2M`, `P14M`, `-P1Y`) or Oracle's `1-2`, as the driver's
    `oracledb.IntervalYM(years, months)` (both signed alike)."""
    if isinstance(raw, oracledb.IntervalYM):
        return raw
    text = str(raw).strip()
    m = _ORACLE_YM.fullmatch(text)
    if m:
        sign = -1 if m.group("sign") == "-" else 1
        total = sign * (int(m.group(2)) * 12 + int(m.group(3)))
    else:
        parts = _iso_parts(text)
        if parts is None:
            raise UsageError(f"parameter {name} is INTERVAL YEAR TO MONTH: {text!r} is not an "
                             "ISO 8601 duration such as P1Y2M (or Oracle's 1-2)")
        sign, (y, mo, w, d, h, mi, s) = parts
        if w or d or h or mi or s or y != int(y) or mo != int(mo):
            raise UsageError(f"parameter {name} is INTERVAL YEAR TO MONTH: {text!r} has days or "
                             "a time, or a fraction, which such an interval cannot hold")
        total = sign * (int(y) * 12 + int(mo))
    years, months = divmod(abs(total), 12)
    sign = -1 if total < 0 else 1
    return oracledb.IntervalYM(sign * years, sign * months)


def format_interval_ds(value: dt.timedelta) -> str:
    """ISO 8601 as PostgreSQL's iso_8601 style writes it: `P1DT2H3M4.5S`,
    each field of a negative interval signed (`P-1DT-2H`), zero `PT0S`."""
    micro = abs(value) // dt.timedelta(microseconds=1)
    sign = "-" if value < dt.timedelta(0) else ""
    days, micro = divmod(micro, 86_400_000_000)
    hours, micro = divmod(micro, 3_600_000_000)
    minutes, micro = divmod(micro, 60_000_000)
    secs = Decimal(micro) / 1_000_000
    time = "".join(f"{sign}{n}{u}" for n, u in ((hours, "H"), (minutes, "M")) if n)
    if secs:
        time += f"{sign}{secs.normalize():f}S"
    out = f"{sign}{days}D" if days else ""
    if time:
        out += "T" + time
    return "P" + (out or "T0S")


def format_interval_ym(value: Any) -> str:
    """ISO 8601 as above: `P1Y2M`, `P-1Y-2M`, `P0M`."""
    years, months = int(value.years), int(value.months)
    out = (f"{years}Y" if years else "") + (f"{months}M" if months or not years else "")
    return f"P{out}"


# -- RAW and BLOB ------------------------------------------------------------------

def parse_hex(raw: Any, name: str, type_name: str) -> bytes:
    """`\\x0a1b` (psql's form) or bare `0a1b`, as HEXTORAW takes it."""
    if isinstance(raw, (bytes, bytearray)):
        return bytes(raw)
    text = str(raw).strip()
    digits = text[2:] if text[:2] in ("\\x", "\\X") else text
    if len(digits) % 2 or not re.fullmatch(r"[0-9A-Fa-f]*", digits):
        raise UsageError(f"parameter {name} is {type_name}: {text!r} is not hex bytes such as "
                         "\\x0a1b")
    return bytes.fromhex(digits)


def format_hex(value: bytes | bytearray) -> str:
    return "\\x" + bytes(value).hex()


# -- values read back ----------------------------------------------------------------

def result_value(value: Any, limit: int = 1000) -> Any:
    """A value read from an OUT variable or a result row, JSON-ready and
    exact: LOBs read, RAW as hex, intervals as ISO 8601, a nested cursor as
    its rows."""
    if hasattr(value, "read"):                    # CLOB / NCLOB / BLOB locator
        value = value.read()
    if isinstance(value, (bytes, bytearray)):
        return format_hex(value)
    if isinstance(value, dt.timedelta):
        return format_interval_ds(value)
    if isinstance(value, oracledb.IntervalYM):
        return format_interval_ym(value)
    if isinstance(value, oracledb.Cursor):
        return fetch_rows(value, limit)[0]
    return to_json_value(value)


def decimal_numbers(cursor: Any, metadata: Any) -> Any:
    """An output type handler: NUMBER columns as Decimal, all 38 digits,
    where the driver's default hands back a float for a fraction
    (doc/src/user_guide/sql_execution.rst, "Fetched Number Precision")."""
    if metadata.type_code is oracledb.DB_TYPE_NUMBER:
        return cursor.var(Decimal, arraysize=cursor.arraysize)
    return None


def column_name(name: str) -> str:
    """Upper-case (unquoted) column names as RESULT keys are: lower case."""
    return name.lower() if name == name.upper() else name


def fetch_rows(cur: Any, limit: int) -> tuple[list[dict[str, Any]], bool]:
    """At most `limit` rows of an open cursor as objects keyed by column
    name, and whether more were there (one row past the bound is fetched to
    know it). The cursor is closed afterwards."""
    try:
        cur.arraysize = max(1, min(limit + 1, 1000))
        # also on the cursor itself: whether a REF CURSOR takes its
        # connection's handler is unconfirmed on a server
        cur.outputtypehandler = decimal_numbers
        names = [column_name(d[0]) for d in cur.description or ()]
        rows = cur.fetchmany(limit + 1)
        cut = len(rows) > limit
        out = [dict(zip(names, (result_value(v, limit) for v in row))) for row in rows[:limit]]
        return out, cut
    finally:
        try:
            cur.close()
        except Exception:  # noqa: BLE001 - already closed by the server or the driver
            pass


def cut_note(name: str, limit: int) -> str:
    return f"[jobctl] {name}: cut at {limit} rows (JOBCTL_RESULT_ROWS)"
