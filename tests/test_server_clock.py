"""The lost rule reads the database server's clock, not the caller's (issue 16).

Hosts' clocks differ. On PostgreSQL and Oracle many hosts share ASYNC_JOBS,
so a heartbeat written with one host's clock and judged against another's
would call a live job lost (the worker's clock behind, or the reader's
ahead) or a dead one alive for as long as the clocks are apart. Heartbeats
are written with the server's time and judged against it, so none of that
depends on any host's clock.

A host's clock is faked where jobctl reads it (`jobctl.model.utcnow`, its
only clock for the rule) by a `sitecustomize` on PYTHONPATH, in the real
processes the test starts and in the detached workers they start in turn.
SQLite is one host, one clock: not run there.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import time

import pytest

from test_pool import Pool, pools  # noqa: F401 - the fixture

SKEW_VAR = "JOBCTL_TEST_CLOCK_SKEW_S"
SITECUSTOMIZE = f"""
import os
if os.environ.get({SKEW_VAR!r}):
    import datetime
    import jobctl.model as model
    _skew = datetime.timedelta(seconds=float(os.environ[{SKEW_VAR!r}]))
    _real = model.utcnow
    model.utcnow = lambda: _real() + _skew
"""
#: ten minutes: far beyond lost_after (2 s in the tests) and start_timeout
SKEW_S = 600


@pytest.fixture
def server(env, tmp_path, monkeypatch):
    if env.backend == "sqlite":
        pytest.skip("SQLite is one host: the lost rule reads its only clock")
    fake = tmp_path / "clock"
    fake.mkdir()
    (fake / "sitecustomize.py").write_text(SITECUSTOMIZE)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(fake), *filter(None, [os.environ.get("PYTHONPATH")])]))
    return env


def skewed(seconds: float) -> dict[str, str]:
    return {SKEW_VAR: f"{seconds:g}"}


def sh_json(env, *args: str, skew: float):
    done = env.sh(*args, "--format", "json", env=skewed(skew))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def status(env, job_id: str, skew: float = 0) -> dict:
    found = sh_json(env, "status", job_id, skew=skew)
    return found[0] if isinstance(found, list) else found


def running(env, job_id: str) -> dict:
    return env.wait_for(job_id, lambda j: j["status"] == "running", timeout=30)


def test_the_fake_clock_is_the_one_jobctl_reads(server):
    done = server.sh("submit", server.proc["suma"], "-p", "vA=1", "-p", "vB=2", env=skewed(-SKEW_S))
    assert done.returncode == 0, done.stderr
    row = server.rows(f"job_id = '{done.stdout.strip()}'")[0]
    # the submit stamped the job with its own clock (UTC, naive in the table)
    behind = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - row["created_at"]
    assert SKEW_S - 60 < behind.total_seconds() < SKEW_S + 60


def test_a_reader_whose_clock_is_ahead_does_not_call_a_live_job_lost(server):
    job_id = server.submit(server.proc["sleep"], "-p", "p_seconds=5")
    running(server, job_id)
    time.sleep(0.5)
    assert status(server, job_id, skew=SKEW_S)["status"] == "running"
    assert sh_json(server, "cleanup", "--days", "30", skew=SKEW_S)["marked_lost"] == 0
    assert server.wait_for(job_id, lambda j: j["status"] != "running",
                           timeout=30)["status"] == "completed"


def test_a_reader_whose_clock_is_behind_still_sees_a_frozen_worker_gone(server):
    job_id = server.submit(server.proc["sleep"], "-p", "p_seconds=60")
    pid = running(server, job_id)["worker_pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        frozen = time.monotonic()
        while (judged := status(server, job_id, skew=-SKEW_S))["status"] == "running":
            assert time.monotonic() - frozen < 30, judged  # lost_after is 2 s
            time.sleep(0.2)
        assert judged["status"] in ("lost", "orphaned")
    finally:
        os.kill(pid, signal.SIGKILL)
        os.kill(pid, signal.SIGCONT)


def test_a_pool_whose_clock_is_behind_is_alive_for_hosts_with_the_right_time(server, pools,
                                                                             monkeypatch):
    # a pool, not a daemon-free worker: that one starts with `python -I`,
    # which runs no sitecustomize, so its clock cannot be faked this way
    monkeypatch.setenv(SKEW_VAR, str(-SKEW_S))
    pool = Pool(server, "--queue", "clk", "--concurrency", "2")
    monkeypatch.delenv(SKEW_VAR)
    pools.append(pool)
    job_id = server.submit(server.proc["sleep"], "-p", "p_seconds=6", "--queue", "clk")
    assert running(server, job_id)["worker_pid"] == pool.pid
    time.sleep(3.5)  # beyond lost_after (2 s): its heartbeats must have counted
    assert server.status(job_id)["status"] == "running"
    assert pool.row()["state"] == "running"
    assert server.json("cleanup", "--days", "30")["marked_lost"] == 0
    assert pool.row() is not None  # not forgotten as gone either
    assert server.wait_for(job_id, lambda j: j["status"] != "running",
                           timeout=30)["status"] == "completed"
    # and submit still leaves the pool's queue to it
    job_id = server.submit(server.proc["suma"], "-p", "vA=1", "-p", "vB=1", "--queue", "clk")
    job = server.wait_for(job_id, lambda j: j["status"] == "completed", timeout=30)
    assert job["worker_pid"] == pool.pid
