-- ASYNC_JOBS for Oracle Database 12.2 .. 23ai, with its indexes.
--
-- Run by `jobctl db init`, or by hand:
--     sqlplus scott@//dbhost:1521/FREEPDB1 @sql/oracle/create_async_jobs_table.sql
--
-- Idempotent without CREATE TABLE IF NOT EXISTS (23ai only): each step is a
-- PL/SQL block that ignores "already there" errors:
--   ORA-00955 name is already used by an existing object
--   ORA-01430 column being added already exists in table
--   ORA-01408 such column list already indexed
-- On a database that already has the original ASYNC_JOBS (JOB_ID .. CREATED_AT)
-- only jobctl's columns and the missing indexes are added; no data changes.
-- All times are stored in UTC (jobctl binds UTC values itself).

WHENEVER SQLERROR EXIT FAILURE
SET SERVEROUTPUT ON

DECLARE
    e_exists EXCEPTION;
    PRAGMA EXCEPTION_INIT(e_exists, -955);
BEGIN
    EXECUTE IMMEDIATE q'[
        CREATE TABLE ASYNC_JOBS (
            JOB_ID           VARCHAR2(32)  NOT NULL,
            STATUS           VARCHAR2(20)  NOT NULL,
            PROCEDURE_NAME   VARCHAR2(200) NOT NULL,
            START_TIME       TIMESTAMP     NOT NULL,
            END_TIME         TIMESTAMP,
            DURATION         VARCHAR2(50),
            RESULT           CLOB,
            ERROR_MSG        CLOB,
            PROGRESS         NUMBER        DEFAULT 0,
            CREATED_AT       TIMESTAMP     DEFAULT CURRENT_TIMESTAMP,
            PARAMS           CLOB,
            ELAPSED_S        NUMBER,
            OUTPUT           CLOB,
            WORKER_HOST      VARCHAR2(255),
            WORKER_PID       NUMBER,
            HEARTBEAT_AT     TIMESTAMP,
            CANCEL_REQUESTED NUMBER(1)     DEFAULT 0,
            TIMEOUT_S        NUMBER,
            ATTEMPT          NUMBER,
            MAX_ATTEMPTS     NUMBER,
            SUBMITTED_BY     VARCHAR2(128),
            UNIQUE_KEY       VARCHAR2(64),
            SIGNATURE        CLOB,
            CLAIM_TOKEN      VARCHAR2(32),
            DB_SESSION       VARCHAR2(100),
            QUEUE            VARCHAR2(100) DEFAULT 'default',
            PRIORITY         NUMBER        DEFAULT 0,
            NOT_BEFORE       TIMESTAMP,
            AFTER_JOBS       CLOB,
            DB_ERROR_CODE    VARCHAR2(16),
            COMMITTED_INSIDE NUMBER(1),
            ATOMIC           NUMBER(1)     DEFAULT 0,
            CONSTRAINT PK_ASYNC_JOBS PRIMARY KEY (JOB_ID)
        )]';
EXCEPTION
    WHEN e_exists THEN NULL;  -- the table is there: the next block upgrades it
END;
/

-- Upgrade an original-shaped table with the columns jobctl adds.
DECLARE
    e_column_exists EXCEPTION;
    PRAGMA EXCEPTION_INIT(e_column_exists, -1430);
    PROCEDURE add_column(p_definition IN VARCHAR2) IS
    BEGIN
        EXECUTE IMMEDIATE 'ALTER TABLE ASYNC_JOBS ADD (' || p_definition || ')';
    EXCEPTION
        WHEN e_column_exists THEN NULL;
    END;
BEGIN
    add_column('PARAMS CLOB');
    add_column('ELAPSED_S NUMBER');
    add_column('OUTPUT CLOB');
    add_column('WORKER_HOST VARCHAR2(255)');
    add_column('WORKER_PID NUMBER');
    add_column('HEARTBEAT_AT TIMESTAMP');
    add_column('CANCEL_REQUESTED NUMBER(1) DEFAULT 0');
    add_column('TIMEOUT_S NUMBER');
    add_column('ATTEMPT NUMBER');
    add_column('MAX_ATTEMPTS NUMBER');
    add_column('SUBMITTED_BY VARCHAR2(128)');
    add_column('UNIQUE_KEY VARCHAR2(64)');
    add_column('SIGNATURE CLOB');
    add_column('CLAIM_TOKEN VARCHAR2(32)');
    add_column('DB_SESSION VARCHAR2(100)');
    add_column('QUEUE VARCHAR2(100) DEFAULT ''default''');
    add_column('PRIORITY NUMBER DEFAULT 0');
    add_column('NOT_BEFORE TIMESTAMP');
    add_column('AFTER_JOBS CLOB');
    add_column('DB_ERROR_CODE VARCHAR2(16)');
    add_column('COMMITTED_INSIDE NUMBER(1)');
    add_column('ATOMIC NUMBER(1) DEFAULT 0');
