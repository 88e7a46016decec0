"""Fixtures for the behavioural suite.

Every test that takes `env` runs once per reachable backend: SQLite always;
PostgreSQL on a fresh database of the local server (required when CI=true);
Oracle when JOBCTL_TEST_ORACLE_DSN points at one. Nothing is mocked: tests
drive the real CLI and real detached workers against real databases.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from typer.testing import CliRunner

from jobctl.backends import get_backend
from jobctl.cli import app
from jobctl.config import parse_dsn

IN_CI = os.environ.get("CI") == "true"
PG_ADMIN_DSN = os.environ.get("JOBCTL_TEST_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/test")
ORACLE_DSN = os.environ.get("JOBCTL_TEST_ORACLE_DSN")

# short timings so lost detection, cancel and polling take seconds, not minutes
FAST = {"JOBCTL_HEARTBEAT": "0.2", "JOBCTL_LOST_AFTER": "2", "JOBCTL_POLL": "0.1",
        "JOBCTL_RETRY_BACKOFF": "0.1"}


def _backend_available(name: str) -> bool:
    return importlib.util.find_spec(f"jobctl.backends.{name}") is not None


@pytest.fixture(scope="session")
def pg_database():
    """A throwaway PostgreSQL database for this test run, dropped afterwards."""
    if not _backend_available("postgresql"):
        pytest.skip("PostgreSQL backend not built yet")
    try:
        import psycopg
    except ImportError:
        if IN_CI:
            pytest.fail("psycopg not installed but CI=true requires the PostgreSQL suite")
        pytest.skip("psycopg not installed")
    name = f"jobctl_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5)
    except psycopg.Error as exc:
        if IN_CI:
            pytest.fail(f"PostgreSQL not reachable at {PG_ADMIN_DSN} but CI=true: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_DSN}: {exc}")
    admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_DSN.rsplit("/", 1)[0]
    dsn = f"{base}/{name}"
    try:
        _cli_ok(["--dsn", dsn, "db", "init", "--examples"])
        yield dsn
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(scope="session")
def oracle_database():
    if not ORACLE_DSN:
        pytest.skip("Oracle: set JOBCTL_TEST_ORACLE_DSN=oracle://user@host:port/service "
                    "(and JOBCTL_PASSWORD) to run the suite against a real Oracle")
    if not _backend_available("oracle"):
        pytest.skip("Oracle backend not built yet")
    dsn = ORACLE_DSN
    password = os.environ.get("JOBCTL_PASSWORD")
    if password is not None and parse_dsn(dsn).password is None:
        # _isolate() clears JOBCTL_PASSWORD for every test, so the secret
        # travels in the DSN (through JOBCTL_DSN, never argv of a worker)
        user, _, rest = dsn.split("://", 1)[1].partition("@")
        dsn = f"oracle://{user}:{quote(password, safe='')}@{rest}"
    _cli_ok(["--dsn", dsn, "db", "init", "--examples"])
    return dsn


def _cli_ok(args):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, f"jobctl {' '.join(args)} failed: {result.stderr}"


@dataclass
class Env:
    """One backend's database plus helpers to drive jobctl against it."""

    backend: str
    dsn: str
    tmp: Path

    def cli(self, *args: str, input: str | None = None):
        """In-process CLI run (stdout and stderr kept apart)."""
        return CliRunner().invoke(app, list(args), input=input)

    def json(self, *args: str):
        result = self.cli(*args, "--format", "json")
        assert result.exit_code == 0, result.stderr
        return json.loads(result.stdout)

    def sh(self, *args: str, timeout: float = 60, env: dict | None = None) -> subprocess.CompletedProcess:
        """`jobctl ...` as a user runs it: a real process."""
        return subprocess.run([sys.executable, "-m", "jobctl", *args], capture_output=True,
                              text=True, timeout=timeout, env={**os.environ, **(env or {})})

    def submit(self, *args: str) -> str:
        result = self.cli("submit", *args)
        assert result.exit_code == 0, result.stderr
        return result.stdout.strip()

    def status(self, job_id: str) -> dict:
        return self.json("status", job_id)

    def wait_for(self, job_id: str, predicate, timeout: float = 20.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            job = self.status(job_id)
            if predicate(job):
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} never reached the state: {job}")
            time.sleep(0.05)

    def rows(self, where: str = "1 = 1") -> list[dict]:
        """ASYNC_JOBS read straight from the database."""
        backend = get_backend(parse_dsn(self.dsn))
        conn = backend.connect()
        try:
            cur = backend.execute(conn, f"SELECT * FROM ASYNC_JOBS WHERE {where}")
            names = [d[0].lower() for d in cur.description]
            return [dict(zip(names, r)) for r in cur.fetchall()]
        finally:
            conn.close()

    def sql(self, statement: str) -> None:
        backend = get_backend(parse_dsn(self.dsn))
        conn = backend.connect()
        try:
            backend.execute(conn, statement)
            conn.commit()
        finally:
            conn.close()

    @property
    def proc(self) -> dict[str, str]:
        """Demo procedure names as each database spells them."""
        return {"suma": "SUMA_SIMPLE", "sleep": "DEMO_SLEEP", "fail": "DEMO_FAIL"}


def _isolate(monkeypatch, tmp: Path, dsn: str) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp / "data"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp / "state"))
    monkeypatch.setenv("JOBCTL_DSN", dsn)
    for key in ("JOBCTL_PROFILE", "JOBCTL_PASSWORD", "JOBCTL_MODULES", "NO_COLOR"):
        monkeypatch.delenv(key, raising=False)
    for key, value in FAST.items():
        monkeypatch.setenv(key, value)


@pytest.fixture(params=["sqlite", "postgresql", "oracle"])
def env(request, tmp_path, monkeypatch) -> Env:
    if request.param == "sqlite":
        dsn = f"sqlite:///{tmp_path / 'jobs.db'}"
    elif request.param == "postgresql":
        dsn = request.getfixturevalue("pg_database")
    else:
        dsn = request.getfixturevalue("oracle_database")
    _isolate(monkeypatch, tmp_path, dsn)
    e = Env(request.param, dsn, tmp_path)
    if request.param == "sqlite":
        _cli_ok(["db", "init"])
    else:
        e.sql("DELETE FROM ASYNC_JOBS")  # a clean table per test on the shared server database
        e.sql("DELETE FROM JOB_QUEUES")  # and no queue limit or pause left by another test
        e.sql("DELETE FROM JOB_WORKERS")  # nor a pool row that would keep submit from starting workers
    yield e


@pytest.fixture
def sqlite_env(tmp_path, monkeypatch) -> Env:
    dsn = f"sqlite:///{tmp_path / 'jobs.db'}"
    _isolate(monkeypatch, tmp_path, dsn)
    _cli_ok(["db", "init"])
    return Env("sqlite", dsn, tmp_path)


@pytest.fixture
def empty_dsn(env, tmp_path):
    """A second, empty database on the same backend (no ASYNC_JOBS yet)."""
    if env.backend == "sqlite":
        import sqlite3

        path = tmp_path / "empty.db"
        sqlite3.connect(path).execute("CREATE TABLE unrelated (x INTEGER)").connection.commit()
        yield f"sqlite:///{path}"
    elif env.backend == "postgresql":
        import psycopg

        name = "jobctl_empty_" + uuid.uuid4().hex[:10]
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield PG_ADMIN_DSN.rsplit("/", 1)[0] + "/" + name
        finally:
            with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    else:
        pytest.skip("needs a second, empty Oracle schema")
