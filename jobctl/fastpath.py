"""`jobctl status`, `jobctl list` and `jobctl --help` without typer.

Importing typer costs about as much as everything else these commands do,
and they are the ones people and scripts run most, so they have a front door
of their own. It is not a second parser of its own design: jobctl.cli declares
every option once, and `python -m jobctl.fastpath --write-help` reads the
typer app into helptext.py (the root help text, and for the commands served
here each option's spellings, kind and default, the formats, `--limit`'s
bounds), with the CRC-32 of the jobctl.cli it read. When jobctl.cli has changed
since, nothing is served here. This module only walks a line against those
tables: the global options (before or after the command, as jobctl.cli allows
them), then `status ID...` or `list` with the options in SERVED. Anything
else (--watch, --help after a command, an unknown or repeated option, a
value click would refuse, `--`, shell completion) returns None, and jobctl.cli
serves the line as it serves every other: its error messages are click's own.

What a command then does, prints and how it fails is `frontend.py`'s, the
same functions jobctl.cli calls, so both doors give the same output and exit
code (tests/test_fastpath.py runs both on the same command lines).
`jobctl --help` is typer's own text at 80 columns; a narrower terminal gets
typer's, fitted to it.
"""

from __future__ import annotations

import os
import sys
from typing import Any

#: option kinds
FLAG, VALUE, MULTIPLE = "flag", "value", "multiple"

#: What this module serves, by click's parameter names: the global options,
#: and per command the options `_execute` passes on. How each is spelled,
#: its kind and default, whether the command takes job ids, the formats and
#: `--limit`'s bounds are jobctl.cli's own: read from the typer app and kept in
#: helptext.py with the help text (`--write-help`), so jobctl.cli is the one place
#: options are declared, and a jobctl.cli changed since sends every line to typer.
SERVED_ROOT = frozenset({"dsn", "profile", "debug", "quiet"})
SERVED = {"status": frozenset({"fmt", "columns", "no_headers", "quiet"}),
          "list": frozenset({"status_", "procedure", "since", "limit", "queue", "fmt", "columns",
                             "no_headers", "quiet"})}


def run(args: list[str]) -> int | None:
    """Serve `jobctl ARGS` here and return its exit code, or None when
    jobctl.cli must serve it."""
    if any(name.startswith(("_JOBCTL_", "_TYPER_")) for name in os.environ):
        return None  # shell completion, or a switch that changes typer's help
    declared = _declared()
    if declared is None:
        return None
    if args in (["--help"], ["-h"]):
        return _help(declared)
    parsed = parse(args, declared)
    if parsed is None:
        return None
    command, root, values, job_ids = parsed
    return _execute(command, root, values, job_ids)


def _declared():
    """helptext, the typer app as it was generated, while it is the jobctl.cli
    installed; None otherwise."""
    from . import helptext

    return helptext if helptext.CLI_CRC32 == cli_checksum() else None


def parse(args: list[str], declared) -> tuple[str, dict, dict, list[str]] | None:
    """(command, root options, command options, job ids), or None when the
    line is not one this module serves exactly as click would."""
    from .frontend import hoist_global_options

    words = hoist_global_options(list(args))
    root: dict = {}
    i = _options(words, 0, declared.ROOT_OPTIONS, SERVED_ROOT, root)
    if i is None or i >= len(words) or words[i] not in SERVED:
        return None
    command = words[i]
    table, takes_ids, defaults = declared.COMMANDS[command]
    served = SERVED[command]
    given: dict = {}
    job_ids: list[str] = []
    i += 1
    while i < len(words):
        i = _options(words, i, table, served, given)
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
        if given["fmt"] not in declared.FORMATS:
            return None
    if "limit" in given:
        text = given["limit"]
        if not (text.isascii() and text.isdigit()):
            return None
        given["limit"] = int(text)
        low, high = declared.LIMIT_RANGE
        if not low <= given["limit"] <= high:
            return None
    return command, root, {**{k: v for k, v in defaults.items() if k in served}, **given}, job_ids


