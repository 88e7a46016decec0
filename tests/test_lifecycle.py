"""The walkthrough and the job lifecycle, on every reachable backend."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

FINISHED = {"completed", "failed", "cancelled", "timed_out", "lost"}


def finished(job):
    return job["status"] in FINISHED


def test_walkthrough_submit_status_wait_list_stats_cleanup(env):
    job_id = env.submit(env.proc["suma"], "--param", "vA=10")
    assert len(job_id) == 32 and all(c in "0123456789abcdef" for c in job_id)

    job = env.wait_for(job_id, finished)
    assert job["status"] == "completed"
    assert job["result"] == {"vresult": 10}
    assert job["params"] in ({"vA": 10}, {"va": 10}, {"VA": 10})
    assert job["progress"] == 100
    assert job["duration"] and job["elapsed_s"] is not None
    assert job["start_time"].endswith("+00:00")

    # a prefix of 4+ characters finds the same job
    assert env.status(job_id[:6])["job_id"] == job_id

    wait = env.cli("wait", job_id, "--format", "json")
    assert wait.exit_code == 0
    assert __import__("json").loads(wait.stdout)["status"] == "completed"  # one id: an object

    failing = env.submit(env.proc["fail"], "-p", "p_message=boom")
    result = env.cli("wait", failing)
    assert result.exit_code == 1
    job = env.status(failing)
    assert job["status"] == "failed" and "boom" in job["error_msg"]

    listed = env.json("list", "--since", "1h")
    assert [j["job_id"] for j in listed] == [failing, job_id]  # newest first
    assert [j["job_id"] for j in env.json("list", "--status", "failed")] == [failing]
    assert env.json("list", "--procedure", env.proc["suma"])[0]["job_id"] == job_id

    stats = {r["procedure"].upper(): r for r in env.json("stats", "--since", "7d")}
    suma = stats["SUMA_SIMPLE"]
    assert suma["total"] == 1 and suma["completed"] == 1 and suma["success_pct"] == 100.0
    assert suma["p50_s"] is not None and suma["p95_s"] >= suma["p50_s"]
    assert stats["DEMO_FAIL"]["failed"] == 1 and stats["DEMO_FAIL"]["success_pct"] == 0.0

    # cleanup: nothing is 7 days old yet; --days 0 takes every finished job
    assert env.json("cleanup", "--days", "7", "--dry-run")["deleted"] == 0
    assert env.json("cleanup", "--days", "0", "--dry-run") == {"deleted": 2, "marked_lost": 0, "dry_run": True}
    assert len(env.rows()) == 2
    plain = env.cli("cleanup", "--days", "0")
    assert plain.exit_code == 0 and plain.stdout.strip() == "2"
    assert env.rows() == []


def test_demo_sleep_reports_progress_and_output_while_running(env):
    job_id = env.submit(env.proc["sleep"], "-p", "p_seconds=3")
    job = env.wait_for(job_id, lambda j: j["status"] == "running" and 0 < j["progress"] < 100)
    assert job["worker_pid"] and job["heartbeat_at"]
    assert [j["job_id"] for j in env.json("list", "--status", "running", "--since", "1h")] == [job_id]
    job = env.wait_for(job_id, finished)
    assert job["status"] == "completed" and job["progress"] == 100
    assert job["output"] and "3" in job["output"].splitlines()[-1]


def test_wait_exit_codes_and_timeout(env):
    slow = env.submit(env.proc["sleep"], "-p", "p_seconds=30")
    result = env.cli("wait", slow, "--timeout", "0.5s")
    assert result.exit_code == 5
    assert "still" in result.stderr
    # wait gave up while the job went on: that, not a wall-clock bound, is the point
    assert env.status(slow)["status"] in ("queued", "running")
    assert env.cli("cancel", slow).exit_code == 0
    quick = env.submit(env.proc["sleep"], "-p", "p_seconds=1")
    result = env.cli("wait", quick, "--timeout", "60s")
    assert result.exit_code == 0


def test_submit_wait_prints_only_the_id_and_exits_by_outcome(env):
    ok = env.cli("submit", env.proc["suma"], "-p", "vA=1", "-p", "vB=2", "--wait")
    assert ok.exit_code == 0
    job_id = ok.stdout.strip()
    assert len(job_id) == 32
    assert env.status(job_id)["result"] == {"vresult": 3}
    bad = env.cli("submit", env.proc["fail"], "--wait")
    assert bad.exit_code == 1
    assert env.status(bad.stdout.strip())["status"] == "failed"


def test_cancel_interrupts_running_procedure(env):
    job_id = env.submit(env.proc["sleep"], "-p", "p_seconds=30")
    env.wait_for(job_id, lambda j: j["status"] == "running")
    started = time.monotonic()
    result = env.cli("cancel", job_id, "--format", "json")
    assert result.exit_code == 0
    job = env.wait_for(job_id, finished, timeout=10)
    assert job["status"] == "cancelled"
    assert time.monotonic() - started < 5
    assert env.cli("wait", job_id).exit_code == 1
    # cancelling again is harmless and says so
    again = env.cli("cancel", job_id)
    assert again.exit_code == 0 and "nothing to cancel" in again.stderr


def test_timeout_ends_job_as_timed_out(env):
    job_id = env.submit(env.proc["sleep"], "-p", "p_seconds=10", "--timeout", "2s")
    job = env.wait_for(job_id, finished, timeout=15)
    assert job["status"] == "timed_out"
    assert 1.5 <= job["elapsed_s"] < 9.5
    assert "timed out" in job["error_msg"]


def test_retries_rerun_a_failing_procedure_then_fail(env):
    job_id = env.submit(env.proc["fail"], "-p", "p_message=flaky", "--retries", "2")
    job = env.wait_for(job_id, finished)
    assert job["status"] == "failed"
    assert job["attempt"] == 3 and job["max_attempts"] == 3
    assert "flaky" in job["error_msg"]


def test_job_survives_the_submitting_process_and_returns_at_once(env):
    started = time.monotonic()
    out = subprocess.run(
        ["bash", "-c", f'id=$("{sys.executable}" -m jobctl submit {env.proc["sleep"]} -p p_seconds=4); echo "$id"'],
        capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - started
    assert out.returncode == 0, out.stderr
    job_id = out.stdout.strip()
    # $(...) came back while the 4 s job still runs: the worker does not hold
    # stdout (a generous bound: shared CI machines can be many times slower)
    assert env.status(job_id)["status"] in ("queued", "running"), \
        f"$(jobctl submit) took {elapsed:.2f}s: the worker must not hold stdout"
    # the submitting shell is gone; the worker finishes on its own
    job = env.wait_for(job_id, finished, timeout=30)
    assert job["status"] == "completed"
    assert job["worker_pid"] != os.getpid()


def test_killed_worker_is_shown_lost_then_written_lost_by_cleanup(env):
    job_id = env.sh("submit", env.proc["sleep"], "-p", "p_seconds=60").stdout.strip()
    job = env.wait_for(job_id, lambda j: j["status"] == "running" and j["worker_pid"])
    os.kill(job["worker_pid"], signal.SIGKILL)
    job = env.wait_for(job_id, lambda j: j["status"] == "lost", timeout=10)
    assert job["lost_detected"] is True
    # reading did not write: the row still says running
    assert env.rows()[0]["status"] == "running"
    assert [j["job_id"] for j in env.json("list", "--status", "lost")] == [job_id]
    assert env.json("list", "--status", "running") == []
    report = env.json("cleanup", "--days", "7")
    assert report["marked_lost"] == 1 and report["deleted"] == 0
    row = env.rows()[0]
    assert row["status"] == "lost" and "not re-run" in str(row["error_msg"])
    # never re-run on its own
    time.sleep(0.5)
    assert env.status(job_id)["status"] == "lost"


def test_sigterm_to_worker_is_recorded_as_cancelled(env):
    job_id = env.submit(env.proc["sleep"], "-p", "p_seconds=30")
    job = env.wait_for(job_id, lambda j: j["status"] == "running" and j["worker_pid"])
    os.kill(job["worker_pid"], signal.SIGTERM)
    job = env.wait_for(job_id, finished, timeout=10)
    assert job["status"] == "cancelled" and "SIGTERM" in job["error_msg"]


def test_cancel_queued_job_never_runs(env):
    # a job whose worker cannot claim it in time: insert through the API, cancel before spawn
    from jobctl.api import Jobctl
    from jobctl.config import resolve_settings
    from jobctl import detached

    api = Jobctl(resolve_settings())
    real_spawn = detached.spawn
    detached.spawn = lambda settings, job_id, token=None: 0  # hold the worker back
    try:
        job_id = api.submit(env.proc["suma"], {"vA": 1}).job_id
    finally:
        detached.spawn = real_spawn
        api.close()
    assert env.status(job_id)["status"] == "queued"
    result = env.cli("cancel", job_id, "--format", "json")
    assert result.exit_code == 0
    assert env.status(job_id)["status"] == "cancelled"
    # a worker that starts late finds nothing to claim
    real_spawn(resolve_settings(), job_id)
    time.sleep(1)
    assert env.status(job_id)["status"] == "cancelled"


def test_unique_submits_at_the_same_instant_create_one_job(env):
    args = [sys.executable, "-m", "jobctl", "submit", env.proc["sleep"], "-p", "p_seconds=3", "--unique"]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=30) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    ids = {o[0].strip() for o in outs}
    assert len(ids) == 1
    assert len(env.rows()) == 1
    # once it has finished, the same submit creates a new job
    env.wait_for(ids.pop(), finished)
    assert env.sh(*args[3:]).returncode == 0
    assert len(env.rows()) == 2


def test_fifty_jobs_from_ten_concurrent_shells_all_complete(env):
    script = f'for i in 1 2 3 4 5; do "{sys.executable}" -m jobctl submit {env.proc["suma"]} -p vA=$i || exit 1; done'
    procs = [subprocess.Popen(["bash", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(10)]
    ids = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        ids += out.split()
    assert len(set(ids)) == 50
    result = env.cli("wait", *ids, "--timeout", "120s", "--format", "json")
    assert result.exit_code == 0, result.stderr
    rows = env.rows()
    assert len(rows) == 50 and {r["status"] for r in rows} == {"completed"}


@pytest.mark.parametrize("source", ["JOBCTL_PASSWORD", "JOBCTL_DSN", "password_env", "PGPASSWORD"])
def test_password_reaches_the_worker_by_pipe_only(env, monkeypatch, source):
    if env.backend == "oracle":
        pytest.skip("the Oracle suite needs its real password in JOBCTL_PASSWORD")
    # each is ignored by sqlite and trust auth, and each must stay out of the worker
    if source == "JOBCTL_PASSWORD":
        monkeypatch.setenv("JOBCTL_PASSWORD", "sekret-pw-42")
    elif source == "PGPASSWORD":
        if env.backend != "postgresql":
            pytest.skip("libpq's own variable")
        monkeypatch.setenv("PGPASSWORD", "sekret-pw-42")
    elif source == "JOBCTL_DSN":
        if env.backend == "sqlite":
            pytest.skip("a sqlite:/// DSN has no place for a password")
        scheme, rest = env.dsn.split("://", 1)
        user, host = rest.split("@", 1)
        monkeypatch.setenv("JOBCTL_DSN", f"{scheme}://{user}:sekret-pw-42@{host}")
    else:
        cfg = env.tmp / "config" / "jobctl" / "config.toml"
        cfg.parent.mkdir(parents=True)
        cfg.write_text(f'[profiles.t]\ndsn = "{env.dsn}"\npassword_env = "MY_DB_SECRET"\n')
        monkeypatch.delenv("JOBCTL_DSN")
        monkeypatch.setenv("JOBCTL_PROFILE", "t")
        monkeypatch.setenv("MY_DB_SECRET", "sekret-pw-42")
    job_id = env.sh("submit", env.proc["sleep"], "-p", "p_seconds=3").stdout.strip()
    job = env.wait_for(job_id, lambda j: j["status"] == "running" and j["worker_pid"])
    pid = job["worker_pid"]
    with open(f"/proc/{pid}/cmdline", "rb") as fh:
        assert b"sekret" not in fh.read()
    with open(f"/proc/{pid}/environ", "rb") as fh:
        assert b"sekret" not in fh.read()
    assert os.readlink(f"/proc/{pid}/cwd") == "/"  # nothing of the caller's directory
    job = env.wait_for(job_id, finished)
    assert job["status"] == "completed"
    assert "sekret" not in repr(env.rows())
    log = env.tmp / "state" / "jobctl" / "worker.log"
    assert not log.exists() or "sekret" not in log.read_text()


def test_ctrl_c_on_wait_exits_130_and_leaves_the_job_running(env):
    job_id = env.submit(env.proc["sleep"], "-p", "p_seconds=4")
    waiter = subprocess.Popen([sys.executable, "-m", "jobctl", "wait", job_id],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    env.wait_for(job_id, lambda j: j["status"] == "running")
    time.sleep(0.5)
    waiter.send_signal(signal.SIGINT)
    out, err = waiter.communicate(timeout=10)
    assert waiter.returncode == 130, err
    assert "keep running" in err
    assert env.status(job_id)["status"] == "running"
    assert env.wait_for(job_id, finished)["status"] == "completed"


def test_queued_job_whose_worker_never_started_is_lost_and_never_runs(env, monkeypatch):
    from jobctl import detached
    from jobctl.api import Jobctl
    from jobctl.config import resolve_settings

    monkeypatch.setenv("JOBCTL_START_TIMEOUT", "1")
    api = Jobctl(resolve_settings())
    real_spawn = detached.spawn
    monkeypatch.setattr(detached, "spawn", lambda settings, job_id, token=None: 0)  # the worker dies unborn
    job_id = api.submit(env.proc["suma"], {"vA": 1}).job_id
    api.close()
    monkeypatch.setattr(detached, "spawn", real_spawn)
    assert env.status(job_id)["status"] == "queued"
    time.sleep(1.3)
    job = env.status(job_id)
    assert job["status"] == "lost" and job["lost_detected"] is True
    assert env.rows()[0]["status"] == "queued"  # shown, not written
    assert env.json("stats")[0]["lost"] == 1
    assert env.json("cleanup", "--days", "7")["marked_lost"] == 1
    row = env.rows()[0]
    assert row["status"] == "lost" and "never started" in str(row["error_msg"])
    real_spawn(resolve_settings(), job_id)  # a worker that turns up late finds nothing to run
    time.sleep(1)
    assert env.status(job_id)["status"] == "lost"


def test_installed_console_script_runs_like_a_user_would(env):
    script = os.path.join(os.path.dirname(sys.executable), "jobctl")
    if not os.path.exists(script):
        pytest.skip("jobctl console script not installed next to this Python")
    version = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=30)
    assert version.returncode == 0 and version.stdout.startswith("jobctl ")
    out = subprocess.run([script, "submit", env.proc["suma"], "-p", "vA=2", "-p", "vB=3", "--wait"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert env.status(out.stdout.strip())["result"] == {"vresult": 5}