END;
/

-- One row per job whose call committed inside the procedure: the worker
-- inserts it in the call's first transaction, so it is there exactly when
-- that transaction committed, even if the worker dies before it can say so.
DECLARE
    e_exists EXCEPTION;
    PRAGMA EXCEPTION_INIT(e_exists, -955);
BEGIN
    EXECUTE IMMEDIATE q'[
        CREATE TABLE JOB_COMMIT_MARKS (
            JOB_ID    VARCHAR2(32) NOT NULL,
            MARKED_AT TIMESTAMP    DEFAULT SYS_EXTRACT_UTC(SYSTIMESTAMP),
            CONSTRAINT PK_JOB_COMMIT_MARKS PRIMARY KEY (JOB_ID)
        )]';
EXCEPTION
    WHEN e_exists THEN NULL;
END;
/

-- A queue's limit and pause switch, shared by every host using this database.
-- A queue with no row here runs up to 4 jobs at once (MAX_RUNNING NULL: the
-- same default; 0: unlimited). The claim locks its queue's row.
DECLARE
    e_exists EXCEPTION;
    PRAGMA EXCEPTION_INIT(e_exists, -955);
BEGIN
    EXECUTE IMMEDIATE q'[
        CREATE TABLE JOB_QUEUES (
            QUEUE_NAME  VARCHAR2(100) NOT NULL,
            MAX_RUNNING NUMBER,
            PAUSED      NUMBER(1)     DEFAULT 0 NOT NULL,
            CONSTRAINT PK_JOB_QUEUES PRIMARY KEY (QUEUE_NAME)
        )]';
EXCEPTION
    WHEN e_exists THEN NULL;
END;
/

-- The `jobctl worker` pools using this database, each with its heartbeat:
-- `jobctl worker list` reads them, and submit leaves a queue a live pool
-- serves to it. QUEUES is a comma-separated list, or * for every queue.
DECLARE
    e_exists EXCEPTION;
    PRAGMA EXCEPTION_INIT(e_exists, -955);
BEGIN
    EXECUTE IMMEDIATE q'[
        CREATE TABLE JOB_WORKERS (
            WORKER_ID    VARCHAR2(32)   NOT NULL,
            HOST         VARCHAR2(255)  NOT NULL,
            PID          NUMBER         NOT NULL,
            QUEUES       VARCHAR2(4000) NOT NULL,
            CONCURRENCY  NUMBER         NOT NULL,
            RUNNING      NUMBER         DEFAULT 0 NOT NULL,
            STATE        VARCHAR2(20)   NOT NULL,
            STARTED_AT   TIMESTAMP      NOT NULL,
            HEARTBEAT_AT TIMESTAMP      NOT NULL,
            CONSTRAINT PK_JOB_WORKERS PRIMARY KEY (WORKER_ID)
        )]';
EXCEPTION
    WHEN e_exists THEN NULL;
END;
/

-- The tokens of `jobctl serve` (`jobctl token create`), shared by every
-- server on this database: only a SHA-256 of each token is kept. SCOPES is a
-- comma-separated list (read, submit, cancel); PROCEDURES a name pattern.
DECLARE
    e_exists EXCEPTION;
    PRAGMA EXCEPTION_INIT(e_exists, -955);
BEGIN
    EXECUTE IMMEDIATE q'[
        CREATE TABLE JOB_TOKENS (
            TOKEN_ID     VARCHAR2(32)  NOT NULL,
            NAME         VARCHAR2(100) NOT NULL,
            TOKEN_HASH   VARCHAR2(64)  NOT NULL,
            SCOPES       VARCHAR2(100) NOT NULL,
            PROCEDURES   VARCHAR2(400),
            CREATED_AT   TIMESTAMP     NOT NULL,
            EXPIRES_AT   TIMESTAMP,
            LAST_USED_AT TIMESTAMP,
            REVOKED_AT   TIMESTAMP,
            CONSTRAINT PK_JOB_TOKENS PRIMARY KEY (TOKEN_ID),
            CONSTRAINT UX_JOB_TOKENS_NAME UNIQUE (NAME)
        )]';
