"""Procedures by name: what `describe` and `procedures` show, the signature
`submit` binds values to, and the spelling `--procedure` filters by."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from . import store
from .errors import JobctlError, NotFound, UsageError
from .model import Signature, param_key
from .session import Service


class Lookup(Service):
    def resolve_for_submit(self, conn: Any, name: str, given: Sequence[dict[str, Any]],
                           form: tuple[str, ...] | None = None) -> Signature:
        """The overload to run: the one a signature form in `name` names
        (`ops.touch(integer)`), else the one the names and values of the
        first parameter set pick (values are tried on the server against
        each overload's types only when names leave more than one)."""
        from . import params as params_mod

        try:
            sigs = self.backend.overloads(conn, name)
        except NotFound as exc:
            # on a database without ASYNC_JOBS the first thing to do is
            # `db init`, not to hunt for the procedure
            self.session.require_table(conn)
            raise self.with_suggestion(conn, name, exc) from None
        except UsageError:
            if form is not None:
                raise
            # a backend whose overloads() cannot list them all yet
            # (base.OverloadsByResolve): its resolve picks by the names
            names = frozenset(k.casefold() for k in (given[0] if given else {}))
            sig = self.backend.resolve(conn, name, names)
            self.backend.check_submit(sig)
            return sig

        def takes(sig: Signature) -> bool:
            try:
                self.backend.check_values(conn, sig, params_mod.bind(sig, given[0]))
            except UsageError:
                return False
            return True

        sig = choose(sigs, form=form, given=given[0] if given else None, takes=takes)
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
        procedure = split_form(procedure)[0]  # every overload: one PROCEDURE_NAME
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

    def describe(self, procedure: str) -> list[Signature]:
        """Every overload of `procedure`, or the one its signature form names."""
        name, form = split_form(procedure)
        name = self.backend.normalize_name(name)
        with self.db() as conn:
            try:
                sigs = self.backend.overloads(conn, name)
            except NotFound as exc:
                raise self.with_suggestion(conn, name, exc) from None
            conn.commit()
        if form is not None:
            return [choose(sigs, form=form)]
        return sigs

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
        """Every callable procedure's name once, and the signature form of
        each overload of an overloaded one (shell completion)."""
        sigs = self.procedures()
        count: dict[str, int] = {}
        for s in sigs:
            count[s.name] = count.get(s.name, 0) + 1
        names = set(count) | {s.form for s in sigs if count[s.name] > 1}
        return sorted(names, key=str.casefold)

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


# -- overloads: which one a user means ----------------------------------------------

def for_job(backend: Any, conn: Any, name: str, given: frozenset[str],
            recorded: dict[str, Any]) -> Signature:
    """The overload a worker runs: the one whose form submit recorded (so
    overloads that differ only by type run as chosen); a row written before
    forms were recorded is resolved by its parameters' names. A recorded
    form no longer there: the only overload left (the worker then reports
    how it changed since submit), else an error naming the form."""
    form = recorded.get("form")
    if not form:
        return backend.resolve(conn, name, given)
    try:
        sigs = backend.overloads(conn, name)
    except UsageError:  # overloads() cannot list them yet (base.OverloadsByResolve)
        return backend.resolve(conn, name, given)
    try:
        return choose(sigs, form=split_form(form)[1])
    except NotFound:
        if len(sigs) == 1:
            return sigs[0]
        raise JobctlError(f"procedure {form} changed since submit: no overload has that form "
                          f"now ({', '.join(s.form for s in sigs)})") from None


def split_form(text: str) -> tuple[str, tuple[str, ...] | None]:
    """`ops.touch(integer, text)` → (`ops.touch`, ("integer", "text")); a
    name without a parenthesis → (name, None). A parenthesis inside a quoted
    name is part of the name; a type's own `(10,2)` stays with the type."""
    quoted, start = False, None
    for i, c in enumerate(text):
        if c == '"':
            quoted = not quoted
        elif c == "(" and not quoted:
            start = i
            break
    if start is None:
        return text, None
    inner = text[start + 1:]
    if not inner.rstrip().endswith(")"):
        raise UsageError(f"invalid procedure form {text!r}: expected NAME(TYPE, ...), "
                         "as `jobctl describe` shows it")
    inner = inner.rstrip()[:-1]
    types: list[str] = []
    current: list[str] = []
    depth, quoted = 0, False
    for c in inner:
        if c == '"':
            quoted = not quoted
        elif not quoted and c == "(":
            depth += 1
        elif not quoted and c == ")":
            depth -= 1
        if c == "," and depth == 0 and not quoted:
            types.append("".join(current))
            current = []
        else:
            current.append(c)
    if "".join(current).strip() or types:
        types.append("".join(current))
    if any(not t.strip() for t in types):
        raise UsageError(f"invalid procedure form {text!r}: an empty type between commas")
    return text[:start].rstrip(), tuple(t.strip() for t in types)


#: spellings of one type (SQL's and PostgreSQL's own), compared as one
_ALIASES = {
    "int": "integer", "int4": "integer", "int2": "smallint", "int8": "bigint",
    "bool": "boolean", "varchar": "character varying", "char": "character",
    "bpchar": "character", "float8": "double precision", "float": "double precision",
    "float4": "real", "decimal": "numeric", "timestamptz": "timestamp with time zone",
    "timestamp": "timestamp without time zone", "timetz": "time with time zone",
    "time": "time without time zone", "varbit": "bit varying",
}


def _type_key(text: str) -> str:
    """A type as written in a form, compared: case and spaces as typed do
    not matter, nor `VARIADIC`, nor a length or precision (a signature has
    none), nor an alias (`int` is `integer`)."""
    t = " ".join(text.split())
    if not t.startswith('"'):
        t = t.casefold()
    for mode in ("variadic ", "in out ", "inout ", "in ", "out "):  # a mode, as \df shows it
        if t.casefold().startswith(mode):
            t = t[len(mode):]
            break
    dims = ""
    while t.endswith("[]"):
        dims, t = dims + "[]", t[:-2].rstrip()
    out, depth, quoted = [], 0, False
    for c in t:
        if c == '"':
            quoted = not quoted
        if not quoted and c == "(":
            depth += 1
        if depth == 0:
            out.append(c)
        if not quoted and c == ")":
            depth -= 1
    t = " ".join("".join(out).split())
    return _ALIASES.get(t, t) + dims


def _same_type(typed: str, declared: str) -> bool:
    a, b = _type_key(typed), _type_key(declared)
    # a schema may be left out (or given) where the catalog shows none (or one)
    return a == b or b.endswith("." + a) or a.endswith("." + b)


def form_matches(sig: Signature, types: tuple[str, ...]) -> bool:
    """Does the form's type list name this overload? Its inputs' types in
    order (OUT parameters may be listed too, as psql 14+ lists them), or
    the first of its inputs when every one left out has a default
    (`ops.touch(integer)` for `ops.touch(a integer, INOUT r text DEFAULT NULL)`)."""
    inputs = [p for p in sig.params if p.is_input]
    for listed in (inputs, list(sig.params)):
        if len(listed) == len(types) and all(
                _same_type(t, p.shown_type) for t, p in zip(types, listed)):
            return True
    return (len(types) < len(inputs) and all(p.defaulted for p in inputs[len(types):])
            and all(_same_type(t, p.shown_type) for t, p in zip(types, inputs)))


def choose(sigs: Sequence[Signature], *, form: tuple[str, ...] | None = None,
           given: dict[str, Any] | None = None,
           takes: Callable[[Signature], bool] | None = None) -> Signature:
    """One overload of `sigs` (all of one procedure): the one the signature
    form names; else the only one; else the one whose parameters the given
    names fit (every name one of its inputs, every required input given),
    and when names leave several, the one `takes` (the values tried against
    its types) accepts. None or several: UsageError listing the forms."""
    name = sigs[0].name
    forms = ", ".join(s.form for s in sigs)
    if form is not None:
        hits = [s for s in sigs if form_matches(s, form)]
        if len(hits) == 1:
            return hits[0]
        if not hits:
            raise NotFound(f"procedure {name}({', '.join(form)}) not found; "
                           f"{name} has {'these forms' if len(sigs) > 1 else 'the form'}: {forms}")
        raise UsageError(f"{name}({', '.join(form)}) names more than one overload: {forms}")
    if len(sigs) == 1:
        return sigs[0]
    names = frozenset(param_key(k) for k in (given or {}))
    fits = [s for s in sigs if _accepts(s, names)]
    why = "fit more than one of them" if fits else "fit none of them"
    if len(fits) > 1 and given is not None and takes is not None:
        by_value = [s for s in fits if takes(s)]
        if not by_value:
            why = "fit more than one of them by name, and their values none of them"
        fits = by_value or fits
    if len(fits) == 1:
        return fits[0]
    shown = ", ".join(sorted(k for k in (given or {}))) or "none"
    raise UsageError(f"{name} has {len(sigs)} overloads and the parameters given ({shown}) {why};"
                     f" type the one you mean as the procedure, in quotes: "
                     + ", ".join(repr(s.form) for s in (fits or sigs)))


def _accepts(sig: Signature, names: frozenset[str]) -> bool:
    inputs = {p.name.casefold() for p in sig.params if p.is_input}
    required = {p.name.casefold() for p in sig.params if p.mode == "IN" and not p.defaulted}
    return names <= inputs and required <= names
