"""Exact values, UTF-8, what submit resolved, one name per procedure, the
seed's view/procedure/queries and an original-shaped table — on SQLite and a
live PostgreSQL (and Oracle when JOBCTL_TEST_ORACLE_DSN is set, where the
`env` fixture reaches it)."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import textwrap
import time
from dataclasses import asdict
from decimal import Decimal

import pytest

from jobctl.backends import get_backend
from jobctl.config import parse_dsn, resolve_settings
from jobctl.store import COLUMNS

EXACT = ["12345678901234567890123456789012345678", "0.1", "-0.000000000000000000001", "1E+30"]

RECORDER_MODULE = textwrap.dedent('''
    from decimal import Decimal
    from jobctl.local import procedure

    @procedure("RECORD_NUM", outputs={"echoed": Decimal})
    def record_num(ctx, v: Decimal):
        ctx.connection.execute("CREATE TABLE IF NOT EXISTS received (v TEXT, kind TEXT)")
        ctx.connection.execute("INSERT INTO received VALUES (?, ?)", (str(v), type(v).__name__))
        return {"echoed": v}
''')

RECORDER_PG = """
CREATE TABLE IF NOT EXISTS received (v text, kind text);
CREATE OR REPLACE PROCEDURE record_num(v numeric, INOUT echoed numeric DEFAULT NULL)
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO received VALUES (v::text, pg_typeof(v)::text);
    echoed := v;
