"""The call: binds, `CALL` with named arguments, notices as progress and
output, the interrupt, and cancel news over LISTEN/NOTIFY."""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql as pgsql

from ...errors import DatabaseError
from ...model import Signature
from ...params import to_json_value
from ..base import WORK_NEWS, CallContext
from .errors import diag_message
from .names import split_name
from .shared import PostgresBase
from .values import bindable, placeholder, render_args, result_adapters, shape_result


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

class PostgresCalls(PostgresBase):
    def call(self, conn: Any, sig: Signature, values: Mapping[str, Any],
             ctx: CallContext) -> dict[str, Any]:
        given = {k.casefold(): v for k, v in values.items()}
        binds = [bindable(p, given[p.name.casefold()]) for p in sig.params
                 if p.is_input and p.name.casefold() in given]
        stmt = self._call_statement(conn, sig, frozenset(given))

        def on_notice(diag: Any) -> None:
            text = diag.message_primary or ""
            m = _PROGRESS.fullmatch(text)
            if m:
                ctx.progress(float(m.group(1)))
            elif diag.severity_nonlocalized in (None, "NOTICE", "INFO", "LOG", "DEBUG"):
                ctx.log(text)
            else:
                ctx.log(f"{diag.severity_nonlocalized}: {text}")

        conn.add_notice_handler(on_notice)
        try:
            cur = conn.cursor()
            result_adapters(cur)
            cur.execute(stmt, binds)
            row = cur.fetchone() if cur.description is not None else None
        except psycopg.Error as exc:
            # the job's ERROR_MSG: the server's message on one line, not the
            # driver's class name and a multi-line CONTEXT
            raise DatabaseError(diag_message(exc), transient=self.is_transient(exc)) from exc
        finally:
            conn.remove_notice_handler(on_notice)
        if row is None:
            return {}
        return shape_result(conn, sig, [d.name for d in cur.description], row, _json_ready)

    def _call_statement(self, conn: Any, sig: Signature, given: frozenset[str]) -> str:
        """`CALL proc(name => %s::type, ...)` for these inputs, composed once
        per procedure and set of inputs (a pool calls the same one for many
        jobs; composing it cost as much as the call's round trip)."""
        key = (sig.name, sig.fingerprint, given)
        stmt = self._statements.get(key)
        if stmt is not None:
            return stmt
        if "schema" in sig.extra:
            schema, proc = sig.extra["schema"], sig.extra["proc"]
        else:
            schema, proc = split_name(sig.name)
        target = (pgsql.SQL("{}.{}").format(pgsql.Identifier(schema), pgsql.Identifier(proc))
                  if schema else pgsql.Identifier(proc))
        args = render_args(sig, given, placeholder)
        stmt = pgsql.SQL("CALL {}({})").format(target, pgsql.SQL(", ").join(args)).as_string(conn)
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
