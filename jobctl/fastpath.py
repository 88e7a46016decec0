"""`jobctl status`, `jobctl list` and `jobctl --help` without typer.

Importing typer costs about as much as everything else these commands do,
and they are the ones people and scripts run most, so they have a front door
of their own. It understands a plain subset of the command line: the global
options (--dsn, --profile, --debug, -q, before or after the command, as
cli.py allows them), then `status ID... [-f F] [--columns C] [--no-headers]`
or `list [-s S]... [-P P] [--since T] [-n N] [-Q Q] [-f F] [--columns C]
[--no-headers]`. Anything else (--watch, --help after a command, an unknown
or repeated option, a value click would refuse, `--`, shell completion)
returns None, and cli.py serves the line as it serves every other: its error
messages are click's own.

What a command then does, prints and how it fails is `frontend.py`'s, the
same functions cli.py calls, so both doors give the same output and exit
code (tests/test_fastpath.py runs both on the same command lines).

`jobctl --help` is typer's own text, kept in `helptext.py` with a checksum of
the cli.py it came from: when cli.py has changed since, or the terminal is
narrower than click's 80 columns, typer prints it. Regenerate it with
`python -m jobctl.fastpath --write-help` (a test says when).
"""

from __future__ import annotations

import os
import sys

#: option kinds
FLAG, VALUE, MULTIPLE = "flag", "value", "multiple"

#: what the root takes before the command (cli.py's `main` callback; the
#: global options that follow the command are moved in front of it first)
ROOT_OPTIONS = {"--dsn": ("dsn", VALUE), "--profile": ("profile", VALUE),
                "--debug": ("debug", FLAG), "--quiet": ("quiet", FLAG), "-q": ("quiet", FLAG)}

_VIEW_OPTIONS = {"--format": ("fmt", VALUE), "-f": ("fmt", VALUE),
                 "--columns": ("columns", VALUE), "--no-headers": ("no_headers", FLAG),
                 "--quiet": ("quiet", FLAG), "-q": ("quiet", FLAG)}

#: per command: its options served here (any other falls back to cli.py),
#: whether it takes job ids, and the defaults cli.py declares (a test holds
#: both to cli.py's declarations)
COMMANDS: dict[str, tuple[dict[str, tuple[str, str]], bool, dict[str, object]]] = {
    "status": ({**_VIEW_OPTIONS}, True, {"fmt": "table", "columns": None, "no_headers": False}),
    "list": ({"--status": ("statuses", MULTIPLE), "-s": ("statuses", MULTIPLE),
              "--procedure": ("procedure", VALUE), "-P": ("procedure", VALUE),
              "--since": ("since", VALUE), "--limit": ("limit", VALUE), "-n": ("limit", VALUE),
              "--queue": ("queue", VALUE), "-Q": ("queue", VALUE), **_VIEW_OPTIONS},
             False, {"statuses": None, "procedure": None, "since": "24h", "limit": 50, "queue": None,
                     "fmt": "table", "columns": None, "no_headers": False}),
}
#: `list --limit`: cli.py's bounds (click refuses the rest, with its message)
LIMIT_RANGE = (1, 1_000_000)
FORMATS = ("table", "json", "jsonl", "csv", "tsv")


def run(args: list[str]) -> int | None:
    """Serve `jobctl ARGS` here and return its exit code, or None when
    cli.py must serve it."""
    if any(name.startswith(("_JOBCTL_", "_TYPER_")) for name in os.environ):
        return None  # shell completion, or a switch that changes typer's help
    if args in (["--help"], ["-h"]):
        return _help()
    parsed = parse(args)
    if parsed is None:
        return None
    command, root, values, job_ids = parsed
    return _execute(command, root, values, job_ids)


def parse(args: list[str]) -> tuple[str, dict, dict, list[str]] | None:
    """(command, root options, command options, job ids), or None when the
    line is not one this module serves exactly as click would."""
    from .frontend import hoist_global_options

    words = hoist_global_options(list(args))
    root: dict = {}
    i = _options(words, 0, ROOT_OPTIONS, root)
    if i is None or i >= len(words) or words[i] not in COMMANDS:
        return None
    command = words[i]
    table, takes_ids, defaults = COMMANDS[command]
    given: dict = {}
    job_ids: list[str] = []
    i += 1
    while i < len(words):
        i = _options(words, i, table, given)
        if i is None:
            return None
        if i < len(words):  # a word that is no option: a job id
            if not takes_ids:
                return None
            job_ids.append(words[i])
            i += 1
    if takes_ids and not job_ids:
        return None
    if "fmt" in given:
        given["fmt"] = given["fmt"].casefold()  # click's Choice(case_sensitive=False)
        if given["fmt"] not in FORMATS:
            return None
    if "limit" in given:
        text = given["limit"]
        if not (text.isascii() and text.isdigit()):
            return None
        given["limit"] = int(text)
        if not LIMIT_RANGE[0] <= given["limit"] <= LIMIT_RANGE[1]:
            return None
    return command, root, {**defaults, **given}, job_ids


