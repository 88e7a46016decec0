"""Quiet when it worked, loud when misconfigured (issue 11): -q, `jobctl
config`, a missing default database, libpq and Oracle environment habits."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from jobctl.cli import app
from jobctl.config import parse_dsn

from conftest import FAST

#: what could choose a database behind a test's back
CHOOSERS = ("JOBCTL_DSN", "JOBCTL_PROFILE", "JOBCTL_PASSWORD", "PGHOST", "PGHOSTADDR", "PGDATABASE",
            "PGSERVICE", "PGPORT", "PGUSER", "PGPASSWORD", "TWO_TASK", "TNS_ADMIN")


def cli(*args: str, env: dict | None = None):
    return CliRunner().invoke(app, list(args), env=env)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A user with nothing configured: fresh HOME and XDG dirs, no DSN anywhere."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", *CHOOSERS):
        monkeypatch.delenv(name, raising=False)
    for key, value in FAST.items():
        monkeypatch.setenv(key, value)
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


def default_db(home: Path) -> Path:
    return home / ".local" / "share" / "jobctl" / "jobs.db"


def jobctl(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """A real process, with the test's environment plus `env`."""
    return subprocess.run([sys.executable, "-m", "jobctl", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, cwd="/")


def config(*args: str, env: dict | None = None) -> dict:
    result = cli(*args, "config", "--format", "json", env=env)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- -q/--quiet ---------------------------------------------------------------------

def test_quiet_silences_notices_and_summaries_but_not_errors(sqlite_env):
    env = sqlite_env
    # without -q these commands talk on stderr: the test can fail
    loud = env.cli("cleanup", "--days", "1")
    assert loud.exit_code == 0 and "deleted" in loud.stderr

    for args in (["-q", "cleanup", "--days", "1"], ["cleanup", "--days", "1", "-q"],
                 ["cleanup", "--quiet", "--days", "1"], ["db", "init", "-q"], ["-q", "db", "init"]):
        result = env.cli(*args)
        assert result.exit_code == 0, result.stderr
        assert result.stderr == "", args
    assert env.cli("-q", "cleanup", "--days", "1").stdout == "0\n"  # data still on stdout

    done = env.cli("submit", env.proc["suma"], "-p", "vA=1", "-p", "vB=2", "--wait", "-q")
    assert done.exit_code == 0 and done.stderr == ""
    assert len(done.stdout.strip()) == 32

    slow = env.submit(env.proc["sleep"], "-p", "p_seconds=30", "--unique")
    again = env.cli("submit", env.proc["sleep"], "-p", "p_seconds=30", "--unique")
    assert "already queued or running" in again.stderr
    again = env.cli("submit", env.proc["sleep"], "-p", "p_seconds=30", "--unique", "-q")
    assert again.exit_code == 0 and again.stderr == "" and again.stdout.strip() == slow
    assert env.cli("cancel", slow, "-q").stderr == ""

    # something went wrong: said, -q or not
    missing = env.cli("status", "ffff0000", "-q")
    assert missing.exit_code == 3 and missing.stderr.startswith("jobctl: error: ")
    bad = env.cli("-q", "list", "--since", "never")
    assert bad.exit_code == 2 and "error" in bad.stderr
    failing = env.cli("submit", env.proc["fail"], "-p", "p_message=boom", "--wait", "-q")
    assert failing.exit_code == 1
    assert "boom" in failing.stderr and "failed" in failing.stderr


def test_quiet_holds_for_one_command_only(sqlite_env):
    assert sqlite_env.cli("-q", "cleanup", "--days", "1").stderr == ""
    assert "deleted" in sqlite_env.cli("cleanup", "--days", "1").stderr


def test_quiet_in_a_real_process_from_cron(sqlite_env):
    env = sqlite_env
    job_id = env.submit(env.proc["suma"], "-p", "vA=1", "-p", "vB=2")
    for args in (["-q", "wait", job_id, "--timeout", "60s"], ["cleanup", "--days", "7", "-q"]):
        result = env.sh(*args)
        assert result.returncode == 0, result.stderr
        assert result.stderr == "", args


def test_wait_prints_nothing_on_stdout_unless_a_format_is_asked(sqlite_env):
    env = sqlite_env
    job_id = env.submit(env.proc["suma"], "-p", "vA=1", "-p", "vB=2")
    plain = env.cli("wait", job_id, "--timeout", "60s")
    assert plain.exit_code == 0
    assert plain.stdout == ""
    assert f"{job_id[:8]} completed" in plain.stderr           # the outcome, as submit --wait says it
    assert env.cli("wait", job_id, "-q").stdout == ""
    asked = env.cli("wait", job_id, "--format", "json")
    assert json.loads(asked.stdout)["job_id"] == job_id  # one id, one object (as status)
    table = env.cli("wait", job_id, "-f", "table")
    assert job_id[:8] in table.stdout

    failed = env.submit(env.proc["fail"], "-p", "p_message=boom")
    result = env.cli("wait", failed, "-q")
    assert result.exit_code == 1 and result.stdout == ""
    assert "boom" in result.stderr


# -- jobctl config -------------------------------------------------------------------

def test_config_says_where_and_why_without_connecting(home):
    # the default, which config does not create
    info = config()
    assert info["backend"] == "sqlite" and info["dsn_source"] == "SQLite default"
    assert info["database"] == str(default_db(home)) and info["database_exists"] is False
    assert info["config_file"] == str(home / ".config" / "jobctl" / "config.toml")
    assert info["config_file_exists"] is False and info["profile"] is None
    assert not (home / ".local").exists()

    # a server that is not there: config still answers, at once, and masks the password
    dsn = f"postgresql://etl:s3cr%2Fet@127.0.0.1:{closed_port()}/warehouse"
    result = cli("config", env={"JOBCTL_DSN": dsn})
    assert result.exit_code == 0, result.stderr
    assert "s3cr" not in result.stdout + result.stderr
    assert "postgresql://etl:***@127.0.0.1" in result.stdout
    assert "JOBCTL_DSN" in result.stdout
    info = config(env={"JOBCTL_DSN": dsn})
    assert info["backend"] == "postgresql" and info["dsn_source"] == "JOBCTL_DSN"
    assert info["password_source"] == "dsn" and "s3cr" not in json.dumps(info)

    info = config(env={"JOBCTL_PASSWORD": "x", "JOBCTL_DSN": "postgresql://etl@db1/w"})
    assert info["password_source"] == "JOBCTL_PASSWORD"


def test_config_table_in_a_real_process(home):
    cfg = home / ".config" / "jobctl" / "config.toml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text('default_profile = "pg"\n[profiles.pg]\ndsn = "postgresql://etl@db1:5432/w"\n'
                   'password_file = "~/pw"\n')
    pw = home / "pw"
    pw.write_text("s3cret\n")
    pw.chmod(0o600)
    result = jobctl("-q", "config")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = dict(line.split(None, 1) if " " in line else (line, "") for line in
                 result.stdout.replace("dsn from", "dsn_from").replace("config file", "config_file")
                 .splitlines())
    assert lines["backend"] == "postgresql"
    # the DSN as written: its password is not in it, but in the file said below
    assert lines["dsn"] == "postgresql://etl@db1:5432/w"
    assert lines["dsn_from"] == "profile pg (default_profile)"
    assert lines["profile"] == "pg"
    assert lines["config_file"] == str(cfg)
    assert lines["password"] == "password_file ~/pw"
    assert "s3cret" not in result.stdout


