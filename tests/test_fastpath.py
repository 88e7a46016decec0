"""The typer-free front door (jobctl/fastpath.py) against typer's (jobctl.cli).

Each command line runs twice as a real process: as users run it (`python -m
jobctl`: the fast path when it understands the line) and through jobctl.cli
directly (typer, always). stdout, stderr and the exit code must be the same,
for good input and bad; and the lines the fast path is meant to serve must
not import typer (checked with -X importtime, whose lines are set apart
before comparing).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from jobctl import fastpath
from jobctl.formats import Format

TYPER = [sys.executable, "-X", "importtime", "-c", "from jobctl.cli import run; run()"]
FAST = [sys.executable, "-X", "importtime", "-m", "jobctl"]


def _run(cmd: list[str], args: list[str], env: dict | None) -> tuple[str, str, int, set[str]]:
    result = subprocess.run(cmd + args, capture_output=True, text=True, timeout=60,
                            env={**os.environ, **(env or {})})
    lines = result.stderr.splitlines(keepends=True)
    imported = {line.rsplit("|", 1)[-1].strip() for line in lines if line.startswith("import time:")}
    stderr = "".join(line for line in lines if not line.startswith("import time:"))
    return result.stdout, stderr, result.returncode, imported


def both(*args: str, env: dict | None = None, fast: bool = True) -> tuple[str, str, int]:
    """Run `jobctl ARGS` both ways; assert they agree and that the fast path
    served it (fast=True) or handed it to typer (fast=False)."""
    out_f, err_f, code_f, imported = _run(FAST, list(args), env)
    out_t, err_t, code_t, _ = _run(TYPER, list(args), env)
    assert (out_f, err_f, code_f) == (out_t, err_t, code_t), args
    assert ("typer" not in imported) == fast, (
        f"jobctl {' '.join(args)}: expected the {'fast path' if fast else 'typer path'}")
    return out_f, err_f, code_f


@pytest.fixture
def jobs(sqlite_env):
    """A completed and a failed job (finished: their output does not change)."""
    done = sqlite_env.submit("SUMA_SIMPLE", "-p", "vA=10", "-p", "vB=5")
    failed = sqlite_env.submit("DEMO_FAIL", "-p", "p_message=boom")
    for job_id in (done, failed):
        sqlite_env.wait_for(job_id, lambda j: j["status"] in ("completed", "failed"))
    return sqlite_env, done, failed


def test_status_and_list_print_the_same_without_typer(jobs):
    env, done, failed = jobs
    cases = [
        ["status", done], ["status", done[:6]], ["status", done, failed],
        ["status", done, "-f", "json"], ["status", done, failed, "--format", "jsonl"],
        ["status", done, "--format=CSV"], ["status", failed, "-f", "tsv", "--no-headers"],
        ["status", done, "--columns", "id,status,procedure_name"], ["status", done, "-q"],
        ["-f", "json", "status", done], ["--debug", "status", done],
        ["list"], ["list", "--since", "all", "-f", "json"], ["list", "-s", "completed", "-s", "failed"],
        ["list", "--status", "failed,completed", "-n", "1"], ["list", "-P", "suma%", "-f", "csv"],
        ["list", "-Q", "default", "--limit=5", "--no-headers"], ["list", "--columns", "ID,STATUS"],
        ["list", "--queue", "nightly", "-f", "json"], ["-q", "list", "--since", "1h"],
    ]
    for args in cases:
        out, err, code = both(*args)
        assert code == 0 and out and err == "", args


def test_global_options_before_or_after_the_command(jobs, tmp_path):
    env, done, _ = jobs
    dsn = env.dsn
    (tmp_path / "config" / "jobctl").mkdir(parents=True, exist_ok=True)
    (tmp_path / "config" / "jobctl" / "config.toml").write_text(f'[profiles.here]\ndsn = "{dsn}"\n')
    without = {"JOBCTL_DSN": ""}
    for args in (["--dsn", dsn, "status", done], ["status", done, "--dsn", dsn],
                 ["list", f"--dsn={dsn}", "-f", "json"], ["--profile", "here", "list"],
                 ["status", done, "--profile=here", "-f", "json"]):
        out, _, code = both(*args, env=without)
        assert code == 0 and done[:8] in out, args


@pytest.mark.parametrize("args, exit_code", [
    (["status", "0123456789abcdef"], 3),                       # unknown id
    (["status", "zz"], 2),                                     # not an id
    (["status", "{done}", "--columns", "nosuch"], 2),          # bad column
    (["status", "{done}", "-f", "json", "--no-headers"], 2),   # no headers in json
    (["list", "--since", "yesterday"], 2),                     # bad duration
    (["list", "--since", ""], 2),
    (["list", "--dsn", "nosuch://x"], 2),                      # bad DSN
    (["--profile", "nosuch", "list"], 2),                      # unknown profile
])
def test_bad_input_fails_the_same_without_typer(jobs, args, exit_code):
    env, done, _ = jobs
    _, err, code = both(*[a.format(done=done) for a in args])
    assert code == exit_code and err.startswith("jobctl: error: ") and err.count("\n") == 1


def test_a_missing_database_fails_the_same_without_typer(sqlite_env, tmp_path):
    default = {"JOBCTL_DSN": "", "XDG_DATA_HOME": str(tmp_path / "nothing-here")}
    for args in (["status", "0123456789abcdef"], ["list"]):
        _, err, code = both(*args, env=default)
        assert code == 4 and "no jobs database" in err
    assert not (tmp_path / "nothing-here").exists()  # a reading command creates nothing
    _, err, code = both("list", "--dsn", f"sqlite:///{tmp_path / 'none' / 'x.db'}")
    assert code == 4 and err.startswith("jobctl: error: ")
    import sqlite3

    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).execute("CREATE TABLE unrelated (x INTEGER)").connection.commit()
    _, err, code = both("list", "--dsn", f"sqlite:///{empty}")
    assert code == 4 and "jobctl db init" in err


@pytest.mark.parametrize("args", [
    ["list", "-f", "xml"], ["list", "--format", ""], ["list", "-n", "0"], ["list", "-n", "abc"],
    ["list", "-n", "1000001"], ["status"], ["list", "extra"], ["status", "{done}", "--bogus"],
    ["status", "{done}", "-fjson"], ["status", "{done}", "--dsn"], ["list", "--no-headers=1"],
    ["-q", "-f", "json", "list"], ["status", "--", "{done}"], ["list", "-f", "json", "-f", "csv"],
    ["status", "{done}", "--watch"], ["list", "--help"], ["--version"], ["nosuch"], [],
])
def test_what_the_fast_path_does_not_take_typer_serves(jobs, args):
    env, done, _ = jobs
    both(*[a.format(done=done) for a in args], fast=False)


def test_help_is_typers_own_text(sqlite_env):
    from jobctl import helptext

    assert helptext.CLI_CRC32 == fastpath.cli_checksum(), \
        "jobctl.cli changed since jobctl/helptext.py was written: run `python -m jobctl.fastpath --write-help`"
    for flag in ("--help", "-h"):
        out, err, code = both(flag, env={"COLUMNS": "200"})
        assert code == 0 and err == "" and out.startswith("Usage: jobctl [OPTIONS] COMMAND")
    out, _, _ = both("--help", env={"COLUMNS": "60"}, fast=False)  # click fits it to the terminal
    assert max(len(line) for line in out.splitlines()) <= 58
    # typer words its completion options differently under this switch
    both("--help", env={"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}, fast=False)


def test_the_fast_path_options_are_the_ones_cli_declares():
    """The fast path's tables are generated from the typer app (jobctl.cli
    declares every option once): what helptext.py holds is what typer
    declares now, and every option the fast path serves is one of them."""
    from jobctl import helptext

    declared = fastpath.declared_options()
    assert {name: getattr(helptext, name) for name in declared} == declared, \
        "jobctl.cli changed since jobctl/helptext.py was written: run `python -m jobctl.fastpath --write-help`"
    assert list(declared["FORMATS"]) == [f.value for f in Format]
    assert {name for name, _ in declared["ROOT_OPTIONS"].values()} >= fastpath.SERVED_ROOT
    for command, served in fastpath.SERVED.items():
        table, takes_ids, defaults = declared["COMMANDS"][command]
        assert {name for name, _ in table.values()} >= served, command
        assert takes_ids == (command == "status")


def test_a_stale_table_sends_every_line_to_typer(jobs, monkeypatch):
    """jobctl.cli edited without --write-help: nothing is served from tables
    that may no longer say what jobctl.cli declares."""
    from jobctl import helptext

    env, done, _ = jobs
    monkeypatch.setattr(helptext, "CLI_CRC32", helptext.CLI_CRC32 ^ 1)
    assert fastpath.run(["status", done]) is None
    assert fastpath.run(["--help"]) is None
    monkeypatch.undo()
    assert fastpath.parse(["list", "-n", "5"], helptext)[2]["limit"] == 5
