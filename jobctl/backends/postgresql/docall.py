"""The DO block that runs a procedure at top level, as psql runs a CALL (so
it may COMMIT), and records the job's outcome in the procedure's last
transaction (see PostgresCalls and docs/procedures.md)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg import sql as pgsql

from ...model import Signature
from ..base import SELF_COMMIT_NOTE, CallContext
from .names import convert_binds
from .values import render_args
from .shared import PostgresBase

#: what the DO block raises when its guarded outcome UPDATE finds the job no
#: longer running under this worker's claim: the last stretch rolls back
NOT_OURS_STATE = "JCNOT"

#: how the DO block hands back the row of the job it claimed (CallContext.hand_over)
HANDED_OVER = "jobctl:handed-over="

#: the values a CallContext.outcome statement takes from the call
_CALL_VALUE = re.compile(r":(call_[a-z_]+)\b")


def _split_top_level(text: str) -> list[str]:
    """`a, f(b, c), 'x,y'` → its comma-separated parts, outside quotes and brackets."""
    parts, depth, quote, start = [], 0, "", 0
    for i, c in enumerate(text):
        if quote:
            if c == quote:
                quote = ""
        elif c in "'\"":
            quote = c
        elif c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


class PostgresTopLevelCall(PostgresBase):
    def _do_block(self, conn: Any, sig: Signature, given: dict[str, Any],
                  ctx: CallContext) -> str:
        assert ctx.outcome is not None
        declare = ["call_t0 timestamptz := pg_catalog.clock_timestamp();",
                   "call_result text;", "call_committed integer := 0;",
                   "call_end_time timestamp;", "call_elapsed_s numeric;", "call_duration text;",
                   "call_h numeric;", "call_m numeric;", "call_s numeric;", "call_next record;"]
        before: list[str] = []
        outs: list[tuple[str, str]] = []
        variables: dict[str, str] = {}
        defaults: dict[str, str] | None = None
        for i, p in enumerate(sig.params):
            if p.is_output:
                # plpgsql's CALL needs a variable for every OUT/INOUT argument,
                # an INOUT left to its default too: it starts from that default
                var = variables[p.name] = f"call_arg_{i}"
                declare.append(f"{var} {p.type_name}{'[]' if p.array and not p.type_name.endswith(']') else ''};")
                if p.is_input and p.name.casefold() in given:
                    before.append(f"{var} := {self._literal(conn, p, given[p.name.casefold()])};")
                elif p.is_input and p.defaulted:
                    if defaults is None:
                        defaults = self._input_defaults(conn, sig)
                    if p.name in defaults:
                        before.append(f"{var} := ({defaults[p.name]})::{p.type_name};")
                outs.append((p.name.lower(), var))
        # the arguments as psql writes them (named, positional $n, VARIADIC),
        # each input a literal cast to its type: a DO block takes no binds
        args = [a.as_string(conn) for a in render_args(
            sig, frozenset(given),
            lambda p: pgsql.SQL(self._literal(conn, p, given[p.name.casefold()])),
            variable=lambda p: pgsql.SQL(variables[p.name]))]
        target = self._target(conn, sig)
        # the marker row, where the role may write it (a role jobctl's tables
        # were not all granted to still runs its jobs): the block's
        # subtransaction is over before the CALL, which stays non-atomic
        marker = (f"BEGIN {self._render(conn, *ctx.marker)}; EXCEPTION WHEN insufficient_privilege"
                  " OR undefined_table THEN NULL; END;") if ctx.marker is not None else ""
        result = ("pg_catalog.jsonb_build_object(" + ", ".join(
            f"{pgsql.Literal(name).as_string(conn)}, pg_catalog.to_jsonb({var})"
            for name, var in outs) + ")::text") if outs else "NULL"
        sql, binds = ctx.outcome
        outcome = self._render(conn, _CALL_VALUE.sub(lambda m: m.group(1), sql), binds)
        note = pgsql.Literal(SELF_COMMIT_NOTE).as_string(conn)
        body = f"""
DECLARE
    {chr(10).join('    ' + d for d in declare).strip()}
