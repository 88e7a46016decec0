"""The scripts under sql/: found inside the installed package, split the way
their command-line tools (sqlite3, psql, sqlplus) would run them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import UsageError


def sql_dir() -> Path:
    packaged = Path(__file__).parent / "sql"           # inside a wheel
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "sql"  # source checkout / editable


def read_sql(backend: str, filename: str) -> str:
    return (sql_dir() / backend / filename).read_text(encoding="utf-8")


_TRANSACTION_CONTROL = re.compile(r"\s*(BEGIN|START\s+TRANSACTION|COMMIT|ROLLBACK|END|ABORT)\s*;?\s*$",
                                  re.IGNORECASE)


def session_statements(scheme: str, text: Any) -> list[str]:
    """`session_setup` as statements; UsageError (exit 2) for anything that is
    not one or more SQL statements, or that would end jobctl's transactions."""
    where = "session_setup"
    if text is None:
        return []
    if not isinstance(text, str):
        raise UsageError(f"{where} must be SQL text in quotes, not {text!r}")
    if "\x00" in text:
        raise UsageError(f"{where} contains a NUL character")
    statements = [s.strip() for s in split_script(text, "sqlplus" if scheme == "oracle"
                                                     else "semicolon") if s.strip()]
    if not statements:
        raise UsageError(f"{where} holds no SQL statement: give one or more statements, "
                         "e.g. session_setup = \"SET search_path = app, public\"")
    for stmt in statements:
        if _TRANSACTION_CONTROL.match(stmt):
            raise UsageError(f"{where}: {stmt.strip()!r} is not allowed: jobctl controls the "
                             "job's transactions (session_setup is for settings)")
    return statements


def split_script(text: str, style: str) -> list[str]:
    if style == "sqlplus":
        return _split_sqlplus(text)
    return _split_semicolon(text)


_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")


def segments(sql: str) -> Iterator[tuple[bool, str]]:
    """SQL text as (is_code, text) runs: code, and the opaque pieces inside which
    `;`, `:name` and `%` mean nothing — quoted strings and identifiers,
    comments, PostgreSQL dollar-quoted bodies. The runs join back to `sql`."""
    start, i, n = 0, 0, len(sql)
    while i < n:
        c = sql[i]
        end = -1
        if c == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            end = n if end < 0 else end
        elif c == "/" and sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            end = n if end < 0 else end + 2
        elif c in ("'", '"'):
            end = i + 1
            while end < n:
                if sql[end] == c:
                    if end + 1 < n and sql[end + 1] == c:  # doubled quote
                        end += 2
                        continue
                    break
                end += 1
            end = min(end + 1, n)
        elif c == "$" and (m := _DOLLAR_TAG.match(sql, i)):
            end = sql.find(m.group(0), m.end())
            end = n if end < 0 else end + len(m.group(0))
        if end < 0:
            i += 1
            continue
        if start < i:
            yield True, sql[start:i]
        yield False, sql[i:end]
        start = i = end
    if start < n:
        yield True, sql[start:]


def _split_semicolon(text: str) -> list[str]:
    """Split on `;` outside quotes, comments and PostgreSQL dollar quotes."""
    out, buf = [], []
    for is_code, piece in segments(text):
        if not is_code:
            buf.append(piece)
            continue
        *done, rest = piece.split(";")
        for part in done:
            buf.append(part)
            out.append("".join(buf))
            buf = []
        buf.append(rest)
    out.append("".join(buf))
    return [s.strip() for s in out if _has_code(s)]


_PLSQL_START = re.compile(
    r"^\s*(DECLARE|BEGIN|CREATE\s+(OR\s+REPLACE\s+)?(EDITIONABLE\s+|NONEDITIONABLE\s+)?"
    r"(PROCEDURE|FUNCTION|PACKAGE|TRIGGER|TYPE))\b",
    re.IGNORECASE,
)
_SQLPLUS_COMMAND = re.compile(
    r"^\s*(SET|PROMPT|WHENEVER|SPOOL|EXIT|QUIT|SHOW|REM|REMARK|COLUMN|DEFINE|UNDEFINE)\b",
    re.IGNORECASE,
)


def _split_sqlplus(text: str) -> list[str]:
    """SQL*Plus rules: PL/SQL units end at a line holding only `/`; plain SQL
    ends at a trailing `;`; SQL*Plus's own commands are not sent."""
    out: list[str] = []
    buf: list[str] = []
    in_plsql = False
    for line in text.splitlines():
        stripped = line.strip()
        if not buf:
            if not stripped or stripped.startswith("--") or _SQLPLUS_COMMAND.match(line):
                continue
            in_plsql = bool(_PLSQL_START.match(line))
        if in_plsql:
            if stripped == "/":
                out.append("\n".join(buf).strip())
                buf = []
            else:
                buf.append(line)
            continue
        if stripped == "/":
            if buf:
                out.append("\n".join(buf).strip().rstrip(";"))
                buf = []
            continue
        buf.append(line)
        code = re.sub(r"--.*$", "", line).rstrip()
        if code.endswith(";"):
            out.append("\n".join(buf).strip().rstrip(";").rstrip())
            buf = []
    if buf and _has_code("\n".join(buf)):
        out.append("\n".join(buf).strip().rstrip(";"))
    return [s for s in out if _has_code(s)]


def _has_code(stmt: str) -> bool:
    no_comments = re.sub(r"--[^\n]*|/\*.*?\*/", "", stmt, flags=re.DOTALL)
    return bool(no_comments.strip())
