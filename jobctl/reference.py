"""The command reference (docs/reference.md) and the man page (man/jobctl.1),
generated from what the typer app in jobctl.cli declares, so neither can
drift from the CLI.

    python -m jobctl.reference --write    # rewrite both from the CLI
    python -m jobctl.reference --check    # exit 1 when a committed copy is stale

tests/test_reference.py fails while a committed copy differs from what this
module generates. Imports typer: for the command above and the tests only.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from typing import Any

#: Where the generated files live, relative to the source tree's root.
MARKDOWN = os.path.join("docs", "reference.md")
MANPAGE = os.path.join("man", "jobctl.1")

EXIT_CODES = [
    ("0", "done; for wait and submit --wait: every job completed"),
    ("1", "a waited-for job failed, was cancelled, timed out or was lost; doctor found a failed check"),
    ("2", "usage or input error: bad option, bad NAME=VALUE, a value not of the parameter's type, "
          "an invalid name, an ambiguous job id prefix"),
    ("3", "not found: job id, procedure, queue"),
    ("4", "database error: cannot connect, bad credentials, schema missing or old, permission, "
          "no jobs database"),
    ("5", "wait --timeout ran out with jobs still going"),
    ("130", "interrupted (Ctrl-C leaves detached jobs running)"),
]

ENVIRONMENT = [
    ("JOBCTL_DSN", "the database, when --dsn is not given"),
    ("JOBCTL_PROFILE", "the profile of the config file, when --profile is not given"),
    ("JOBCTL_PASSWORD", "the database password"),
    ("JOBCTL_MODULES", "more modules of SQLite local procedures, separated by ':'"),
    ("JOBCTL_HEARTBEAT, JOBCTL_LOST_AFTER, JOBCTL_START_TIMEOUT, JOBCTL_POLL, JOBCTL_CANCEL_POLL, "
     "JOBCTL_RETRY_BACKOFF, JOBCTL_BUSY_TIMEOUT, JOBCTL_OUTCOME_RETRY",
     "timing knobs in seconds (docs/configuration.md)"),
    ("PGHOST, PGDATABASE, PGSERVICE, TWO_TASK, TNS_ADMIN",
     "the PostgreSQL and Oracle environment, as psql and sqlplus read it"),
    ("XDG_CONFIG_HOME, XDG_DATA_HOME, XDG_STATE_HOME", "where the config file, the SQLite default "
     "database and the worker log live"),
    ("NO_COLOR", "tables without colour"),
]

FILES = [
    ("~/.config/jobctl/config.toml", "profiles: DSN, password source, driver options"),
    ("~/.local/share/jobctl/jobs.db", "the SQLite default database"),
    ("~/.local/state/jobctl/worker.log", "what a worker could not write into its job's row"),
]


@dataclass
class Option:
    spellings: str  # "-p, --param <str>"
    help: str
    extra: str  # "default: 0; env: JOBCTL_DSN; required"


@dataclass
class Command:
    path: str  # "queue set"
    usage: str  # "jobctl queue set [OPTIONS] NAME"
    summary: str
    body: str  # the docstring after its summary
    arguments: list[Option]
    options: list[Option]


def _clean(text: str | None) -> str:
    return re.sub(r"\s+", " ", (text or "").replace("\b", "")).strip()


def _option(param: Any, ctx: Any) -> Option:
    if param.param_type_name == "argument":
        name = param.name.upper()
        spelling = f"{name}..." if param.nargs == -1 else name
    else:
        names = sorted(param.opts, key=len) + list(param.secondary_opts)
        spelling = ", ".join(names)
        if not param.is_flag and not param.count:
            spelling += f" {param.make_metavar(ctx)}"
    extra = []
    default = getattr(param.default, "value", param.default)
    if (param.param_type_name == "option" and not param.is_flag and default not in (None, (), [], "")
            and param.show_default is not False):
        extra.append(f"default: {default}")
    range_text = getattr(param.type, "_describe_range", None)
    if range_text:
        extra.append(range_text())
    choices = getattr(param.type, "choices", None)
    if choices:
        extra.append("one of: " + ", ".join(getattr(c, "value", c) for c in choices))
    if param.envvar:
        envvars = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar)
        extra.append("env: " + ", ".join(envvars))
    if param.required:
        extra.append("required")
    return Option(spelling, _clean(getattr(param, "help", None)), "; ".join(extra))


def _walk(command: Any, ctx: Any, path: list[str]) -> list[Command]:
    from typer._click import Context

    out = []
    doc = (command.help or "").strip()
    summary, _, body = doc.partition("\n\n")
    params = [p for p in command.params if not getattr(p, "hidden", False)]
    pieces = ["jobctl", *path]
    if any(p.param_type_name == "option" for p in params):
        pieces.append("[OPTIONS]")
    subcommands = getattr(command, "commands", None)
    for p in params:
        if p.param_type_name == "argument":
            name = p.name.upper()
            name = f"{name}..." if p.nargs == -1 else name
            pieces.append(name if p.required else f"[{name}]")
    if subcommands and path:
        pieces.append("[COMMAND]" if getattr(command, "invoke_without_command", False) else "COMMAND")
    if path:
        out.append(Command(
            " ".join(path), " ".join(pieces), _clean(summary), body.strip(),
            [_option(p, ctx) for p in params if p.param_type_name == "argument"],
            [_option(p, ctx) for p in params if p.param_type_name == "option"]))
    for name in subcommands or ():
        sub = command.get_command(ctx, name)
        if sub is None or getattr(sub, "hidden", False):
            continue
        out.extend(_walk(sub, Context(sub, info_name=name, parent=ctx), [*path, name]))
    return out


def collect() -> tuple[Command, list[Command]]:
    """The root command (its global options) and every command, as declared."""
    from typer._click import Context
    from typer.main import get_group

    from .cli import app

    group = get_group(app)
    ctx = Context(group, info_name="jobctl")
    root_params = [p for p in group.params if not getattr(p, "hidden", False)]
    root = Command("", "jobctl [GLOBAL OPTIONS] COMMAND [ARGS]...", _clean(group.help), "", [],
                   [_option(p, ctx) for p in root_params if p.param_type_name == "option"])
    return root, _walk(group, ctx, [])


# --- Markdown -------------------------------------------------------------


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def _md_options(options: list[Option], title: str) -> list[str]:
    if not options:
        return []
    lines = [f"| {title} | |", "|---|---|"]
    for o in options:
        text = o.help + (f" ({o.extra})" if o.extra else "")
        lines.append(f"| `{_md_cell(o.spellings)}` | {_md_cell(text)} |")
    return lines + [""]


def markdown() -> str:
    from . import __version__

    root, commands = collect()
    out = ["# Command reference", "",
           f"jobctl {__version__}. Generated from the CLI's own declarations by",
           "`python -m jobctl.reference --write` (a test fails when this file is stale);",
           "do not edit. The same text is the man page: `man jobctl`, or",
           "`man -l man/jobctl.1` in the source tree.", "",
           f"    {root.usage}", "",
           root.summary + " Global options may come before or after the command.", ""]
    out += ["Commands: " + ", ".join(f"[{c.path}](#jobctl-{c.path.replace(' ', '-')})"
                                     for c in commands) + ".", ""]
    out += _md_options(root.options, "global option")
    for c in commands:
        out += [f"## jobctl {c.path}", "", f"    {c.usage}", "", c.summary, ""]
        if c.body:
            out += [_md_body(c.body), ""]
        out += _md_options(c.arguments, "argument")
        out += _md_options(c.options, "option")
    out += ["## Exit status", "", "| code | meaning |", "|---|---|"]
    out += [f"| {code} | {text} |" for code, text in EXIT_CODES]
    out += ["", "## Environment", "", "| variable | |", "|---|---|"]
    out += [f"| `{name}` | {text} |" for name, text in ENVIRONMENT]
    out += ["", "## Files", "", "| file | |", "|---|---|"]
    out += [f"| `{name}` | {text} |" for name, text in FILES]
    return "\n".join(out) + "\n"


def _md_body(body: str) -> str:
    """A docstring's paragraphs; an `Example:` line as a code span."""
    paragraphs = []
    for para in body.split("\n\n"):
        text = _clean(para)
        if text.startswith("Example:"):
            text = f"Example: `{text[len('Example:'):].strip()}`"
        paragraphs.append(text)
    return "\n\n".join(paragraphs)


