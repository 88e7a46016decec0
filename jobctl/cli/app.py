"""The typer app: the root command and its global options, how every exit
leaves (`JobctlGroup.main`: one line on stderr, the right code), the options
the commands share, and shell completion."""

import os
import sys
from typing import Annotated, Optional

import typer
import typer.core

# typer 0.28 carries its own copy of click: its exceptions are the ones raised
from typer._click.exceptions import (
    BadParameter, ClickException, MissingParameter, NoArgsIsHelpError, NoSuchOption,
    UsageError as ClickUsageError,
)
from typer.exceptions import Abort, Exit

from .. import __version__, frontend, talk
from ..formats import Format
# what every command uses, shared with the fast path (fastpath.py)
from ..frontend import GLOBAL_OPTIONS, alert as _alert, hoist_global_options


#: as api.MAX_LIST_LIMIT, repeated so that --help does not import the api
MAX_LIST_LIMIT = 1_000_000


def _set_quiet(ctx, param, value) -> bool:
    if value:
        talk.set_quiet(True)
    return value


_QUIET_HELP = "Nothing on stderr unless something went wrong (for cron); errors still print."


def _with_quiet(command):
    """-q after the command name too (`jobctl list -q`), as before it."""
    if command is not None and not any(p.name == "quiet" for p in command.params):
        command.params.append(typer.core.TyperOption(
            param_decls=["-q", "--quiet"], is_flag=True, default=False, expose_value=False,
            callback=_set_quiet, help=_QUIET_HELP))
    return command


class _QuietGroup(typer.core.TyperGroup):
    def get_command(self, ctx, cmd_name):
        return _with_quiet(super().get_command(ctx, cmd_name))


class JobctlGroup(_QuietGroup):
    """Every exit leaves through here: one line on stderr, the right code."""

    def parse_args(self, ctx, args):
        args = list(args)
        if args and not ctx.resilient_parsing and GLOBAL_OPTIONS.get(args[-1]):
            ctx.fail(f"Option '{args[-1]}' requires an argument.")
        return super().parse_args(ctx, hoist_global_options(args))

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        talk.set_quiet(False)  # one process may run several commands (tests, the library)

        def invoke():
            try:
                # typer turns Ctrl-C into Exit(130) and, not standalone, returns the code
                rv = super(JobctlGroup, self).main(args, prog_name or "jobctl", complete_var,
                                                   standalone_mode=False, **extra)
            except Exit as exc:
                return exc.exit_code
            except Abort:
                return 130
            except NoArgsIsHelpError as exc:
                exc.show()
                return exc.exit_code
            except ClickException as exc:
                hint = ""
                if isinstance(exc, ClickUsageError) and exc.ctx is not None:
                    hint = f" (see `{exc.ctx.command_path} --help`)"
                _alert(f"error: {parser_message(exc)}{hint}")
                return exc.exit_code
            code = rv if isinstance(rv, int) else 0
            if code == 130:
                _alert("interrupted (detached jobs keep running)")
            return code

        code = frontend.run_command(invoke)
        if standalone_mode:
            sys.exit(code)
        return code


#: what a missing argument is, in jobctl's words
_ARGUMENT_WORDS = {"job_ids": "job id (one or more ids or unique prefixes)",
                   "job_id": "job id (the id or a unique prefix)",
                   "procedure": "procedure name", "name": "queue name"}


def parser_message(exc: ClickException) -> str:
    """click's complaint about the command line, in jobctl's words (lower
    case, the option's long name, what would be accepted): `Missing argument
    'job_ids'` or `'abc' is not a valid int range` read like no other message
    of jobctl's."""
    import re

    message = exc.format_message()
    if isinstance(exc, MissingParameter) and exc.param is not None:
        if exc.param.param_type_name == "argument":
            name = exc.param.name or ""
            return "missing " + _ARGUMENT_WORDS.get(name, name.replace("_", " "))
        return f"missing option {_option_name(exc.param)}"
    if isinstance(exc, BadParameter) and exc.param is not None:
        option = _option_name(exc.param)
        found = re.match(r"(.+?) is not (?:a valid .+|in the range .+|one of .+)$", exc.message,
                         re.DOTALL)
        expected = _expected(exc.param.type)
        if found and expected:
            value = found.group(1)
            value = value if value[:1] in "'\"" else repr(value)
            return f"invalid {option} {value}: must be {expected}"
        return f"invalid {option}: {_lower_first(exc.message.rstrip('.'))}"
    if isinstance(exc, NoSuchOption):
        maybe = sorted(exc.possibilities or ())
        return f"unknown option {exc.option_name}" + (
            f" (did you mean {' or '.join(maybe)}?)" if maybe else "")
    if m := re.fullmatch(r"Option '(.+)' requires (?:an argument|(\d+) arguments)\.", message):
        return f"option {m.group(1)} needs a value" if not m.group(2) else \
            f"option {m.group(1)} needs {m.group(2)} values"
    if m := re.fullmatch(r"Option '(.+)' does not take a value\.", message):
        return f"option {m.group(1)} takes no value"
    if m := re.fullmatch(r"No such command '(.+)'\.(?: Did you mean (.+)\?)?", message, re.DOTALL):
        near = " or ".join(n.strip("'") for n in (m.group(2) or "").split(", ") if n)
        return f"unknown command {m.group(1)!r}" + (f" (did you mean {near}?)" if near else "")
    if m := re.fullmatch(r"Got unexpected extra argument(?:\(s\)|s)? \((.+)\)", message, re.DOTALL):
        return f"unexpected extra argument(s): {m.group(1)}"
    return _lower_first(message.rstrip("."))


