"""`jobctl top` and `jobctl stats --chart`, driven as a user drives them.

The plain frame (`--once`, and piped) is checked as text while real jobs
run, on every backend; a 60-column frame keeps every queue and every number
whole; bad input is one line and exit 2 (an unreachable database, exit 4);
the live screen is driven under tmux (keys in, the screen's text out):
`/` filters, `c` then `y` cancels the selected job, `q` quits and gives the
terminal back.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from jobctl import topview
from jobctl.store_overview import FailureLine, Frame, ProcedureLine, QueueLine
from tests.test_bad_input import assert_one_line_error

ANSI = re.compile(r"\x1b\[")


def section(text: str, title: str) -> list[str]:
    """The lines of one section of a plain frame, its header line first."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    out = []
    for line in lines[start + 1:]:
        if not line.strip():
            break
        out.append(line)
    return out


def running_sleep(env, seconds: int = 30, *args: str) -> str:
    job_id = env.submit(env.proc["sleep"], "-p", f"p_seconds={seconds}", *args)
    env.wait_for(job_id, lambda j: j["status"] == "running" and "slept" in (j["output"] or ""))
    return job_id


def test_once_shows_queues_running_jobs_failures_and_procedures(env):
    failing = env.submit(env.proc["fail"], "-p", "p_message=disk quota exceeded\nsecond line")
    env.wait_for(failing, lambda j: j["status"] == "failed")
    done = env.submit(env.proc["suma"], "-p", "vA=1", "--wait")
    assert env.cli("queue", "set", "nightly", "--max-running", "1").exit_code == 0
    sleeping = running_sleep(env, 30)
    nightly = running_sleep(env, 30, "--queue", "nightly")
    waiting = env.submit(env.proc["sleep"], "-p", "p_seconds=1", "--queue", "nightly")
    try:
        result = env.cli("top", "--once", "--since", "1h")
        assert result.exit_code == 0, result.stderr
        text = result.stdout
        assert not ANSI.search(text) and result.stderr == ""
        assert text.startswith("jobctl top · ") and "since 1h" in text.splitlines()[0]

        queues = section(text, "QUEUES")
        assert queues[0].split()[:5] == ["QUEUE", "LIMIT", "RUN", "QUEUED", "DONE"]
        by_name = {line.split()[0]: line for line in queues[1:]}
        assert set(by_name) == {"default", "nightly"}
        # default: 2 finished (the failure, the sum), 1 running
        assert by_name["default"].split()[1:5] == ["4", "1", "0", "2"]
        assert by_name["nightly"].split()[1:5] == ["1", "1", "1", "0"]
        assert by_name["nightly"].endswith("full")
        assert "66%" in by_name["default"]  # 2 done of 2 + 1 running, floored

        running = section(text, "RUNNING")
        assert running[0].split()[:2] == ["ID", "PROCEDURE"]
        rows = {line.split()[0]: line for line in running[1:]}
        assert set(rows) == {sleeping[:8], nightly[:8]}
        assert env.proc["sleep"].lower() in rows[sleeping[:8]].lower()
        assert re.search(r"slept \d+ of 30 s", rows[sleeping[:8]])
        assert "nightly" in rows[nightly[:8]]

        failures = section(text, "LAST FAILURES")
        assert failures[1].startswith(failing[:8])
        assert "failed" in failures[1] and "disk quota exceeded" in failures[1]
        if "\n" in env.status(failing)["error_msg"]:  # kept as two lines (not by every backend)
            assert "second line" not in text  # the first line of the error only

        procedures = {line.split()[0].lower(): line.split() for line in section(text, "PROCEDURES")[1:]}
        assert procedures[env.proc["fail"].lower()][1:3] == ["1", "100%"]
        assert procedures[env.proc["suma"].lower()][1:3] == ["1", "0%"]
        assert waiting  # queued behind the full queue, counted above

        piped = env.sh("top", timeout=30)  # stdout a pipe: the same plain frame, once
        assert piped.returncode == 0, piped.stderr
        assert "QUEUES" in piped.stdout and sleeping[:8] in piped.stdout
        assert not ANSI.search(piped.stdout)
    finally:
        env.cli("cancel", sleeping, nightly, waiting)
    assert done


