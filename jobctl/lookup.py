"""Procedures by name: what `describe` and `procedures` show, the signature
`submit` binds values to, and the spelling `--procedure` filters by."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from . import store
from .errors import JobctlError, NotFound
from .model import Signature
from .session import Service


class Lookup(Service):
    def resolve_for_submit(self, conn: Any, name: str, given: Sequence[dict[str, Any]]) -> Signature:
        names = frozenset(k.casefold() for g in given[:1] for k in g)
        try:
            sig = self.backend.resolve(conn, name, names)
        except NotFound as exc:
            # on a database without ASYNC_JOBS the first thing to do is
            # `db init`, not to hunt for the procedure
            self.session.require_table(conn)
            raise self.with_suggestion(conn, name, exc) from None
        # a backend may refuse, before any row is written, a procedure whose
        # parameters it can neither pass nor read back (Oracle: REF CURSOR
        # OUT, records, collections); `describe` still shows it
        self.backend.check_submit(sig)
        return sig

    def procedure_filter(self, procedure: str | None) -> store.ProcedureFilter | None:
        """`--procedure`: any spelling of a procedure means its canonical
        name, as submit stored it; with a `%` it is a LIKE pattern in which
        only `%` is a wildcard (`_`, common in names, matches itself)."""
        if not procedure:
            return None
        if "%" in procedure:
            token = "jobctlpct"  # a letter run that folds like a name and survives validation
            shaped = self.backend.normalize_name(procedure.replace("%", token))
            escaped = shaped.replace("\\", "\\\\").replace("_", "\\_")
            return store.ProcedureFilter(re.sub(token, "%", escaped, flags=re.IGNORECASE), like=True)
        name = self.backend.normalize_name(procedure)
        with self.db() as conn:
            try:
                name = self.backend.resolve(conn, name, frozenset()).name
            except JobctlError:
                pass  # no longer there, or overloaded: the spelling as normalised
            conn.commit()
        return store.ProcedureFilter(name)

    def describe(self, procedure: str) -> Signature:
        name = self.backend.normalize_name(procedure)
        with self.db() as conn:
            try:
                sig = self.backend.resolve(conn, name, frozenset())
            except NotFound as exc:
                raise self.with_suggestion(conn, name, exc) from None
            conn.commit()
        return sig

    def procedures(self, pattern: str | None = None) -> list[Signature]:
        """The procedures the connected user can call, one Signature per
        overload, sorted by name. `pattern` matches names without regard to
        case: `*` or `%` any run, `?` one character; with neither, any name
        containing it. A schema or owner in front of a name may be left out."""
        like, matches = name_pattern(pattern)
        with self.db() as conn:
            sigs = self.backend.list_procedures(conn, like)
            conn.commit()
        return sorted((s for s in sigs if matches(s.name)),
                      key=lambda s: (s.name.casefold(), s.overload or ""))

    def procedure_names(self) -> list[str]:
        """Every callable procedure's name once (shell completion)."""
        return sorted({s.name for s in self.procedures()}, key=str.casefold)

    def with_suggestion(self, conn, name: str, exc: NotFound) -> NotFound:
        """The backend's "not found", with the closest callable names."""
        import difflib

        conn.rollback()  # the failed lookup may have left a transaction open
        try:
            names = {s.name for s in self.backend.list_procedures(conn, None)}
            conn.commit()
        except Exception:  # no right to read the catalog: the message without hints
            self.session.rollback()
            return exc
        by_folded = {n.casefold(): n for n in names}
        close = difflib.get_close_matches(name.casefold(), list(by_folded), n=3, cutoff=0.6)
        if close:
            hint = "did you mean " + " or ".join(by_folded[c] for c in close) + "?"
        else:
            hint = "`jobctl procedures` lists the ones you can call"
        return NotFound(f"{exc.message}; {hint}")


def name_pattern(pattern: str | None) -> tuple[str | None, Callable[[str], bool]]:
    """`procedures PATTERN` as (a LIKE pattern with `\\` escapes, for a
    backend to narrow its catalog with; a test on a whole name). `*`/`%` is
    any run and `?` one character, `_` is itself (names are full of it);
    without a wildcard the pattern matches names that contain it. A name
    also matches when one of its dotted tails does (PKG.PROC for
    SCOTT.PKG.PROC)."""
    if not pattern or not pattern.strip():
        return None, lambda name: True
    text = pattern.strip()
    if not any(c in text for c in "*%?"):
        text = f"*{text}*"
    like, rx = [], []
    for c in text:
        if c in "*%":
            like.append("%")
            rx.append(".*")
        elif c == "?":
            like.append("_")
            rx.append(".")
        else:
            like.append("\\" + c if c in "\\_" else c)
            rx.append(re.escape(c))
    compiled = re.compile("".join(rx), re.IGNORECASE | re.DOTALL)

    def matches(name: str) -> bool:
        parts = name.split(".")
        return any(compiled.fullmatch(".".join(parts[i:])) for i in range(len(parts)))

    return "".join(like), matches
