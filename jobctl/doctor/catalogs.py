"""The catalog questions `jobctl doctor` asks SQLite and PostgreSQL, as named
statements like the backends' own catalog queries; a backend with checks of
its own (Oracle) brings its catalog with them."""

from __future__ import annotations

from ..backends import extra_checks
from ..checks import Catalog

SQLITE = Catalog(
    version_sql="SELECT 'SQLite ' || sqlite_version()",
    identity_sql=None,
    timezone_sql=None,
    utc_zones=(),
    indexes_sql="SELECT lower(name) FROM sqlite_master "
                "WHERE type = 'index' AND lower(tbl_name) = 'async_jobs'",
    helpers_sql="SELECT upper(name), 'VALID' FROM sqlite_master "
                "WHERE type = 'view' AND upper(name) = 'V_ASYNC_JOBS_RECENT'",
    helpers={"V_ASYNC_JOBS_RECENT": "view of the last 24 hours, for sqlite3 users"},
    grant_remedy="make the database file, and the directory it is in, writable by this user",
    connect_remedy="check the path in the DSN (sqlite:////absolute/path.db) and that this user "
                   "may read and write it",
)

POSTGRESQL = Catalog(
    version_sql="SELECT 'PostgreSQL ' || current_setting('server_version')",
    identity_sql="SELECT 'user ' || current_user || ', database ' || current_database()"
                 " || ', schema ' || COALESCE(current_schema(), '(none on the search_path)')",
    timezone_sql="SELECT current_setting('TimeZone'), now() AT TIME ZONE 'UTC'",
    utc_zones=("UTC", "Etc/UTC"),
    indexes_sql="""
        SELECT ic.relname
          FROM pg_catalog.pg_index i
          JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
         WHERE i.indrelid = to_regclass('async_jobs')""",
    helpers_sql="""
        SELECT upper(c.relname), 'VALID'
          FROM pg_catalog.pg_class c
         WHERE c.relkind = 'v' AND c.relname = 'v_async_jobs_recent'
           AND pg_catalog.pg_table_is_visible(c.oid)
        UNION ALL
        SELECT upper(p.proname), 'VALID'
          FROM pg_catalog.pg_proc p
         WHERE p.prokind = 'p' AND p.proname IN ('cleanup_old_async_jobs', 'jobctl_progress')
           AND pg_catalog.pg_function_is_visible(p.oid)""",
    helpers={"V_ASYNC_JOBS_RECENT": "view of the last 24 hours, for psql users",
             "CLEANUP_OLD_ASYNC_JOBS": "procedure for pg_cron / server-side cleanup",
             "JOBCTL_PROGRESS": "procedure a job calls to report progress"},
    grant_remedy="as the table's owner: GRANT SELECT, INSERT, UPDATE, DELETE ON async_jobs "
                 "TO {user}",
    connect_remedy="check host, port, database and user in the DSN, that the server accepts "
                   "this user from here (pg_hba.conf), and the password source",
)



def catalog_for(scheme: str) -> Catalog:
    extra = extra_checks(scheme)
    if extra is not None:
        return extra.catalog
    return {"sqlite": SQLITE, "postgresql": POSTGRESQL}[scheme]
