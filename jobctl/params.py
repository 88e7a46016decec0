"""`NAME=VALUE` parsing and coercion by the procedure's signature.

Everything here happens before any row is written, so a bad value costs the
user one line on stderr and nothing else.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from .errors import JobctlError, UsageError
from .model import (
    BOOLEAN, DATE, INTEGER, JSON, NUMBER, TEXT, TIMESTAMP, UNSUPPORTED, Param, Signature, param_key,
)

#: what every backend can hold exactly: Oracle NUMBER keeps 38 significant
#: digits and magnitudes from 1E-130 to below 1E+126 (PostgreSQL numeric
#: holds more), so a value outside this is refused at submit rather than
#: rounded or rejected later by the worker
MAX_DIGITS = 38
MAX_ADJUSTED_EXPONENT = 125   # 9.99...E+125 is the largest
MIN_ADJUSTED_EXPONENT = -130  # 1E-130 is the smallest non-zero

_TRUE = {"true", "t", "yes", "y", "1", "on"}
_FALSE = {"false", "f", "no", "n", "0", "off"}


class Repeated(list):
    """The values of a `-p NAME=...` given more than once: the elements of a
    VARIADIC (or array) parameter; any other parameter refuses it (bind)."""


def parse_assignments(items: list[str]) -> dict[str, Any]:
    """`-p NAME=VALUE` strings → {NAME: "VALUE"} (values stay strings; a
    name given again collects its values in a `Repeated` list). NAME `1`
    is the positional parameter `$1`."""
    out: dict[str, Any] = {}
    keys: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageError(f"invalid --param {item!r}: expected NAME=VALUE")
        key = param_key(name)
        if key in keys:
            first = keys[key]
            if not isinstance(out[first], Repeated):
                out[first] = Repeated([out[first]])
            out[first].append(value)
            continue
        keys[key] = name
        out[name] = value
    return out


def parse_params_json(text: str) -> dict[str, Any]:
    """`--params '{"vA": 10}'` or `--params @file.json`."""
    source = "--params"
    if text.startswith("@"):
        path = Path(text[1:]).expanduser()
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read --params file {path}: {exc.strerror}") from None
    try:
        data = json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise UsageError(f"invalid JSON in {source}: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{source} must be a JSON object of NAME: VALUE")
    return data


def merge(json_params: dict[str, Any], assignments: dict[str, Any]) -> dict[str, Any]:
    """`-p` wins over `--params` for the same (case-insensitive) name;
    `1` and `$1` are one name."""
    given = {param_key(a) for a in assignments}
    merged = {k: v for k, v in json_params.items() if param_key(k) not in given}
    merged.update(assignments)
    return merged


def bind(sig: Signature, given: dict[str, Any]) -> dict[str, Any]:
    """Match given names to the signature and coerce each value.

    Returns {param.name: python value}. Unknown names, missing required
    inputs, OUT-only parameters given a value and ill-typed values raise
    UsageError naming the parameter.
    """
    values: dict[str, Any] = {}
    for name, raw in given.items():
        p = sig.param(name)
        if p is None:
            known = ", ".join(q.name for q in sig.params if q.is_input) or "none"
            raise UsageError(f"{sig.name} has no parameter {name!r} (inputs: {known})")
        if not p.is_input:
            raise UsageError(f"parameter {p.name} of {sig.name} is OUT only and takes no value")
        if p.name in values:
            raise UsageError(f"parameter {p.name} given twice (as {name!r})")
        check_utf8(p, raw)
        if isinstance(raw, Repeated) and not (p.variadic or p.array):
            raise UsageError(f"parameter {name!r} given twice")
        values[p.name] = coerce(p, raw)
    missing = [p.name for p in sig.params
               if p.mode == "IN" and not p.defaulted and p.name not in values]
    if missing:
        raise UsageError(f"{sig.name}: missing required parameter{'s' if len(missing) > 1 else ''} "
                         + ", ".join(missing))
    return values


def check_utf8(p: Param, raw: Any) -> None:
    """Text that is not UTF-8 (bytes the shell passed that Python kept as
    lone surrogates) is refused naming the parameter: the database would
    refuse it later, with a codec's message."""
    if isinstance(raw, str):
        bad = next((i for i, c in enumerate(raw) if "\ud800" <= c <= "\udfff"), None)
        if bad is not None:
            c = ord(raw[bad])
            byte = f" (byte 0x{c - 0xdc00:02x})" if 0xdc80 <= c <= 0xdcff else ""
            raise UsageError(f"parameter {p.name}: the value is not valid UTF-8{byte} at "
                             f"character {bad + 1}; jobctl passes text as UTF-8")
    elif isinstance(raw, (list, tuple)):
        for item in raw:
            check_utf8(p, item)
    elif isinstance(raw, dict):
        for key, item in raw.items():
            check_utf8(p, key)
            check_utf8(p, item)


