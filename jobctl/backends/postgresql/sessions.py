"""The call's server session (`PID:BACKEND_START`): alive, and ended by
cancel when its worker is gone; named for each job, and cleared after it."""

from __future__ import annotations

import datetime as dt
import weakref
from typing import Any

import psycopg
from psycopg import sql as pgsql

from ...errors import DatabaseError
from ...sqlfiles import session_statements
from .dialect import UTC
from .errors import call_error_message
from .shared import PostgresBase


#: DISCARD ALL's parts (PostgreSQL documents it as these), bar DEALLOCATE ALL
_RESET_SESSION = (
    "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; UNLISTEN *;"
    " SELECT pg_catalog.pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES")
#: what the job PREPAREd itself (psycopg's own are `_pg3_*`): rarely anything
_THE_JOBS_PREPARED = ("; SELECT pg_catalog.quote_ident(name) FROM pg_catalog.pg_prepared_statements"
                      " WHERE name !~ '^_pg3_'")


#: after a call inside jobctl's transaction, in the same round trip: what
#: the reset clears that a transaction may clear (settings and role, temp
#: tables, cursors, LISTEN, sequences' currval), then whether the job left
#: a prepared statement (named only here; rarely anything). Should the
#: transaction roll back, the job's own changes in it go with these; PREPARE
#: is not transactional, and is looked at. Session advisory locks are not
#: transactional either, and released before the commit they would let
#: another session in early: the next job's first statement releases them
#: (UNLOCK_LEFT_SQL), or idle_job_session when no job follows at once. (Asking
#: pg_locks whether there are any costs more than releasing them.)
RESET_IN_TRANSACTION = ("CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; UNLISTEN *;"
                        " DISCARD TEMP; DISCARD SEQUENCES")
LEFT_IN_SESSION_SQL = """
SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_prepared_statements WHERE name !~ '^_pg3_')"""
#: the session advisory locks the previous job on the connection may have
#: left, released once its transaction has committed
UNLOCK_LEFT_SQL = "pg_catalog.pg_advisory_unlock_all()"
#: call connections whose last job may have left session advisory locks: the
#: connection's, not a backend object's (a daemon-free worker hands its
#: connections to the next job's worker, which has a backend of its own)
_UNLOCK_PENDING: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def own_settings(conn: Any) -> str:
    """What every jobctl session keeps, at connect and after each reset:
    a client that vanishes mid-statement is noticed by the server, which
    then ends the statement (PostgreSQL 14+)."""
    if conn.info.server_version >= 140000:
        return "; SET client_connection_check_interval = '1s'"
    return ""


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

    # -- each job in a clean session --------------------------------------------------
    def start_job_session(self, conn: Any, job_id: str) -> None:
        """application_name names the job; the time zone is the user's own (the
        session's default, as psql would have it; jobctl's bookkeeping binds
        UTC itself); a client gone mid-call is noticed by the server
        (client_connection_check_interval, PostgreSQL 14+: set at connect and
        after each reset, since it takes effect from the next statement on),
        which then ends the call and rolls its last stretch back; then
        session_setup.
        Without a session_setup these settings travel with the call's own
        first statement (`job_identity`): no round trip of their own."""
        app = pgsql.Literal(f"jobctl:{job_id}"[:63]).as_string(conn)
        sets = [f"pg_catalog.set_config('application_name', {app}, false)"]
        if _UNLOCK_PENDING.pop(conn, False):
            sets.append(UNLOCK_LEFT_SQL)
        statements = session_statements(self.settings.scheme, self.settings.session_setup)
        if not statements:
            self._identity[conn] = ["SELECT " + ", ".join(sets), "RESET TimeZone"]
            return
        self._identity.pop(conn, None)
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.rollback()
        conn.autocommit = True  # one round trip each, no BEGIN/COMMIT around them
        try:
            try:
                conn.execute("SELECT " + ", ".join(sets) + "; RESET TimeZone")
            except psycopg.Error as exc:
                raise self.translate_error(exc) from exc
            try:
                conn.execute(";\n".join(statements))
            except psycopg.Error as exc:
                message, state, killed = call_error_message(exc)
                raise DatabaseError(f"session_setup failed: {message}", code=state,
                                    killed=killed) from exc
        finally:
            if not conn.closed:
                conn.autocommit = False

    def idle_job_session(self, conn: Any) -> bool:
        if not _UNLOCK_PENDING.pop(conn, False):
            return True
        return self.reset_job_session(conn)

    def job_identity_sql(self, conn: Any) -> list[str]:
        """The job's settings start_job_session left for the call to make
        (SQL statements), once; [] when none are pending."""
        return self._identity.pop(conn, [])

    def job_identity(self, conn: Any) -> str:
        """The same as plpgsql statements, for the DO block; "" when none."""
        return "".join(("PERFORM " + q.removeprefix("SELECT ") if q.startswith("SELECT ") else q)
                       + "; " for q in self.job_identity_sql(conn))

    def reset_job_session(self, conn: Any) -> bool:
        """What DISCARD ALL does, in one round trip, but for jobctl's own
        prepared statements (psycopg's `_pg3_*`, which a pool reuses for every
        job): cursors closed, the session's role and every setting
        (search_path, work_mem, the time zone...) back to the session's
        default, LISTEN, session advisory locks, temporary tables, sequence
        state, and the statements the job PREPAREd. start_job_session sets
        jobctl's own settings again for the next job."""
        if conn.closed:
            return False
        if self._left_clean.pop(conn, False) and not self.settings.session_setup:
            # its call left nothing but, perhaps, session advisory locks
            # (asked right after it, in its transaction, which cannot have
            # added any since): no round trip for a reset; the locks go with
            # the next job's first statement, or idle_job_session
            _UNLOCK_PENDING[conn] = True
            return True
        _UNLOCK_PENDING.pop(conn, None)  # the reset releases them
        try:
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.rollback()
            conn.autocommit = True
            try:
                cur = conn.execute(_RESET_SESSION + own_settings(conn) + _THE_JOBS_PREPARED,
                                   prepare=False)
                while cur.nextset():
                    pass  # to the last statement's rows
                for (name,) in cur.fetchall():
                    conn.execute(f"DEALLOCATE {name}", prepare=False)
            finally:
                conn.autocommit = False
            return True
        except psycopg.Error:
            return False
