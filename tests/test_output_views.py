"""What people and scripts see: tables that fit without lying, `logs`,
`--watch`, `--columns`/`--no-headers`, display durations and COPY-style TSV.

Render functions are tested directly at fixed widths; the CLI is driven in
real processes, through a pipe and through a pseudo-terminal of a set width.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time

import pytest

from jobctl import render
from jobctl.reading import new_lines as _new_lines
from jobctl.backends import get_backend
from jobctl.config import parse_dsn
from jobctl.errors import UsageError
from jobctl.model import Job, JobStatus

LONG_NAME = "SCOTT.BILLING_PKG.RUN_MONTH_END_LONG_PROCEDURE_NAME"
NOW = dt.datetime(2026, 11, 28, 10, 0, 0, tzinfo=dt.timezone.utc)


def job(**kw) -> Job:
    base = dict(job_id="3f2a9c1e" + "0" * 24, status=JobStatus.RUNNING, procedure_name="SUMA_SIMPLE",
                start_time=NOW - dt.timedelta(seconds=300), progress=13.3333)
    base.update(kw)
    return Job(**base)


JOBS = [job(procedure_name=LONG_NAME),
        job(job_id="a" * 32, status=JobStatus.COMPLETED, progress=100, duration="48h00m02.04s",
            elapsed_s=172802.04)]
STATS = [dict(procedure=LONG_NAME, total=100, queued=0, running=0, completed=97, failed=2,
              cancelled=1, timed_out=0, lost=0, success_pct=97.9, avg_s=3.03, p50_s=3.03,
              p95_s=300.0, max_s=7200.0, last_run=NOW)]


# -- display forms ------------------------------------------------------------------

@pytest.mark.parametrize("seconds, shown", [
    (0.25, "0.25s"), (42.1, "42.10s"), (59.994, "59.99s"), (59.996, "1m00s"), (300, "5m00s"),
    (3599.9, "59m59s"), (7200, "2h00m"), (172802.04, "2d00h"), (187200, "2d04h"), (None, "-")])
def test_durations_are_displayed_in_two_units_at_most(seconds, shown):
    assert render.display_duration(seconds) == shown


def test_progress_is_a_whole_percent_that_reads_100_only_when_done():
    assert render.whole_percent(13.3333) == "13%"
    assert render.whole_percent(99.6) == "99%"
    assert render.whole_percent(100) == "100%"


def test_stored_duration_text_from_the_original_application_is_displayed_in_the_new_form():
    legacy = job(status=JobStatus.COMPLETED, duration="2h05m03.00s", elapsed_s=None)
    assert render.live_duration(legacy, NOW) == "2h05m"
    assert render.live_duration(job(status=JobStatus.COMPLETED, duration="odd"), NOW) == "odd"


def test_tsv_escapes_like_postgresql_copy_and_never_quotes():
    rows = [{"a": 'tab\there "q"', "b": "nl\nand\rcr", "c": "back\\slash", "d": None}]
    text = render.records(rows, render.Format.tsv, ("a", "b", "c", "d"))
    assert text.splitlines() == ["a\tb\tc\td", 'tab\\there "q"\tnl\\nand\\rcr\tback\\\\slash\t\\N']
    assert render.records(rows, render.Format.tsv, ("d",), headers=False) == "\\N\n"


# -- tables that never lie --------------------------------------------------------------

def _check_list(text: str, width: int | None) -> None:
    lines = text.splitlines()
    if width is not None:
        assert all(render.text_width(line) <= width for line in lines), text
    assert "3f2a9c1e" in text and "aaaaaaaa" in text  # ids keep 8 characters
    for number in ("13%", "100%", "2d00h", "5m00s"):
        assert number in text.split(), (number, text)


@pytest.mark.parametrize("width", [120, 80, 60])
def test_list_fits_by_cutting_the_name_at_its_end_only(width):
    text = render.plain_table(*render.jobs_rows(JOBS, NOW), width)
    _check_list(text, width)
    header, first = text.splitlines()[:2]
    assert header.split() == ["ID", "PROCEDURE", "STATUS", "PROG", "STARTED", "DURATION"]
    shown = first.split()[1]
    if width >= len(LONG_NAME) + 60:
        assert shown == LONG_NAME
    else:
        assert shown.endswith("…") and LONG_NAME.startswith(shown[:-1])
        assert len(shown) >= render.MIN_NAME_WIDTH  # never two letters per line


def test_list_below_a_usable_width_is_one_block_per_job():
    text = render.plain_table(*render.jobs_rows(JOBS, NOW), 40)
    _check_list(text, None)
    blocks = text.split("\n\n")
    assert len(blocks) == 2
    assert f"procedure  {LONG_NAME}" in blocks[0] and "status     completed" in blocks[1]


@pytest.mark.parametrize("width", [120, 80, 60, 40])
def test_stats_never_drops_the_procedure_nor_cuts_a_number(width):
    text = render.plain_table(*render.stats_rows(STATS, NOW), width)
    words = text.split()
    for number in ("100", "97", "3.03s", "5m00s", "2h00m"):
        assert number in words, (width, number, text)
    assert any(w.startswith("SCOTT.BILLI") for w in words)
    if "PROCEDURE" in words:  # a table fits; blocks (below a usable width) let a long name wrap
        assert all(render.text_width(line) <= width for line in text.splitlines()), text
    else:
        assert width < 60 and f"procedure  {LONG_NAME}" in text


def test_piped_tables_are_never_cut():
    text = render.plain_table(*render.jobs_rows(JOBS, NOW), None)
    assert LONG_NAME in text and "…" not in text


@pytest.mark.parametrize("width", [120, 80, 60, 40])
def test_terminal_table_has_the_plain_layout(width):
    from rich.console import Console

    console = Console(width=width, record=True, force_terminal=True, color_system="standard")
    console.print(render.rich_table(*render.jobs_rows(JOBS, NOW), width))
    text = console.export_text()
    _check_list(text, width)
    plain = render.plain_table(*render.jobs_rows(JOBS, NOW), width)
    if width > 40:  # a table: the same lines, plus the rule under the header
        shown = [line.rstrip() for line in text.splitlines() if not line.startswith("─")]
        assert shown == plain.splitlines()


def test_no_headers_and_wide_characters_keep_columns_aligned():
    rows = [job(procedure_name="日本語の手続き_" + "X" * 30)]
    text = render.plain_table(*render.jobs_rows(rows, NOW), 60, show_headers=False)
    (line,) = text.splitlines()
    assert render.text_width(line) <= 60 and line.startswith("3f2a9c1e") and "…" in line


def test_columns_accept_keys_and_headers_and_name_the_valid_ones_otherwise():
    aliases = render.header_aliases(render.JOB_TABLE_COLUMNS)
    keys = render.choose_columns("id, PROCEDURE,status,error_msg", list(render.JOB_TABLE_COLUMNS),
                                 render.JOB_TABLE_DEFAULT, aliases)
    assert keys == ["job_id", "procedure_name", "status", "error_msg"]
    with pytest.raises(UsageError, match="valid columns are job_id, status, procedure_name"):
        render.choose_columns("job_id,bogus", list(render.JOB_TABLE_COLUMNS), (), aliases)


# -- output in status, and following it -----------------------------------------------------

def test_status_shows_the_last_20_lines_and_how_many_more_there_are():
    many = job(output="\n".join(f"line {i}" for i in range(1, 151)))
    tail = dict(render.detail_pairs(many, NOW))["output"].split("\n")
    assert tail[0] == "… 130 earlier lines: jobctl logs 3f2a9c1e"
    assert tail[1:] == [f"line {i}" for i in range(131, 151)]
    short = dict(render.detail_pairs(job(output="one\ntwo"), NOW))["output"]
    assert short == "one\ntwo"


def test_new_lines_follow_a_growing_or_rewritten_output():
    assert _new_lines(["a", "b"], ["a", "b", "c"]) == (["c"], True)
    assert _new_lines([], ["a"]) == (["a"], True)
    assert _new_lines(["a", "b", "c"], ["b", "c", "d"]) == (["d"], False)  # front dropped
    assert _new_lines(["a"], ["x", "y"]) == (["x", "y"], False)


def test_the_cap_marker_is_the_one_the_worker_writes():
    from jobctl.backends.base import CallContext

    ctx = CallContext("j", output_cap=10)
    ctx.log("12345")
    ctx.log("far too long for the cap")
    _, text, _ = ctx.snapshot()
    assert render.output_lines(text) == (["12345"], True)


# -- through the CLI -------------------------------------------------------------------------

def set_row(env, job_id: str, **values) -> None:
    """Shape a finished row as another application (or a long run) left it."""
    backend = get_backend(parse_dsn(env.dsn))
    conn = backend.connect()
    try:
        sets = ", ".join(f"{k.upper()} = :{k}" for k in values)
        backend.execute(conn, f"UPDATE ASYNC_JOBS SET {sets} WHERE JOB_ID = :job_id",
                        {**values, "job_id": job_id})
        conn.commit()
    finally:
        conn.close()


def finished_job(env, **values) -> str:
    job_id = env.submit(env.proc["suma"], "-p", "vA=1")
    env.wait_for(job_id, lambda j: j["status"] == "completed")
    if values:
        set_row(env, job_id, **values)
    return job_id


def jobctl_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "jobctl", *args]


def test_logs_follow_streams_lines_while_the_job_runs_and_exits_with_its_code(env):
    job_id = env.submit(env.proc["sleep"], "-p", "p_seconds=3")
    proc = subprocess.Popen(jobctl_cmd("logs", job_id, "--follow"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        status_when_first_seen = env.status(job_id)["status"]
        rest, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert first == "slept 1 of 3 s\n"
    assert status_when_first_seen == "running"  # streamed, not printed at the end
    assert rest == "slept 2 of 3 s\nslept 3 of 3 s\n"
    assert proc.returncode == 0 and err == ""


def test_logs_follow_of_a_failed_job_exits_1_with_nothing_but_lines_on_stdout(env):
    job_id = env.submit(env.proc["fail"], "-p", "p_message=boom")
    result = env.sh("logs", job_id, "--follow", "--tail", "5")
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    assert "failed" in result.stderr and "Traceback" not in result.stderr


def test_logs_tail_and_a_capped_output(env):
    lines = [f"row {i}: ñandú" for i in range(1, 31)]
    job_id = finished_job(env, output="\n".join(lines + [render.OUTPUT_TRUNCATED_MARK]))
    result = env.cli("logs", job_id[:6], "--tail", "3")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == lines[-3:]
    assert "cap" in result.stderr
    followed = env.cli("logs", job_id, "--follow")
    assert followed.exit_code == 0 and followed.stdout.splitlines() == lines
    assert env.cli("logs", job_id, "--tail", "0").stdout == ""


def test_status_table_shows_the_tail_and_json_keeps_all_output(env):
    text = "\n".join(f"line {i}" for i in range(1, 151))
    job_id = finished_job(env, output=text)
    shown = env.cli("status", job_id)
    assert shown.exit_code == 0, shown.stderr
    assert f"… 130 earlier lines: jobctl logs {job_id[:8]}" in shown.stdout
    assert "line 150" in shown.stdout and "line 130\n" not in shown.stdout
    assert env.status(job_id)["output"] == text


def test_columns_and_no_headers_on_list_stats_and_status(env):
    job_id = finished_job(env)
    tsv = env.cli("list", "-f", "tsv", "--columns", "job_id,status,error_msg", "--no-headers")
    assert tsv.exit_code == 0, tsv.stderr
    assert tsv.stdout == f"{job_id}\tcompleted\t\\N\n"
    table = env.cli("list", "--columns", "id,status", "--no-headers")
    assert table.stdout.split() == [job_id[:8], "completed"]
    csv_out = env.cli("stats", "-f", "csv", "--columns", "procedure,total")
    assert csv_out.stdout.splitlines()[0] == "procedure,total"
    assert csv_out.stdout.splitlines()[1].lower() == "suma_simple,1"
    stats_table = env.cli("stats", "--columns", "procedure,ok%,p50")
    assert stats_table.stdout.split()[:3] == ["PROCEDURE", "OK%", "P50"]
    status_rows = env.cli("status", job_id, "--columns", "job_id,progress", "--no-headers")
    assert status_rows.stdout.split() == [job_id[:8], "100%"]


@pytest.mark.parametrize("args", [["list", "--columns", "job_id,nope"],
                                  ["stats", "--columns", "bogus"],
                                  ["list", "-f", "json", "--columns", "job_id"],
                                  ["list", "--watch", "-f", "csv"]])
def test_bad_column_choices_exit_2_and_print_nothing(env, args):
    result = env.cli(*args)
    assert result.exit_code == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr.startswith("jobctl: error: ") and len(result.stderr.splitlines()) == 1
    if "nope" in args[-1]:
        assert "valid columns are job_id" in result.stderr


def run_in_terminal(args: list[str], columns: int, *, stop_after: float | None = None,
                    env_extra: dict | None = None, timeout: float = 60,
                    during: tuple[float, object] | None = None) -> tuple[int, str]:
    """Run jobctl on a pseudo-terminal `columns` wide; with `stop_after`,
    press Ctrl-C after that many seconds; `during=(seconds, fn)` calls fn
    once meanwhile. Returns (exit code, all output)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {**os.environ, "COLUMNS": str(columns), **(env_extra or {})}
    proc = subprocess.Popen(jobctl_cmd(*args), stdin=slave, stdout=slave, stderr=slave, env=env,
                            start_new_session=True)
    os.close(slave)
    out = b""
    start = time.monotonic()
    interrupted = False
    try:
        while True:
            if stop_after is not None and not interrupted and time.monotonic() - start > stop_after:
                os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C sends to the foreground group
                interrupted = True
            if during is not None and time.monotonic() - start > during[0]:
                during[1]()
                during = None
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    chunk = b""
                if not chunk and proc.poll() is not None:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
            if time.monotonic() - start > timeout:
                raise AssertionError(f"jobctl {args} did not end: {out.decode(errors='replace')}")
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return proc.wait(10), out.decode(errors="replace").replace("\r\n", "\n")


