"""Finding things: `procedures`, "did you mean", `resubmit`, `-h`, global
options after the command, and shell completion run as the shells run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal

import pytest
import sqlglot
from sqlglot import exp

from jobctl.backends import oracle as ob
from jobctl.cli import hoist_global_options

EXACT = "12345678901234567890.123456789012345678"  # 38 significant digits


def _names(env, *args) -> list[str]:
    return [p["procedure"].upper() for p in env.json("procedures", *args)]


def _one_error_line(result) -> str:
    assert result.stderr.startswith("jobctl: error: ") and result.stderr.count("\n") == 1, result.stderr
    return result.stderr


def _params(row) -> dict:
    value = row["params"]
    return value if isinstance(value, dict) else json.loads(value, parse_float=Decimal)


# -- jobctl procedures --------------------------------------------------------------

def test_procedures_lists_the_demo_procedures_with_their_signatures(env):
    procs = {p["procedure"].upper(): p for p in env.json("procedures")}
    assert {"SUMA_SIMPLE", "DEMO_SLEEP", "DEMO_FAIL"} <= set(procs)
    params = {p["name"].lower(): (p["mode"], p["defaulted"]) for p in procs["SUMA_SIMPLE"]["params"]}
    assert params == {"va": ("IN", False), "vb": ("IN", True), "vresult": ("OUT", False)}
    table = env.cli("procedures")
    assert table.exit_code == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["PROCEDURE", "PARAMETERS"]
    suma = next(line for line in lines if line.upper().startswith("SUMA_SIMPLE"))
    assert "[" in suma and "OUT" in suma  # vB has a default, vResult is OUT


def test_procedures_pattern_is_a_case_insensitive_glob_or_substring(env):
    assert _names(env, "suma*") == ["SUMA_SIMPLE"]
    assert _names(env, "SUMA%") == ["SUMA_SIMPLE"]
    assert sorted(_names(env, "demo")) == ["DEMO_FAIL", "DEMO_SLEEP"]  # no wildcard: contains
    assert _names(env, "demo_f?il") == ["DEMO_FAIL"]
    assert _names(env, "suma_x*") == []
    # `_` is itself, not LIKE's one character
    assert _names(env, "suma?simple") == ["SUMA_SIMPLE"] and _names(env, "sumaxsimple") == []


def test_procedures_csv_and_tsv_carry_the_one_line_parameters(env):
    tsv = env.cli("procedures", "suma*", "--format", "tsv")
    assert tsv.exit_code == 0, tsv.stderr
    head, row = tsv.stdout.splitlines()
    assert head == "procedure\tparameters"
    assert row.upper().startswith("SUMA_SIMPLE\t") and "OUT " in row
    bare = env.cli("procedures", "suma*", "--format", "csv", "--no-headers")
    assert bare.stdout.upper().startswith("SUMA_SIMPLE,")


def test_postgresql_procedures_shows_other_schemas_qualified_and_no_functions(env):
    if env.backend != "postgresql":
        pytest.skip("PostgreSQL catalog")
    env.sql("CREATE SCHEMA IF NOT EXISTS find_extra")
    env.sql("CREATE OR REPLACE PROCEDURE find_extra.find_elsewhere(p_n integer) "
            "LANGUAGE plpgsql AS $$ BEGIN NULL; END $$")
    env.sql("CREATE OR REPLACE FUNCTION find_not_a_procedure(p_n integer) RETURNS integer "
            "LANGUAGE sql AS $$ SELECT p_n $$")
    try:
        names = [p["procedure"] for p in env.json("procedures", "find")]
        assert names == ["find_extra.find_elsewhere"]
        described = env.json("describe", "find_extra.find_elsewhere")
        assert [p["name"] for p in described["params"]] == ["p_n"]
    finally:
        env.sql("DROP SCHEMA find_extra CASCADE")
        env.sql("DROP FUNCTION find_not_a_procedure(integer)")


def test_postgresql_procedures_leaves_out_what_the_role_may_not_execute(env):
    if env.backend != "postgresql":
        pytest.skip("roles and grants: PostgreSQL")
    import uuid
    from urllib.parse import urlsplit

    import psycopg

    role = f"jobctl_find_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect(env.dsn, autocommit=True)
    try:
        admin.execute(f"CREATE ROLE {role} LOGIN")
        admin.execute("CREATE PROCEDURE find_secret() LANGUAGE plpgsql AS $$ BEGIN NULL; END $$")
        admin.execute("REVOKE EXECUTE ON PROCEDURE find_secret() FROM PUBLIC")
        parts = urlsplit(env.dsn)
        dsn = parts._replace(netloc=f"{role}@{parts.netloc.rsplit('@', 1)[-1]}").geturl()
        as_role = [p["procedure"] for p in env.json("procedures", "--dsn", dsn)]
        assert "suma_simple" in as_role and "find_secret" not in as_role
        assert "find_secret" in [p["procedure"] for p in env.json("procedures", "find")]
        admin.execute(f"GRANT EXECUTE ON PROCEDURE find_secret() TO {role}")
        assert "find_secret" in [p["procedure"] for p in env.json("procedures", "--dsn", dsn)]
    finally:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                      (role,))
        admin.execute("DROP PROCEDURE IF EXISTS find_secret()")
        admin.execute(f"DROP ROLE IF EXISTS {role}")
        admin.close()


# -- did you mean -------------------------------------------------------------------

@pytest.mark.parametrize("command", [["submit", "SUMA_SIMPEL", "-p", "vA=1"], ["describe", "suma_simpel"]])
def test_unknown_procedure_suggests_the_closest_name(env, command):
    result = env.cli(*command)
    assert result.exit_code == 3
    line = _one_error_line(result)
    assert "not found" in line and "did you mean suma_simple?" in line.lower()
    assert env.rows() == []


def test_unknown_procedure_without_a_close_name_points_to_procedures(env):
    result = env.cli("submit", "NOTHING_LIKE_IT", "-p", "vA=1")
    assert result.exit_code == 3
    assert "did you mean" not in _one_error_line(result)
    assert "jobctl procedures" in result.stderr
    assert env.rows() == []


# -- resubmit ------------------------------------------------------------------------

def test_resubmit_runs_the_same_procedure_with_exact_parameters_and_overrides(env):
    first = env.submit("SUMA_SIMPLE", "-p", f"vA={EXACT}", "-p", "vB=2", "--timeout", "5m",
                       "--retries", "1")
    env.wait_for(first, lambda j: j["status"] == "completed")
    again = env.cli("resubmit", first[:8], "-p", "VB=0.5")
    assert again.exit_code == 0, again.stderr
    new_id = again.stdout.strip()
    assert len(new_id) == 32 and new_id != first
    done = env.wait_for(new_id, lambda j: j["status"] == "completed")
    assert done["procedure_name"].upper() == "SUMA_SIMPLE"
    row = env.rows(f"job_id = '{new_id}'")[0]
    assert {k.lower(): v for k, v in _params(row).items()} == {"va": Decimal(EXACT), "vb": Decimal("0.5")}
    assert Decimal(str(row["timeout_s"])) == 300 and int(row["max_attempts"]) == 2  # the original's
    result = env.sh("status", new_id, "--format", "json")
    assert json.loads(result.stdout, parse_float=Decimal)["result"]["vresult"] == \
        Decimal("12345678901234567890.623456789012345678")


def test_resubmit_waits_and_takes_new_limits(env):
    first = env.submit("SUMA_SIMPLE", "-p", "vA=1")
    env.wait_for(first, lambda j: j["status"] == "completed")
    result = env.cli("resubmit", first, "--wait", "--timeout", "1m", "--retries", "2")
    assert result.exit_code == 0, result.stderr
    new_id = result.stdout.strip()
    row = env.rows(f"job_id = '{new_id}'")[0]
    assert row["status"] == "completed" and Decimal(str(row["timeout_s"])) == 60
    assert int(row["max_attempts"]) == 3


@pytest.mark.parametrize("args, code", [
    (["-p", "vB=abc"], 2),     # same validation as submit
    (["-p", "nope=1"], 2),
    (["vB=3"], 2),             # a bare NAME=VALUE
])
def test_resubmit_refuses_bad_input_and_writes_nothing(env, args, code):
    first = env.submit("SUMA_SIMPLE", "-p", "vA=1")
    env.wait_for(first, lambda j: j["status"] == "completed")
    result = env.cli("resubmit", first, *args)
    assert result.exit_code == code
    _one_error_line(result)
    assert result.stdout == ""
    assert len(env.rows()) == 1


def test_resubmit_of_an_unknown_job_is_not_found(env):
    result = env.cli("resubmit", "abcdef12")
    assert result.exit_code == 3
    _one_error_line(result)


# -- parsing: -h, options after the command, parameters without -p ------------------

def test_bare_name_value_suggests_dash_p_and_writes_nothing(env):
    result = env.cli("submit", "SUMA_SIMPLE", "vA=1")
    assert result.exit_code == 2
    assert "-p vA=1" in _one_error_line(result)
    assert env.rows() == []


def test_dash_h_is_help_on_the_root_and_on_commands(sqlite_env):
    for args in (["-h"], ["list", "-h"], ["db", "init", "-h"], ["resubmit", "-h"]):
        result = sqlite_env.cli(*args)
        assert result.exit_code == 0, (args, result.stderr)
        assert result.stdout.startswith("Usage: ") and "Options" in result.stdout, args
    assert sqlite_env.cli("status", "-h").stdout == sqlite_env.cli("status", "--help").stdout


def test_global_options_are_accepted_after_the_command(env, monkeypatch, tmp_path):
    job_id = env.submit("SUMA_SIMPLE", "-p", "vA=1")
    monkeypatch.delenv("JOBCTL_DSN")
    result = env.cli("list", "--since", "all", "--dsn", env.dsn, "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert [j["job_id"] for j in json.loads(result.stdout)] == [job_id]
    early_format = env.cli("-f", "json", "status", job_id[:8], f"--dsn={env.dsn}")
    assert early_format.exit_code == 0, early_format.stderr
    assert json.loads(early_format.stdout)["job_id"] == job_id
    config = tmp_path / "config" / "jobctl" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f'[profiles.here]\ndsn = "{env.dsn}"\n')
    config.chmod(0o600)
    by_profile = env.cli("status", job_id, "--profile", "here", "--format", "json")
    assert by_profile.exit_code == 0, by_profile.stderr


def test_the_installed_command_runs_each_command_and_refuses_unknown_ones(sqlite_env):
    # a real process builds only the command it runs: every path still works
    job_id = sqlite_env.submit("SUMA_SIMPLE", "-p", "vA=1")
    listed = sqlite_env.sh("list", "--since", "all", "-f", "json", "--dsn", sqlite_env.dsn)
    assert listed.returncode == 0 and json.loads(listed.stdout)[0]["job_id"] == job_id
    assert sqlite_env.sh("--debug", "db", "init").returncode == 0
    assert sqlite_env.sh("-f", "json", "procedures", "suma").returncode == 0
    unknown = sqlite_env.sh("stauts", job_id)
    assert unknown.returncode == 2 and unknown.stderr.count("\n") == 1 and "stauts" in unknown.stderr
    root_help = sqlite_env.sh("-h")
    assert root_help.returncode == 0 and "resubmit" in root_help.stdout and "procedures" in root_help.stdout


def test_options_after_double_dash_are_not_moved():
    assert hoist_global_options(["list", "--dsn", "X", "-n", "3"]) == ["--dsn", "X", "list", "-n", "3"]
    assert hoist_global_options(["-f", "json", "list"]) == ["list", "-f", "json"]
    assert hoist_global_options(["submit", "P", "--", "--dsn", "X"]) == ["submit", "P", "--", "--dsn", "X"]
    assert hoist_global_options(["--version"]) == ["--version"]
    assert hoist_global_options(["list", "--dsn"]) == ["list", "--dsn"]  # Tab completes its value


def test_a_global_option_without_its_value_is_a_usage_error(sqlite_env):
    result = sqlite_env.cli("list", "--dsn")
    assert result.exit_code == 2 and "--dsn" in _one_error_line(result)


# -- shell completion, as the shells ask for it ----------------------------------------

def _complete(env, shell: str, words: str, *, importtime: bool = False) -> subprocess.CompletedProcess:
    extra = {"_JOBCTL_COMPLETE": f"complete_{shell}"}
    if shell == "bash":
        extra |= {"COMP_WORDS": words, "COMP_CWORD": str(len(words.split(" ")) - 1)}
    else:
        extra |= {"_TYPER_COMPLETE_ARGS": words}
        if shell == "fish":
            extra["_TYPER_COMPLETE_FISH_ACTION"] = "get-args"
    cmd = [sys.executable, *(["-X", "importtime"] if importtime else []), "-m", "jobctl"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                          env={**os.environ, **extra})


def test_bash_completes_commands_options_and_statuses(sqlite_env):
    assert _complete(sqlite_env, "bash", "jobctl re").stdout.split() == ["resubmit"]
    assert "procedures" in _complete(sqlite_env, "bash", "jobctl pro").stdout.split()
    assert "--since" in _complete(sqlite_env, "bash", "jobctl list --s").stdout.split()
    assert _complete(sqlite_env, "bash", "jobctl list --status fa").stdout.split() == ["failed"]
    assert _complete(sqlite_env, "bash", "jobctl list -s failed,ti").stdout.split() == ["failed,timed_out"]


def test_completion_offers_recent_job_ids_and_procedure_names(env):
    ids = [env.submit("SUMA_SIMPLE", "-p", f"vA={n}") for n in range(3)]
    for command in ("status", "wait", "cancel", "logs", "resubmit"):
        shown = _complete(env, "bash", f"jobctl {command} ").stdout.split()
        assert sorted(shown) == sorted(ids), command
    assert _complete(env, "bash", f"jobctl status {ids[1][:6]}").stdout.split() == [ids[1]]
    for command in ("submit", "describe"):
        shown = _complete(env, "bash", f"jobctl {command} suma").stdout.split()
        assert [s.upper() for s in shown] == ["SUMA_SIMPLE"], command
    zsh = _complete(env, "zsh", f"jobctl status {ids[0][:6]}").stdout
    assert ids[0] in zsh and "SUMA_SIMPLE" in zsh.upper()  # with the procedure as help
    fish = _complete(env, "fish", "jobctl describe dem").stdout.split("\n")
    assert sorted(line.split("\t")[0].upper() for line in fish if line) == ["DEMO_FAIL", "DEMO_SLEEP"]


def test_completion_of_a_dsn_given_after_the_command(env, monkeypatch):
    job_id = env.submit("SUMA_SIMPLE", "-p", "vA=1")
    monkeypatch.delenv("JOBCTL_DSN")
    shown = _complete(env, "bash", f"jobctl status --dsn {env.dsn} ").stdout.split()
    assert shown == [job_id]


def test_statuses_complete_without_touching_a_database_or_a_driver(env):
    result = _complete(env, "bash", "jobctl list --status ru", importtime=True)
    assert result.stdout.split() == ["running"]
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()}
    assert not {"psycopg", "oracledb", "sqlite3", "rich"} & imported


def test_completion_against_an_unreachable_database_offers_nothing_quietly(sqlite_env, tmp_path,
                                                                            monkeypatch):
    monkeypatch.setenv("JOBCTL_DSN", f"sqlite:///{tmp_path / 'absent' / 'none.db'}")
    result = _complete(sqlite_env, "bash", "jobctl status ")
    assert result.returncode == 0 and result.stdout.strip() == "" and result.stderr == ""
    assert not (tmp_path / "absent").exists()  # completion never creates a database


def test_show_completion_prints_a_script_for_each_shell(sqlite_env):
    for shell in ("bash", "zsh", "fish"):
        result = sqlite_env.sh("--show-completion", shell)
        assert result.returncode == 0, result.stderr
        assert "_JOBCTL_COMPLETE" in result.stdout, shell


# -- Oracle, offline: the catalog query --------------------------------------------------

def test_oracle_procedure_list_sql_parses_and_binds_only_the_pattern():
    tree = sqlglot.parse_one(ob.PROCEDURE_LIST_SQL, read="oracle")
    assert isinstance(tree, exp.Select)
    assert {p.name for p in tree.find_all(exp.Placeholder)} == {"pattern"}
    tables = {t.name.lower() for t in tree.find_all(exp.Table)}
    assert tables == {"all_procedures", "all_arguments", "all_users"}


class _ListCursor:
    """Records the statement and binds; returns the rows a catalog would."""

    COLUMNS = ("OWNER", "OBJECT_NAME", "PROCEDURE_NAME", "OVERLOAD", "CURRENT_SCHEMA", "POSITION",
               "ARGUMENT_NAME", "DATA_TYPE", "PLS_TYPE", "TYPE_OWNER", "TYPE_NAME", "TYPE_SUBNAME",
               "IN_OUT", "DEFAULTED")

    def __init__(self, rows):
        self.rows, self.sent, self.warning = rows, [], None
        self.description = [(c,) for c in self.COLUMNS]

    def execute(self, sql, binds=None, **kw):
        self.sent.append((sql, binds))

    def fetchall(self):
        return self.rows


class _Conn:
    def __init__(self, cur):
        self.cur = cur

    def cursor(self):
        return self.cur


def test_oracle_lists_procedures_named_as_resolve_names_them():
    arg = ("NUMBER", None, None, None, None)
    rows = [
        ("SCOTT", "SUMA_SIMPLE", None, None, "SCOTT", 1, "VA", *arg, "IN", "N"),
        ("SCOTT", "SUMA_SIMPLE", None, None, "SCOTT", 2, "VB", *arg, "IN", "Y"),
        ("SCOTT", "SUMA_SIMPLE", None, None, "SCOTT", 3, "VRESULT", *arg, "OUT", "N"),
        ("SCOTT", "PKG", "NO_ARGS", None, "SCOTT", None, None, None, None, None, None, None, None, None),
        ("SCOTT", "PKG", "A_FUNCTION", None, "SCOTT", 0, None, *arg, "OUT", "N"),
        ("SCOTT", "PKG", "A_FUNCTION", None, "SCOTT", 1, "X", *arg, "IN", "N"),
        ("HR", "LOADER", None, None, "SCOTT", 1, "P_DAY", "DATE", None, None, None, None, "IN", "N"),
    ]
    cur = _ListCursor(rows)
    backend = ob.OracleBackend.__new__(ob.OracleBackend)  # no settings needed to read rows
    sigs = backend.list_procedures(_Conn(cur), "suma\\_%")
    assert [(s.name, [p.name for p in s.params]) for s in sigs] == [
        ("SUMA_SIMPLE", ["VA", "VB", "VRESULT"]), ("PKG.NO_ARGS", []), ("HR.LOADER", ["P_DAY"])]
    assert [p.defaulted for p in sigs[0].params] == [False, True, False]
    assert cur.sent[0][1] == {"pattern": "SUMA\\_%"}  # unquoted Oracle names are upper case


# -- start-up: what a short command loads -------------------------------------------------

def test_help_status_and_list_load_no_typer_no_driver_and_no_rich(sqlite_env):
    job_id = sqlite_env.submit("SUMA_SIMPLE", "-p", "vA=1")
    for args in (["--help"], ["status", job_id], ["status", job_id, "-f", "json"], ["list"],
                 ["list", "--since", "all", "-f", "csv"]):
        result = subprocess.run([sys.executable, "-X", "importtime", "-m", "jobctl", *args],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
                    if line.startswith("import time:")}
        assert "jobctl.fastpath" in imported  # the measurement is real
        assert not {"typer", "psycopg", "oracledb", "rich", "jobctl.cli", "jobctl.local",
                    "jobctl.runner"} & imported, args