def _lower_first(text: str) -> str:
    """`Invalid value` → `invalid value`, as jobctl's own messages start."""
    return text[:1].lower() + text[1:] if text[:2].isalpha() and not text[:2].isupper() else text


def _option_name(param) -> str:
    """--limit for `'--limit' / '-n'`; an argument's name in capitals."""
    if param.param_type_name != "option":
        return (param.name or "argument").upper()
    longest = max(param.opts, key=len, default=param.name or "option")
    return longest


def _expected(kind) -> str | None:
    """What a value of click's type `kind` must be, or None when not known."""
    name = getattr(kind, "name", "")
    choices = getattr(kind, "choices", None)
    if choices:
        words = [str(getattr(c, "value", c)) for c in choices]
        return "one of " + (", ".join(words[:-1]) + " or " + words[-1] if len(words) > 1 else words[0])
    if name.startswith("integer") or name.startswith("int"):
        what = "a whole number"
    elif name.startswith("float"):
        what = "a number"
    else:
        return None
    low, high = getattr(kind, "min", None), getattr(kind, "max", None)
    def shown(bound) -> str:
        return str(int(bound)) if float(bound).is_integer() else str(bound)

    if low is not None and high is not None:
        return f"{what} from {shown(low)} to {shown(high)}"
    if low is not None:
        return f"{what}, {shown(low)} or more"
    if high is not None:
        return f"{what}, {shown(high)} or less"
    return what


app = typer.Typer(
    cls=JobctlGroup, add_completion=True, no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False, pretty_exceptions_show_locals=False, rich_markup_mode=None,
    help="Run database stored procedures as detached background jobs, and keep their history "
         "in ASYNC_JOBS.",
)
db_app = typer.Typer(cls=_QuietGroup, no_args_is_help=True, rich_markup_mode=None,
                     help="Create or upgrade the ASYNC_JOBS schema.")
app.add_typer(db_app, name="db")
queue_app = typer.Typer(cls=_QuietGroup, no_args_is_help=True, rich_markup_mode=None,
                        help="Queues: how many jobs run at once, pause and resume.")
app.add_typer(queue_app, name="queue")
worker_app = typer.Typer(cls=_QuietGroup, invoke_without_command=True, rich_markup_mode=None,
                         help="Run a worker pool in the foreground (a service), or list the pools.")
app.add_typer(worker_app, name="worker")
token_app = typer.Typer(cls=_QuietGroup, no_args_is_help=True, rich_markup_mode=None,
                        help="Tokens for `jobctl serve`: create, list, revoke.")
app.add_typer(token_app, name="token")

FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="Output format.",
                                           case_sensitive=False)]


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"jobctl {__version__}\n")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    dsn: Annotated[Optional[str], typer.Option(
        "--dsn", envvar="JOBCTL_DSN", show_envvar=True,
        help="Database URL: sqlite:///path, postgresql://user@host/db, oracle://user@host:port/service. "
             "A password written here is visible to other local users in `ps` for as long as "
             "jobctl runs (all of `submit --wait`): use a profile's password_file, "
             "JOBCTL_PASSWORD or the prompt instead.")] = None,
    profile: Annotated[Optional[str], typer.Option(
        "--profile", envvar="JOBCTL_PROFILE", show_envvar=True,
        help="Profile from ~/.config/jobctl/config.toml.")] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", callback=_set_quiet, help=_QUIET_HELP)] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
) -> None:
    """Run database stored procedures as detached background jobs.

    Example: jobctl submit SUMA_SIMPLE --param vA=10
    """
    frontend.set_debug(debug)

    def typed(name: str, value: Optional[str]) -> Optional[str]:
        # taken from JOBCTL_DSN / JOBCTL_PROFILE: resolve_settings reads those
        # itself, and then `jobctl config` can say which one chose the database
        source = ctx.get_parameter_source(name)
        return None if source is not None and source.name == "ENVIRONMENT" else value

    ctx.obj = {"dsn": typed("dsn", dsn), "profile": typed("profile", profile)}