END $$;
"""


def query(env, sql: str, autocommit: bool = False) -> list[tuple]:
    backend = get_backend(parse_dsn(env.dsn))
    conn = backend.connect()
    try:
        if autocommit:
            conn.autocommit = True
        cur = backend.execute(conn, sql)
        rows = cur.fetchall() if cur.description else []
        if not autocommit:
            conn.commit()
        return [tuple(r) for r in rows]
    finally:
        conn.close()


def exact_json(result) -> object:
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout, parse_float=Decimal)


def finished(env, job_id: str) -> dict:
    deadline = time.monotonic() + 30
    while True:
        job = exact_json(env.cli("status", job_id, "--format", "json"))
        if job["status"] not in ("queued", "running"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


def install_recorder(env) -> None:
    if env.backend == "sqlite":
        path = env.tmp / "recorder.py"
        path.write_text(RECORDER_MODULE)
        config = env.tmp / "config" / "jobctl" / "config.toml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(f'modules = ["{path}"]\n')
    elif env.backend == "postgresql":
        env.sql(RECORDER_PG)
        env.sql("DELETE FROM received")
    else:
        pytest.skip("the Oracle recorder belongs to the Oracle suite")


# -- values ----------------------------------------------------------------------------

@pytest.mark.parametrize("typed", EXACT)
def test_numbers_reach_the_procedure_and_come_back_exactly(env, typed):
    install_recorder(env)
    job_id = env.submit("RECORD_NUM", "-p", f"v={typed}")
    job = finished(env, job_id)
    assert job["status"] == "completed", job

    received = query(env, "SELECT v, kind FROM received")
    assert len(received) == 1
    value, kind = received[0]
    assert Decimal(value) == Decimal(typed)
    assert kind in ("Decimal", "int", "numeric")  # never float

    # PARAMS holds the number as JSON number text written from the Decimal
    stored = env.rows()[0]["params"]
    assert json.loads(stored, parse_float=Decimal) == {"v": Decimal(typed)}
    assert '"' + typed not in stored  # a number, not a string
    # RESULT and --format json: the same value, as a JSON number
    assert job["params"]["v"] == Decimal(typed)
    assert job["result"]["echoed"] == Decimal(typed)
    assert not isinstance(job["result"]["echoed"], str)


def test_a_38_digit_integer_keeps_every_digit_in_params_and_json_output(env):
    install_recorder(env)
    digits = EXACT[0]
    job_id = env.submit("RECORD_NUM", "-p", f"v={digits}")
    finished(env, job_id)
    assert env.rows()[0]["params"] == '{"v": %s}' % digits
    out = env.cli("status", job_id, "--format", "json").stdout
    assert f'"v": {digits}' in out and f'"echoed": {digits}' in out
    jsonl = env.cli("list", "--format", "jsonl").stdout
    assert job_id in jsonl


def test_exact_sum_of_decimals_on_the_demo_procedure(env):
    job_id = env.submit(env.proc["suma"], "-p", "vA=12345678901234567890.123", "-p", "vB=0.1")
    job = finished(env, job_id)
    assert job["status"] == "completed", job
    va, vb = ("vA", "vB") if env.backend == "sqlite" else ("va", "vb")
    assert job["params"] == {va: Decimal("12345678901234567890.123"), vb: Decimal("0.1")}
    assert job["result"] == {"vresult": Decimal("12345678901234567890.223")}


@pytest.mark.parametrize("bad", ["1e400", "NaN", "Infinity", "-inf", "1E+126", "1E-131",
                                 "1" * 39, "1.000000000000000000000000000000000000001"])
def test_numbers_no_database_holds_are_refused_at_submit(env, bad):
    result = env.cli("submit", env.proc["suma"], "-p", f"vA={bad}")
    assert result.exit_code == 2, result.stderr
    assert "va" in result.stderr.lower() and result.stderr.count("\n") == 1
    assert env.rows() == []


@pytest.mark.parametrize("params", ['{"vA": NaN}', '{"vA": Infinity}', '{"vA": 1e400}'])
def test_non_finite_json_params_are_refused_at_submit(env, params):
    result = env.cli("submit", env.proc["suma"], "--params", params)
    assert result.exit_code == 2 and "va" in result.stderr.lower()
    assert env.rows() == []


def test_the_largest_and_smallest_held_numbers_are_accepted(env):
    for typed in ("9.9999999999999999999999999999999999999E+125", "1E-130"):
        job = finished(env, env.submit(env.proc["suma"], "-p", f"vA={typed}"))
        assert job["params"]["va" if env.backend != "sqlite" else "vA"] == Decimal(typed)


def test_text_is_stored_and_shown_as_utf8(env):
    job_id = env.submit(env.proc["fail"], "-p", "p_message=Ñuñoa")
    job = finished(env, job_id)
    assert job["status"] == "failed" and "Ñuñoa" in job["error_msg"]
    found = env.rows("params LIKE '%Ñuñoa%'")
    assert [r["job_id"] for r in found] == [job_id]
    assert "\\u" not in found[0]["params"]
    table = env.cli("status", job_id)
    assert '"p_message": "Ñuñoa"' in table.stdout
    for fmt in ("json", "jsonl", "csv", "tsv"):
        out = env.cli("status", job_id, "--format", fmt).stdout
        assert "Ñuñoa" in out and "\\u00d1" not in out, fmt


# -- what submit resolved ----------------------------------------------------------------

CHANGING_MODULE = textwrap.dedent('''
    from decimal import Decimal
    from jobctl.local import procedure

    @procedure("CHANGING", outputs={{"got": {out}}})
    def changing(ctx, a: {type}):
        return {{"got": a}}
''')


def define_changing(env, type_: str) -> None:
    if env.backend == "sqlite":
        path = env.tmp / "changing.py"
        path.write_text(CHANGING_MODULE.format(type={"numeric": "Decimal", "text": "str"}[type_],
                                               out={"numeric": "Decimal", "text": "str"}[type_]))
        config = env.tmp / "config" / "jobctl" / "config.toml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(f'modules = ["{path}"]\n')
    elif env.backend == "postgresql":
        env.sql("DROP PROCEDURE IF EXISTS changing")
        env.sql(f"CREATE PROCEDURE changing(a {type_}, INOUT got {type_} DEFAULT NULL) "
                "LANGUAGE plpgsql AS $$ BEGIN got := a; END $$")
    else:
        pytest.skip("covered offline for Oracle")


def run_copy_with_a_real_worker(env, job_id: str) -> str:
    """A queued copy of `job_id`'s row, run by `python -m jobctl.runner` as
    submit would spawn it: what submit recorded is all the worker gets."""
    copy = "f" * 8 + job_id[8:]
    cols = [c for c in COLUMNS if c not in ("job_id", "status", "end_time", "result", "error_msg",
                                            "duration", "elapsed_s", "worker_host", "worker_pid",
                                            "heartbeat_at", "output", "claim_token", "db_session")]
    env.sql(f"INSERT INTO ASYNC_JOBS (job_id, status, {', '.join(cols)}) "
            f"SELECT '{copy}', 'queued', {', '.join(cols)} FROM ASYNC_JOBS WHERE job_id = '{job_id}'")
    settings = resolve_settings(env.dsn, None)
    payload = json.dumps({"connection": settings.connection.to_payload(),
                          "tunables": asdict(settings.tunables)})
    subprocess.run([sys.executable, "-m", "jobctl.runner", copy], input=payload, text=True,
                   timeout=60, check=False, cwd=env.tmp)
    return copy


def test_submit_records_the_resolved_signature_and_the_worker_runs_exactly_it(env):
    define_changing(env, "numeric")
    job_id = env.submit("changing", "-p", "a=0.1")
    job = finished(env, job_id)
    assert job["status"] == "completed" and job["result"] == {"got": Decimal("0.1")}
    recorded = job["signature"]
    assert recorded["name"] == job["procedure_name"]
    assert len(recorded["fingerprint"]) == 32 and recorded["params"]

    copy = run_copy_with_a_real_worker(env, job_id)
    again = finished(env, copy)
    assert again["status"] == "completed" and again["result"] == {"got": Decimal("0.1")}

    define_changing(env, "text")  # between submit and run, the procedure changes
    env.sql(f"DELETE FROM ASYNC_JOBS WHERE job_id = '{copy}'")
    changed = finished(env, run_copy_with_a_real_worker(env, job_id))
    assert changed["status"] == "failed", changed
    assert f"procedure {job['procedure_name']} changed since submit" in changed["error_msg"]


# -- one name per procedure --------------------------------------------------------------

SPELLINGS = {"sqlite": ("suma_simple", "Suma_Simple", "SUMA_SIMPLE"),
             "postgresql": ("suma_simple", "public.suma_simple", "suma_simple"),
             "oracle": ("suma_simple", "SUMA_SIMPLE", "SUMA_SIMPLE")}


def test_every_spelling_of_a_procedure_is_one_name(env):
    short, long, canonical = SPELLINGS[env.backend]
    first = env.submit(short, "-p", "vA=1")
    second = env.submit(long, "-p", "vA=2")
    for job_id in (first, second):
        assert finished(env, job_id)["procedure_name"] == canonical
    assert {r["procedure_name"] for r in env.rows()} == {canonical}

    stats = env.json("stats", "--since", "all")
    assert [(r["procedure"], r["total"]) for r in stats] == [(canonical, 2)]
    for spelling in (short, long):
        listed = env.json("list", "-P", spelling)
        assert {j["job_id"] for j in listed} == {first, second}, spelling
        assert [r["total"] for r in env.json("stats", "-P", spelling)] == [2]


def test_unique_sees_every_spelling_as_the_same_work(env):
    sleep = {"sqlite": "demo_sleep", "postgresql": "public.demo_sleep", "oracle": "DEMO_SLEEP"}
    first = env.submit(env.proc["sleep"], "-p", "p_seconds=20", "--unique")
    result = env.cli("submit", sleep[env.backend], "-p", "p_seconds=20", "--unique")
    try:
        assert result.exit_code == 0 and result.stdout.strip() == first, result.stderr
        assert "already queued or running" in result.stderr
        assert len(env.rows()) == 1
    finally:
        env.cli("cancel", first)


def test_procedure_patterns_and_names_that_no_longer_resolve(env):
    suma = env.submit(env.proc["suma"], "-p", "vA=1")
    finished(env, suma)
    gone = "OLD_PROC" if env.backend != "postgresql" else "old_proc"
    lookalike = "SUMAXSIMPLE" if env.backend != "postgresql" else "sumaxsimple"
    now = "CURRENT_TIMESTAMP"
    for i, name in enumerate((gone, lookalike)):
        env.sql(f"INSERT INTO ASYNC_JOBS (job_id, status, procedure_name, start_time, end_time) "
                f"VALUES ('{i}' || '{'0' * 31}', 'completed', '{name}', {now}, {now})")
    # -P with % is a LIKE pattern; `_` matches only itself
    assert {j["procedure_name"] for j in env.json("list", "-P", "suma%")} == {
        finished(env, suma)["procedure_name"], lookalike}
    assert [j["job_id"] for j in env.json("list", "-P", "suma_s%")] == [suma]
    assert env.json("list", "-P", "nothing%") == []
    # a procedure dropped since: its spelling, normalised, still finds its rows
    assert [j["procedure_name"] for j in env.json("list", "-P", "old_proc")] == [gone]
    assert [r["procedure"] for r in env.json("stats", "-P", "Old_Proc")] == [gone]


# -- list --since ------------------------------------------------------------------------

def test_active_jobs_are_listed_whatever_since_says(env):
    old = "CURRENT_TIMESTAMP - INTERVAL '3' DAY" if env.backend != "sqlite" else \
        "strftime('%Y-%m-%d %H:%M:%f', 'now', '-3 days')"
    env.sql("INSERT INTO ASYNC_JOBS (job_id, status, procedure_name, start_time, end_time) "
            f"VALUES ('{'a' * 32}', 'completed', 'OLD_DONE', {old}, {old})")
    running = env.submit(env.proc["sleep"], "-p", "p_seconds=20")
    try:
        env.wait_for(running, lambda j: j["status"] == "running")
        env.sql(f"UPDATE ASYNC_JOBS SET start_time = {old} WHERE job_id = '{running}'")
        assert [j["job_id"] for j in env.json("list", "--status", "running")] == [running]
        assert [j["job_id"] for j in env.json("list")] == [running]
        assert {j["job_id"] for j in env.json("list", "--since", "all")} == {running, "a" * 32}
        assert sum(r["total"] for r in env.json("stats", "--since", "all")) == 2
        assert sum(r["total"] for r in env.json("stats", "--since", "1h")) == 0
    finally:
        env.cli("cancel", running)


def test_an_empty_list_at_a_terminal_hints_a_wider_window(env):
    primary, replica = pty.openpty()
    try:
        proc = subprocess.run([sys.executable, "-m", "jobctl", "list"], stdout=subprocess.PIPE,
                              stderr=replica, text=True, timeout=60)
        os.close(replica)
        replica = -1
        said = os.read(primary, 4096).decode()
    finally:
        os.close(primary)
        if replica >= 0:
            os.close(replica)
    assert proc.returncode == 0 and "try --since 7d" in said and said.startswith("jobctl: no jobs since")
    quiet = env.sh("list")  # not a terminal: nothing on stderr, for scripts
    assert quiet.returncode == 0 and quiet.stderr == ""


# -- the seed's view, procedure and queries --------------------------------------------

VIEW_COLUMNS = ["job_id", "status", "procedure_name", "start_time", "end_time", "duration",
                "elapsed_s", "progress", "attempt", "max_attempts", "worker_host", "worker_pid",
                "heartbeat_at", "submitted_by", "result", "error_msg", "created_at"]


def columns_of(env, sql: str) -> list[str]:
    backend = get_backend(parse_dsn(env.dsn))
    conn = backend.connect()
    try:
        cur = backend.execute(conn, sql)
        cur.fetchall()
        return [d[0].lower() for d in cur.description]
    finally:
        conn.close()


def test_the_seeds_four_queries_give_what_jobctl_shows(env):
    if env.backend == "oracle":
        pytest.skip("the Oracle spelling of these queries is in its own suite")
    done = env.submit(env.proc["suma"], "-p", "vA=1")
    failed = env.submit(env.proc["fail"], "-p", "p_message=boom")
    finished(env, done), finished(env, failed)

    # 1. the last day at a glance  <->  jobctl list
    recent = query(env, "SELECT * FROM V_ASYNC_JOBS_RECENT ORDER BY START_TIME DESC")
    assert columns_of(env, "SELECT * FROM V_ASYNC_JOBS_RECENT") == VIEW_COLUMNS
    assert [r[0] for r in recent] == [j["job_id"] for j in env.json("list")]

    # 2. one job by id  <->  jobctl status ID
    row = query(env, "SELECT STATUS, PROGRESS, RESULT, ERROR_MSG FROM ASYNC_JOBS "
                     f"WHERE JOB_ID = '{done}'")
    shown = env.json("status", done)
    assert row[0][0] == shown["status"] == "completed"
    assert json.loads(row[0][2]) == shown["result"] == {"vresult": 1}

    # 3. per-procedure counts  <->  jobctl stats --since all
    counts = query(env, "SELECT PROCEDURE_NAME, STATUS, COUNT(*) FROM ASYNC_JOBS "
                        "GROUP BY PROCEDURE_NAME, STATUS ORDER BY PROCEDURE_NAME, STATUS")
    stats = {r["procedure"]: r for r in env.json("stats", "--since", "all")}
    assert [(p, s, int(n)) for p, s, n in counts] == sorted(
        (p, s, r[s]) for p, r in stats.items() for s in ("completed", "failed") if r[s])


def test_cleanup_old_async_jobs_procedure_deletes_old_finished_jobs_only(env):
    if env.backend != "postgresql":
        pytest.skip("CLEANUP_OLD_ASYNC_JOBS is a stored procedure: PostgreSQL here, Oracle in its suite")
    old = "CURRENT_TIMESTAMP - INTERVAL '30' DAY"
    for i, status in enumerate(("completed", "failed", "running", "queued")):
        env.sql(f"INSERT INTO ASYNC_JOBS (job_id, status, procedure_name, start_time) "
                f"VALUES ('{i}{'0' * 31}', '{status}', 'OLD', {old})")
    recent = env.submit(env.proc["suma"], "-p", "vA=1")
    finished(env, recent)
    # 4. the seed's nightly cleanup, verbatim, at top level as psql runs it
    query(env, "CALL CLEANUP_OLD_ASYNC_JOBS(7)", autocommit=True)
    left = sorted((r["job_id"], r["status"]) for r in env.rows())
    assert left == sorted([("2" + "0" * 31, "running"), ("3" + "0" * 31, "queued"),
                           (recent, "completed")])


# -- an original-shaped ASYNC_JOBS -------------------------------------------------------

SEED_TABLE = """CREATE TABLE ASYNC_JOBS (
    JOB_ID VARCHAR(32) PRIMARY KEY, STATUS VARCHAR(20) NOT NULL,
    PROCEDURE_NAME VARCHAR(200) NOT NULL, START_TIME TIMESTAMP NOT NULL, END_TIME TIMESTAMP,
    DURATION VARCHAR(50), RESULT TEXT, ERROR_MSG TEXT, PROGRESS NUMERIC DEFAULT 0,
    CREATED_AT TIMESTAMP DEFAULT CURRENT_TIMESTAMP)"""


def test_an_original_table_says_run_db_init_then_upgrades_with_durations(env, empty_dsn):
    env.dsn = empty_dsn
    env.sql(SEED_TABLE)
    env.sql("INSERT INTO ASYNC_JOBS (JOB_ID, STATUS, PROCEDURE_NAME, START_TIME, END_TIME, DURATION) "
            "VALUES ('0123456789abcdef0123456789abcdef', 'completed', 'NIGHTLY', "
            "'2026-11-27 10:00:00', '2026-11-27 10:01:30.25', '1m30.25s')")
    missing = len(COLUMNS) - 10
    for args in (["list"], ["status", "0123"], ["stats"], ["cleanup", "--days", "7"],
                 ["submit", env.proc["suma"], "-p", "vA=1"], ["list", "--status", "running"]):
        result = env.cli("--dsn", empty_dsn, *args)
        assert result.exit_code == 4, (args, result.stderr)
        assert result.stderr == (f"jobctl: error: run jobctl db init to upgrade ASYNC_JOBS "
                                 f"({missing} columns missing)\n"), args
    assert len(env.rows()) == 1  # the refused submit wrote nothing

    assert env.cli("--dsn", empty_dsn, "db", "init").exit_code == 0
    old = env.json("--dsn", empty_dsn, "status", "0123")
    assert old["procedure_name"] == "NIGHTLY" and old["duration"] == "1m30.25s"
    assert old["elapsed_s"] == 90.25
    stats = env.json("--dsn", empty_dsn, "stats", "--since", "all")
    assert [(r["procedure"], r["avg_s"], r["max_s"]) for r in stats] == [("NIGHTLY", 90.25, 90.25)]
    view = query(env, "SELECT * FROM V_ASYNC_JOBS_RECENT ORDER BY START_TIME DESC")
    assert view == []  # the seed's row is older than a day; the view exists now