EXCEPTION
    WHEN e_exists THEN NULL;
END;
/

-- Indexes for the real queries: list by status / time window, stats per
-- procedure, and a unique index over active --unique jobs only. Oracle has
-- no partial indexes; entries whose key is all NULL are not indexed, so the
-- CASE keeps finished jobs out of the uniqueness check.
DECLARE
    e_name_used EXCEPTION;
    e_already_indexed EXCEPTION;
    PRAGMA EXCEPTION_INIT(e_name_used, -955);
    PRAGMA EXCEPTION_INIT(e_already_indexed, -1408);
    PROCEDURE create_index(p_ddl IN VARCHAR2) IS
    BEGIN
        EXECUTE IMMEDIATE p_ddl;
    EXCEPTION
        WHEN e_name_used OR e_already_indexed THEN NULL;
    END;
BEGIN
    -- the claim's index, in the claim's own order; it replaces
    -- IX_ASYNC_JOBS_CLAIM, which an earlier schema keeps (nothing is dropped)
    create_index('CREATE INDEX IX_ASYNC_JOBS_STATUS ON ASYNC_JOBS (STATUS)');
    create_index('CREATE INDEX IX_ASYNC_JOBS_START ON ASYNC_JOBS (START_TIME)');
    create_index('CREATE INDEX IX_ASYNC_JOBS_PROC_START ON ASYNC_JOBS (PROCEDURE_NAME, START_TIME)');
    create_index('CREATE INDEX IX_ASYNC_JOBS_NEXT ON ASYNC_JOBS (STATUS, QUEUE, PRIORITY DESC, START_TIME, JOB_ID)');
    create_index(q'[CREATE UNIQUE INDEX UX_ASYNC_JOBS_UNIQUE_ACTIVE ON ASYNC_JOBS
                    (CASE WHEN STATUS IN ('queued', 'running') THEN UNIQUE_KEY END)]');
END;
/

-- Rows written before jobctl have no ELAPSED_S: give finished ones their
-- duration from END_TIME - START_TIME (an INTERVAL DAY TO SECOND, summed by
-- its parts: AVG over an interval needs 23ai), so `stats` shows them too.
BEGIN
    UPDATE ASYNC_JOBS
       SET ELAPSED_S = ROUND(EXTRACT(DAY FROM (END_TIME - START_TIME)) * 86400
                           + EXTRACT(HOUR FROM (END_TIME - START_TIME)) * 3600
                           + EXTRACT(MINUTE FROM (END_TIME - START_TIME)) * 60
                           + EXTRACT(SECOND FROM (END_TIME - START_TIME)), 3)
     WHERE ELAPSED_S IS NULL AND END_TIME IS NOT NULL AND END_TIME >= START_TIME;
    COMMIT;
END;
/

-- Recent jobs for people at a SQL prompt; the same 24 hour window that
-- `jobctl list` shows by default. START_TIME is UTC, hence SYS_EXTRACT_UTC.
CREATE OR REPLACE VIEW V_ASYNC_JOBS_RECENT AS
SELECT JOB_ID, STATUS, PROCEDURE_NAME, START_TIME, END_TIME, DURATION, ELAPSED_S,
       PROGRESS, ATTEMPT, MAX_ATTEMPTS, WORKER_HOST, WORKER_PID, HEARTBEAT_AT,
       SUBMITTED_BY, RESULT, ERROR_MSG, CREATED_AT
  FROM ASYNC_JOBS
 WHERE START_TIME >= SYS_EXTRACT_UTC(SYSTIMESTAMP) - INTERVAL '1' DAY;

-- Delete finished jobs older than p_days_old days, in batches with a commit
-- per batch: exactly the statuses `jobctl cleanup` deletes (an allow-list,
-- compared without regard to case), so a row another writer left as
-- RUNNING, PENDING or anything else is never touched. For DBMS_SCHEDULER:
--   BEGIN CLEANUP_OLD_ASYNC_JOBS(7); END;
CREATE OR REPLACE PROCEDURE CLEANUP_OLD_ASYNC_JOBS(p_days_old IN NUMBER DEFAULT 7) AS
    c_batch   CONSTANT PLS_INTEGER := 10000;
    v_before  TIMESTAMP;
    v_deleted PLS_INTEGER := 0;
