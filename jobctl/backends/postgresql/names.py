"""Names and binds: a PostgreSQL name as the server folds it, and `:name`
binds turned into psycopg's `%(name)s`."""

from __future__ import annotations

import re
from functools import lru_cache

from ...errors import UsageError
from ...sqlfiles import segments




_PART = r'(?:[A-Za-z_][A-Za-z0-9_$]*|"(?:[^"]|"")+")'

_NAME = re.compile(rf"({_PART})(?:\.({_PART}))?")

_PLAIN = re.compile(r"[a-z_][a-z0-9_$]*")

_MAX_IDENT_BYTES = 63  # NAMEDATALEN - 1: longer names are silently truncated by the server

def _unquote(part: str) -> str:
    if part.startswith('"'):
        return part[1:-1].replace('""', '"')
    return part.lower()  # PostgreSQL folds unquoted identifiers to lower case

def render_ident(ident: str) -> str:
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