def coerce(p: Param, raw: Any) -> Any:
    if raw is None:
        return None
    if p.kind == UNSUPPORTED:
        raise UsageError(f"parameter {p.name} has type {p.type_name}, which jobctl cannot pass")
    if p.variadic and isinstance(raw, str) and not raw.lstrip().startswith("["):
        raw = [raw]  # one `-p name=value`: a VARIADIC of one element
    if p.array:
        if isinstance(raw, str):
            try:
                raw = json.loads(raw, parse_float=Decimal)
            except json.JSONDecodeError:
                raise UsageError(f"parameter {p.name} ({p.type_name}) needs a JSON array, got {raw!r}") from None
        if not isinstance(raw, list):
            raise UsageError(f"parameter {p.name} ({p.type_name}) needs a JSON array, got {raw!r}")
        item = Param(p.name, p.type_name, p.kind)
        return [coerce(item, v) for v in raw]
    if isinstance(raw, Repeated):
        raise UsageError(f"parameter {p.name} given twice")
    try:
        return _COERCE[p.kind](raw)
    except OutOfRange as exc:
        raise UsageError(f"parameter {p.name} is {p.type_name}: {_shown(raw)} is out of range: {exc}"
                         ) from None
    except (ValueError, TypeError, InvalidOperation, ArithmeticError):
        raise UsageError(f"parameter {p.name} is {p.type_name}: {_shown(raw)} is not {_WHAT[p.kind]}") from None


def _shown(raw: Any) -> str:
    from .jsontext import dumps

    if isinstance(raw, str):
        return repr(raw)
    try:
        return dumps(raw, default=str)
    except ValueError:  # NaN / Infinity, which JSON text cannot hold
        return str(raw)


class OutOfRange(ValueError):
    """A finite number no database can hold exactly."""


def _number(raw: Any) -> int | Decimal:
    """A value as typed → int (integral, written without `.` or exponent) or
    Decimal, exactly: never through float."""
    if isinstance(raw, bool):
        raise TypeError
    if isinstance(raw, float):
        if not math.isfinite(raw):
            raise ValueError
        raw = Decimal(repr(raw))  # the shortest text that reads back as this float
    if isinstance(raw, int):
        value: int | Decimal = raw
    else:
        text = raw if isinstance(raw, Decimal) else str(raw).strip()
        parsed = Decimal(text)
        if not parsed.is_finite():
            raise ValueError
        plain = isinstance(raw, str) and not any(c in str(text) for c in ".eE")
        value = int(parsed) if plain else parsed
    _check_range(Decimal(value))
    return value


def _check_range(value: Decimal) -> None:
    significant = "".join(map(str, value.as_tuple().digits)).strip("0")
    if not significant:
        return  # zero, with any scale
    if len(significant) > MAX_DIGITS:
        raise OutOfRange(f"more than {MAX_DIGITS} significant digits")
    adjusted = value.adjusted()
    if adjusted > MAX_ADJUSTED_EXPONENT:
        raise OutOfRange("too large (at most 9.99...E+125)")
    if adjusted < MIN_ADJUSTED_EXPONENT:
        raise OutOfRange("too small (the smallest non-zero magnitude is 1E-130)")