def test_dsn_precedence(home, tmp_path):
    cfg = home / ".config" / "jobctl" / "config.toml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text('[profiles.p]\ndsn = "postgresql://p@profilehost/p"\n'
                   '[profiles.knobs]\nheartbeat_s = 1\n')
    flag, envvar = f"sqlite:///{tmp_path / 'flag.db'}", f"sqlite:///{tmp_path / 'env.db'}"
    libpq = {"PGHOST": "libpqhost", "PGDATABASE": "libpqdb"}
    every = {"JOBCTL_DSN": envvar, "JOBCTL_PROFILE": "p", **libpq, "TWO_TASK": "ALIAS"}

    info = config("--dsn", flag, env=every)
    assert (info["dsn_source"], info["database"]) == ("--dsn", str(tmp_path / "flag.db"))
    info = config(env=every)
    assert (info["dsn_source"], info["database"]) == ("JOBCTL_DSN", str(tmp_path / "env.db"))
    info = config(env={**every, "JOBCTL_DSN": None})
    assert info["dsn_source"] == "profile p (JOBCTL_PROFILE)" and info["dsn"] == "postgresql://p@profilehost/p"
    info = config("--profile", "p", env={**libpq})
    assert info["dsn_source"] == "profile p (--profile)"
    # a profile without a dsn (only knobs) chooses no database
    info = config("--profile", "knobs", env={**libpq})
    assert info["dsn_source"] == "libpq environment: PGHOST=libpqhost, PGDATABASE=libpqdb"
    assert info["backend"] == "postgresql" and info["profile"] == "knobs"
    info = config(env={**libpq, "TWO_TASK": "ALIAS"})
    assert info["backend"] == "postgresql"
    info = config(env={"PGSERVICE": "warehouse"})
    assert info["dsn_source"] == "libpq environment: PGSERVICE=warehouse"
    # PGUSER or PGPORT alone say who or which port, not which database
    assert config(env={"PGUSER": "etl", "PGPORT": "5433"})["dsn_source"] == "SQLite default"
    info = config(env={"TWO_TASK": "PRODDB", "TNS_ADMIN": str(tmp_path)})
    assert info["backend"] == "oracle" and info["dsn_source"] == "TWO_TASK=PRODDB (Oracle)"
    assert info["environment"]["TNS_ADMIN"] == str(tmp_path)
    assert any(str(tmp_path) in note for note in info["notes"])
    assert config()["dsn_source"] == "SQLite default"


