"""What a request says, checked for its shape before the library sees it:
the submit body, the query strings of the reads. A request of the wrong
shape is 400 (BadRequest); its values are the library's to judge (422)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..model import parse_duration
from .errors import BadRequest

#: the submit body's keys beside `name` and `params`, as `jobctl submit`'s options
_PLACING: dict[str, Any] = {"queue": str, "priority": int, "timeout": (str, int, float), "retries": int,
            "unique": bool, "after": list, "at": str, "in": str}


def parse_submit(body: Any) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """`{"name": "SUMA_SIMPLE", "params": [{"name": "vA", "value": 10}]}` →
    (procedure, parameters by name, submit's other options). `params` may
    also be an object `{"vA": 10}` (as `--params`)."""
    if not isinstance(body, dict):
        raise BadRequest('expected a JSON object: {"name": "PROC", "params": [{"name": ..., '
                         '"value": ...}]}')
    unknown = sorted(set(body) - {"name", "params"} - set(_PLACING))
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]!r}: expected name, params, "
                         + ", ".join(_PLACING))
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise BadRequest('"name" must be the procedure\'s name, a non-empty string')
    given = _params(body.get("params"))
    placing: dict[str, Any] = {}
    for key, kind in _PLACING.items():
        if key not in body or body[key] is None:
            continue
        value = body[key]
        if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
            raise BadRequest(f'"{key}" has the wrong type ({type(value).__name__})')
        placing[key] = value
    options: dict[str, Any] = {}
    if "timeout" in placing:
        t = placing.pop("timeout")
        options["timeout_s"] = parse_duration(str(t), option="timeout")
    if "after" in placing:
        after = placing.pop("after")
        if not all(isinstance(a, str) for a in after):
            raise BadRequest('"after" must be a list of job ids')
        options["after"] = after
    if "in" in placing:
        options["in_"] = placing.pop("in")
    options.update(placing)
    return name.strip(), given, options


def _params(raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if isinstance(raw, dict):
        return dict(raw)
    if not isinstance(raw, list):
        raise BadRequest('"params" must be a list of {"name": ..., "value": ...} (or an object)')
    out: dict[str, Any] = {}
    seen: set[str] = set()
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or set(item) - {"name", "value"} or "name" not in item:
            raise BadRequest(f'params[{i}] must be {{"name": ..., "value": ...}}')
        name = item["name"]
        if not isinstance(name, str) or not name.strip():
            raise BadRequest(f"params[{i}].name must be a non-empty string")
        if name.casefold() in seen:
            raise BadRequest(f"parameter {name} is given twice")
        seen.add(name.casefold())
        out[name] = item.get("value")
    return out


def query(params: Mapping[str, str], allowed: set[str]) -> dict[str, str]:
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise BadRequest(f"unknown query parameter {unknown[0]!r}: expected "
                         + ", ".join(sorted(allowed)))
    return dict(params)


def since_param(text: str) -> float | None:
    return None if text.strip().lower() == "all" else parse_duration(text, option="since")


def list_filters(params: Any) -> dict[str, Any]:
    """GET /jobs?status=running&procedure=P&since=24h&limit=50&queue=Q"""
    query(params, {"status", "procedure", "since", "limit", "queue"})
    limit_text = params.get("limit", "50")
    try:
        limit = int(limit_text)
    except ValueError:
        raise BadRequest(f"limit must be a whole number, not {limit_text!r}") from None
    return {"statuses": params.getlist("status") or None, "procedure": params.get("procedure"),
            "since_s": since_param(params.get("since", "24h")), "limit": limit,
            "queue": params.get("queue")}
