"""Running jobctl's SQL on Oracle: binds, times, row limits, percentiles,
PL/SQL compiled with errors, and the schema scripts (ORACLE_NOTES "SQL")."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import oracledb

from ...errors import DatabaseError
from .errors import error_code, created_object
from .shared import UTC as _UTC
from .shared import OracleBase

COMPILE_ERRORS_SQL = """
SELECT line, position, text
  FROM user_errors
 WHERE name = :name AND type = :type AND attribute = 'ERROR'
 ORDER BY sequence
 FETCH FIRST 5 ROWS ONLY"""


def bind_values(binds: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(values, input sizes) for jobctl's own statements. Datetimes bind as
    TIMESTAMP, not the driver's default DATE, which drops fractional seconds
    (src/oracledb/impl/base/metadata.pyx `from_value`) and would make
    `heartbeat_at = :hb` never match a stored heartbeat. Booleans bind as
    1/0: SQL has no BOOLEAN before 23ai."""
    values: dict[str, Any] = {}
    sizes: dict[str, Any] = {}
    for key, value in (binds or {}).items():
        if isinstance(value, bool):
            value = int(value)
        elif isinstance(value, dt.datetime):
            sizes[key] = oracledb.DB_TYPE_TIMESTAMP
        values[key] = value
    return values, sizes


