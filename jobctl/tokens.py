"""The tokens of `jobctl serve`: created, listed and revoked by `jobctl
token`, checked by the server on every request. Kept in JOB_TOKENS, so every
server on one database shares them; only a SHA-256 of a token is stored.

A token reads `jct_<id>_<secret>`: the id finds its row (an indexed read
that says nothing about the secret), then the hash of the whole token is
compared with the stored one in constant time (hmac.compare_digest)."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from . import store
from .errors import DatabaseError, JobctlError, NotFound, UsageError
from .model import utcnow
from .session import Service

#: what a token may be allowed to do
READ, SUBMIT, CANCEL = "read", "submit", "cancel"
SCOPES = (READ, SUBMIT, CANCEL)
PREFIX = "jct_"
_TOKEN = re.compile(r"jct_([0-9a-f]{16})_([A-Za-z0-9_-]{40,64})")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}")
#: last use is written at most this often per token (a write per request
#: would make every read a write)
TOUCH_EVERY_S = 60.0


class Unauthorized(JobctlError):
    """No token, or one that is unknown, revoked or expired (HTTP 401)."""

    exit_code = 2


class Forbidden(JobctlError):
    """A valid token without the scope or the procedure asked for (HTTP 403)."""

    exit_code = 2


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_scopes(scopes: Sequence[str]) -> tuple[str, ...]:
    out: list[str] = []
    for raw in scopes:
        for part in str(raw).split(","):
            part = part.strip().lower()
            if not part:
                continue
            if part not in SCOPES:
                raise UsageError(f"unknown scope {part!r}: one of {', '.join(SCOPES)}")
            if part not in out:
                out.append(part)
    if not out:
        raise UsageError(f"give at least one --scope ({', '.join(SCOPES)})")
    return tuple(s for s in SCOPES if s in out)


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name or ""):
        raise UsageError(f"invalid token name {name!r}: letters, digits and _ . @ -, "
                         "starting with a letter or digit, at most 100 characters")
    return name


def procedure_matcher(pattern: str | None):
    """`--procedures`: comma-separated names or patterns (`*` or `%` any run,
    `?` one character), matched against the whole name, case-insensitively;
    a name also matches when one of its dotted tails does (PKG.PROC for
    SCOTT.PKG.PROC). None: every procedure."""
    if pattern is None:
        return lambda name: True
    alternatives = []
    for part in pattern.split(","):
        part = part.strip()
        if not part:
            continue
        rx = "".join(".*" if c in "*%" else "." if c == "?" else re.escape(c) for c in part)
        alternatives.append(rx)
    if not alternatives:
        raise UsageError("--procedures is empty: give a name or a pattern such as 'ETL_*'")
    compiled = re.compile("|".join(f"(?:{a})" for a in alternatives), re.IGNORECASE | re.DOTALL)

    def matches(name: str) -> bool:
        parts = name.split(".")
        return any(compiled.fullmatch(".".join(parts[i:])) for i in range(len(parts)))

    return matches


@dataclass(frozen=True)
class Principal:
    """Who a request's token says it is, and what it may do."""

    name: str
    scopes: tuple[str, ...]
    procedures: str | None

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise Forbidden(f"token {self.name} lacks the {scope} scope "
                            f"(it has: {', '.join(self.scopes)})")

    def may_run(self, *names: str) -> bool:
        matches = procedure_matcher(self.procedures)
        # a signature form (`ops.touch(integer)`) names its procedure before the parenthesis
        return any(matches(n.split("(", 1)[0].strip()) for n in names if n)

    def require_procedure(self, *names: str) -> None:
        if not self.may_run(*names):
            raise Forbidden(f"token {self.name} may not run {names[0]} "
                            f"(its procedures: {self.procedures})")


def state_of(row: store.TokenRow, now: dt.datetime) -> str:
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at is not None and row.expires_at <= now:
        return "expired"
    return "active"