def _integer(raw: Any) -> int:
    value = _number(raw)
    if value != int(value):
        raise ValueError
    return int(value)


def _text(raw: Any) -> str:
    if isinstance(raw, (dict, list)):
        raise TypeError
    if isinstance(raw, bool):
        return "true" if raw else "false"
    return str(raw)


def _boolean(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().casefold()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError


def _date(raw: Any) -> dt.date:
    if not isinstance(raw, str):
        raise TypeError
    return dt.date.fromisoformat(raw.strip())


def _timestamp(raw: Any) -> dt.datetime:
    if not isinstance(raw, str):
        raise TypeError
    return dt.datetime.fromisoformat(raw.strip())


def _json(raw: Any) -> Any:
    if isinstance(raw, str):
        return json.loads(raw, parse_float=Decimal)
    return raw


_COERCE = {NUMBER: _number, INTEGER: _integer, TEXT: _text, BOOLEAN: _boolean,
           DATE: _date, TIMESTAMP: _timestamp, JSON: _json}
_WHAT = {NUMBER: "a number", INTEGER: "an integer", TEXT: "text", BOOLEAN: "true/false",
         DATE: "a date (YYYY-MM-DD)", TIMESTAMP: "a timestamp (YYYY-MM-DD HH:MM:SS[.ffffff])",
         JSON: "valid JSON"}


def to_json_value(value: Any) -> Any:
    """A bound or returned value as JSON data, exactly: Decimal stays Decimal
    (jsontext writes it as a number from its own text), dates become ISO
    text. NaN and infinities, which JSON cannot hold, become their text."""
    if isinstance(value, Decimal):
        return value if value.is_finite() else str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [to_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    return value


#: the most rows one REF CURSOR or implicit result may keep in RESULT
MAX_RESULT_ROWS = 1_000_000


def row_bound(profile: dict[str, Any]) -> int:
    """JOBCTL_RESULT_ROWS (or the profile's result_rows; default 1000): rows
    kept from one REF CURSOR or implicit result (Tunables.result_rows)."""
    import os

    raw = os.environ.get("JOBCTL_RESULT_ROWS", profile.get("result_rows", 1000))
    text = str(raw).strip()
    if isinstance(raw, bool) or not text.isdigit() or not 0 < int(text) <= MAX_RESULT_ROWS:
        raise UsageError(f"invalid JOBCTL_RESULT_ROWS (or profile key result_rows) {raw!r}: "
                         f"must be a whole number of rows from 1 to {MAX_RESULT_ROWS}")
    return int(text)


def params_json(values: dict[str, Any]) -> str:
    """Bound values as the PARAMS column holds them."""
    from .jsontext import dumps

    return dumps({k: to_json_value(v) for k, v in values.items()}, sort_keys=True)


def from_stored(sig: Signature, stored: dict[str, Any]) -> dict[str, Any]:
    """PARAMS as stored (read with parse_float=Decimal) → the values submit
    bound. Not a second coercion from text: numbers are already the exact
    int/Decimal, text stays as it was; only what JSON has no type for (dates,
    timestamps) is restored from the ISO text submit wrote."""
    values = {}
    for name, value in stored.items():
        p = sig.param(name)
        if p is None:
            raise JobctlError(f"{sig.name} has no parameter {name!r} any more")
        values[p.name] = _restore(p.kind, value)
    return values


def _restore(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, list) and kind != JSON:
        return [_restore(kind, v) for v in value]
    if kind == DATE and isinstance(value, str):
        return dt.date.fromisoformat(value)
    if kind == TIMESTAMP and isinstance(value, str):
        return dt.datetime.fromisoformat(value)
    return value