def _options(words: list[str], i: int, table: dict, values: dict) -> int | None:
    """Read options from words[i] into `values` up to the first word that
    is not an option; its index, or None for anything this module does not
    take exactly as click does."""
    while i < len(words):
        word = words[i]
        if word == "-":
            return None  # click reads a lone `-` as an argument; leave it to click
        if not word.startswith("-"):
            return i
        name, eq, value = word.partition("=")
        if not word.startswith("--"):
            name, eq = word, ""  # `-f=json` is -f with the value `=json` to click
        spec = table.get(name)
        if spec is None:
            return None  # `--`, --help, --version, --watch, an unknown or clustered option
        dest, kind = spec
        if kind == FLAG:
            if eq:
                return None  # click: "does not take a value"
            values[dest] = True
            i += 1
            continue
        if not eq:
            if i + 1 >= len(words) or words[i + 1].startswith("-"):
                return None  # missing value, or one click may read differently
            value = words[i + 1]
            i += 2
        else:
            i += 1
        if kind == MULTIPLE:
            values.setdefault(dest, []).append(value)
        elif dest in values:
            return None  # given twice: leave the precedence to click
        else:
            values[dest] = value
    return i


def _execute(command: str, root: dict, values: dict, job_ids: list[str]) -> int:
    from . import frontend, talk
    from .formats import Format

    frontend.set_debug(root.get("debug", False))
    if root.get("quiet") or values.pop("quiet", False):
        talk.set_quiet(True)
    opened = []

    def api():
        jc = frontend.open_api(root.get("dsn"), root.get("profile"))
        opened.append(jc)
        return jc

    fmt = Format(values["fmt"])

    def body() -> None:
        try:
            if command == "status":
                frontend.status(api, job_ids, fmt, values["columns"], values["no_headers"],
                                False, None)
            else:
                frontend.list_jobs(api, values["statuses"], values["procedure"], values["since"],
                                   values["limit"], values["queue"], fmt, values["columns"],
                                   values["no_headers"], False, None)
        finally:
            for jc in opened:
                jc.close()

    return frontend.run_command(body)


# -- jobctl --help -------------------------------------------------------------------------

#: click fits help to min(terminal columns, 80) - 2; the text kept is the 80-column one
HELP_COLUMNS = 80


def _help() -> int | None:
    """Typer's `jobctl --help`, as kept in helptext.py, or None when it may
    not be what typer would print now."""
    if _terminal_columns() < HELP_COLUMNS:
        return None
    from . import helptext

    if helptext.CLI_CRC32 != cli_checksum():
        return None
    sys.stdout.write(helptext.ROOT_HELP)
    sys.stdout.flush()
    return 0


def cli_checksum() -> int | None:
    """CRC-32 of cli.py as installed (None when it cannot be read)."""
    import zlib

    try:
        with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "cli.py"), "rb") as fh:
            return zlib.crc32(fh.read())
    except OSError:
        return None


def _terminal_columns() -> int:
    """shutil.get_terminal_size().columns, which click sizes help by:
    COLUMNS, else the terminal on stdout, else 80. (shutil itself loads the
    compression modules, a few milliseconds.)"""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns if sys.__stdout__ else 0
        except (AttributeError, ValueError, OSError):
            columns = 0
        columns = columns or 80
    return columns


def write_help() -> str:
    """Write helptext.py from typer's own `jobctl --help`; returns its path."""
    import subprocess

    text = subprocess.run(
        [sys.executable, "-c", "from jobctl.cli import run; run()", "--help"],
        capture_output=True, text=True, check=True,
        env={**os.environ, "COLUMNS": str(HELP_COLUMNS)}).stdout
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "helptext.py")
    lines = "".join(f"    {line!r}\n" for line in text.splitlines(keepends=True))
    with open(path, "w", encoding="utf-8") as fh:
        fh.write('"""`jobctl --help` as typer prints it at 80 columns or more, for fastpath.py.\n\n'
                 "Generated by `python -m jobctl.fastpath --write-help` from the cli.py whose\n"
                 'CRC-32 is CLI_CRC32; do not edit."""\n\n'
                 f"CLI_CRC32 = {cli_checksum()}\n"
                 f"ROOT_HELP = (\n{lines})\n")
    return path


if __name__ == "__main__":
    if sys.argv[1:] != ["--write-help"]:
        raise SystemExit("usage: python -m jobctl.fastpath --write-help")
    print(write_help())
