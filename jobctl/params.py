"""`NAME=VALUE` parsing and coercion by the procedure's signature.

Everything here happens before any row is written, so a bad value costs the
user one line on stderr and nothing else.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from .errors import UsageError
from .model import BOOLEAN, DATE, INTEGER, JSON, NUMBER, TEXT, TIMESTAMP, UNSUPPORTED, Param, Signature

_TRUE = {"true", "t", "yes", "y", "1", "on"}
_FALSE = {"false", "f", "no", "n", "0", "off"}


def parse_assignments(items: list[str]) -> dict[str, Any]:
    """`-p NAME=VALUE` strings → {NAME: "VALUE"} (values stay strings)."""
    out: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageError(f"invalid --param {item!r}: expected NAME=VALUE")
        if name.casefold() in {k.casefold() for k in out}:
            raise UsageError(f"parameter {name!r} given twice")
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
    """`-p` wins over `--params` for the same (case-insensitive) name."""
    merged = {k: v for k, v in json_params.items()
              if k.casefold() not in {a.casefold() for a in assignments}}
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
        values[p.name] = coerce(p, raw)
    missing = [p.name for p in sig.params
               if p.mode == "IN" and not p.defaulted and p.name not in values]
    if missing:
        raise UsageError(f"{sig.name}: missing required parameter{'s' if len(missing) > 1 else ''} "
                         + ", ".join(missing))
    return values


def coerce(p: Param, raw: Any) -> Any:
    if raw is None:
        return None
    if p.kind == UNSUPPORTED:
        raise UsageError(f"parameter {p.name} has type {p.type_name}, which jobctl cannot pass")
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
    try:
        return _COERCE[p.kind](raw)
    except (ValueError, TypeError, InvalidOperation, ArithmeticError):
        raise UsageError(f"parameter {p.name} is {p.type_name}: {_shown(raw)} is not {_WHAT[p.kind]}") from None


def _shown(raw: Any) -> str:
    return repr(raw) if isinstance(raw, str) else json.dumps(raw, default=str)


def _number(raw: Any) -> int | Decimal:
    if isinstance(raw, bool):
        raise TypeError
    if isinstance(raw, int):
        return raw
    value = Decimal(str(raw).strip()) if not isinstance(raw, Decimal) else raw
    if not value.is_finite():
        raise ValueError
    return int(value) if value == value.to_integral_value() and "." not in str(raw) and "e" not in str(raw).lower() else value


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
    """A bound or returned value as JSON: Decimal → int/float, dates → ISO."""
    if isinstance(value, Decimal):
        if value == value.to_integral_value() and abs(value) < 2**63:
            return int(value)
        return float(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [to_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    return value


def from_stored(sig: Signature, stored: dict[str, Any]) -> dict[str, Any]:
    """PARAMS as stored (JSON) → the values to bind, re-coerced by type so
    dates and decimals come back as the worker's driver wants them."""
    return {name: coerce(sig.param(name) or Param(name, "?", JSON), value)
            for name, value in stored.items()}