BEGIN
    -- the call's first transaction: a transaction-local mark (gone once it
    -- ends), a session-level one (kept only if it commits), jobctl's marker row
    {self.job_identity(conn)}
    PERFORM pg_catalog.set_config('jobctl.call', 'first', true),
            pg_catalog.set_config('jobctl.committed', 'yes', false);
    {marker}
    {chr(10).join(before)}
    CALL {target}({', '.join(args)});
    IF pg_catalog.current_setting('jobctl.call', true) IS DISTINCT FROM 'first' THEN
        call_committed := CASE WHEN pg_catalog.current_setting('jobctl.committed', true) = 'yes'
                               THEN 1 END;
    END IF;
    -- the procedure's last transaction: jobctl's own settings for its UPDATE
    -- (search_path: the session's default, as jobctl's bookkeeping has it)
    SET LOCAL search_path TO DEFAULT;
    SET LOCAL intervalstyle TO iso_8601;
    SET LOCAL ROLE NONE;
    call_result := {result};
    call_end_time := pg_catalog.clock_timestamp() AT TIME ZONE 'UTC';
    call_elapsed_s := round({float(ctx.elapsed_before)!r}::numeric
        + extract(epoch FROM pg_catalog.clock_timestamp() - call_t0)::numeric, 3);
    call_h := floor(call_elapsed_s / 3600);
    call_m := floor((call_elapsed_s - call_h * 3600) / 60);
    call_s := call_elapsed_s - call_h * 3600 - call_m * 60;
    call_duration := CASE
        WHEN call_h >= 1 THEN call_h || 'h' || pg_catalog.to_char(call_m, 'FM00') || 'm'
                              || pg_catalog.to_char(call_s, 'FM00.00') || 's'
        WHEN call_m >= 1 THEN call_m || 'm' || pg_catalog.to_char(call_s, 'FM00.00') || 's'
        ELSE pg_catalog.to_char(call_s, 'FM990.00') || 's' END;
    {outcome};
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = '{NOT_OURS_STATE}',
            MESSAGE = 'jobctl: the job is no longer running under this worker''s claim';
    END IF;
    -- what the worker learns from here comes as notices: delivered whatever
    -- the session's client_min_messages
    SET LOCAL client_min_messages TO notice;
    {self._hand_over_block(conn, ctx)}
    IF call_committed = 1 THEN
        RAISE NOTICE '%', {note};
    END IF;
END"""
        tag = "$jobctl$"
        while tag in body:
            tag = f"$jobctl_{uuid.uuid4().hex[:8]}$"
        return f"DO {tag}{body}\n{tag}"

    def _hand_over_block(self, conn: Any, ctx: CallContext) -> str:
        """The pool slot's next job, claimed after the outcome in the same
        last transaction; its row travels back in a session setting. A
        failure of it leaves the outcome alone (its own subtransaction: no
        COMMIT comes after it)."""
        if ctx.hand_over is None:
            return ""
        claim = self._render(conn, *ctx.hand_over)
        # the row comes back as a notice (client_min_messages is set for
        # this last transaction so that it is delivered), trusted only once
        # the block committed
        return f"""BEGIN
        {claim} INTO call_next;
        IF FOUND THEN
            RAISE NOTICE '%', {pgsql.Literal(HANDED_OVER).as_string(conn)}
                              || pg_catalog.to_jsonb(call_next)::text;
        END IF;
    EXCEPTION WHEN OTHERS THEN
        NULL;
    END;"""

    def _committed_before(self, conn: Any, ctx: CallContext) -> bool:
        """After a failed DO: did its first transaction commit? The
        session-level mark set in it survives exactly then. False when the
        session cannot be asked (gone): the worker reads the marker row."""
        if conn.closed or conn.broken:
            return False
        try:
            row = conn.execute("SELECT pg_catalog.current_setting('jobctl.committed', true)").fetchone()
        except psycopg.Error:
            return False
        if row and row[0] == "yes":
            ctx.note_self_commit()
        return True

    def _input_defaults(self, conn: Any, sig: Signature) -> dict[str, str]:
        """The default expressions of the procedure's defaulted inputs, by
        parameter name, as the server prints them."""
        oid = sig.extra.get("oid")
        if oid is None:
            return {}
        row = conn.execute("SELECT pg_catalog.pg_get_expr(proargdefaults, 0) FROM pg_catalog.pg_proc"
                           " WHERE oid = %s", (oid,)).fetchone()
        conn.rollback()
        if not row or not row[0]:
            return {}
        exprs = _split_top_level(row[0])
        inputs = [p for p in sig.params if p.is_input]
        return {p.name: e for p, e in zip(inputs[len(inputs) - len(exprs):], exprs)}

    def _render(self, conn: Any, sql: str, binds: Mapping[str, Any]) -> str:
        """jobctl's `:name` SQL with its values as literals (a DO takes no binds)."""
        converted = convert_binds(sql, frozenset(binds))
        return psycopg.ClientCursor(conn).mogrify(converted, dict(binds))

