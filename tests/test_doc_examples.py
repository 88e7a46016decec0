"""Every ```console example in README.md and docs/ runs, and prints what it shows.

How a document is run (docs/development.md says it for authors):

- sybil parses the Markdown; a ```console block is an example, blocks in any
  other language (sh, ini, sql, text, ...) are not run;
- each document gets one bash session of its own, in a fresh HOME with fresh
  XDG directories, so its default SQLite database does not exist until an
  example creates it; the blocks of a document run in order, in that one
  session (a variable set in one block is there in the next);
- a line starting with `$ ` is a command (a line ending in `\\` continues on
  the next; a here-document's lines up to its end word are part of it), the
  lines after it, up to the next command, are its expected
  stdout; stderr is not compared (write `2>&1` to show it); an expected line
  `...` stands for any number of lines;
- a block right after the line `<!-- docs-test: postgresql -->` runs with
  JOBCTL_DSN set to a fresh database on the PostgreSQL server the suite uses
  (conftest's PG_ADMIN_DSN), where `jobctl db init --examples` ran, as in
  conftest's pg_database; one per document, dropped at its end; without a
  server such blocks are skipped, as the PostgreSQL suite is (failed when
  CI=true);
- before comparing, job ids (32 hex digits and the 8-digit prefixes jobctl
  prints), timestamps, durations and pids are replaced by placeholders, runs
  of blanks by one, and this machine's HOME, user and host by those the docs
  use (/home/alice, alice, etl01). An id a document showed may be typed
  later (`jobctl status 9b0c`): it is replaced by the real id's prefix of the
  same length. Anything else that differs fails, with a diff.
"""

from __future__ import annotations

import difflib
import getpass
import os
import re
import selectors
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sybil import Document, Region
from sybil.parsers.markdown.lexers import FencedCodeBlockLexer

from conftest import FAST, IN_CI, PG_ADMIN_DSN

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
PG_MARK = re.compile(r"<!--\s*docs-test:\s*postgresql\s*-->\s*\n\s*$")
COMMAND_TIMEOUT = 60.0

DOC_HOME, DOC_USER, DOC_HOST = "/home/alice", "alice", "etl01"


@dataclass
class Block:
    """One ```console block: its commands and, for each, the expected lines."""

    postgresql: bool
    steps: list[tuple[str, list[str]]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)  # each command's line in the block


def parse_console(source: str, postgresql: bool) -> Block:
    block = Block(postgresql)
    lines = source.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.startswith("$ "):
            if line.strip():
                raise ValueError(f"console block: output before any command: {line!r}")
            i += 1
            continue
        command = line[2:]
        block.lines.append(i)
        while command.endswith("\\") and i + 1 < len(lines):
            i += 1
            command = command[:-1] + "\n" + lines[i].removeprefix("> ")
        heredoc = re.search(r"<<-?\s*(['\"]?)(\w+)\1", command)
        if heredoc:  # the here-document's lines belong to the command
            while i + 1 < len(lines):
                i += 1
                command += "\n" + lines[i]
                if lines[i].strip() == heredoc.group(2):
                    break
        i += 1
        expected = []
        while i < len(lines) and not lines[i].startswith("$ "):
            expected.append(lines[i])
            i += 1
        while expected and not expected[-1].strip():
            expected.pop()
        block.steps.append((command, expected))
    return block


class ConsoleParser:
    """sybil parser: ```console blocks, each evaluated by the document's shell."""

    def __init__(self):
        self.lexer = FencedCodeBlockLexer("console")

    def __call__(self, document: Document):
        for region in self.lexer(document):
            before = document.text[:region.start]
            block = parse_console(str(region.lexemes["source"]), bool(PG_MARK.search(before)))
            yield Region(region.start, region.end, block, evaluate_block)


def evaluate_block(example) -> str | None:
    shell: Shell = example.namespace["shell"]
    return shell.run_block(example.parsed, example.line)


# --- comparison ---------------------------------------------------------