def settings_for(ctx: typer.Context):
    root = ctx.find_root().obj or {}
    return frontend.settings(root.get("dsn"), root.get("profile"))


#: as session.DEFAULT_ONLY, repeated so that --help does not import the session
DEFAULT_ONLY = "default"


def api_for(ctx: typer.Context, *, create: bool | str = False):
    """`create`: DEFAULT_ONLY for submit, queue set and doctor, which may
    bring the default SQLite file into being; True for db init only, which
    creates any file a DSN names; any other command on a missing one is exit 4."""
    root = ctx.find_root().obj or {}
    api = frontend.open_api(root.get("dsn"), root.get("profile"), create=create)
    ctx.call_on_close(api.close)
    return api


ColumnsOpt = Annotated[Optional[str], typer.Option(
    "--columns", help="Comma-separated columns, in order (table, csv, tsv); the JSON key names, "
                      "or a table header such as ID or PROCEDURE.")]
NoHeadersOpt = Annotated[bool, typer.Option("--no-headers", help="No header line (table, csv, tsv).")]
WatchOpt = Annotated[bool, typer.Option(
    "--watch", "-w", help="Keep the table on screen, refreshed in place; Ctrl-C leaves (exit 0).")]
IntervalOpt = Annotated[Optional[str], typer.Option(
    "--interval", help="--watch refresh interval (default: JOBCTL_POLL, 0.5s).")]


# -- shell completion: called by the shell on Tab, never on a normal run -----------

#: how many of the newest job ids Tab offers
COMPLETION_IDS = 50


def _completion_api(ctx: typer.Context):
    """A Jobctl for the database the command line names, or None. Completion
    never asks for a password (stdin is the user's terminal while the shell
    waits), never creates a SQLite file, and gives up quickly."""
    from dataclasses import replace

    from ..api import Jobctl
    from ..config import resolve_settings

    sys.stdin = open(os.devnull)  # noqa: SIM115 - the process ends after completing
    root = ctx.find_root().params
    settings = resolve_settings(root.get("dsn"), root.get("profile"))
    conn = settings.connection
    if conn.scheme == "sqlite" and not os.path.exists(conn.database or ""):
        return None
    if conn.scheme == "postgresql":
        settings = replace(settings, connection=replace(
            conn, options={**conn.options, "connect_timeout": 2}))
    return Jobctl(settings)


def _complete_from_db(ctx: typer.Context, fetch) -> list:
    try:
        api = _completion_api(ctx)
        if api is None:
            return []
        with api:
            return fetch(api)
    except Exception:  # Tab must never print a traceback into the command line
        return []


def complete_job_id(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    prefix = incomplete.lower()
    return [(job_id, f"{procedure} {status}") for job_id, procedure, status in
            _complete_from_db(ctx, lambda api: api.recent_jobs(COMPLETION_IDS))
            if job_id.startswith(prefix)]


def complete_procedure(ctx: typer.Context, incomplete: str) -> list[str]:
    wanted = incomplete.casefold()
    return [_in_typed_case(name, incomplete)
            for name in _complete_from_db(ctx, lambda api: api.procedure_names())
            if name.casefold().startswith(wanted)]


def _in_typed_case(name: str, typed: str) -> str:
    """`suma<Tab>` → suma_simple: the shell keeps only completions that start
    with what was typed, and an unquoted name means the same in any case."""
    if name.startswith(typed) or '"' in name:
        return name
    if typed == typed.lower():
        return name.lower()
    if typed == typed.upper():
        return name.upper()
    return typed + name[len(typed):]


def complete_status(incomplete: str) -> list[str]:
    from ..model import JobStatus  # no driver, no database: statuses are jobctl's own

    done, _, last = incomplete.rpartition(",")  # --status failed,ti<Tab>
    head = done + "," if done else ""
    return [head + s.value for s in JobStatus if s.value.startswith(last.lower())]


def refuse_extra_args(ctx: typer.Context) -> None:
    """`jobctl submit P vA=1`: a parameter without -p; say how to give it."""
    if not ctx.args:
        return
    from ..errors import UsageError

    word = ctx.args[0]
    name, eq, _ = word.partition("=")
    if eq and name.strip() and not name.startswith("-"):
        raise UsageError(f"unexpected argument {word!r}: give parameters with -p, as in -p {word}")
    raise UsageError(f"unexpected extra argument {word!r} (see `{ctx.command_path} --help`)")


EXTRA_ARGS = {"allow_extra_args": True}  # refused by refuse_extra_args, with a hint