def test_list_at_a_narrow_terminal_cuts_names_but_a_pipe_never_does(env):
    job_id = finished_job(env, procedure_name=LONG_NAME)
    piped = env.sh("list", env={"COLUMNS": "40"})
    assert piped.returncode == 0 and LONG_NAME in piped.stdout  # `jobctl list | grep` finds it
    code, text = run_in_terminal(["list"], 60, env_extra={"NO_COLOR": "1"})
    assert code == 0, text
    lines = [line for line in text.splitlines() if line]
    assert all(len(line) <= 60 for line in lines), text
    row = next(line for line in lines if line.startswith(job_id[:8]))
    assert "SCOTT.BILLI" in row and "…" in row and "completed" in row and "100%" in row
    code, text = run_in_terminal(["list"], 40, env_extra={"NO_COLOR": "1"})
    assert code == 0 and f"procedure  {LONG_NAME}" in text and f"id         {job_id[:8]}" in text
    code, text = run_in_terminal(["list"], 60)  # in colour: the same layout
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    assert code == 0 and all(len(line) <= 60 for line in plain.splitlines()), plain
    assert any(line.startswith(job_id[:8]) and "…" in line for line in plain.splitlines()), plain


def test_list_watch_refreshes_in_place_and_ctrl_c_leaves_with_0(env):
    job_id = finished_job(env)
    code, text = run_in_terminal(["list", "--watch", "--interval", "0.2"], 80, stop_after=4)
    assert code == 0, text
    assert "Traceback" not in text and "interrupted" not in text
    assert text.count("Ctrl-C to leave") >= 2  # redrawn, not printed once
    assert job_id[:8] in text


