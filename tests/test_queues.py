"""Queues, limits, dependencies, delayed start and --params-file, driven
through the real CLI and real detached workers (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

NOTE_RUN_SQLITE = textwrap.dedent('''
    import time
    from jobctl.local import procedure

    @procedure("NOTE_RUN")
    def note_run(ctx, n: int, seconds: float = 0):
        ctx.connection.execute("INSERT INTO runs (n) VALUES (?)", (n,))
        time.sleep(float(seconds))
''')


def note_run(env) -> str:
    """A procedure that records each run of job n in table RUNS, committed
    with the job's outcome: a job run twice leaves two rows."""
    if env.backend == "sqlite":
        env.sql("CREATE TABLE IF NOT EXISTS runs (n INTEGER)")
        path = env.tmp / "procs.py"
        path.write_text(NOTE_RUN_SQLITE)
        config = env.tmp / "config" / "jobctl" / "config.toml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(f'modules = ["{path}"]\n')
        return "NOTE_RUN"
    env.sql("CREATE TABLE IF NOT EXISTS runs (n integer)")
    env.sql("DELETE FROM runs")
    env.sql("""CREATE OR REPLACE PROCEDURE note_run(n integer, seconds numeric DEFAULT 0)
               LANGUAGE plpgsql AS $$
               BEGIN INSERT INTO runs (n) VALUES (n); PERFORM pg_sleep(seconds); END $$""")
    return "note_run"


def runs(env) -> list[int]:
    from jobctl.backends import get_backend
    from jobctl.config import parse_dsn

    backend = get_backend(parse_dsn(env.dsn))
    conn = backend.connect()
    try:
        return sorted(int(r[0]) for r in backend.execute(conn, "SELECT n FROM runs").fetchall())
    finally:
        conn.close()