def test_one_statement_per_refresh(env):
    """The budget of a refresh: one statement, whatever the frame holds."""
    from jobctl.api import Jobctl
    from jobctl.config import resolve_settings

    job = running_sleep(env, 20)
    try:
        with Jobctl(resolve_settings(env.dsn, None), create=False) as jc:
            jc.top_frame()  # connected, schema checked
            seen = []
            execute = jc.backend.execute

            def counting(conn, sql, binds=None):
                seen.append(sql)
                return execute(conn, sql, binds)

            jc.backend.execute = counting
            frame = jc.top_frame(since_s=3600)
        assert len(seen) == 1, seen
        assert [r.job.job_id for r in frame.running] == [job]
    finally:
        env.cli("cancel", job)


def _queue(name: str, **counts: int) -> QueueLine:
    return QueueLine(name=name, max_running=counts.pop("limit", 4), paused=False, **counts)


def test_a_narrow_frame_keeps_every_queue_and_every_number(sqlite_env, monkeypatch):
    names = ["default", "nightly_warehouse_reload_of_the_month", "reports", "q" * 40, "etl.daily-2"]
    queues = tuple(_queue(n, limit=1000 + i, running=98765 + i, slots=98765 + i, queued=1234567 + i,
                          later=3, after=12, done=7654321 + i) for i, n in enumerate(names))
    import datetime as dt

    now = dt.datetime.now(dt.timezone.utc)
    frame = Frame(now=now, since=now - dt.timedelta(days=1), queues=queues, running=(),
                  failures=(FailureLine("ab" * 16, "PKG_LOADS.NIGHTLY_RELOAD_OF_EVERYTHING",
                                        "nightly", "timed_out", now, now,
                                        "ORA-01013: user requested cancel of current operation 12345"),),
                  procedures=(ProcedureLine("PKG_LOADS.NIGHTLY_RELOAD_OF_EVERYTHING", ("nightly",),
                                            1234567, 1200000, 34567, (1.0, None, 3000.5) * 7),))
    text = topview.frame_text(frame, width=60, header="jobctl top · x · since 24h")
    assert all(len(line) <= 60 for line in text.splitlines()), text
    rows = section(text, "QUEUES")[1:]
    assert len(rows) == len(names)
    for i, (name, row) in enumerate(zip(names, rows)):
        assert row.startswith(name) or row.startswith(name[:5]) and "…" in row.split()[0], row
        for number in (1000 + i, 98765 + i, 1234567 + i, 7654321 + i):
            assert f" {number} " in f" {row} ", (number, row)
    failure = section(text, "LAST FAILURES")[1]
    assert "timed_out" in failure and "abababab" in failure
    assert not re.search(r"\d…", text), text  # no number cut short anywhere
    proc = section(text, "PROCEDURES")[1].split()
    assert "1234567" in proc and "2.8%" in proc

    # the command itself at COLUMNS=60, on a real database
    for name in names[1:]:
        assert sqlite_env.cli("queue", "set", name, "--max-running", "2").exit_code == 0
    monkeypatch.setenv("COLUMNS", "60")
    result = sqlite_env.cli("top", "--once")
    assert result.exit_code == 0, result.stderr
    assert all(len(line) <= 60 for line in result.stdout.splitlines()), result.stdout
    rows = section(result.stdout, "QUEUES")[1:]
    assert len(rows) == len(names)
    assert all(row.split()[1:5] == (["4"] if row.startswith("default") else ["2"]) + ["0", "0", "0"]
               for row in rows), rows