# --- roff -----------------------------------------------------------------


def _roff(text: str) -> str:
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(("\\&" + line) if line.startswith((".", "'")) else line
                     for line in text.split("\n"))


def _roff_options(options: list[Option]) -> list[str]:
    out = []
    for o in options:
        out += [".TP", f"\\fB{_roff(o.spellings)}\\fR",
                _roff(o.help + (f" ({o.extra})" if o.extra else ""))]
    return out


def manpage() -> str:
    from . import __version__

    root, commands = collect()
    out = [".\\\" Generated by python -m jobctl.reference --write from jobctl's CLI; do not edit.",
           f'.TH JOBCTL 1 "" "jobctl {__version__}" "User Commands"',
           ".SH NAME", "jobctl \\- " + _roff(root.summary.rstrip(".")),
           ".SH SYNOPSIS", f"\\fBjobctl\\fR [\\fIGLOBAL OPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]...",
           ".SH DESCRIPTION",
           _roff("jobctl runs database stored procedures (SQLite, PostgreSQL, Oracle) as "
                 "detached background jobs and keeps their history in the table ASYNC_JOBS of "
                 "the same database. stdout carries data, stderr messages. Global options may "
                 "come before or after the command."),
           ".SH GLOBAL OPTIONS", *_roff_options(root.options),
           ".SH COMMANDS"]
    for c in commands:
        out += [f".SS {_roff(c.path)}", f"\\fB{_roff(c.usage)}\\fR", ".PP", _roff(c.summary)]
        if c.body:
            for para in _md_body(c.body).replace("`", "").split("\n\n"):
                out += [".PP", _roff(para)]
        out += _roff_options(c.arguments + c.options)
    out += [".SH EXIT STATUS"]
    for code, text in EXIT_CODES:
        out += [".TP", f"\\fB{code}\\fR", _roff(text)]
    out += [".SH ENVIRONMENT"]
    for name, text in ENVIRONMENT:
        out += [".TP", f"\\fB{_roff(name)}\\fR", _roff(text)]
    out += [".SH FILES"]
    for name, text in FILES:
        out += [".TP", f"\\fI{_roff(name)}\\fR", _roff(text)]
    out += [".SH SEE ALSO",
            _roff("The documentation in the source tree: README.md and docs/ (getting-started.md, "
                  "jobs.md, configuration.md, scripting-and-cron.md, queues-pool-hosts.md, "
                  "guarantees.md, oracle-dba.md, troubleshooting.md, reference.md).")]
    return "\n".join(out) + "\n"


def generated() -> dict[str, str]:
    """{relative path: text} of every generated file."""
    return {MARKDOWN: markdown(), MANPAGE: manpage()}


def main(argv: list[str]) -> int:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if argv not in (["--write"], ["--check"]):
        print("usage: python -m jobctl.reference --write | --check", file=sys.stderr)
        return 2
    stale = []
    for relative, text in generated().items():
        path = os.path.join(root, relative)
        try:
            with open(path, encoding="utf-8") as fh:
                current = fh.read()
        except FileNotFoundError:
            current = None
        if current != text:
            stale.append(relative)
            if argv == ["--write"]:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w", encoding="utf-8") as fh:
                    fh.write(text)
    if argv == ["--check"] and stale:
        print(f"stale: {', '.join(stale)}; run python -m jobctl.reference --write", file=sys.stderr)
        return 1
    for relative in stale:
        print(f"wrote {relative}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
