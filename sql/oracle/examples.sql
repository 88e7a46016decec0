-- The demo procedures every jobctl backend ships, for the README walkthrough.
-- Installed by `jobctl db init --examples`, or by hand (after
-- create_async_jobs_table.sql, which creates the JOBCTL_PROGRESS package used here):
--     sqlplus scott@//dbhost:1521/FREEPDB1 @sql/oracle/examples.sql
--
-- DEMO_SLEEP sleeps with DBMS_SESSION.SLEEP on Oracle 18c and later (EXECUTE
-- on DBMS_SESSION is granted to PUBLIC). On 12.2 it falls back to
-- DBMS_LOCK.SLEEP, which needs:  GRANT EXECUTE ON SYS.DBMS_LOCK TO scott;

WHENEVER SQLERROR EXIT FAILURE

-- vResult := vA + vB
CREATE OR REPLACE PROCEDURE SUMA_SIMPLE(
    vA      IN  NUMBER,
    vB      IN  NUMBER DEFAULT 0,
    vResult OUT NUMBER
) AS
BEGIN
    vResult := vA + NVL(vB, 0);
END SUMA_SIMPLE;
/
SHOW ERRORS

-- Sleep p_seconds, reporting progress (JOBCTL_PROGRESS.SET_PROGRESS and
-- V$SESSION_LONGOPS) and a line of DBMS_OUTPUT every second.
CREATE OR REPLACE PROCEDURE DEMO_SLEEP(p_seconds IN NUMBER) AS
    v_total  NUMBER := GREATEST(NVL(p_seconds, 0), 0);
    v_done   NUMBER := 0;
    v_step   NUMBER;
    v_rindex BINARY_INTEGER := DBMS_APPLICATION_INFO.SET_SESSION_LONGOPS_NOHINT;
    v_slno   BINARY_INTEGER;

    FUNCTION fmt(p_value IN NUMBER) RETURN VARCHAR2 IS
    BEGIN
        RETURN RTRIM(TO_CHAR(p_value, 'FM9999999990.999'), '.');
    END fmt;
BEGIN
    WHILE v_done < v_total LOOP
        v_step := LEAST(1, v_total - v_done);
        $IF DBMS_DB_VERSION.VERSION >= 18 $THEN
            DBMS_SESSION.SLEEP(v_step);
        $ELSE
            DBMS_LOCK.SLEEP(v_step);
        $END
        v_done := v_done + v_step;
        JOBCTL_PROGRESS.SET_PROGRESS(100 * v_done / v_total);
        DBMS_APPLICATION_INFO.SET_SESSION_LONGOPS(
            rindex      => v_rindex,
            slno        => v_slno,
            op_name     => 'DEMO_SLEEP',
            sofar       => v_done,
            totalwork   => v_total,
            target_desc => 'jobctl demo',
            units       => 'seconds');
        DBMS_OUTPUT.PUT_LINE('slept ' || fmt(v_done) || ' of ' || fmt(v_total) || ' s');
    END LOOP;
END DEMO_SLEEP;
/
SHOW ERRORS

-- Raise p_message as ORA-20001.
CREATE OR REPLACE PROCEDURE DEMO_FAIL(p_message IN VARCHAR2 DEFAULT 'demo failure') AS
BEGIN
    RAISE_APPLICATION_ERROR(-20001, NVL(p_message, 'demo failure'));
END DEMO_FAIL;
/
SHOW ERRORS