@pytest.mark.parametrize("args, code, needle", [
    (["top", "--since", "yesterday"], 2, "--since"),
    (["top", "--since", "all"], 2, "--since all"),
    (["top", "--since", "-1h"], 2, "--since"),
    (["top", "--interval", "0"], 2, "--interval"),
    (["top", "--interval", "soon"], 2, "--interval"),
    (["top", "--interval", "2h"], 2, "--interval"),
    (["top", "--queue", "no such"], 2, "invalid queue name"),
    (["top", "--queue", "nosuchqueue"], 2, "no queue nosuchqueue"),
    (["stats", "--chart", "-f", "json"], 2, "--chart"),
])
def test_bad_input_is_one_line_and_exit_2(sqlite_env, args, code, needle):
    assert_one_line_error(sqlite_env.cli(*args), code, needle)


def test_an_unreachable_database_is_exit_4(sqlite_env, tmp_path):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert_one_line_error(sqlite_env.cli("--dsn", f"postgresql://x@127.0.0.1:{port}/x", "top"), 4,
                          "cannot connect")
    missing = sqlite_env.sh("top", "--once", env={"JOBCTL_DSN": "", "XDG_DATA_HOME": str(tmp_path / "none")})
    assert missing.returncode == 4 and "no jobs database" in missing.stderr, missing.stderr


def test_stats_chart_draws_stats_own_numbers(env):
    for _ in range(3):
        env.submit(env.proc["suma"], "-p", "vA=1", "--wait")
    failing = env.submit(env.proc["fail"])
    env.wait_for(failing, lambda j: j["status"] == "failed")
    stats = env.json("stats", "--since", "1d")
    completed = sum(r["completed"] for r in stats)
    failed = sum(r["failed"] for r in stats)
    assert (completed, failed) == (3, 1)
    result = env.cli("stats", "--since", "1d", "--chart")
    assert result.exit_code == 0, result.stderr
    table, charts = result.stdout.split("\nDURATIONS", 1)
    assert table.splitlines()[0].split()[:2] == ["PROCEDURE", "TOTAL"]
    assert charts.startswith("  3 completed runs since 1d")
    bars = [line for line in charts.split("PER DAY")[0].splitlines()[1:] if line.strip()]
    assert sum(int(line.split()[-1]) for line in bars) == 3
    today = charts.split("PER DAY")[1].splitlines()[1:]
    assert [line.split()[-2:] for line in today if line.strip()][-1] == ["3", "1"]
    only = env.cli("stats", "--since", "1d", "--chart", "-P", env.proc["suma"])
    assert only.exit_code == 0 and "3 completed runs" in only.stdout
    assert only.stdout.split("PER DAY")[1].split()[-2:] == ["3", "0"]


# -- the live screen, under tmux --------------------------------------------------------

class Pane:
    """`jobctl top` in a tmux session of its own server (so it runs in this
    test's environment), 120x40."""

    def __init__(self, command: str, tmp):
        self.socket = f"jobctl-top-{uuid.uuid4().hex[:8]}"
        script = tmp / "top.sh"
        exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in os.environ.items()
                          if k.startswith(("JOBCTL_", "XDG_", "PG")) or k in ("PATH", "HOME"))
        script.write_text(f"{exports}{command}\necho TOP-EXIT=$?\nsleep 30\n")
        self.tmux("new-session", "-d", "-x", "120", "-y", "40", f"sh {shlex.quote(str(script))}")

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True,
                              timeout=10, check=True).stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p")

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", *keys)

    def until(self, predicate, what: str, timeout: float = 15) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen()
            if predicate(text):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"the screen never showed {what}:\n{text}")
            time.sleep(0.1)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=10)


def selected_line(text: str) -> str:
    return next((line for line in text.splitlines() if line.startswith(">")), "")


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed: the live "
                    "screen of jobctl top is driven through tmux (apt-get install tmux)")