def test_status_watch_ends_by_itself_when_the_job_ends(env):
    job_id = env.submit(env.proc["sleep"], "-p", "p_seconds=1")
    code, text = run_in_terminal(["status", job_id, "--watch"], 100, timeout=60)
    assert code == 0, text
    assert "completed" in text and "slept 1 of 1 s" in text


def test_watch_without_a_terminal_prints_once_and_says_so(env):
    job_id = finished_job(env)
    result = env.sh("list", "--watch", timeout=30)
    assert result.returncode == 0
    assert job_id[:8] in result.stdout and result.stdout.count("PROCEDURE") == 1
    assert "needs a terminal" in result.stderr


def test_ctrl_c_on_logs_follow_leaves_with_130_and_the_job_keeps_running(env):
    job_id = env.submit(env.proc["sleep"], "-p", "p_seconds=30")
    try:
        code, text = run_in_terminal(["logs", job_id, "--follow"], 80, stop_after=2.5)
        assert code == 130, text
        assert "slept 1 of 30 s" in text and "Traceback" not in text
        assert "interrupted (detached jobs keep running)" in text
        assert env.status(job_id)["status"] == "running"
    finally:
        env.cli("cancel", job_id)


def test_list_watch_reconnects_when_the_server_drops_its_session(env):
    if env.backend != "postgresql":
        pytest.skip("needs a server that can end another session")
    finished_job(env)
    later = {}

    def outage():
        env.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
                "current_database() AND application_name = 'jobctl' AND pid <> pg_backend_pid()")
        time.sleep(1)  # let the watch hit the dead session
        later["id"] = finished_job(env)

    code, text = run_in_terminal(["list", "--watch", "--interval", "0.2"], 120, stop_after=10,
                                 during=(2, outage))
    assert code == 0, text
    assert "(retrying)" in text
    assert later["id"][:8] in text  # the table kept refreshing on a new session
