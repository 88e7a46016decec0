"""The call's server session (`PID:BACKEND_START`): alive, and ended by
cancel when its worker is gone."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg

from .dialect import UTC
from .shared import PostgresBase


class PostgresSessions(PostgresBase):
    def session_id(self, conn: Any) -> str | None:
        cur = conn.cursor()
        cur.execute("SELECT pid, backend_start FROM pg_catalog.pg_stat_activity"
                    " WHERE pid = pg_catalog.pg_backend_pid()")
        row = cur.fetchone()
        conn.commit()
        if row is None or row[1] is None:
            return None
        return f"{row[0]}:{row[1].astimezone(UTC).isoformat()}"

    @staticmethod
    def _split_session(session: str) -> tuple[int, dt.datetime]:
        pid, _, start = session.partition(":")
        return int(pid), dt.datetime.fromisoformat(start)

    def _session_row(self, conn: Any, session: str) -> tuple[str | None, bool] | None:
        """(state, visible) of `session`, None when it is gone. The snapshot
        of pg_stat_activity is per transaction, so each look commits."""
        pid, start = self._split_session(session)
        cur = conn.cursor()
        cur.execute("SELECT state, backend_start FROM pg_catalog.pg_stat_activity WHERE pid = %(pid)s",
                    {"pid": pid})
        row = cur.fetchone()
        conn.commit()
        if row is None:
            return None
        if row[1] is None:  # another role's session, without pg_read_all_stats
            return None, False
        if row[1] != start:
            return None  # the pid now belongs to another session
        return row[0], True

    def session_alive(self, conn: Any, session: str) -> bool | None:
        seen = self._session_row(conn, session)
        if seen is None:
            return False
        state, visible = seen
        if not visible:
            return None
        # idle in transaction: the server waits for its client, runs nothing,
        # and ends the session itself once it finds the client gone
        return state == "active"

    def kill_session_sql(self, session: str) -> str:
        return f"SELECT pg_terminate_backend({self._split_session(session)[0]});"

    def end_session(self, conn: Any, session: str, *, wait_s: float = 5.0) -> bool:
        import time

        pid, start = self._split_session(session)

        def signal(function: str) -> bool:
            try:
                cur = conn.cursor()
                cur.execute(f"SELECT pg_catalog.{function}(pid) FROM pg_catalog.pg_stat_activity"
                            " WHERE pid = %(pid)s AND backend_start = %(start)s",
                            {"pid": pid, "start": start})
                cur.fetchall()
                conn.commit()
                return True
            except psycopg.Error:
                conn.rollback()  # not a member of its role, nor of pg_signal_backend
                return False

        def gone_within(seconds: float, *, idle_is_enough: bool) -> bool:
            deadline = time.monotonic() + seconds
            while True:
                seen = self._session_row(conn, session)
                if seen is None or (idle_is_enough and seen[1] and seen[0] != "active"):
                    return True
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.1)

        if self._session_row(conn, session) is None:
            return True
        # cancel first: the statement stops and its transaction rolls back
        # cleanly; then end the session, which holds nothing worth keeping
        if not signal("pg_cancel_backend"):
            return False
        gone_within(min(2.0, wait_s), idle_is_enough=True)
        if not signal("pg_terminate_backend"):
            return False
        return gone_within(wait_s, idle_is_enough=False)
