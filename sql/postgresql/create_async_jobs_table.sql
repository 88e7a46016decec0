-- ASYNC_JOBS for PostgreSQL: the history of jobs that jobctl runs.
--
-- Idempotent: run it on an empty database to create the table, or on a
-- database that already has an ASYNC_JOBS of the original shape to add the
-- columns and indexes jobctl needs. Nothing here drops or rewrites data.
--
--   psql "postgresql://user@host:5432/db" -f sql/postgresql/create_async_jobs_table.sql
--   jobctl db init            (runs this same file)
--
-- Names are unquoted, so they fold to lower case (async_jobs, job_id, ...).
-- Times are TIMESTAMP WITHOUT TIME ZONE holding UTC; jobctl sets its
-- sessions' TimeZone to UTC and converts for display.

-- quiet the "already exists, skipping" notices when re-run
SET client_min_messages = warning;

CREATE TABLE IF NOT EXISTS async_jobs (
    job_id            VARCHAR(32)   PRIMARY KEY,
    status            VARCHAR(20)   NOT NULL,
    procedure_name    VARCHAR(200)  NOT NULL,
    start_time        TIMESTAMP     NOT NULL,
    end_time          TIMESTAMP,
    duration          VARCHAR(50),
    result            TEXT,
    error_msg         TEXT,
    progress          NUMERIC       DEFAULT 0,
    created_at        TIMESTAMP     DEFAULT (CURRENT_TIMESTAMP AT TIME ZONE 'UTC'),
    -- added by jobctl
    params            TEXT,
    elapsed_s         NUMERIC,
    output            TEXT,
    worker_host       VARCHAR(255),
    worker_pid        NUMERIC,
    heartbeat_at      TIMESTAMP,
    cancel_requested  NUMERIC(1)    DEFAULT 0,
    timeout_s         NUMERIC,
    attempt           NUMERIC,
    max_attempts      NUMERIC,
    submitted_by      VARCHAR(128),
    unique_key        VARCHAR(64),
    signature         TEXT,
    claim_token       VARCHAR(32),
    db_session        VARCHAR(100),
    queue             VARCHAR(100)  DEFAULT 'default',
    priority          NUMERIC       DEFAULT 0,
    not_before        TIMESTAMP,
    after_jobs        TEXT,
    db_error_code     VARCHAR(16),
    committed_inside  NUMERIC(1),
    atomic            NUMERIC(1)    DEFAULT 0
);

-- An ASYNC_JOBS created before jobctl gains jobctl's columns.
ALTER TABLE async_jobs ADD COLUMN IF NOT EXISTS params            TEXT;
ALTER TABLE async_jobs ADD COLUMN IF NOT EXISTS elapsed_s         NUMERIC;
ALTER TABLE async_jobs ADD COLUMN IF NOT EXISTS output            TEXT;
ALTER TABLE async_jobs ADD COLUMN IF NOT EXISTS worker_host       VARCHAR(255);
ALTER TABLE async_jobs ADD COLUMN IF NOT EXISTS worker_pid        NUMERIC;
ALTER TABLE async_jobs ADD COLUMN IF NOT EXISTS heartbeat_at      TIMESTAMP;
ALTER TABLE async_jobs ADD COLUMN IF NOT EXISTS cancel_requested  NUMERIC(1) DEFAULT 0;
ALTER TABLE async_jobs ADD COLUMN IF NOT EXISTS timeout_s         NUMERIC;
ALTER TABLE async_jobs ADD COLUMN IF NOT EXISTS attempt           NUMERIC;
ALTER TABLE async_jobs ADD COLUMN IF NOT EXISTS max_attempts      NUMERIC;
ALTER TABLE async_jobs ADD COLUMN IF NOT EXISTS submitted_by      VARCHAR(128);
ALTER TABLE async_jobs ADD COLUMN IF NOT EXISTS unique_key        VARCHAR(64);
ALTER TABLE async_jobs ADD COLUMN IF NOT EXISTS signature         TEXT;
ALTER TABLE async_jobs ADD COLUMN IF NOT EXISTS claim_token       VARCHAR(32);
ALTER TABLE async_jobs ADD COLUMN IF NOT EXISTS db_session        VARCHAR(100);
ALTER TABLE async_jobs ADD COLUMN IF NOT EXISTS queue             VARCHAR(100) DEFAULT 'default';
ALTER TABLE async_jobs ADD COLUMN IF NOT EXISTS priority          NUMERIC DEFAULT 0;
ALTER TABLE async_jobs ADD COLUMN IF NOT EXISTS not_before        TIMESTAMP;
ALTER TABLE async_jobs ADD COLUMN IF NOT EXISTS after_jobs        TEXT;
ALTER TABLE async_jobs ADD COLUMN IF NOT EXISTS db_error_code     VARCHAR(16);
ALTER TABLE async_jobs ADD COLUMN IF NOT EXISTS committed_inside  NUMERIC(1);
ALTER TABLE async_jobs ADD COLUMN IF NOT EXISTS atomic            NUMERIC(1) DEFAULT 0;

-- One row per job whose call committed inside the procedure: the worker
-- inserts it in the call's first transaction, so it is there exactly when
-- that transaction committed, even if the worker dies before it can say so.
CREATE TABLE IF NOT EXISTS job_commit_marks (
    job_id     VARCHAR(32)  NOT NULL PRIMARY KEY,
    marked_at  TIMESTAMP    DEFAULT (CURRENT_TIMESTAMP AT TIME ZONE 'UTC')
);

