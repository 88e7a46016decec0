"""The call: binds, `CALL` with named arguments, notices as progress and
output, the interrupt, and cancel news over LISTEN/NOTIFY."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql as pgsql
from psycopg.types.json import Jsonb

from ... import jsontext
from ...errors import DatabaseError
from ...model import JSON, NUMBER, Param, Signature
from ...params import to_json_value
from ..base import SELF_COMMIT_NOTE, WORK_NEWS, CallContext
from .errors import INVALID_TRANSACTION_TERMINATION, call_error_message
from .names import convert_binds, split_name
from .shared import PostgresBase


def _json_ready(value: Any) -> Any:
    value = to_json_value(value)
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, float, bool, Decimal)):
        return value
    return str(value)  # interval, uuid, inet, ...: their text form

def _dumps(value: Any) -> str:
    return jsontext.dumps(to_json_value(value))

_PROGRESS = re.compile(r"\s*jobctl:progress\s*=\s*(-?\d+(?:\.\d+)?)\s*%?\s*", re.IGNORECASE)

#: the channel workers listen on: `jobctl cancel` announces a job id there,
#: submit the queue it added work to (WORK_NEWS + name)
CANCEL_CHANNEL = "jobctl_cancel"

#: what the DO block raises when its guarded outcome UPDATE finds the job no
#: longer running under this worker's claim: the last stretch rolls back
NOT_OURS_STATE = "JCNOT"

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

def _bindable(p: Param, value: Any) -> Any:
    if value is None:
        return None
    if p.array and isinstance(value, (list, tuple)):
        return [_scalar(p.kind, v) for v in value]
    return _scalar(p.kind, value)

def _scalar(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind == JSON:
        return Jsonb(value, dumps=_dumps)
    if kind == NUMBER and isinstance(value, (int, float)) and not isinstance(value, bool):
        return Decimal(str(value))  # one type across an array, exact for the cast
    return value


class PostgresCalls(PostgresBase):
    """Two ways to call, as psql would (see docs/procedures.md):

    - by default the CALL runs at top level (autocommit), so the procedure
      may COMMIT and ROLLBACK: one `DO` block runs the marker, the CALL with
      plpgsql variables for its OUT/INOUT arguments, and then the guarded
      outcome UPDATE (CallContext.outcome), which commits with the
      procedure's last stretch when the DO ends;
    - with --atomic (ctx.atomic) the CALL runs inside jobctl's transaction,
      which the runner commits with the outcome; a COMMIT inside is refused.
    """

    def call(self, conn: Any, sig: Signature, values: Mapping[str, Any],
             ctx: CallContext) -> dict[str, Any]:
        given = {k.casefold(): v for k, v in values.items()}

        def on_notice(diag: Any) -> None:
            text = diag.message_primary or ""
            m = _PROGRESS.fullmatch(text)
            if m:
                ctx.progress(float(m.group(1)))
            elif text == SELF_COMMIT_NOTE:
                ctx.note_self_commit()
            elif diag.severity_nonlocalized in (None, "NOTICE", "INFO", "LOG", "DEBUG"):
                ctx.log(text)
            else:
                ctx.log(f"{diag.severity_nonlocalized}: {text}")

        ctx.commits_known = True
        conn.add_notice_handler(on_notice)
        try:
            if ctx.atomic or ctx.outcome is None:
                return self._call_in_transaction(conn, sig, given, ctx)
            self._call_at_top_level(conn, sig, given, ctx)
            return {}
        except psycopg.Error as exc:
            # the job's ERROR_MSG: the server's message on one line, as psql
            # prints it (VERBOSITY verbose), not the driver's class name
            message, state, killed = call_error_message(exc)
            if state == INVALID_TRANSACTION_TERMINATION and ctx.atomic:
                message = (f"{message} -- the job was submitted with --atomic, which runs the "
                           "procedure inside one transaction: a COMMIT or ROLLBACK inside it is "
                           "refused; submit it without --atomic to let it commit")
            raise DatabaseError(message, transient=self.is_transient(exc), code=state,
                                killed=killed) from exc
        finally:
            conn.remove_notice_handler(on_notice)

    def _call_in_transaction(self, conn: Any, sig: Signature, given: dict[str, Any],
                             ctx: CallContext) -> dict[str, Any]:
        """CALL inside jobctl's transaction (atomic): the runner commits the
        work with the outcome, or rolls it back."""
        binds = [_bindable(p, given[p.name.casefold()]) for p in sig.params
                 if p.is_input and p.name.casefold() in given]
        stmt = self._call_statement(conn, sig, frozenset(given))
        if identity := self.job_identity(conn):
            conn.execute(f"DO $jobctl$ BEGIN {identity} END $jobctl$")
        cur = conn.cursor()
        cur.execute(stmt, binds)
        row = cur.fetchone() if cur.description is not None else None
        if row is None:
            return {}
        return {d.name.lower(): _json_ready(v) for d, v in zip(cur.description, row)}

    def _call_at_top_level(self, conn: Any, sig: Signature, given: dict[str, Any],
                           ctx: CallContext) -> None:
        """The DO block (see the class): nothing of it is left open."""
        assert ctx.outcome is not None
        block = self._do_block(conn, sig, given, ctx)
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.rollback()  # nothing of jobctl's is pending on the call connection
        conn.autocommit = True
        try:
            conn.execute(block)
            ctx.outcome_written = True
            if ctx.hand_over is not None:
                row = conn.execute("SELECT pg_catalog.current_setting('jobctl.next', true)").fetchone()
                ctx.handed_over = jsontext.loads(row[0]) if row and row[0] else None
        except psycopg.Error as exc:
            if exc.sqlstate == NOT_OURS_STATE:
                ctx.outcome_written = False  # the last stretch rolled back with the DO
                return
            ctx.commits_known = self._committed_before(conn, ctx)
            raise
        finally:
            if not conn.closed:
                try:
                    conn.autocommit = False
                except psycopg.Error:
                    pass

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

    def _do_block(self, conn: Any, sig: Signature, given: dict[str, Any],
                  ctx: CallContext) -> str:
        assert ctx.outcome is not None
        declare = ["call_t0 timestamptz := pg_catalog.clock_timestamp();",
                   "call_result text;", "call_committed integer := 0;",
                   "call_end_time timestamp;", "call_elapsed_s numeric;", "call_duration text;",
                   "call_h numeric;", "call_m numeric;", "call_s numeric;", "call_next record;"]
        before: list[str] = []
        args: list[str] = []
        outs: list[tuple[str, str]] = []
        defaults: dict[str, str] | None = None
        for i, p in enumerate(sig.params):
            var = f"call_arg_{i}"
            if p.is_output:
                # plpgsql's CALL needs a variable for every OUT/INOUT argument,
                # an INOUT left to its default too: it starts from that default
                declare.append(f"{var} {p.type_name};")
                if p.is_input and p.name.casefold() in given:
                    before.append(f"{var} := {self._literal(conn, p, given[p.name.casefold()])};")
                elif p.is_input and p.defaulted:
                    if defaults is None:
                        defaults = self._input_defaults(conn, sig)
                    if p.name in defaults:
                        before.append(f"{var} := ({defaults[p.name]})::{p.type_name};")
                args.append(self._argument(conn, p, var))
                outs.append((p.name.lower(), var))
            elif p.is_input and p.name.casefold() in given:
                args.append(self._argument(conn, p, self._literal(conn, p, given[p.name.casefold()])))
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
    {self._hand_over_block(conn, ctx)}
    IF call_committed = 1 THEN
        RAISE NOTICE '%', {note};
    END IF;
END"""
        tag = "$jobctl$"
        while tag in body:
            tag = f"$jobctl_{uuid.uuid4().hex[:8]}$"
        return f"DO {tag}{body}\n{tag}"

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

    def _hand_over_block(self, conn: Any, ctx: CallContext) -> str:
        """The pool slot's next job, claimed after the outcome in the same
        last transaction; its row travels back in a session setting. A
        failure of it leaves the outcome alone (its own subtransaction: no
        COMMIT comes after it)."""
        if ctx.hand_over is None:
            return ""
        claim = self._render(conn, *ctx.hand_over)
        return f"""BEGIN
        {claim} INTO call_next;
        PERFORM pg_catalog.set_config('jobctl.next', CASE WHEN FOUND
            THEN pg_catalog.to_jsonb(call_next)::text ELSE '' END, false);
    EXCEPTION WHEN OTHERS THEN
        PERFORM pg_catalog.set_config('jobctl.next', '', false);
    END;"""

    def _render(self, conn: Any, sql: str, binds: Mapping[str, Any]) -> str:
        """jobctl's `:name` SQL with its values as literals (a DO takes no binds)."""
        converted = convert_binds(sql, frozenset(binds))
        values = {k: _scalar(JSON, v) if isinstance(v, (dict, list)) else v for k, v in binds.items()}
        return psycopg.ClientCursor(conn).mogrify(converted, values)

    def _literal(self, conn: Any, p: Param, value: Any) -> str:
        """One input value as a literal cast to its parameter's type."""
        if value is None:
            return f"NULL::{p.type_name}"
        return f"{pgsql.Literal(_bindable(p, value)).as_string(conn)}::{p.type_name}"

    def _argument(self, conn: Any, p: Param, value_sql: str) -> str:
        """One argument of the CALL: `name => value`."""
        return f"{pgsql.Identifier(p.name).as_string(conn)} => {value_sql}"

    def _target(self, conn: Any, sig: Signature) -> str:
        if "schema" in sig.extra:
            schema, proc = sig.extra["schema"], sig.extra["proc"]
        else:
            schema, proc = split_name(sig.name)
        target = (pgsql.SQL("{}.{}").format(pgsql.Identifier(schema), pgsql.Identifier(proc))
                  if schema else pgsql.Identifier(proc))
        return target.as_string(conn)

    def _call_statement(self, conn: Any, sig: Signature, given: frozenset[str]) -> str:
        """`CALL proc(name => %s::type, ...)` for these inputs, composed once
        per procedure and set of inputs (a pool calls the same one for many
        jobs; composing it cost as much as the call's round trip)."""
        key = (sig.name, sig.fingerprint, given)
        stmt = self._statements.get(key)
        if stmt is not None:
            return stmt
        args: list[str] = []
        for p in sig.params:
            if p.is_input and p.name.casefold() in given:
                args.append(self._argument(conn, p, f"%s::{p.type_name}"))
            elif p.mode == "OUT" or (p.mode == "IN/OUT" and not p.defaulted):
                # PostgreSQL 14+: OUT arguments take a placeholder in CALL
                args.append(self._argument(conn, p, f"NULL::{p.type_name}"))
        stmt = f"CALL {self._target(conn, sig)}({', '.join(args)})"
        if len(self._statements) > 256:
            self._statements.clear()
        self._statements[key] = stmt
        return stmt

    def interrupt(self, conn: Any) -> None:
        try:
            conn.cancel_safe(timeout=5.0)
        except Exception:  # an older libpq, or the connection is already gone
            try:
                conn.cancel()
            except Exception:
                pass

    def poll_progress(self, conn: Any, call_conn: Any, ctx: CallContext) -> None:
        return None  # notices arrive on the call's own connection

    def announce_cancel(self, conn: Any, job_id: str) -> None:
        self.execute(conn, f"SELECT pg_notify('{CANCEL_CHANNEL}', :job_id)", {"job_id": job_id})

    def listen_cancel(self, conn: Any) -> bool:
        self.execute(conn, f"LISTEN {CANCEL_CHANNEL}")
        return True

    def cancel_wait_fd(self, conn: Any) -> int:
        return conn.fileno()

    def announce_work(self, conn: Any, queue: str) -> None:
        self.execute(conn, f"SELECT pg_notify('{CANCEL_CHANNEL}', :news)",
                     {"news": WORK_NEWS + queue})

    def announcements(self, conn: Any) -> list[str]:
        # timeout=0: what arrived during other statements (psycopg keeps those
        # aside), then whatever the socket holds now, without waiting
        return [notify.payload for notify in conn.notifies(timeout=0.0)]