class OracleDialect(OracleBase):
    def execute(self, conn: Any, sql: str, binds: Mapping[str, Any] | None = None) -> Any:
        """Named `:name` binds are Oracle's own, converted by bind_values.
        Long strings for CLOB columns are left to the driver, which sends
        them as LONG binds (tests/test_1900_lob_var.py binds str into CLOB
        columns)."""
        values, sizes = bind_values(binds)
        cur = conn.cursor()
        if sizes:
            cur.setinputsizes(**sizes)
        try:
            cur.execute(sql, values, fetch_lobs=False)
        except oracledb.Error as exc:
            created = created_object(sql)
            if error_code(exc)[0] == 955 and created and created[2]:
                # CREATE OR REPLACE replaces its own kind only: ORA-00955 means
                # another object type owns the name (ORACLE_NOTES: Found in a
                # line-by-line review, "ORA-00955 on CREATE OR REPLACE")
                obj_type, obj_name, _ = created
                raise DatabaseError(
                    f"cannot create {obj_type} {obj_name}: another kind of object already has "
                    f"that name (ORA-00955); see SELECT object_type FROM user_objects WHERE "
                    f"object_name = '{obj_name}', then rename or drop it") from None
            raise
        warning = cur.warning
        if warning is not None and warning.full_code == "DPY-7000":
            error = self._compile_error(conn, sql)
            if error is not None:
                raise error
        return cur

    def execute_many(self, conn: Any, sql: str, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        sizes = {k: oracledb.DB_TYPE_TIMESTAMP for k, v in rows[0].items()
                 if isinstance(v, dt.datetime)}
        with conn.cursor() as cur:
            if sizes:
                cur.setinputsizes(**sizes)
            cur.executemany(sql, [{k: int(v) if isinstance(v, bool) else v for k, v in r.items()}
                                  for r in rows])

    def lock_clause(self, *, skip_locked: bool) -> str:
        return "FOR UPDATE SKIP LOCKED" if skip_locked else "FOR UPDATE"

    def lock_first_clause(self, bind: str) -> str | None:
        return None  # FETCH FIRST with FOR UPDATE is ORA-02014

    def returning_clause(self, columns: Sequence[str]) -> str | None:
        return None  # RETURNING ... INTO binds one row's values, not a result set

    def keeps_transaction(self, exc: BaseException) -> bool:
        return False  # a failed commit: in doubt, read back (the outcome's own rule)

    def in_transaction(self, conn: Any) -> bool:
        return bool(conn.transaction_in_progress)

    def writes_without_waiting(self, conn: Any) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()  # readers never wait; claims skip locked rows

    def bound_lock_wait(self, conn: Any, *, wait_s: float, silent_s: float) -> None:
        # FOR UPDATE WAIT n would bound the wait; a cut client's session keeps
        # its locks until dead connection detection ends it (ORACLE_NOTES
        # "Found in a line-by-line review": a break is only a marker). Neither
        # is measured without a server, so an Oracle claim waits for its
        # queue's lock as it always did
        return None

    def batched(self, conn: Any) -> contextlib.AbstractContextManager[bool]:
        # python-oracledb's pipelining is for its async API only (and Oracle
        # Database 23ai): the synchronous driver answers each statement
        return contextlib.nullcontext(False)

    def relax_commit(self, conn: Any) -> None:
        return None  # COMMIT WRITE NOWAIT exists, but jobctl has not been measured on Oracle

    def insert_if_missing_sql(self, table: str, key: str, columns: Sequence[str]) -> str:
        # MERGE, Oracle's INSERT ... ON CONFLICT; two sessions racing on a new
        # key can still meet ORA-00001, which the caller treats as "there"
        source = ", ".join(f":{c} AS {c}" for c in columns)
        return (f"MERGE INTO {table} t USING (SELECT {source} FROM dual) s ON (t.{key} = s.{key}) "
                f"WHEN NOT MATCHED THEN INSERT ({', '.join(columns)}) "
                f"VALUES ({', '.join('s.' + c for c in columns)})")

    def _compile_error(self, conn: Any, sql: str) -> DatabaseError | None:
        """A PL/SQL unit created with compilation errors: DDL "succeeds" with
        warning DPY-7000 (ORACLE_NOTES "SQL"; src/oracledb/errors.py maps
        ORA-24344 to it). Name the object and its first errors. With
        PLSQL_WARNINGS enabled the same warning comes for warnings alone:
        no ATTRIBUTE = 'ERROR' row in USER_ERRORS means the unit is valid
        (ORACLE_NOTES: Found in a line-by-line review), so None."""
        created = created_object(sql)
        if not created:
            return DatabaseError(f"{self.settings.display}: PL/SQL compiled with errors")
        obj_type, obj_name, _ = created
        try:
            with conn.cursor() as cur:
                cur.execute(COMPILE_ERRORS_SQL, {"name": obj_name, "type": obj_type})
                details = [f"line {line}:{pos} {text.strip()}" for line, pos, text in cur]
        except oracledb.Error:
            return DatabaseError(f"{obj_type} {obj_name} was created with compilation errors "
                                 "(see USER_ERRORS)")
        if not details:
            return None
        return DatabaseError(f"{obj_type} {obj_name} was created with compilation errors: "
                             + "; ".join(details))

    def limit_clause(self, bind: str) -> str:
        return f"FETCH FIRST :{bind} ROWS ONLY"

    def seconds_between_sql(self, start: str, end: str) -> str:
        # DATE or TIMESTAMP columns alike (an ASYNC_JOBS made by another
        # application may have either): as TIMESTAMPs their difference is an
        # INTERVAL DAY TO SECOND, whose fields EXTRACT reads
        d = f"(CAST({end} AS TIMESTAMP) - CAST({start} AS TIMESTAMP))"
        return (f"(EXTRACT(DAY FROM {d}) * 86400 + EXTRACT(HOUR FROM {d}) * 3600"
                f" + EXTRACT(MINUTE FROM {d}) * 60 + EXTRACT(SECOND FROM {d}))")

    def percentile_sql(self, fraction: float, expr: str) -> str:
        return f"PERCENTILE_CONT({float(fraction)!r}) WITHIN GROUP (ORDER BY {expr})"

    def to_db_time(self, value: dt.datetime) -> dt.datetime:
        """TIMESTAMP columns hold UTC wall time, naive."""
        if value.tzinfo is not None:
            value = value.astimezone(_UTC).replace(tzinfo=None)
        return value

    def clock_sql(self) -> str:
        return "SYS_EXTRACT_UTC(SYSTIMESTAMP)"  # the server's clock, per statement

    def server_time(self, conn: Any) -> dt.datetime | None:
        return self.from_db_time(
            self.execute(conn, f"SELECT {self.clock_sql()} FROM dual").fetchone()[0])

    def from_db_time(self, value: Any) -> dt.datetime | None:
        if value is None:
            return None
        if not isinstance(value, dt.datetime):   # a DATE-only value from elsewhere
            value = dt.datetime(value.year, value.month, value.day)
        if value.tzinfo is None:
            return value.replace(tzinfo=_UTC)
        return value.astimezone(_UTC)

    def schema_files(self, *, examples: bool) -> list[str]:
        files = ["create_async_jobs_table.sql"]
        if examples:
            files.append("examples.sql")
        return files