BEGIN
    IF p_days_old IS NULL OR p_days_old < 0 THEN
        RAISE_APPLICATION_ERROR(-20001, 'p_days_old must be a number of days >= 0');
    END IF;
    v_before := SYS_EXTRACT_UTC(SYSTIMESTAMP) - NUMTODSINTERVAL(p_days_old, 'DAY');
    LOOP
        DELETE FROM ASYNC_JOBS
         WHERE START_TIME < v_before
           AND LOWER(STATUS) IN ('completed', 'failed', 'cancelled', 'timed_out', 'lost')
           AND ROWNUM <= c_batch;
        v_deleted := v_deleted + SQL%ROWCOUNT;
        EXIT WHEN SQL%ROWCOUNT < c_batch;
        COMMIT;
    END LOOP;
    COMMIT;
    DBMS_OUTPUT.PUT_LINE('CLEANUP_OLD_ASYNC_JOBS: deleted ' || v_deleted || ' job(s)');
END CLEANUP_OLD_ASYNC_JOBS;
/
SHOW ERRORS

-- Progress from inside a procedure run by jobctl:
--     JOBCTL_PROGRESS.SET_PROGRESS(40);
-- jobctl names the job with SET_JOB at the start of every call (a package
-- variable: it holds on a pooled or handed-over connection, and whatever the
-- procedure does to CLIENT_IDENTIFIER); a session where it was not called
-- (an older jobctl) falls back to CLIENT_IDENTIFIER. The update runs in an
-- autonomous transaction, so it is visible at once and survives a rollback
-- of the procedure's own work. Outside jobctl it does nothing.
-- Named so that it cannot shadow a schema: in JOBCTL.PROC Oracle looks for an
-- object JOBCTL in the current schema before a schema JOBCTL, so the old
-- package name broke every job of a user called JOBCTL (PLS-00302). An old
-- package JOBCTL from earlier releases is left alone: drop it by hand.
CREATE OR REPLACE PACKAGE JOBCTL_PROGRESS AUTHID DEFINER AS
    PROCEDURE SET_PROGRESS(p_pct IN NUMBER);
    -- the id of the job this session runs, or NULL outside jobctl
    FUNCTION CURRENT_JOB_ID RETURN VARCHAR2;
    -- called by jobctl before each call; reset with the package state
    -- between jobs (DBMS_SESSION.MODIFY_PACKAGE_STATE)
    PROCEDURE SET_JOB(p_job_id IN VARCHAR2);
END JOBCTL_PROGRESS;
/
SHOW ERRORS

CREATE OR REPLACE PACKAGE BODY JOBCTL_PROGRESS AS
    g_job_id VARCHAR2(64);

    PROCEDURE SET_JOB(p_job_id IN VARCHAR2) IS
    BEGIN
        g_job_id := p_job_id;
    END SET_JOB;

    FUNCTION CURRENT_JOB_ID RETURN VARCHAR2 IS
    BEGIN
        RETURN NVL(g_job_id, SYS_CONTEXT('USERENV', 'CLIENT_IDENTIFIER'));
    END CURRENT_JOB_ID;

    PROCEDURE WRITE_PROGRESS(p_job_id IN VARCHAR2, p_pct IN NUMBER) IS
        PRAGMA AUTONOMOUS_TRANSACTION;
    BEGIN
        UPDATE ASYNC_JOBS
           SET PROGRESS = LEAST(100, GREATEST(0, p_pct))
         WHERE JOB_ID = p_job_id
           AND STATUS = 'running';
        COMMIT;
    END WRITE_PROGRESS;

    PROCEDURE SET_PROGRESS(p_pct IN NUMBER) IS
        e_commit_refused EXCEPTION;
        PRAGMA EXCEPTION_INIT(e_commit_refused, -34);
        e_autonomous_left_open EXCEPTION;
        PRAGMA EXCEPTION_INIT(e_autonomous_left_open, -6519);
        v_job_id VARCHAR2(64) := CURRENT_JOB_ID;
    BEGIN
        IF v_job_id IS NULL OR p_pct IS NULL THEN
            RETURN;
        END IF;
        WRITE_PROGRESS(v_job_id, p_pct);
    EXCEPTION
        -- `jobctl submit --atomic` runs the call under ALTER SESSION DISABLE
        -- COMMIT IN PROCEDURE, which refuses an autonomous COMMIT too
        -- (ORA-00034, then ORA-06519 as the autonomous transaction is rolled
        -- back): progress is not recorded then, and the job goes on
        WHEN e_commit_refused OR e_autonomous_left_open THEN
            NULL;
    END SET_PROGRESS;
END JOBCTL_PROGRESS;
/
SHOW ERRORS
