"""JSON as jobctl writes and reads it: exact numbers, UTF-8, never NaN.

The standard library cannot write a `Decimal` as a JSON number (only as a
string, or through float, which loses digits), so `dumps` is a small encoder
of its own: a Decimal is written as its own text (`str(Decimal)`), which reads
back as the same Decimal with `loads` (`parse_float=Decimal`; integers stay
Python ints, however long). `1E+30` stays `1E+30`; `-0.000000000000000000001`
is written `-1E-21`, the same exact value. Text is written as UTF-8
(`ensure_ascii=False`), so `WHERE params LIKE '%Ñuñoa%'` finds it. NaN and
infinities are refused (ValueError): PARAMS and RESULT stay valid JSON.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

_string = json.JSONEncoder(ensure_ascii=False).encode


def dumps(value: Any, *, indent: int | None = None, sort_keys: bool = False,
          default: Callable[[Any], Any] | None = None) -> str:
    out: list[str] = []
    _encode(value, out, indent, 0, sort_keys, default)
    return "".join(out)


def loads(text: str | bytes) -> Any:
    return json.loads(text, parse_float=Decimal)


def _encode(value: Any, out: list[str], indent: int | None, level: int, sort_keys: bool,
            default: Callable[[Any], Any] | None) -> None:
    if value is None:
        out.append("null")
    elif value is True or value is False:
        out.append("true" if value else "false")
    elif isinstance(value, str):
        out.append(_string(str(value)))
    elif isinstance(value, int):
        out.append(int.__repr__(value))
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} is not a JSON number")
        out.append(str(value))
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} is not a JSON number")
        out.append(float.__repr__(value))
    elif isinstance(value, dict):
        items = [(_key(k), v) for k, v in value.items()]
        if sort_keys:
            items.sort(key=lambda kv: kv[0])
        _container(out, "{", "}", items, indent, level, sort_keys, default, keyed=True)
    elif isinstance(value, (list, tuple)):
        _container(out, "[", "]", [(None, v) for v in value], indent, level, sort_keys, default,
                   keyed=False)
    elif default is not None:
        _encode(default(value), out, indent, level, sort_keys, None)
    else:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _key(key: Any) -> str:
    if isinstance(key, str):
        return str(key)
    if key is None or isinstance(key, bool):
        return json.dumps(key)
    return str(key)


def _container(out: list[str], opening: str, closing: str, items: Sequence[tuple[str | None, Any]],
               indent: int | None, level: int, sort_keys: bool,
               default: Callable[[Any], Any] | None, *, keyed: bool) -> None:
    if not items:
        out.append(opening + closing)
        return
    if indent is None:
        sep, pad, end = ", ", "", ""
    else:
        pad = "\n" + " " * (indent * (level + 1))
        sep, end = "," + pad, "\n" + " " * (indent * level)
    out.append(opening + pad)
    for i, (key, item) in enumerate(items):
        if i:
            out.append(sep)
        if keyed:
            out.append(_string(key) + ": ")
        _encode(item, out, indent, level + 1, sort_keys, default)
    out.append(end + closing)