-- A queue's limit and pause switch, shared by every host using this database.
-- A queue with no row here runs up to 4 jobs at once (max_running NULL: the
-- same default; 0: unlimited). The claim locks its queue's row.
CREATE TABLE IF NOT EXISTS job_queues (
    queue_name   VARCHAR(100) NOT NULL PRIMARY KEY,
    max_running  NUMERIC,
    paused       NUMERIC(1)   DEFAULT 0 NOT NULL
);

-- The `jobctl worker` pools using this database, each with its heartbeat:
-- `jobctl worker list` reads them, and submit leaves a queue a live pool
-- serves to it. queues is a comma-separated list, or * for every queue.
CREATE TABLE IF NOT EXISTS job_workers (
    worker_id    VARCHAR(32)   NOT NULL PRIMARY KEY,
    host         VARCHAR(255)  NOT NULL,
    pid          NUMERIC       NOT NULL,
    queues       VARCHAR(4000) NOT NULL,
    concurrency  NUMERIC       NOT NULL,
    running      NUMERIC       DEFAULT 0 NOT NULL,
    state        VARCHAR(20)   NOT NULL,
    started_at   TIMESTAMP     NOT NULL,
    heartbeat_at TIMESTAMP     NOT NULL
);

-- The tokens of `jobctl serve` (`jobctl token create`), shared by every
-- server on this database: only a SHA-256 of each token is kept. scopes is a
-- comma-separated list (read, submit, cancel); procedures a name pattern.
CREATE TABLE IF NOT EXISTS job_tokens (
    token_id     VARCHAR(32)  NOT NULL PRIMARY KEY,
    name         VARCHAR(100) NOT NULL,
    token_hash   VARCHAR(64)  NOT NULL,
    scopes       VARCHAR(100) NOT NULL,
    procedures   VARCHAR(400),
    created_at   TIMESTAMP    NOT NULL,
    expires_at   TIMESTAMP,
    last_used_at TIMESTAMP,
    revoked_at   TIMESTAMP
);
CREATE UNIQUE INDEX IF NOT EXISTS ux_job_tokens_name ON job_tokens (name);

-- The queries jobctl runs: list/cleanup by status and time, stats per procedure.
CREATE INDEX IF NOT EXISTS ix_async_jobs_status     ON async_jobs (status);
CREATE INDEX IF NOT EXISTS ix_async_jobs_start      ON async_jobs (start_time);
CREATE INDEX IF NOT EXISTS ix_async_jobs_proc_start ON async_jobs (procedure_name, start_time);
-- The claim: a queue's queued and running jobs, next one first, in the
-- claim's own order, so that taking the next job reads one entry rather than
-- sorting the whole queue. (It replaces ix_async_jobs_claim, which a database
-- made by an earlier jobctl keeps until a DBA drops it: db init drops nothing.)
CREATE INDEX IF NOT EXISTS ix_async_jobs_next       ON async_jobs (status, queue, priority DESC, start_time, job_id);

-- `submit --unique`: at most one queued or running job per key, whatever the timing.
CREATE UNIQUE INDEX IF NOT EXISTS ux_async_jobs_unique_active
    ON async_jobs (unique_key)
    WHERE status IN ('queued', 'running');

-- Rows written before jobctl have no elapsed_s: give finished ones their
-- seconds from end_time - start_time, so `jobctl stats` shows their durations.
UPDATE async_jobs
   SET elapsed_s = ROUND(EXTRACT(EPOCH FROM (end_time - start_time))::numeric, 3)
 WHERE elapsed_s IS NULL AND end_time IS NOT NULL
   AND LOWER(status) NOT IN ('queued', 'running');

-- The last day at a glance, with the same columns as on Oracle (plus created_at):
--   SELECT * FROM V_ASYNC_JOBS_RECENT ORDER BY START_TIME DESC;
-- Times are UTC without time zone, so the bound is "now" in UTC.
CREATE OR REPLACE VIEW v_async_jobs_recent AS
SELECT job_id, status, procedure_name, start_time, end_time, duration, elapsed_s,
       progress, attempt, max_attempts, worker_host, worker_pid, heartbeat_at,
       submitted_by, result, error_msg, created_at
  FROM async_jobs
 WHERE start_time >= (CURRENT_TIMESTAMP AT TIME ZONE 'UTC') - INTERVAL '1 day';

-- Delete finished jobs older than p_days_old days, in batches with a commit
-- per batch; queued and running jobs are never touched. Call it at top level
-- (psql, or any client in autocommit):  CALL CLEANUP_OLD_ASYNC_JOBS(7);
-- inside a transaction block PostgreSQL refuses the COMMIT between batches.
CREATE OR REPLACE PROCEDURE cleanup_old_async_jobs(p_days_old numeric DEFAULT 7)
LANGUAGE plpgsql
AS $$
DECLARE
    c_batch   CONSTANT integer := 10000;
    v_before  timestamp;
    v_rows    integer;
    v_deleted bigint := 0;
BEGIN
    IF p_days_old IS NULL OR p_days_old < 0 THEN
        RAISE EXCEPTION 'p_days_old must be a number of days >= 0';
    END IF;
    v_before := (CURRENT_TIMESTAMP AT TIME ZONE 'UTC') - p_days_old * INTERVAL '1 day';
    LOOP
        DELETE FROM async_jobs
         WHERE job_id IN (SELECT job_id FROM async_jobs
                           WHERE start_time < v_before
                             AND status NOT IN ('queued', 'running')
                           LIMIT c_batch);
        GET DIAGNOSTICS v_rows = ROW_COUNT;
        v_deleted := v_deleted + v_rows;
        COMMIT;
        EXIT WHEN v_rows < c_batch;
    END LOOP;
    RAISE NOTICE 'CLEANUP_OLD_ASYNC_JOBS: % job(s) deleted', v_deleted;
END;
$$;
