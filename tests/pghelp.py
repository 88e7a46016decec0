"""What the live-PostgreSQL test files share: jobctl isolated from the
user's configuration with fast timings, SQL on the test database, and the
CLI driven in-process (CliRunner) against a DSN."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def isolate(mp: pytest.MonkeyPatch, tmp: Path, *, lost_after: str) -> None:
    """No user config, profile, password or modules; private XDG dirs;
    short timings; real subprocesses (and the workers they spawn) run this
    checkout's code."""
    for var in ("JOBCTL_DSN", "JOBCTL_PROFILE", "JOBCTL_PASSWORD", "JOBCTL_MODULES"):
        mp.delenv(var, raising=False)
    mp.setenv("XDG_CONFIG_HOME", str(tmp / "config"))
    mp.setenv("XDG_STATE_HOME", str(tmp / "state"))
    mp.setenv("XDG_DATA_HOME", str(tmp / "data"))
    for key, value in {"JOBCTL_HEARTBEAT": "0.2", "JOBCTL_LOST_AFTER": lost_after,
                       "JOBCTL_POLL": "0.1", "JOBCTL_RETRY_BACKOFF": "0.1"}.items():
        mp.setenv(key, value)
    mp.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))


def run_sql(dsn: str, query: str, params=None) -> list[tuple]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def cli(dsn: str, *args: str):
    from typer.testing import CliRunner

    from jobctl.cli import app

    return CliRunner().invoke(app, ["--dsn", dsn, *args])


def submit(dsn: str, proc: str, *params: str, extra: tuple[str, ...] = ()) -> str:
    args = ["submit", proc, *extra]
    for p in params:
        args += ["-p", p]
    res = cli(dsn, *args)
    assert res.exit_code == 0, res.output + (res.stderr or "")
    job_id = res.stdout.strip()
    assert len(job_id) == 32, res.stdout
    return job_id


def status(dsn: str, job_id: str) -> dict:
    res = cli(dsn, "status", job_id, "--format", "json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    return data[0] if isinstance(data, list) else data


def wait_for(predicate, timeout: float = 15.0, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(step)
