-- Demo procedures for the README walkthrough, the same on every backend.
-- Idempotent (CREATE OR REPLACE); needs PostgreSQL 14 or later.
--
--   psql "postgresql://user@host:5432/db" -f sql/postgresql/examples.sql
--   jobctl db init --examples          (runs this same file)
--
-- How a procedure talks to jobctl:
--   RAISE NOTICE 'jobctl:progress=40';   -- progress, 0-100 (or CALL jobctl_progress(40))
--   RAISE NOTICE 'any other text';       -- captured into the job's OUTPUT, live

-- Report progress to jobctl (a notice the worker reads; harmless elsewhere).
CREATE OR REPLACE PROCEDURE jobctl_progress(pct numeric)
LANGUAGE plpgsql
AS $$
BEGIN
    RAISE NOTICE 'jobctl:progress=%', greatest(0, least(100, coalesce(pct, 0)));
END;
$$;

-- SUMA_SIMPLE(vA, vB DEFAULT 0, vResult OUT): vResult := vA + vB.
-- PostgreSQL does not allow an OUT parameter after one with a default, so
-- vResult is declared before vB; jobctl calls by name, so the order does not
-- matter to callers, and vResult comes back in RESULT.
CREATE OR REPLACE PROCEDURE suma_simple(
    va numeric,
    OUT vresult numeric,
    vb numeric DEFAULT 0
)
LANGUAGE plpgsql
AS $$
BEGIN
    vresult := va + vb;
END;
$$;

-- DEMO_SLEEP(p_seconds): sleeps one second at a time, reporting progress and
-- a line of output after each.
CREATE OR REPLACE PROCEDURE demo_sleep(p_seconds numeric)
LANGUAGE plpgsql
AS $$
DECLARE
    total  numeric := greatest(coalesce(p_seconds, 0), 0);
    steps  integer := ceil(greatest(coalesce(p_seconds, 0), 0));
    slept  numeric := 0;
BEGIN
    FOR i IN 1 .. steps LOOP
        PERFORM pg_sleep(least(1, total - slept));
        slept := least(total, slept + 1);
        RAISE NOTICE 'slept % of % s', slept, total;
        CALL jobctl_progress(round(100 * slept / total));
    END LOOP;
END;
$$;

-- DEMO_FAIL(p_message): raises p_message.
CREATE OR REPLACE PROCEDURE demo_fail(p_message text DEFAULT 'demo failure')
LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION '%', coalesce(p_message, 'demo failure');
END;
$$;
