"""Bad input: one line on stderr, the documented exit code, nothing written."""

from __future__ import annotations

import socket
import time

import pytest


def assert_one_line_error(result, code: int, *needles: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("jobctl: error: "), lines[0]
    for needle in needles:
        assert needle.lower() in lines[0].lower(), lines[0]
    assert result.stdout == ""


@pytest.fixture
def one_job(env):
    job_id = env.submit(env.proc["suma"], "-p", "vA=1")
    env.wait_for(job_id, lambda j: j["status"] == "completed")
    return job_id


@pytest.mark.parametrize("args, code, needles", [
    (["submit", "NO_SUCH_PROC"], 3, ["no_such_proc", "not found"]),
    (["submit", "X; DROP TABLE ASYNC_JOBS"], 2, ["invalid procedure name"]),
    (["submit", "SUMA_SIMPLE'--"], 2, ["invalid procedure name"]),
    (["submit", "SUMA_SIMPLE", "--param", "vA"], 2, ["NAME=VALUE"]),
    (["submit", "SUMA_SIMPLE", "--param", "=10"], 2, ["NAME=VALUE"]),
    (["submit", "SUMA_SIMPLE", "--param", "vA=ten"], 2, ["vA", "not a number"]),
    (["submit", "SUMA_SIMPLE", "--param", "vA=1", "--param", "vZ=2"], 2, ["vZ"]),
    (["submit", "SUMA_SIMPLE", "--param", "vB=1"], 2, ["missing", "vA"]),
    (["submit", "SUMA_SIMPLE", "--param", "vA=1", "--param", "vResult=3"], 2, ["vResult", "OUT"]),
    (["submit", "SUMA_SIMPLE", "--params", "{not json"], 2, ["invalid JSON"]),
    (["submit", "SUMA_SIMPLE", "--params", "[1, 2]"], 2, ["JSON object"]),
    (["submit", "SUMA_SIMPLE", "--params", '{"vA": true}'], 2, ["vA"]),
    (["submit", "SUMA_SIMPLE", "--params", "@/nonexistent/params.json"], 2, ["cannot read"]),
    (["submit", "SUMA_SIMPLE", "-p", "vA=1", "--timeout", "soon"], 2, ["--timeout"]),
    (["submit", "SUMA_SIMPLE", "-p", "vA=1", "--retries", "-1"], 2, ["retries"]),
    (["submit", "SUMA_SIMPLE", "-p", "vA=1", "--bogus"], 2, ["bogus"]),
    (["list", "--since", "yesterday"], 2, ["--since"]),
    (["list", "--status", "sleeping"], 2, ["unknown status"]),
    (["list", "--limit", "0"], 2, ["limit"]),
    (["list", "--format", "xml"], 2, ["format"]),
    (["list", "--procedure", "a b"], 2, ["invalid procedure name"]),
    (["stats", "--since", "-3d"], 2, ["--since"]),
    (["cleanup", "--days", "7", "--status", "running"], 2, ["never deletes running"]),
    (["cleanup", "--days", "-1"], 2, ["days"]),
    (["cleanup"], 2, ["--days"]),
    (["status", "zzzz"], 2, ["invalid job id"]),
    (["status", "abc"], 2, ["at least 4"]),
    (["status", "0123456789abcdef0123456789abcdef"], 3, ["no job"]),
    (["status", "ffff0"], 3, ["no job"]),
    (["wait", "ffff0"], 3, ["no job"]),
    (["cancel", "ffff0"], 3, ["no job"]),
    (["describe", "NO_SUCH_PROC"], 3, ["not found"]),
    (["describe", "1ABC"], 2, ["invalid procedure name"]),
    # input that overflows date arithmetic or a bind is input, not a database error
    (["list", "--since", "99999999d"], 2, ["--since"]),
    (["list", "--since", "1e300"], 2, ["--since"]),
    (["list", "--limit", "1" + "0" * 24], 2, ["--limit"]),
    (["stats", "--since", "99999999d"], 2, ["--since"]),
    (["submit", "SUMA_SIMPLE", "-p", "vA=1", "--timeout", "99999999d"], 2, ["--timeout"]),
    (["cleanup", "--days", "nan"], 2, ["--days"]),
    (["cleanup", "--days", "inf"], 2, ["--days"]),
    (["cleanup", "--days", "1e10"], 2, ["--days"]),
])
def test_bad_input_is_one_line_with_exit_code_and_writes_nothing(env, one_job, args, code, needles):
    before = env.rows()
    result = env.cli(*args)
    assert_one_line_error(result, code, *needles)
    assert env.rows() == before


def test_ambiguous_job_prefix_is_refused(env, one_job):
    prefix = one_job[:4]
    twin = prefix + "0" * 28 if one_job[4:] != "0" * 28 else prefix + "1" * 28
    env.sql("INSERT INTO ASYNC_JOBS (JOB_ID, STATUS, PROCEDURE_NAME, START_TIME, PROGRESS) "
            f"VALUES ('{twin}', 'completed', 'SUMA_SIMPLE', CURRENT_TIMESTAMP, 100)")
    result = env.cli("status", prefix)
    assert_one_line_error(result, 2, "ambiguous")
    assert env.status(one_job)["job_id"] == one_job  # the full id still works


def test_cancel_checks_every_id_before_writing(env):
    job_id = env.submit(env.proc["sleep"], "-p", "p_seconds=5")
    result = env.cli("cancel", job_id, "ffff0")
    assert_one_line_error(result, 3, "no job")
    assert env.rows()[0]["cancel_requested"] in (0, False, None)
    env.cli("cancel", job_id)


def test_missing_table_points_at_db_init(env, empty_dsn):
    for args in (["list"], ["submit", env.proc["suma"], "-p", "vA=1"], ["status", "abcd"]):
        result = env.cli("--dsn", empty_dsn, *args)
        assert_one_line_error(result, 4, "ASYNC_JOBS", "jobctl db init")


@pytest.mark.parametrize("make_path, needle", [
    (lambda tmp: tmp / "no" / "such" / "dir" / "jobs.db", "no jobs database at"),
    (lambda tmp: tmp, "cannot open database"),          # a directory
    (lambda tmp: (tmp / "junk.db").write_bytes(b"this is not sqlite" * 100) and tmp / "junk.db",
     "cannot open database"),
])
def test_unreadable_sqlite_path_is_a_database_error(sqlite_env, tmp_path, make_path, needle):
    path = make_path(tmp_path)
    result = sqlite_env.cli("--dsn", f"sqlite:///{path}", "list")
    assert_one_line_error(result, 4, needle)


def test_unreachable_server_fails_fast_with_exit_4(sqlite_env):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    result = sqlite_env.cli("--dsn", f"postgresql://nobody:s3cret@127.0.0.1:{port}/x", "list")
    assert_one_line_error(result, 4)
    assert "s3cret" not in result.stderr
    assert time.monotonic() - started < 5


def test_bad_dsn_and_unknown_profile_are_usage_errors(sqlite_env):
    assert_one_line_error(sqlite_env.cli("--dsn", "mysql://x@y/z", "list"), 2, "invalid DSN")
    assert_one_line_error(sqlite_env.cli("--profile", "nope", "list"), 2, "unknown profile")


@pytest.mark.parametrize("key, value", [("dsn", "42"), ("dsn", "3.5"), ("password_env", "7"),
                                        ("modules", '"procs.py"')])
def test_a_profile_value_of_the_wrong_type_is_a_usage_error(env, one_job, monkeypatch, key, value):
    cfg = env.tmp / "config" / "jobctl" / "config.toml"
    cfg.parent.mkdir(parents=True)
    dsn_line = "" if key == "dsn" else f'dsn = "{env.dsn}"\n'
    cfg.write_text(f"[profiles.t]\n{dsn_line}{key} = {value}\n")
    monkeypatch.delenv("JOBCTL_DSN")
    before = env.rows()
    for args in (["list"], ["submit", env.proc["suma"], "-p", "vA=1"]):
        assert_one_line_error(env.cli("--profile", "t", *args), 2, key)
    assert env.rows() == before
