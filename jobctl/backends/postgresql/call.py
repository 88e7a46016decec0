"""The call: binds, `CALL` with named arguments, notices as progress and
output, the interrupt, and cancel news over LISTEN/NOTIFY."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql as pgsql

from ... import jsontext
from ...errors import DatabaseError
from ...model import Param, Signature
from ...params import to_json_value
from ..base import SELF_COMMIT_NOTE, WORK_NEWS, CallContext
from .docall import HANDED_OVER, NOT_OURS_STATE, PostgresTopLevelCall
from .errors import INVALID_TRANSACTION_TERMINATION, call_error_message
from .names import split_name
from .sessions import LEFT_IN_SESSION_SQL, RESET_IN_TRANSACTION, own_settings
from .values import bindable, render_args, result_adapters, shape_result


def _json_ready(value: Any) -> Any:
    value = to_json_value(value)
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, float, bool, Decimal)):
        return value
    return str(value)  # interval, uuid, inet, ...: their text form

_PROGRESS = re.compile(r"\s*jobctl:progress\s*=\s*(-?\d+(?:\.\d+)?)\s*%?\s*", re.IGNORECASE)

#: the channel workers listen on: `jobctl cancel` announces a job id there,
#: submit the queue it added work to (WORK_NEWS + name)
CANCEL_CHANNEL = "jobctl_cancel"

@functools.lru_cache(maxsize=256)
def _quoted(schema: str | None, proc: str) -> str:
    """`schema.proc` quoted (the same for every job of a procedure; quoting
    an identifier does not depend on the connection's encoding)."""
    if schema:
        return pgsql.SQL("{}.{}").format(pgsql.Identifier(schema), pgsql.Identifier(proc)).as_string()
    return pgsql.Identifier(proc).as_string()


class PostgresCalls(PostgresTopLevelCall):
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
            elif text.startswith(HANDED_OVER) and ctx.hand_over is not None:
                ctx.handed_over = jsontext.loads(text[len(HANDED_OVER):])
            elif diag.severity_nonlocalized in (None, "NOTICE", "INFO", "LOG", "DEBUG"):
                ctx.log(text)
            else:
                ctx.log(f"{diag.severity_nonlocalized}: {text}")

        ctx.commits_known = True
        self._left_clean.pop(conn, None)  # known again only once this call is done
        conn.add_notice_handler(on_notice)
        try:
            if ctx.atomic or ctx.outcome is None:
                return self._call_in_transaction(conn, sig, given, ctx)
            if sig.extra.get("cannot_commit") and not any(
                    p.is_output and p.type_name == "record" for p in sig.params):
                # nothing in its body can end a transaction: called inside
                # jobctl's, as before procedures could COMMIT (a DO block is
                # compiled and planned afresh for every job); should one
                # still end it (2D000), all of it rolled back and it runs
                # again at top level, its name set again (that rolled back
                # too). An OUT record's field names are seen only inside
                # PL/pgSQL: that one takes the DO block.
                try:
                    return self._call_in_transaction(conn, sig, given, ctx)
                except psycopg.Error as exc:
                    if exc.sqlstate != INVALID_TRANSACTION_TERMINATION:
                        raise
                    conn.rollback()
                    if not self.settings.session_setup:  # else it ran apart, and holds
                        self.start_job_session(conn, ctx.job_id)
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
        """CALL inside jobctl's transaction (atomic, or a procedure that
        cannot commit): the runner commits the work with the outcome, or
        rolls it back. One round trip, in one simple query: the job's name,
        the CALL (its values as literals cast to their types, as in the DO
        block), the reset that can run inside the transaction
        (RESET_IN_TRANSACTION) and whether the job left anything it cannot
        clear (LEFT_IN_SESSION_SQL): only then does the reset after the job
        cost a round trip of its own."""
        args = render_args(sig, frozenset(given), lambda p: pgsql.SQL(
            self._literal(conn, p, given[p.name.casefold()])))
        call = pgsql.SQL("CALL {}({})").format(pgsql.SQL(self._target(conn, sig)),
                                               pgsql.SQL(", ").join(args)).as_string(conn)
        identity = self.job_identity_sql(conn)
        tail = RESET_IN_TRANSACTION + own_settings(conn)
        cur = conn.cursor()
        if any(p.is_output for p in sig.params):  # else the CALL returns no row
            result_adapters(cur)
        cur.execute("; ".join([*identity, call, tail, LEFT_IN_SESSION_SQL]), prepare=False)
        for _ in identity:
            cur.nextset()
        names = [d.name for d in cur.description] if cur.description is not None else []
        row = cur.fetchone() if names else None
        while cur.nextset():
            pass  # to the last statement's answer
        self._left_clean[conn] = cur.fetchone() == (False,)
        if row is None:
            return {}
        return shape_result(conn, sig, names, row, _json_ready)

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
        except psycopg.Error as exc:
            ctx.handed_over = None  # its claim rolled back with the block
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

    def _literal(self, conn: Any, p: Param, value: Any) -> str:
        """One input value as a literal cast to its parameter's type."""
        if value is None:
            return f"NULL::{p.type_name}"
        return f"{pgsql.Literal(bindable(p, value)).as_string(conn)}::{p.type_name}"

    def _argument(self, conn: Any, p: Param, value_sql: str) -> str:
        """One argument of the CALL: `name => value`."""
        return f"{pgsql.Identifier(p.name).as_string(conn)} => {value_sql}"

    def _target(self, conn: Any, sig: Signature) -> str:
        if "schema" in sig.extra:
            return _quoted(sig.extra["schema"], sig.extra["proc"])
        return _quoted(*split_name(sig.name))

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
