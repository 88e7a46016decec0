"""The first day's papercuts (issue 26), one test each: typos refused
(queues, a SQLite DSN's missing file, an unknown DSN keyword), the small
untruths mended (empty output, one JSON shape rule, outcome lines, the
STATUS column, the parser's own wording, config's masking), and no timer
process outliving the jobs it waits for."""

from __future__ import annotations

import time

import pytest

from conftest import Env
from test_pool import pools  # noqa: F401 - the fixture


def one_line_error(result, code: int, *needles: str) -> str:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("jobctl: error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def queue_names(env: Env) -> set[str]:
    return {q["name"] for q in env.json("queue", "list")}


# -- typos refused ---------------------------------------------------------------------

def test_pause_and_resume_of_a_queue_that_does_not_exist_is_exit_3_with_did_you_mean(env):
    assert env.cli("queue", "set", "nightly", "--max-running", "2").exit_code == 0
    for verb in ("pause", "resume"):
        line = one_line_error(env.cli("queue", verb, "nightyl"), 3, "no queue 'nightyl'",
                              "did you mean nightly?", "jobctl queue set nightyl")
        assert "Traceback" not in line
    one_line_error(env.cli("queue", "pause", "zzz"), 3, "no queue 'zzz'", "jobctl queue list")
    assert queue_names(env) == {"default", "nightly"}  # nothing created
    assert env.json("queue", "list")[1]["paused"] is False


def test_submit_to_an_unknown_queue_is_exit_3_and_writes_nothing(env, tmp_path):
    assert env.cli("queue", "set", "bulk_load", "--max-running", "1").exit_code == 0
    one_line_error(env.cli("submit", env.proc["suma"], "-p", "vA=1", "--queue", "bulk"), 3,
                   "no queue 'bulk'", "did you mean bulk_load?")
    batch = tmp_path / "batch.jsonl"
    batch.write_text('{"vA": 1}\n{"vA": 2}\n')
    one_line_error(env.cli("submit", env.proc["suma"], "--params-file", str(batch), "--queue", "bulk"),
                   3, "no queue 'bulk'")
    assert env.rows() == []
    assert queue_names(env) == {"default", "bulk_load"}


def test_queue_set_creates_a_queue_and_default_always_exists(env):
    assert env.json("queue", "pause", "default")["paused"] is True
    assert env.json("queue", "resume", "default")["paused"] is False
    assert env.json("queue", "set", "fresh", "--max-running", "0")["name"] == "fresh"
    assert env.json("queue", "pause", "fresh")["paused"] is True
    job_id = env.submit(env.proc["suma"], "-p", "vA=1", "--queue", "fresh")
    assert env.status(job_id)["queue"] == "fresh"


def test_queue_delete_removes_an_empty_queue_only(env):
    assert env.cli("queue", "set", "bulk", "--max-running", "1").exit_code == 0
    assert env.cli("queue", "pause", "bulk").exit_code == 0
    job_id = env.submit(env.proc["suma"], "-p", "vA=1", "--queue", "bulk")
    one_line_error(env.cli("queue", "delete", "bulk"), 2, "queue bulk still holds 1 queued")
    assert "bulk" in queue_names(env)
    assert env.cli("cancel", job_id).exit_code == 0
    result = env.cli("queue", "delete", "bulk")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert queue_names(env) == {"default"}
    one_line_error(env.cli("queue", "delete", "bulk"), 3, "no queue 'bulk'")
    one_line_error(env.cli("queue", "delete", "default"), 2, "default queue cannot be deleted")
    # deleted means unknown: a submit to it is refused like any typo
    one_line_error(env.cli("submit", env.proc["suma"], "-p", "vA=1", "--queue", "bulk"), 3)


def test_a_pool_for_a_queue_that_does_not_exist_is_exit_3(sqlite_env):
    result = sqlite_env.sh("worker", "--queue", "nightyl", timeout=30)
    assert result.returncode == 3, result
    assert "no queue 'nightyl'" in result.stderr and result.stderr.count("\n") == 1
    assert sqlite_env.json("worker", "list") == []


@pytest.mark.parametrize("args", [
    ["cleanup", "--days", "7", "-q"], ["list"], ["status", "abcd"], ["stats"], ["queue", "list"],
    ["submit", "SUMA_SIMPLE", "-p", "vA=1"], ["queue", "set", "q", "--max-running", "1"],
    ["cancel", "abcd"], ["wait", "abcd"], ["procedures"],
])
def test_an_explicit_sqlite_dsn_whose_file_does_not_exist_is_exit_4(sqlite_env, tmp_path, args):
    typo = tmp_path / "typo.db"
    one_line_error(sqlite_env.cli("--dsn", f"sqlite:///{typo}", *args), 4,
                   f"no jobs database at {typo}", "db init")
    assert not typo.exists()


def test_a_missing_sqlite_file_in_a_real_process_from_cron_and_db_init_creates_it(sqlite_env, tmp_path):
    typo = tmp_path / "typo.db"
    result = sqlite_env.sh("--dsn", f"sqlite:///{typo}", "cleanup", "--days", "7", "-q")
    assert result.returncode == 4 and result.stdout == "", result
    assert result.stderr.startswith("jobctl: error: no jobs database at")
    assert not typo.exists()
    info = sqlite_env.json("--dsn", f"sqlite:///{typo}", "config")
    assert info["database_exists"] is False and any("db init" in n for n in info["notes"])
    assert sqlite_env.cli("--dsn", f"sqlite:///{typo}", "db", "init").exit_code == 0
    assert typo.exists()
    assert sqlite_env.cli("--dsn", f"sqlite:///{typo}", "cleanup", "--days", "7", "-q").exit_code == 0


@pytest.mark.parametrize("dsn, needle", [
    ("host=127.0.0.1 port=1 dbname=x user=u bogus=1", "unknown keyword 'bogus' in the DSN"),
    ("postgresql://u@127.0.0.1:1/x?bogus=1", "unknown keyword 'bogus' in the DSN"),
    ("postgresql://u@127.0.0.1:1/x?sslmod=require", "(did you mean sslmode?)"),
])
def test_an_unknown_postgresql_dsn_keyword_is_exit_2_naming_it(sqlite_env, dsn, needle):
    """Refused before any connection (port 1 listens for nobody): libpq never
    sees it; `config`, which never connects, says it too."""
    pytest.importorskip("psycopg")
    for args in (["list"], ["status", "abcd"], ["submit", "P"], ["config"]):
        one_line_error(sqlite_env.cli("--dsn", dsn, *args), 2, needle)


def test_an_unknown_option_in_a_sqlite_dsn_is_exit_2_naming_it(sqlite_env):
    db = sqlite_env.dsn.removeprefix("sqlite:///")
    for args in (["list"], ["submit", "SUMA_SIMPLE", "-p", "vA=1"], ["config"]):
        one_line_error(sqlite_env.cli("--dsn", f"sqlite:///{db}?bogus=1", *args), 2,
                       "unknown option 'bogus' in the DSN")
    assert sqlite_env.rows() == []


def test_libpq_and_jobctl_keywords_in_a_dsn_are_accepted(sqlite_env):
    pytest.importorskip("psycopg")
    for dsn in ("postgresql://u@127.0.0.1:1/x?sslmode=disable&connect_timeout=2",
                "host=127.0.0.1 port=1 dbname=x user=u sslmode=disable application_name=a"):
        result = sqlite_env.cli("--dsn", dsn, "list")
        assert result.exit_code == 4, result.stderr  # no server there: exit 4, not a keyword error
        assert "unknown keyword" not in result.stderr


# -- untruths mended -------------------------------------------------------------------

def test_an_empty_list_on_a_pipe_prints_nothing_in_every_format_but_json(env):
    env.submit(env.proc["suma"], "-p", "vA=1")
    for fmt, expected in (("table", ""), ("tsv", ""), ("csv", ""), ("jsonl", ""), ("json", "[]\n")):
        result = env.cli("list", "--status", "timed_out", "-f", fmt)
        assert result.exit_code == 0 and result.stdout == expected, (fmt, result.stdout)
        assert result.stderr == ""  # not a terminal: no "no jobs since" either
        stats = env.cli("stats", "--procedure", "NO_SUCH_PROC", "-f", fmt)
        assert stats.exit_code == 0 and stats.stdout == expected, (fmt, stats.stdout)


def test_json_shapes_one_id_one_object_several_an_array_lists_always_arrays(env):
    first = env.submit(env.proc["suma"], "-p", "vA=1")
    second = env.submit(env.proc["suma"], "-p", "vA=2")
    for command in (["status"], ["wait"]):
        one = env.json(*command, first)
        assert isinstance(one, dict) and one["job_id"] == first, command
        both = env.json(*command, first, second)
        assert [j["job_id"] for j in both] == [first, second], command
    assert isinstance(env.json("cancel", first), dict)
    assert isinstance(env.json("cancel", first, second), list)
    assert isinstance(env.json("list", "--limit", "1"), list)  # a list of one is still a list
    assert isinstance(env.json("stats"), list) and isinstance(env.json("queue", "list"), list)
    assert isinstance(env.json("cleanup", "--days", "1", "--dry-run"), dict)
    assert isinstance(env.json("describe", env.proc["suma"]), dict)


def test_logs_follow_on_a_failed_job_says_why_as_wait_does(env):
    job_id = env.submit(env.proc["fail"], "-p", "p_message=boom from the test")
    followed = env.cli("logs", job_id, "--follow")
    waited = env.cli("wait", job_id)
    assert followed.exit_code == waited.exit_code == 1
    outcome = [line for line in followed.stderr.splitlines() if "failed in" in line]
    assert outcome and "boom from the test" in outcome[0], followed.stderr
    assert outcome[0] in waited.stderr.splitlines()


def test_an_outcome_without_a_duration_never_reads_in_dash(env):
    job_id = env.submit(env.proc["suma"], "-p", "vA=1", "--in", "1h")
    assert env.cli("cancel", job_id).exit_code == 0
    result = env.cli("wait", job_id)
    assert result.exit_code == 1
    assert f"{job_id[:8]} cancelled: " in result.stderr, result.stderr
    assert " in -" not in result.stderr


def test_the_status_column_never_nests_brackets(env):
    assert env.cli("queue", "set", "nightly", "--max-running", "1").exit_code == 0
    assert env.cli("queue", "pause", "nightly").exit_code == 0
    env.submit(env.proc["suma"], "-p", "vA=1", "--queue", "nightly")
    table = env.cli("list").stdout
    assert "queued: queue nightly is paused (jobctl queue resume nightly)" in table, table
    assert "((" not in table and "))" not in table


@pytest.mark.parametrize("args, message", [
    (["status"], "missing job id"),
    (["wait"], "missing job id"),
    (["submit"], "missing procedure name"),
    (["list", "--limit", "abc"], "invalid --limit 'abc': must be a whole number from 1 to 1000000"),
    (["list", "-n", "0"], "invalid --limit '0': must be a whole number from 1 to 1000000"),
    (["list", "-f", "xml"], "invalid --format 'xml': must be one of table, json, jsonl, csv or tsv"),
    (["cleanup"], "missing option --days"),
    (["cleanup", "--days", "x"], "invalid --days 'x': must be a number, 0 or more"),
    (["list", "--stat", "failed"], "unknown option --stat (did you mean --status"),
    (["lsit"], "unknown command 'lsit' (did you mean list"),
    (["list", "--since"], "option --since needs a value"),
])
def test_the_parsers_errors_are_in_jobctls_words_at_both_doors(sqlite_env, args, message):
    """In-process (typer) and as a real process (the fast path, which hands
    such lines to typer): the same one line, exit 2."""
    in_process = one_line_error(sqlite_env.cli(*args), 2)
    real = sqlite_env.sh(*args)
    in_process = in_process.replace("`root ", "`jobctl ")  # CliRunner names the program root
    assert real.returncode == 2 and real.stderr.strip() == in_process, (real.stderr, in_process)
    for leaked in ("Missing argument", "Missing option", "Invalid value", "is not a valid",
                   "not in the range", "No such", "Possible options", "requires an argument"):
        assert leaked not in in_process, in_process
    assert message in in_process, in_process


def test_config_masks_no_password_into_a_dsn_that_has_none(sqlite_env, monkeypatch):
    """A password from password_file is not in the DSN: config shows the DSN as
    written and says where the password comes from; one in the DSN is masked."""
    monkeypatch.delenv("JOBCTL_DSN")
    secret = sqlite_env.tmp / "pw"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    cfg = sqlite_env.tmp / "config" / "jobctl" / "config.toml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(f'[profiles.pg]\ndsn = "postgresql://etl@db1:5432/w"\npassword_file = "{secret}"\n'
                   '[profiles.inline]\ndsn = "postgresql://etl:s3cret@db1:5432/w"\n')
    info = sqlite_env.json("--profile", "pg", "config")
    assert info["dsn"] == "postgresql://etl@db1:5432/w"
    assert info["password_source"] == f"password_file {secret}"
    table = sqlite_env.cli("--profile", "pg", "config").stdout
    assert "***" not in table and "s3cret" not in table
    inline = sqlite_env.json("--profile", "inline", "config")
    assert inline["dsn"] == "postgresql://etl:***@db1:5432/w" and inline["password_source"] == "dsn"