def _options(words: list[str], i: int, table: dict, served: frozenset[str],
             values: dict) -> int | None:
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
        if spec is None or spec[0] not in served:
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
                frontend.list_jobs(api, values["status_"], values["procedure"], values["since"],
                                   values["limit"], values["queue"], fmt, values["columns"],
                                   values["no_headers"], False, None)
        finally:
            for jc in opened:
                jc.close()

    return frontend.run_command(body)


# -- jobctl --help -------------------------------------------------------------------------

#: click fits help to min(terminal columns, 80) - 2; the text kept is the 80-column one
HELP_COLUMNS = 80


def _help(declared) -> int | None:
    """Typer's `jobctl --help`, as kept in helptext.py, or None when it may
    not be what typer would print now."""
    if _terminal_columns() < HELP_COLUMNS:
        return None
    sys.stdout.write(declared.ROOT_HELP)
    sys.stdout.flush()
    return 0


def cli_checksum() -> int | None:
    """CRC-32 of the cli package as installed, every module of it in name
    order (None when it cannot be read)."""
    import zlib

    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cli")
    crc = 0
    try:
        for name in sorted(os.listdir(here)):
            if name.endswith(".py"):
                with open(os.path.join(here, name), "rb") as fh:
                    crc = zlib.crc32(fh.read(), crc)
    except OSError:
        return None
    return crc


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


def declared_options() -> dict:
    """What jobctl.cli declares for the global options and the commands served
    here: {"ROOT_OPTIONS": {spelling: (name, kind)}, "COMMANDS": {command:
    ({spelling: (name, kind)}, takes job ids, {name: default})}, "FORMATS",
    "LIMIT_RANGE"}. Imports typer: for --write-help and the tests only."""
    from typer._click import Context
    from typer.main import get_group

    from .cli import app

    group = get_group(app)

    def options(command) -> dict:
        out = {}
        for p in command.params:
            if p.param_type_name == "option":
                kind = FLAG if p.is_flag else MULTIPLE if p.multiple else VALUE
                out.update({opt: (p.name, kind) for opt in p.opts + p.secondary_opts})
        return out

    commands, formats, limits = {}, None, None
    for name in SERVED:
        command: Any = group.get_command(Context(group), name)
        defaults = {p.name: getattr(p.default, "value", p.default) for p in command.params
                    if p.param_type_name == "option" and p.expose_value}
        arguments = [p for p in command.params if p.param_type_name == "argument"]
        commands[name] = (options(command), bool(arguments), defaults)
        for p in command.params:
            kind: Any = p.type
            if p.name == "fmt":
                formats = tuple(kind.choices)
            if p.name == "limit":
                limits = (kind.min, kind.max)
    return {"ROOT_OPTIONS": options(group), "COMMANDS": commands, "FORMATS": formats,
            "LIMIT_RANGE": limits}


def write_help() -> str:
    """Write helptext.py from typer's own `jobctl --help` and the options
    jobctl.cli declares; returns its path."""
    import pprint
    import subprocess

    text = subprocess.run(
        [sys.executable, "-c", "from jobctl.cli import run; run()", "--help"],
        capture_output=True, text=True, check=True,
        env={**os.environ, "COLUMNS": str(HELP_COLUMNS)}).stdout
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "helptext.py")
    lines = "".join(f"    {line!r}\n" for line in text.splitlines(keepends=True))
    with open(path, "w", encoding="utf-8") as fh:
        fh.write('"""`jobctl --help` as typer prints it at 80 columns or more, and the options\n'
                 "jobctl.cli declares for what fastpath.py serves.\n\n"
                 "Generated by `python -m jobctl.fastpath --write-help` from the jobctl.cli whose\n"
                 'CRC-32 is CLI_CRC32; do not edit."""\n\n'
                 f"CLI_CRC32 = {cli_checksum()}\n"
                 f"ROOT_HELP = (\n{lines})\n")
        for name, value in declared_options().items():
            fh.write(f"{name} = {pprint.pformat(value, width=100, sort_dicts=False)}\n")
    return path


if __name__ == "__main__":
    if sys.argv[1:] != ["--write-help"]:
        raise SystemExit("usage: python -m jobctl.fastpath --write-help")
    print(write_help())