def tagged_workers(tag: str) -> list[int]:
    """Worker processes (not their launchers, which exit at once) carrying `tag`."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                if f"JOBCTL_TEST_TAG={tag}".encode() not in fh.read():
                    continue
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if b"jobctl.runner" not in fh.read():
                    continue
            with open(f"/proc/{pid}/stat", "rb") as fh:
                state, _ppid, _pgrp, session = fh.read().rsplit(b")", 1)[1].split()[:4]
            # the launcher leads the new session and exits at once; its forked child works
            if state == b"Z" or int(session) == int(pid):
                continue
            found.append(int(pid))
        except (OSError, IndexError):
            pass
    return found


def submit_from_shells(proc: str, queue: str, shells: int, per_shell: int, *, seconds: float,
                       tag: str) -> list[subprocess.Popen]:
    """`shells` concurrent `jobctl submit --params-file -`, each of
    `per_shell` jobs numbered n = 0, 1, ... across them all; the workers they
    start carry `tag` in their environment."""
    procs = []
    for s in range(shells):
        lines = "".join(json.dumps({"n": s * per_shell + i, "seconds": seconds}) + "\n"
                        for i in range(per_shell))
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "jobctl", "submit", proc, "--params-file", "-", "--queue", queue],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "JOBCTL_TEST_TAG": tag}))
        procs[-1].stdin.write(lines)
        procs[-1].stdin.close()
    return procs


def count(env, where: str) -> int:
    return len(env.rows(where))


def wait_all_finished(env, where: str, total: int, timeout: float, on_sample=None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if on_sample:
            on_sample()
        if count(env, f"{where} AND status NOT IN ('queued', 'running')") == total:
            return
        assert time.monotonic() < deadline, env.json("queue", "list")
        time.sleep(0.05)


def test_limit_holds_across_concurrent_shells_and_every_job_runs_exactly_once(env):
    proc = note_run(env)
    assert env.cli("queue", "set", "lim", "--max-running", "3").exit_code == 0
    shells, per_shell = 4, 10
    tag = f"QTEST_{os.getpid()}_{time.monotonic_ns()}"  # inherited by the workers these shells start
    procs = submit_from_shells(proc, "lim", shells, per_shell, seconds=0.1, tag=tag)
    peak = [0]
    peak_workers = [0]

    def sample():
        peak[0] = max(peak[0], count(env, "queue = 'lim' AND status = 'running'"))
        peak_workers[0] = max(peak_workers[0], len(tagged_workers(tag)))

    # sampled from the first submit on: on a loaded machine the shells may
    # take longer than the jobs, which then all ran before sampling began
    deadline = time.monotonic() + 60
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        sample()
        time.sleep(0.05)
    ids = []
    for p in procs:
        assert p.wait(timeout=60) == 0, p.stderr.read()
        ids += p.stdout.read().split()
    assert len(set(ids)) == shells * per_shell
    wait_all_finished(env, "queue = 'lim'", shells * per_shell, timeout=120, on_sample=sample)
    rows = env.rows("queue = 'lim'")
    assert {r["status"] for r in rows} == {"completed"}, [r["error_msg"] for r in rows]
    assert 1 <= peak[0] <= 3, peak[0]  # the limit: never a fourth job running
    # one worker per slot, not per job. A draining worker whose slot a submit
    # took between its outcome and its next claim finds no slot and exits:
    # for that moment one more process is alive than slots (none of it runs
    # a job, as the running-row peak above shows); never two more.
    assert 1 <= peak_workers[0] <= 3 + 1, peak_workers[0]
    assert runs(env) == list(range(shells * per_shell))  # each job ran once, none twice


def test_pause_holds_jobs_and_says_so_until_resume(env):
    assert env.cli("queue", "set", "night", "--max-running", "4").exit_code == 0
    assert env.json("queue", "pause", "night")["paused"] is True
    job_id = env.submit(env.proc["suma"], "-p", "vA=1", "-p", "vB=2", "--queue", "night")
    time.sleep(0.5)
    job = env.status(job_id)
    assert job["status"] == "queued" and "paused" in job["waiting_for"]
    assert job["queue"] == "night"
    listed = env.json("list", "--queue", "night")
    assert [j["job_id"] for j in listed] == [job_id] and "paused" in listed[0]["waiting_for"]
    assert env.json("list", "--queue", "other") == []
    queues = {q["name"]: q for q in env.json("queue", "list")}
    assert queues["night"] == {"name": "night", "limit": 4, "queued": 1, "running": 0, "paused": True}
    assert env.json("queue", "resume", "night")["paused"] is False
    done = env.wait_for(job_id, lambda j: j["status"] == "completed")
    assert done["result"] == {"vresult": 3}


def test_no_free_slot_is_the_reason_shown_and_priority_orders_the_claims(env):
    env.cli("queue", "set", "one", "--max-running", "1")
    first = env.submit(env.proc["sleep"], "-p", "p_seconds=1.5", "--queue", "one")
    low = env.submit(env.proc["suma"], "-p", "vA=1", "--queue", "one")
    high = env.submit(env.proc["suma"], "-p", "vA=2", "--queue", "one", "--priority", "5")
    waiting = env.status(low)
    assert waiting["status"] == "queued"
    assert "no free slot: 1 running of limit 1 in queue one" in waiting["waiting_for"]
    for job_id in (first, low, high):
        env.wait_for(job_id, lambda j: j["status"] == "completed", timeout=30)
    assert env.status(high)["start_time"] < env.status(low)["start_time"]


def test_dependencies_run_in_order(env):
    first = env.submit(env.proc["sleep"], "-p", "p_seconds=1")
    second = env.submit(env.proc["suma"], "-p", "vA=1", "--after", first[:8])
    job = env.status(second)
    assert job["after_jobs"] == [first]
    assert job["status"] == "queued" and f"dependency {first}" in job["waiting_for"]
    done = env.wait_for(second, lambda j: j["status"] == "completed", timeout=30)
    assert done["start_time"] >= env.status(first)["end_time"]


def test_a_failed_dependency_cancels_the_chain_of_three(env):
    first = env.submit(env.proc["fail"])
    second = env.submit(env.proc["suma"], "-p", "vA=1", "--after", first)
    assert env.cli("queue", "set", "other", "--max-running", "4").exit_code == 0
    third = env.submit(env.proc["suma"], "-p", "vA=1", "--after", second, "--queue", "other")
    env.wait_for(first, lambda j: j["status"] == "failed")
    b = env.wait_for(second, lambda j: j["status"] == "cancelled")
    c = env.wait_for(third, lambda j: j["status"] == "cancelled")
    assert first in b["error_msg"] and "failed" in b["error_msg"]
    assert second in c["error_msg"] and "cancelled" in c["error_msg"]
    assert b["worker_host"] is None and c["worker_host"] is None  # never ran


def test_dependency_in_another_queue_starts_when_it_completes(env):
    for queue in ("load", "report"):
        assert env.cli("queue", "set", queue, "--max-running", "4").exit_code == 0
    first = env.submit(env.proc["sleep"], "-p", "p_seconds=0.5", "--queue", "load")
    second = env.submit(env.proc["suma"], "-p", "vA=1", "--after", first, "--queue", "report")
    # nobody runs a jobctl command meanwhile: the worker of `load` starts `report`'s
    deadline = time.monotonic() + 30
    while env.rows(f"job_id = '{second}'")[0]["status"] != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_unknown_or_repeated_dependency_is_refused_and_writes_nothing(env):
    missing = env.cli("submit", env.proc["suma"], "-p", "vA=1", "--after", "abcdef12")
    assert missing.exit_code == 3 and "no job abcdef12" in missing.stderr
    assert env.rows() == []
    first = env.submit(env.proc["suma"], "-p", "vA=1")
    twice = env.cli("submit", env.proc["suma"], "-p", "vA=1", "--after", f"{first},{first[:6]}")
    assert twice.exit_code == 2 and "twice" in twice.stderr
    assert len(env.rows()) == 1


def test_at_in_the_past_runs_now_and_in_the_future_waits(env):
    past = (dt.datetime.now() - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    now_job = env.submit(env.proc["suma"], "-p", "vA=1", "--at", past)
    env.wait_for(now_job, lambda j: j["status"] == "completed")
    later = env.submit(env.proc["suma"], "-p", "vA=1", "--in", "2s")
    job = env.status(later)
    assert job["status"] == "queued" and job["waiting_for"].startswith("not before")
    not_before = dt.datetime.fromisoformat(job["not_before"])
    # no jobctl command runs meanwhile: the timer submit left starts the worker
    deadline = time.monotonic() + 30
    while env.rows(f"job_id = '{later}'")[0]["status"] != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert dt.datetime.fromisoformat(env.status(later)["start_time"]) >= not_before


def test_bad_at_is_a_usage_error(env):
    for args in (["--at", "25:00"], ["--at", "tomorrow"], ["--in", "soon"],
                 ["--at", "02:00", "--in", "1h"], ["--queue", "no spaces"]):
        result = env.cli("submit", env.proc["suma"], "-p", "vA=1", *args)
        assert result.exit_code == 2, (args, result.stderr)
        assert result.stderr.startswith("jobctl: error:") and result.stderr.count("\n") == 1
    assert env.rows() == []


def test_params_file_submits_all_lines_in_one_go(env):
    path = env.tmp / "batch.jsonl"
    path.write_text("".join(json.dumps({"vA": i, "vB": 1}) + "\n" for i in range(12)))
    result = env.cli("submit", env.proc["suma"], "--params-file", str(path), "--wait")
    assert result.exit_code == 0, result.stderr
    ids = result.stdout.split()
    assert len(ids) == 12
    results = sorted(env.status(i)["result"]["vresult"] for i in ids)
    assert results == [i + 1 for i in range(12)]


def test_params_file_with_a_bad_line_writes_nothing(env):
    path = env.tmp / "batch.jsonl"
    path.write_text('{"vA": 1}\n{"vA": 2}\n{"vA": "not a number"}\n{"vA": 4}\n')
    result = env.cli("submit", env.proc["suma"], "--params-file", str(path))
    assert result.exit_code == 2 and "line 3" in result.stderr, result.stderr
    assert result.stdout == "" and env.rows() == []
    result = env.cli("submit", env.proc["suma"], "--params-file", "-", input='{"vA": 1}\n[1]\n')
    assert result.exit_code == 2 and "line 2" in result.stderr
    assert env.rows() == []


def test_cleanup_heals_a_queue_whose_workers_were_killed(env):
    env.cli("queue", "set", "heal", "--max-running", "2")
    ids = [env.submit(env.proc["sleep"], "-p", "p_seconds=30", "--queue", "heal") for _ in range(2)]
    waiting = env.submit(env.proc["suma"], "-p", "vA=1", "--queue", "heal")
    rows = [env.wait_for(i, lambda j: j["status"] == "running") for i in ids]
    for row in rows:
        os.kill(row["worker_pid"], 9)
    if env.backend == "postgresql":
        # as when the host reboots: its connections go, and their sessions with them
        env.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
                "current_database() AND application_name LIKE 'jobctl%' AND pid <> pg_backend_pid()")
    time.sleep(0.3)
    assert env.rows(f"job_id = '{waiting}'")[0]["status"] == "queued"
    report = env.json("cleanup", "--days", "7")
    assert report["marked_lost"] == 2
    env.wait_for(waiting, lambda j: j["status"] == "completed", timeout=30)
    for i in ids:
        assert env.status(i)["status"] == "lost"


@pytest.mark.parametrize("limit", ["-1", "x"])
def test_queue_set_refuses_a_bad_limit(sqlite_env, limit):
    result = sqlite_env.cli("queue", "set", "q", "--max-running", limit)
    assert result.exit_code == 2


def test_a_job_waiting_for_its_turn_is_never_lost(env, monkeypatch):
    monkeypatch.setenv("JOBCTL_START_TIMEOUT", "1")
    env.cli("queue", "set", "slow", "--max-running", "4")
    env.cli("queue", "pause", "slow")
    job_id = env.submit(env.proc["suma"], "-p", "vA=1", "--queue", "slow")
    time.sleep(1.5)  # past start_timeout: it was never given a worker, so nothing is late
    assert env.status(job_id)["status"] == "queued"
    assert env.json("cleanup", "--days", "7")["marked_lost"] == 0
    assert env.rows()[0]["status"] == "queued"
    env.cli("queue", "resume", "slow")
    env.wait_for(job_id, lambda j: j["status"] == "completed")


def test_another_applications_queued_row_is_shown_but_never_run(env):
    env.sql("INSERT INTO ASYNC_JOBS (job_id, status, procedure_name, start_time) "
            f"VALUES ('{'e' * 32}', 'queued', 'SUMA_SIMPLE', CURRENT_TIMESTAMP)")
    mine = env.submit(env.proc["suma"], "-p", "vA=1")
    env.wait_for(mine, lambda j: j["status"] == "completed")
    other = env.status("e" * 32)
    assert other["status"] == "queued" and "not submitted by jobctl" in other["waiting_for"]
    assert env.rows(f"job_id = '{'e' * 32}'")[0]["worker_host"] is None


def test_a_reading_command_starts_a_worker_for_a_queue_with_none(env):
    env.cli("queue", "set", "orphan", "--max-running", "4")
    env.cli("queue", "pause", "orphan")
    job_id = env.submit(env.proc["suma"], "-p", "vA=1", "--queue", "orphan")
    # resumed behind jobctl's back (another tool, a restored backup): no worker was started
    env.sql("UPDATE JOB_QUEUES SET paused = 0 WHERE queue_name = 'orphan'")
    time.sleep(0.5)
    assert env.rows()[0]["status"] == "queued" and env.rows()[0]["claim_token"] is None
    result = env.cli("status", job_id, "--format", "json")  # finds the eligible job, the free slot, no live worker
    assert result.exit_code == 0 and result.stderr == "", result.stderr
    shown = json.loads(result.stdout)
    assert shown["status"] != "queued" or shown["waiting_for"].startswith("starting")
    env.wait_for(job_id, lambda j: j["status"] == "completed")