class Tokens(Service):
    @contextlib.contextmanager
    def tokens_db(self) -> Iterator[Any]:
        """db(), saying what to do when JOB_TOKENS is not there (a database
        made before `jobctl serve`)."""
        try:
            with self.db() as conn:
                yield conn
        except DatabaseError as exc:
            # each statement here names JOB_TOKENS only (backends' is_missing_table
            # knows ASYNC_JOBS): PostgreSQL and SQLite name the table, Oracle says ORA-00942
            text = str(exc.__cause__ or exc).lower()
            if "ora-00942" in text or "job_tokens" in text and (
                    "does not exist" in text or "no such table" in text):
                raise DatabaseError("table JOB_TOKENS is missing: run jobctl db init to "
                                    "create it") from exc
            raise

    def create(self, name: str, scopes: Sequence[str], *, procedures: str | None = None,
               expires_s: float | None = None) -> str:
        """A new token (returned once: only its hash is kept). A revoked or
        expired token's name may be taken again; an active one's may not."""
        name = check_name(name)
        chosen = check_scopes(scopes)
        if procedures is not None:
            procedure_matcher(procedures)  # refuses an empty one
            procedures = procedures.strip()
            if len(procedures) > 400:
                raise UsageError("--procedures is longer than 400 characters")
        if expires_s is not None and expires_s <= 0:
            raise UsageError("--expires must be more than 0")
        now = utcnow()
        token_id = secrets.token_hex(8)
        token = f"{PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
        with self.tokens_db() as conn:
            old = store.token_by_name(self.backend, conn, name)
            if old is not None:
                if state_of(old, now) == "active":
                    conn.commit()
                    raise UsageError(f"token {name} exists; revoke it first "
                                     f"(jobctl token revoke {name})")
                store.delete_token(self.backend, conn, name)
            store.insert_token(self.backend, conn, token_id=token_id, name=name,
                               token_hash=token_hash(token), scopes=chosen,
                               procedures=procedures, now=now,
                               expires_at=None if expires_s is None
                               else now + dt.timedelta(seconds=expires_s))
            conn.commit()
        return token

    def list(self) -> list[dict[str, Any]]:
        now = utcnow()
        with self.tokens_db() as conn:
            rows = store.list_tokens(self.backend, conn)
            conn.commit()
        return [{"name": r.name, "scopes": ",".join(r.scopes), "procedures": r.procedures,
                 "state": state_of(r, now), "created_at": r.created_at,
                 "expires_at": r.expires_at, "last_used_at": r.last_used_at,
                 "revoked_at": r.revoked_at} for r in rows]

    def revoke(self, name: str) -> None:
        check_name(name)
        with self.tokens_db() as conn:
            n = store.revoke_token(self.backend, conn, name, utcnow())
            if not n:
                found = store.token_by_name(self.backend, conn, name)
                conn.commit()
                if found is None:
                    raise NotFound(f"no token {name}")
                return  # revoked already: nothing to do
            conn.commit()

    def authenticate(self, token: str | None) -> Principal:
        """The principal a presented token names; Unauthorized otherwise.
        Records its last use (at most once a minute)."""
        if not token:
            raise Unauthorized("a token is required: Authorization: Bearer <token> "
                               "(jobctl token create)")
        m = _TOKEN.fullmatch(token.strip())
        presented = token_hash(token.strip())
        with self.tokens_db() as conn:
            row = store.token_by_id(self.backend, conn, m.group(1)) if m else None
            conn.commit()
        # compared in constant time whether or not the id was known
        ok = hmac.compare_digest(presented, row.token_hash if row else "0" * 64)
        if row is None or not ok:
            raise Unauthorized("unknown token")
        now = utcnow()
        state = state_of(row, now)
        if state != "active":
            raise Unauthorized(f"token {row.name} is {state}")
        if row.last_used_at is None or (now - row.last_used_at).total_seconds() >= TOUCH_EVERY_S:
            with self.tokens_db() as conn:
                store.touch_token(self.backend, conn, row.token_id, now)
                conn.commit()
        return Principal(row.name, row.scopes, row.procedures)