HEX32 = re.compile(r"\b[0-9a-f]{32}\b")
HEX8 = re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{8}\b")
ID8 = re.compile(r"\b[0-9a-f]{8}\b")
RULES = [
    (re.compile(r"\b[0-9a-f]{32}\b"), "<id>"),
    (HEX8, "<id>"),
    (re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([+-]\d{2}:?\d{2}|Z)?"), "<time>"),
    (re.compile(r"\b\d{2}-\d{2} \d{2}:\d{2}(:\d{2})?\b"), "<time>"),
    (re.compile(r"\b\d{2}:\d{2}:\d{2}\b"), "<time>"),
    (re.compile(r"\b\d+d\d{2}h\b|\b\d+h\d{2}m\b|\b\d+m\d+(\.\d+)?s\b|\b\d+(\.\d+)? ?s\b"), "<dur>"),
    (re.compile(r'"(elapsed_s|worker_pid|avg_s|p50_s|p95_s|max_s|pid)": [0-9.]+'), r'"\1": <n>'),
    (re.compile(r"\bpid \d+"), "pid <pid>"),
    (re.compile(r"[ \t]+"), " "),
]


def normalise(line: str) -> str:
    for pattern, replacement in RULES:
        line = pattern.sub(replacement, line)
    return line.strip()


def same_line(expected: str, actual: str) -> bool:
    """Normalised lines equal. An id prefix of 8 decimal digits (one id in
    forty) cannot be told from a number, so it counts as an id only where the
    document shows one."""
    if expected == actual:
        return True
    if "<id>" not in expected:
        return False
    pattern = re.escape(expected).replace(re.escape("<id>"), r"(?:<id>|\d{8})")
    return re.fullmatch(pattern, actual) is not None


def matches(expected: list[str], actual: list[str]) -> bool:
    """Normalised lines equal, an expected `...` standing for any lines."""
    if not expected:
        return not actual
    if expected[0] == "...":
        return any(matches(expected[1:], actual[k:]) for k in range(len(actual) + 1))
    return bool(actual) and same_line(expected[0], actual[0]) and matches(expected[1:], actual[1:])


# --- the shell ------------------------------------------------------------


class Shell:
    """One bash per document, in a fresh HOME; commands' output captured apart."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.home = tmp / "home"
        self.home.mkdir(parents=True)
        self.ids: dict[str, str] = {}  # id as the document shows it -> id as it came
        self.pg_name: str | None = None
        self.pg_dsn: str | None = None
        self.pg_skipped = 0
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("JOBCTL_", "PG", "XDG_")) and k not in ("TWO_TASK", "COLUMNS")}
        env.update(FAST)
        env.update(HOME=str(self.home), XDG_CONFIG_HOME=str(self.home / ".config"),
                   XDG_DATA_HOME=str(self.home / ".local/share"),
                   XDG_STATE_HOME=str(self.home / ".local/state"),
                   PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
                   PYTHONUNBUFFERED="1", NO_COLOR="1", TZ="UTC", LC_ALL="C.UTF-8")
        self.env = env
        self.proc = subprocess.Popen(["bash", "--noprofile", "--norc"], cwd=self.home, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, bufsize=1)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.proc.stdout, selectors.EVENT_READ)
        self.count = 0
        self.replacements = [(str(self.home), DOC_HOME)]
        user, host = getpass.getuser(), socket.gethostname()
        self.replacements.append((f"{user}@{host}", f"{DOC_USER}@{DOC_HOST}"))
        self.host = re.compile(rf"\b{re.escape(host)}\b")

    def close(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
        self.end_leftovers()
        if self.pg_name:
            import psycopg

            with psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)')

    def end_leftovers(self) -> None:
        """The document's detached workers and timers still running (a job an
        example left going, a --in timer): ended, so no run leaves processes
        behind. They are ours: their HOME is this document's."""
        import signal

        mark = f"HOME={self.home}".encode() + b"\0"
        ours = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != os.getpid():
                try:
                    if mark in (entry / "environ").read_bytes():
                        ours.append(int(entry.name))
                except OSError:
                    continue
        for pid in ours:  # the document is over: nothing they would still write matters
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        deadline = time.monotonic() + 3
        while ours and time.monotonic() < deadline:
            ours = [pid for pid in ours if Path(f"/proc/{pid}").exists() and "Z" not in _state(pid)]
            time.sleep(0.02)

    def postgresql(self) -> str | None:
        """A fresh database for this document's PostgreSQL blocks (None: no server)."""
        if self.pg_dsn is None:
            try:
                import psycopg

                with psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5) as admin:
                    name = f"jobctl_doc_{uuid.uuid4().hex[:10]}"
                    admin.execute(f'CREATE DATABASE "{name}"')
            except Exception as exc:  # no driver, no server: the block is skipped
                if IN_CI:
                    pytest.fail(f"PostgreSQL not reachable at {PG_ADMIN_DSN} but CI=true: {exc}")
                return None
            self.pg_name = name
            self.pg_dsn = f"{PG_ADMIN_DSN.rsplit('/', 1)[0]}/{name}"
            self.replacements.append((name, "warehouse"))
            # as conftest's pg_database: the schema and the demo procedures
            # (idempotent, so a document may still show `jobctl db init`)
            init = subprocess.run([sys.executable, "-m", "jobctl", "--dsn", self.pg_dsn, "db", "init",
                                   "--examples"], capture_output=True, text=True, timeout=120,
                                  env=self.env, cwd=self.home)
            assert init.returncode == 0, init.stderr
        return self.pg_dsn

    def execute(self, command: str) -> str:
        self.count += 1
        out = self.tmp / f"out.{self.count}"
        self.proc.stdin.write(f"{{\n{command}\n}} >{out} 2>/dev/null </dev/null\n"
                              f"echo __doc_done__\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + COMMAND_TIMEOUT
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self.selector.select(timeout=left):
                raise AssertionError(f"no end after {COMMAND_TIMEOUT:.0f} s: $ {command}")
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError(f"the shell ended during: $ {command}")
            if line.strip() == "__doc_done__":
                return out.read_text(encoding="utf-8", errors="replace")

    def substitute_ids(self, command: str) -> str:
        def real(match: re.Match) -> str:
            token = match.group(0)
            for shown, came in self.ids.items():
                if shown.startswith(token):
                    return came[:len(token)]
            return token

        return re.sub(r"\b[0-9a-f]{4,32}\b", real, command)

    def learn_ids(self, expected: list[str], actual: list[str]) -> None:
        for pattern, loose in ((HEX32, HEX32), (HEX8, ID8)):
            shown = [m for line in expected for m in pattern.findall(line)]
            came = [m for line in actual for m in loose.findall(line)]
            if len(shown) == len(came):
                for s, c in zip(shown, came):
                    self.ids.setdefault(s, c)

    def tidy(self, text: str) -> list[str]:
        for machine, doc in self.replacements:
            text = text.replace(machine, doc)
        text = self.host.sub(DOC_HOST, text)
        lines = text.splitlines()
        while lines and not lines[-1].strip():
            lines.pop()
        return lines

    def run_block(self, block: Block, first_line: int = 0) -> str | None:
        if block.postgresql:
            dsn = self.postgresql()
            if dsn is None:
                self.pg_skipped += 1
                return None
            self.execute(f"export JOBCTL_DSN='{dsn}'")
        try:
            for (command, expected), offset in zip(block.steps, block.lines):
                actual = self.tidy(self.execute(self.substitute_ids(command)))
                self.learn_ids(expected, actual)
                want = [normalise(line) for line in expected]
                got = [normalise(line) for line in actual]
                if not matches(want, got):
                    diff = "\n".join(difflib.unified_diff(
                        expected, actual, "documented", "printed", lineterm="", n=len(expected) + len(actual)))
                    return (f"line {first_line + 1 + offset}: $ {command}\nprinted other lines than the document shows "
                            f"(ids, times, durations and pids aside):\n{diff}\n")
        finally:
            if block.postgresql:
                self.execute("unset JOBCTL_DSN")
        return None


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"


def has_console(path: Path) -> bool:
    return "```console" in path.read_text(encoding="utf-8")


@pytest.mark.parametrize("path", [p for p in DOCUMENTS if has_console(p)],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_console_examples_print_what_the_document_shows(path, tmp_path):
    document = Document.parse(str(path), ConsoleParser())
    shell = Shell(tmp_path)
    document.namespace["shell"] = shell
    try:
        for example in document:
            example.evaluate()
    finally:
        shell.close()
    if shell.pg_skipped:
        pytest.skip(f"{shell.pg_skipped} PostgreSQL block(s) not run: no server at {PG_ADMIN_DSN}")


def test_a_changed_output_fails_with_a_diff(tmp_path):
    """The harness itself: an example whose output changed is a failure that
    shows the difference; ids, times and durations are not differences."""
    doc = tmp_path / "doc.md"
    doc.write_text("```console\n$ printf 'job 3f2a9c1e0b8d4c55a1f1e0f3b2d7a9c4 took 1.25s at 2026-12-01 10:00:00\\n'\n"
                   "job 0123456789abcdef0123456789abcdef took 9m00s at 2027-01-01T00:00:00+00:00\n"
                   "```\n\n```console\n$ echo 3 columns\n4 columns\n```\n")
    document = Document.parse(str(doc), ConsoleParser())
    shell = Shell(tmp_path / "run")
    document.namespace["shell"] = shell
    first, second = list(document)
    try:
        first.evaluate()
        with pytest.raises(AssertionError) as failure:
            second.evaluate()
    finally:
        shell.close()
    message = str(failure.value)
    assert "-4 columns" in message and "+3 columns" in message, message


def test_an_id_prefix_of_decimal_digits_is_an_id_where_the_document_shows_one():
    assert matches([normalise("58a47758  DEMO_SLEEP  completed")], [normalise("58147758  DEMO_SLEEP  completed")])
    assert not matches([normalise("12345678 rows")], [normalise("12345679 rows")])


def test_blocks_in_other_languages_are_not_run():
    text = "```sh\n$ false\nnever compared\n```\n\n```text\n$ false\n```\n"
    assert parse_console("$ a\nx\n$ b \\\n> c\n", False).steps == [("a", ["x"]), ("b \nc", [])]
    assert parse_console("$ cat <<'EOF'\n$ inside\nEOF\nout\n", False).steps == [
        ("cat <<'EOF'\n$ inside\nEOF", ["out"])]
    regions = list(ConsoleParser()(Document(text, "x.md")))
    assert regions == []
