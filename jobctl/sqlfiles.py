"""The scripts under sql/: found inside the installed package, split the way
their command-line tools (sqlite3, psql, sqlplus) would run them."""

from __future__ import annotations

import re
from pathlib import Path


def sql_dir() -> Path:
    packaged = Path(__file__).parent / "sql"           # inside a wheel
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "sql"  # source checkout / editable


def read_sql(backend: str, filename: str) -> str:
    return (sql_dir() / backend / filename).read_text(encoding="utf-8")


def split_script(text: str, style: str) -> list[str]:
    if style == "sqlplus":
        return _split_sqlplus(text)
    return _split_semicolon(text)


_DOLLAR_TAG = re.compile(r"\$[A-Za-z_]*\$")


def _split_semicolon(text: str) -> list[str]:
    """Split on `;` outside quotes, comments and PostgreSQL dollar quotes."""
    out, buf, i, n = [], [], 0, len(text)
    while i < n:
        c = text[i]
        if c == "-" and text.startswith("--", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            buf.append(text[i:j])
            i = j
        elif c == "/" and text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            buf.append(text[i:j])
            i = j
        elif c in ("'", '"'):
            j = i + 1
            while j < n:
                if text[j] == c:
                    if j + 1 < n and text[j + 1] == c:  # doubled quote
                        j += 2
                        continue
                    break
                j += 1
            buf.append(text[i:j + 1])
            i = j + 1
        elif c == "$" and (m := _DOLLAR_TAG.match(text, i)):
            tag = m.group(0)
            j = text.find(tag, m.end())
            j = n if j < 0 else j + len(tag)
            buf.append(text[i:j])
            i = j
        elif c == ";":
            out.append("".join(buf))
            buf = []
            i += 1
        else:
            buf.append(c)
            i += 1
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