def test_two_task_without_a_user_is_a_clear_one_line_error(home):
    pytest.importorskip("oracledb")
    result = jobctl("list", env={"TWO_TASK": "PRODDB"})
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "TWO_TASK=PRODDB" in result.stderr and "oracle://USER@PRODDB" in result.stderr


# -- a read on a default database that is not there -----------------------------------

READS = [["list"], ["stats"], ["cleanup", "--days", "7"], ["status", "abcd1234"],
         ["wait", "abcd1234"], ["logs", "abcd1234"], ["cancel", "abcd1234"]]


@pytest.mark.parametrize("args", READS, ids=lambda a: a[0])
def test_read_commands_refuse_a_missing_default_database(home, args):
    result = cli(*args)
    assert result.exit_code == 4, result.stderr
    assert result.stdout == ""
    assert result.stderr == (f"jobctl: error: no jobs database at {default_db(home)}; "
                             "set JOBCTL_DSN or run jobctl submit first\n")
    assert not (home / ".local").exists()


def test_cron_job_that_lost_its_dsn_fails_loudly_then_submit_creates_the_database(home):
    result = jobctl("-q", "list", "--since", "1h")
    assert result.returncode == 4
    assert "no jobs database at" in result.stderr
    assert not default_db(home).exists()

    submitted = jobctl("submit", "SUMA_SIMPLE", "-p", "vA=1", "-p", "vB=2", "--wait", "-q")
    assert submitted.returncode == 0, submitted.stderr
    assert default_db(home).exists()
    listed = jobctl("list", "-f", "json", "-q")
    assert listed.returncode == 0 and listed.stderr == ""
    assert [j["status"] for j in json.loads(listed.stdout)] == ["completed"]


def test_db_init_creates_the_default_database(home):
    assert cli("db", "init", "-q").exit_code == 0
    assert default_db(home).exists()
    assert cli("list").exit_code == 0