# -- no timer outlives its jobs --------------------------------------------------------

def _timer_pids(env: Env) -> list[int]:
    folder = env.tmp / "state" / "jobctl" / "timers"
    pids = []
    for path in folder.glob("*") if folder.is_dir() else ():
        text = path.read_text().strip()
        if text.isdigit():
            pids.append(int(text))
    return pids


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has left
    except OSError:
        return False


def test_the_timer_of_a_delayed_job_leaves_once_the_job_is_cancelled(env):
    job_id = env.submit(env.proc["suma"], "-p", "vA=1", "--in", "1h")
    deadline = time.monotonic() + 10
    while not (pids := _timer_pids(env)):
        assert time.monotonic() < deadline, "no timer wrote its pid"
        time.sleep(0.05)
    [pid] = pids
    time.sleep(1.5)  # past a check (half of JOBCTL_LOST_AFTER=2): the job still waits
    assert _alive(pid)
    assert env.cli("cancel", job_id).exit_code == 0
    deadline = time.monotonic() + 10
    while _alive(pid):
        assert time.monotonic() < deadline, f"timer {pid} outlived its only job"
        time.sleep(0.1)
    assert _timer_pids(env) == []  # its lock file went with it
    assert env.status(job_id)["status"] == "cancelled"


def test_a_delayed_job_still_starts_when_another_of_its_queue_is_cancelled(env):
    first = env.submit(env.proc["suma"], "-p", "vA=1", "--in", "2s")
    second = env.submit(env.proc["suma"], "-p", "vA=2", "--in", "2s")
    assert env.cli("cancel", first).exit_code == 0
    done = env.rows(f"job_id = '{second}'")  # nobody reads it meanwhile: its timer starts it
    deadline = time.monotonic() + 30
    while done[0]["status"] != "completed":
        assert time.monotonic() < deadline, done
        time.sleep(0.1)
        done = env.rows(f"job_id = '{second}'")
    assert env.status(second)["result"] == {"vresult": 2}


def test_queue_delete_refuses_a_queue_a_live_pool_names(sqlite_env, pools):
    """A pool started with --queue claims from that queue every round, and its
    claim would bring the queue's row back: the pool must stop first."""
    from test_pool import Pool

    assert sqlite_env.cli("queue", "set", "served", "--max-running", "2").exit_code == 0
    pool = Pool(sqlite_env, "--queue", "served", "--concurrency", "1")
    pools.append(pool)
    one_line_error(sqlite_env.cli("queue", "delete", "served"), 2, "served by the worker pool",
                   f"(pid {pool.pid})")
    assert pool.stop() == 0
    assert sqlite_env.cli("queue", "delete", "served").exit_code == 0
    assert queue_names(sqlite_env) == {"default"}