def test_live_screen_filters_selects_cancels_and_quits(env):
    for queue in ("alpha", "beta"):  # submit refuses a queue that does not exist
        assert env.cli("queue", "set", queue, "--max-running", "4").exit_code == 0
    first = running_sleep(env, 40, "--queue", "alpha")
    second = running_sleep(env, 40, "--queue", "beta")
    pane = Pane(f"{shlex.quote(sys.executable)} -m jobctl top --interval 0.3 --since 1h", env.tmp)
    try:
        text = pane.until(lambda t: first[:8] in t and second[:8] in t and "slept" in t,
                          "both running jobs")
        assert "QUEUES" in text and "alpha" in text and "beta" in text
        assert "q quit" in text and "every 0.3s" in text
        assert selected_line(text).split()[1] == first[:8]  # the oldest running job first
        pane.keys("j")
        pane.until(lambda t: selected_line(t).split()[1:2] == [second[:8]], "the selection moved")
        pane.keys("k")
        pane.until(lambda t: selected_line(t).split()[1:2] == [first[:8]], "the selection back")

        pane.keys("/", "b", "e", "t", "a")
        pane.until(lambda t: "/beta" in t, "the filter being typed")
        pane.keys("Enter")
        text = pane.until(lambda t: "filter beta" in t and first[:8] not in t, "the filter applied")
        assert second[:8] in text and "alpha" not in text
        assert selected_line(text).split()[1] == second[:8]

        pane.keys("c")
        pane.until(lambda t: f"cancel {second[:8]}" in t and "y/n" in t, "the confirmation")
        pane.keys("n")
        pane.until(lambda t: "not cancelled" in t, "the refusal")
        assert env.status(second)["status"] == "running"
        pane.keys("c")
        pane.until(lambda t: "y/n" in t, "the confirmation again")
        pane.keys("y")
        pane.until(lambda t: "cancel requested" in t, "the cancel")
        deadline = time.monotonic() + 15
        while env.rows(f"job_id = '{second}'")[0]["status"] != "cancelled":
            assert time.monotonic() < deadline, env.rows(f"job_id = '{second}'")
            time.sleep(0.1)
        assert env.rows(f"job_id = '{first}'")[0]["status"] == "running"

        pane.keys("/", "BSpace", "BSpace", "BSpace", "BSpace", "Enter")
        pane.until(lambda t: first[:8] in t and "filter cleared" in t, "the filter cleared")
        pane.keys("q")
        text = pane.until(lambda t: "TOP-EXIT=" in t, "top leaving")
        assert "TOP-EXIT=0" in text and "QUEUES" not in text  # the screen given back
    finally:
        pane.close()
        env.cli("cancel", first, second)


def _oracle_statements():
    """The frame's and the chart's statements as the Oracle backend sends them."""
    import datetime as dt

    from jobctl import store_overview
    from jobctl.backends import get_backend
    from jobctl.config import parse_dsn
    from jobctl.store import ProcedureFilter

    oracle = get_backend(parse_dsn("oracle://scott@dbhost:1521/FREEPDB1"))
    now = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.timezone.utc)
    since = now - dt.timedelta(days=1)
    out = [store_overview.frame_sql(oracle, now=now, since=since, queue=q) for q in (None, "default", "q")]
    for proc in (None, ProcedureFilter("P"), ProcedureFilter("P\\_%", like=True)):
        out.append(store_overview.chart_sql(
            oracle, since=since if proc else None, procedure=proc,
            days=store_overview.chart_days(now, 7 * 86400), edges=store_overview.DURATION_STEPS))
    return out


@pytest.mark.parametrize("sql, binds", _oracle_statements())
def test_oracle_statements_pass_the_offline_lint(sql, binds):
    """No Oracle here: the statements pass the lint every store statement
    passes (tests/test_oracle_offline.py): they parse as Oracle SQL, bind
    exactly their placeholders, use nothing 12.2 lacks and no reserved word
    as an alias, and spell no status (binds from JobStatus)."""
    pytest.importorskip("sqlglot")
    from tests.test_oracle_offline import test_every_statement_parses_as_oracle_and_binds_match as lint

    lint(sql, binds)
    assert not re.search(r"'(?:queued|running|completed|failed|cancelled|timed_out|lost)'", sql)
    assert all(not (isinstance(v, __import__("datetime").datetime) and v.tzinfo) for v in binds.values())