# -- PostgreSQL as psql would find it -------------------------------------------------

@pytest.fixture
def pg_parts(pg_database, home):
    s = parse_dsn(pg_database)
    return {"host": s.host, "port": str(s.port or 5432), "dbname": s.database, "user": s.user}


def test_libpq_environment_reaches_postgresql(pg_parts, home):
    libpq = {"PGHOST": pg_parts["host"], "PGPORT": pg_parts["port"],
             "PGDATABASE": pg_parts["dbname"], "PGUSER": pg_parts["user"]}
    info = config(env=libpq)
    assert info["backend"] == "postgresql"
    assert info["dsn_source"].startswith(f"libpq environment: PGHOST={pg_parts['host']}")

    # the worker, started from the same environment, finds the same database
    submitted = jobctl("submit", "SUMA_SIMPLE", "-p", "vA=2", "-p", "vB=3", "--wait", env=libpq)
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    listed = jobctl("list", "--since", "1h", "-f", "json", env=libpq)
    assert listed.returncode == 0, listed.stderr
    assert job_id in [j["job_id"] for j in json.loads(listed.stdout)]
    assert not (home / ".local" / "share" / "jobctl").exists()   # not SQLite
    # a database that does not exist on that server: the server says so
    missing = jobctl("list", env={**libpq, "PGDATABASE": "jobctl_no_such_database"})
    assert missing.returncode == 4 and "jobctl_no_such_database" in missing.stderr


def test_libpq_keyword_string_dsn(pg_parts, home):
    keywords = (f"host={pg_parts['host']} port={pg_parts['port']} dbname={pg_parts['dbname']} "
                f"user={pg_parts['user']} application_name='jobctl test'")
    submitted = cli("--dsn", keywords, "submit", "SUMA_SIMPLE", "-p", "vA=2", "-p", "vB=3", "--wait")
    assert submitted.exit_code == 0, submitted.stderr
    shown = cli("status", submitted.stdout.strip(), "-f", "json", env={"JOBCTL_DSN": keywords})
    assert json.loads(shown.stdout)["result"] == {"vresult": 5}
    info = config("--dsn", keywords)
    assert info["backend"] == "postgresql" and info["database"] == pg_parts["dbname"]

    # its password is masked everywhere: config, and the error of a refused connection
    secret = f"host=127.0.0.1 port={closed_port()} dbname=x user=etl password='s3 cr\\'et'"
    info = config("--dsn", secret)
    assert "s3" not in json.dumps(info) and info["dsn"].endswith("password=***")
    refused = cli("--dsn", secret, "list")
    assert refused.exit_code == 4
    assert "s3" not in refused.stderr and "127.0.0.1" in refused.stderr
    bad = cli("--dsn", "host=db1 password=s3cret dbname='x", "config")
    assert bad.exit_code == 2 and "s3cret" not in bad.stderr and "unterminated" in bad.stderr


def test_a_relative_sqlite_dsn_reaches_the_same_file_from_the_detached_worker(home):
    """`sqlite:///jobs.db` is relative to where jobctl runs; the worker runs in /
    and must still find that file (found by running the docs' Python example)."""
    where = home / "work dir"
    where.mkdir()
    # a DSN's file is created only by db init (a typo must not make a new one)
    subprocess.run([sys.executable, "-m", "jobctl", "--dsn", "sqlite:///jobs.db", "db", "init"],
                   check=True, capture_output=True, timeout=60, cwd=where)
    result = subprocess.run([sys.executable, "-m", "jobctl", "--dsn", "sqlite:///jobs.db", "submit",
                             "SUMA_SIMPLE", "-p", "vA=4", "--wait"], capture_output=True, text=True,
                            timeout=60, cwd=where)
    assert result.returncode == 0, result.stderr
    assert (where / "jobs.db").exists()
    assert parse_dsn(parse_dsn("sqlite:///jobs.db?x=1").to_payload()["dsn"]).database == \
        os.path.abspath("jobs.db")
