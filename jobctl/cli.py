"""The command line: parses options, calls `jobctl.api`, renders. No SQL and
no driver imports here; rich loads only when a table or a progress bar is shown.

Errors are translated in one place, `frontend.failure`, called from
`JobctlGroup.main`: a domain error becomes `jobctl: error: <message>` on
stderr and its exit code. `status`, `list` and `--help` usually never get
here: `fastpath.py` serves them without typer, with the same code from
`frontend.py`.
"""

import os
import sys
from typing import Annotated, Optional

import typer
import typer.core

# typer 0.28 carries its own copy of click: its exceptions are the ones raised
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError as ClickUsageError
from typer.exceptions import Abort, Exit

from . import __version__, frontend, talk
from .errors import JobctlError, JobsNotCompleted
from .formats import Format
# what every command uses, shared with the fast path (fastpath.py)
from .frontend import (  # noqa: F401 - GLOBAL_OPTIONS, hoist_global_options: for tests and tools
    GLOBAL_OPTIONS, alert as _alert, colour as _colour, hoist_global_options, invoked_command,
    now as _now, out as _out, print_details as _print_details, print_table as _print_table,
    say as _say, seconds as _seconds, show_jobs as _show_jobs, since as _since, View as _View,
)

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
                _alert(f"error: {exc.format_message()}{hint}")
                return exc.exit_code
            code = rv if isinstance(rv, int) else 0
            if code == 130:
                _alert("interrupted (detached jobs keep running)")
            return code

        code = frontend.run_command(invoke)
        if standalone_mode:
            sys.exit(code)
        return code


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


def _settings(ctx: typer.Context):
    root = ctx.find_root().obj or {}
    return frontend.settings(root.get("dsn"), root.get("profile"))


def _api(ctx: typer.Context, *, create: bool = False):
    """`create`: only submit and db init (and doctor) may bring the default
    SQLite file into being; any other command on a missing one is exit 4."""
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

    from .api import Jobctl
    from .config import resolve_settings

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
    from .model import JobStatus  # no driver, no database: statuses are jobctl's own

    done, _, last = incomplete.rpartition(",")  # --status failed,ti<Tab>
    head = done + "," if done else ""
    return [head + s.value for s in JobStatus if s.value.startswith(last.lower())]


def _refuse_extra_args(ctx: typer.Context) -> None:
    """`jobctl submit P vA=1`: a parameter without -p; say how to give it."""
    if not ctx.args:
        return
    from .errors import UsageError

    word = ctx.args[0]
    name, eq, _ = word.partition("=")
    if eq and name.strip() and not name.startswith("-"):
        raise UsageError(f"unexpected argument {word!r}: give parameters with -p, as in -p {word}")
    raise UsageError(f"unexpected extra argument {word!r} (see `{ctx.command_path} --help`)")


# -- commands ---------------------------------------------------------------------

_EXTRA_ARGS = {"allow_extra_args": True}  # refused by _refuse_extra_args, with a hint


@app.command(context_settings=_EXTRA_ARGS)
def submit(
    ctx: typer.Context,
    procedure: Annotated[str, typer.Argument(help="Procedure name: NAME, PKG.NAME or SCHEMA.PKG.NAME.",
                                             autocompletion=complete_procedure)],
    param: Annotated[Optional[list[str]], typer.Option(
        "--param", "-p", help="NAME=VALUE, repeatable; coerced by the procedure's declared types.")] = None,
    params_json: Annotated[Optional[str], typer.Option(
        "--params", help="Parameters as a JSON object, or @file.json.")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the outcome; exit code as `wait`.")] = False,
    timeout: Annotated[Optional[str], typer.Option(
        "--timeout", help="Stop the call after this long (30s, 10m, 2h): status timed_out.")] = None,
    retries: Annotated[int, typer.Option("--retries", min=0, max=100,
                                         help="Re-run a failed call up to N times, with backoff.")] = 0,
    unique: Annotated[bool, typer.Option(
        "--unique", help="If the same procedure with the same parameters is queued or running, "
                         "print its id instead of submitting again.")] = False,
    queue: Annotated[Optional[str], typer.Option(
        "--queue", "-Q", help="Queue whose limit the job counts against (default: default).")] = None,
    priority: Annotated[int, typer.Option(
        "--priority", help="Higher runs first within its queue (default 0).")] = 0,
    after: Annotated[Optional[list[str]], typer.Option(
        "--after", help="Run only once these jobs completed: ID[,ID...], repeatable.")] = None,
    at: Annotated[Optional[str], typer.Option(
        "--at", help="Not before then: 2026-12-01T02:00 or 02:00 (next occurrence), local time.")] = None,
    in_: Annotated[Optional[str], typer.Option(
        "--in", help="Not before this long from now: 30s, 10m, 2h.")] = None,
    params_file: Annotated[Optional[str], typer.Option(
        "--params-file", help="Many jobs: one JSON object of parameters per line (- for stdin); "
                              "prints one id per line.")] = None,
) -> None:
    """Submit a procedure as a detached job; print its id.

    Example: id=$(jobctl submit SUMA_SIMPLE -p vA=10 -p vB=5)
    """
    from . import params as p
    from .errors import UsageError

    _refuse_extra_args(ctx)
    timeout_s = _seconds(timeout, "--timeout")
    placing = dict(queue=queue, priority=priority, after=after or (), at=at, in_=in_)
    if params_file is not None:
        if param or params_json or unique:
            raise UsageError("--params-file cannot be combined with --param, --params or --unique")
        lines = _read_params_file(params_file)
        api = _api(ctx, create=True)
        ids = api.submit_many(procedure, lines, timeout_s=timeout_s, retries=retries, **placing)
        _out("".join(i + "\n" for i in ids))
        _say(f"submitted {len(ids)} job(s)")
        if wait:
            jobs = _wait_with_progress(api, ids, None)
            _tell_outcomes([j for j in jobs if j.status.value != "completed"])
            _exit_for(jobs)
        return
    given = p.merge(p.parse_params_json(params_json) if params_json else {},
                    p.parse_assignments(param or []))
    api = _api(ctx, create=True)
    submitted = api.submit(procedure, given, timeout_s=timeout_s, retries=retries, unique=unique,
                           **placing)
    _after_submit(api, submitted, wait)


def _after_submit(api, submitted, wait: bool) -> None:
    _out(submitted.job_id + "\n")
    if not submitted.created:
        _say(f"the same job is already queued or running: {submitted.job_id}")
    if wait:
        jobs = _wait_with_progress(api, [submitted.job_id], None)
        _tell_outcomes(jobs)
        _exit_for(jobs)


def _read_params_file(path: str) -> list[str]:
    from .errors import UsageError

    try:
        if path == "-":
            return sys.stdin.read().splitlines()
        with open(path, encoding="utf-8") as fh:
            return fh.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read --params-file {path}: {exc}") from None


def _tell_outcomes(jobs) -> None:
    """One line per job on stderr; one that did not complete is said even under -q."""
    for job in jobs:
        detail = f": {job.error_msg}" if job.error_msg else ""
        result = f" result {_compact(job.result)}" if job.result else ""
        line = f"{job.job_id[:8]} {job.status.value} in {job.duration or '-'}{result}{detail}"
        (_say if job.status.value == "completed" else _alert)(line)


@app.command(context_settings=_EXTRA_ARGS)
def resubmit(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="The job to run again: id or unique prefix.",
                                          autocompletion=complete_job_id)],
    param: Annotated[Optional[list[str]], typer.Option(
        "--param", "-p", help="NAME=VALUE to change, repeatable; the others stay as they were.")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the outcome; exit code as `wait`.")] = False,
    timeout: Annotated[Optional[str], typer.Option(
        "--timeout", help="Stop the call after this long (default: the original job's).")] = None,
    retries: Annotated[Optional[int], typer.Option(
        "--retries", min=0, max=100, help="Re-run a failed call up to N times (default: the "
                                          "original job's).")] = None,
    unique: Annotated[bool, typer.Option(
        "--unique", help="If the same procedure with the same parameters is queued or running, "
                         "print its id instead of submitting again.")] = False,
) -> None:
    """Submit a job's procedure again, with its parameters (and any -p changes); print the new id.

    Example: jobctl resubmit 3f2a9c1e -p vB=7
    """
    from . import params as p

    _refuse_extra_args(ctx)
    overrides = p.parse_assignments(param or [])
    timeout_s = _seconds(timeout, "--timeout")
    api = _api(ctx)
    original, submitted = api.resubmit(job_id, overrides, timeout_s=timeout_s, retries=retries,
                                       unique=unique)
    if sys.stderr.isatty():
        _say(f"resubmitted {original.job_id[:8]} ({original.procedure_name}) as {submitted.job_id[:8]}")
    _after_submit(api, submitted, wait)


def _compact(value) -> str:
    from .jsontext import dumps

    return dumps(value)


def _exit_for(jobs) -> None:
    bad = [j for j in jobs if j.status.value != "completed"]
    if bad:
        raise JobsNotCompleted(", ".join(f"{j.job_id[:8]} {j.status.value}" for j in bad))


def _wait_with_progress(api, ids, timeout_s):
    """At a terminal: a bar per job on stderr, its ETA, its latest output line under it."""
    if talk.is_quiet() or not sys.stderr.isatty():
        return api.wait(ids, timeout_s=timeout_s)
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn
    from rich.table import Column
    from rich.text import Text

    import math

    from . import eta, render

    class JobBars(Progress):
        def get_renderables(self):
            for task in self.tasks:
                yield self.make_tasks_table([task])
                if task.fields["line"]:
                    yield Text(f"  {task.fields['line']}", style="dim", no_wrap=True, overflow="ellipsis")

    def fixed(width):
        return Column(width=width, no_wrap=True, overflow="ellipsis")

    progress = JobBars(TextColumn("{task.description}", markup=False, table_column=fixed(28)),
                       BarColumn(), TaskProgressColumn(),
                       TextColumn("{task.fields[status]}", markup=False, table_column=fixed(9)),
                       TextColumn("{task.fields[eta]}", markup=False, table_column=fixed(22)),
                       TextColumn("{task.fields[elapsed]}", markup=False),
                       console=Console(stderr=True), transient=False)
    tasks = {}
    typical = {}

    def on_poll(jobs):
        now = _now()
        for job in jobs:
            if job.job_id not in tasks:
                tasks[job.job_id] = progress.add_task(f"{job.job_id[:8]} {job.procedure_name}",
                                                      total=100, status="", eta="", line="",
                                                      elapsed="")
            if job.procedure_name not in typical:
                typical[job.procedure_name] = api.typical_duration(job.procedure_name)
            left, source = eta.estimate(job, now, typical[job.procedure_name])
            shown = "" if left is None else "ETA " + (
                f"{math.ceil(left)}s" if left < 60 else render.display_duration(left)) + (
                " (typical)" if source == "typical" else "")
            lines = (job.output or "").rstrip("\n").splitlines()
            if job.status.finished and job.status.value != "completed" and job.error_msg:
                lines.append(job.error_msg)   # why it ended says more than its last line
            pct = 100 if job.status.value == "completed" else job.progress
            # a running job that reports no progress pulses rather than sit at 0 %
            total = None if job.status.value == "running" and not pct else 100
            # the job's own run time (since its worker claimed it), not this command's
            ran = ((job.end_time or now) - job.start_time).total_seconds() \
                if job.start_time and job.status.value != "queued" else None
            progress.update(tasks[job.job_id], completed=pct, total=total, status=job.status.value,
                            eta=shown, line=lines[-1] if lines else "",
                            elapsed="" if ran is None else render.display_duration(ran))

    with progress:
        return api.wait(ids, timeout_s=timeout_s, on_poll=on_poll)


@app.command()
def status(
    ctx: typer.Context,
    job_ids: Annotated[list[str], typer.Argument(help="Job ids or unique prefixes (4+ characters).",
                                                 autocompletion=complete_job_id)],
    fmt: FormatOpt = Format.table,
    columns: ColumnsOpt = None,
    no_headers: NoHeadersOpt = False,
    watch: WatchOpt = False,
    interval: IntervalOpt = None,
) -> None:
    """Show jobs in detail: params, result, error, last output lines, progress, worker.

    Example: jobctl status 3f2a9c1e --format json
    """
    frontend.status(lambda: _api(ctx), job_ids, fmt, columns, no_headers, watch, interval)


@app.command("list")
def list_(
    ctx: typer.Context,
    status_: Annotated[Optional[list[str]], typer.Option(
        "--status", "-s", help="queued, running, completed, failed, cancelled, timed_out, lost, "
                               "orphaned; "
                               "repeatable or comma-separated.",
        autocompletion=complete_status)] = None,
    procedure: Annotated[Optional[str], typer.Option(
        "--procedure", "-P", help="Only this procedure (any spelling of its name), "
                                  "or a LIKE pattern with %: FACT%.")] = None,
    since: Annotated[str, typer.Option(
        "--since", help="How far back (start time) for finished jobs: 1h, 24h, 7d, or all. "
                        "Queued and running jobs are always listed.")] = "24h",
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=MAX_LIST_LIMIT,
                                       help="At most this many rows.")] = 50,
    queue: Annotated[Optional[str], typer.Option("--queue", "-Q", help="Only this queue's jobs.")] = None,
    fmt: FormatOpt = Format.table,
    columns: ColumnsOpt = None,
    no_headers: NoHeadersOpt = False,
    watch: WatchOpt = False,
    interval: IntervalOpt = None,
) -> None:
    """List recent jobs, newest first.

    Example: jobctl list --status running --since 1h
    """
    frontend.list_jobs(lambda: _api(ctx), status_, procedure, since, limit, queue, fmt, columns,
                       no_headers, watch, interval)


@app.command()
def stats(
    ctx: typer.Context,
    since: Annotated[str, typer.Option(
        "--since", help="How far back (start time): 24h, 7d, 30d, or all.")] = "7d",
    procedure: Annotated[Optional[str], typer.Option(
        "--procedure", "-P", help="Only this procedure (any spelling of its name), "
                                  "or a LIKE pattern with %: FACT%.")] = None,
    fmt: FormatOpt = Format.table,
    columns: ColumnsOpt = None,
    no_headers: NoHeadersOpt = False,
    chart: Annotated[bool, typer.Option(
        "--chart", help="Also draw a histogram of durations and a bar per day (table only).")] = False,
) -> None:
    """Per procedure: counts by status, success %, avg/p50/p95/max seconds, last run.

    Example: jobctl stats --since 7d --format json
    """
    from . import render

    view = _View(fmt, columns, no_headers, table_columns=render.STATS_TABLE_COLUMNS,
                 table_default=render.STATS_TABLE_DEFAULT, record_columns=render.STATS_COLUMNS,
                 record_default=render.STATS_COLUMNS)
    if chart and fmt is not Format.table:
        from .errors import UsageError

        raise UsageError(f"--chart draws in the terminal; it cannot be combined with --format {fmt.value}")
    rows = _api(ctx).stats(since_s=_since(since), procedure=procedure)
    if fmt is Format.table:
        _print_table(*render.stats_rows(rows, _now(), view.keys), show_headers=view.show_headers)
    else:
        _out(render.records(rows, fmt, view.keys, headers=view.show_headers))
    if chart:
        from . import charts

        drawn = _api(ctx).stats_chart(since_s=_since(since), procedure=procedure)
        _out("\n" + charts.chart_text(drawn, rows, width=_width(), since_label=since))


def _width() -> int:
    import shutil

    return shutil.get_terminal_size((100, 24)).columns


@app.command()
def top(
    ctx: typer.Context,
    since: Annotated[str, typer.Option(
        "--since", help="The window of the queues' progress, the failures and the durations: "
                        "1h, 24h, 7d.")] = "24h",
    interval: Annotated[str, typer.Option("--interval", help="Refresh this often: 1s, 0.5, 5s.")] = "1s",
    queue: Annotated[Optional[str], typer.Option("--queue", "-Q", help="Only this queue.")] = None,
    once: Annotated[bool, typer.Option(
        "--once", help="Print one plain frame and exit, as when stdout is not a terminal.")] = False,
) -> None:
    """A live view: queues, running jobs (cancel with c), last failures, durations; q quits.

    Example: jobctl top --since 6h --interval 2s
    """
    from . import top as live_view

    since_s = _since(since)
    interval_s = live_view.check_interval(_seconds(interval, "--interval"))
    api = _api(ctx)
    if once or not sys.stdout.isatty():
        _out(live_view.once(api, since_s=since_s, since_label=since, queue=queue))
    else:
        live_view.live(api, since_s=since_s, since_label=since, interval_s=interval_s, queue=queue)


@app.command()
def logs(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="Job id or unique prefix.",
                                          autocompletion=complete_job_id)],
    follow: Annotated[bool, typer.Option(
        "--follow", help="Keep printing new lines until the job ends; exit code as `wait`.")] = False,
    tail: Annotated[Optional[int], typer.Option(
        "--tail", "-n", min=0, help="Only the last N lines (then new ones, with --follow).")] = None,
) -> None:
    """Print a job's captured output (DBMS_OUTPUT, NOTICE, ctx.log/print); --follow streams it.

    Example: jobctl logs 3f2a9c1e --follow --tail 20
    """
    from .render import output_lines

    api = _api(ctx)

    def emit(lines):
        _out("".join(line + "\n" for line in lines))

    if not follow:
        job = api.get(job_id)
        lines, capped = output_lines(job.output)
        emit(lines if tail is None else lines[-tail:] if tail else [])
        if capped:
            _say(f"the output of {job.job_id[:8]} reached jobctl's cap; later lines were not kept")
        return
    job = api.follow(job_id, emit, tail=tail, on_note=_say)
    _exit_for([job])


@app.command()
def cleanup(
    ctx: typer.Context,
    days: Annotated[float, typer.Option("--days", min=0, help="Delete finished jobs older than N days.")],
    status_: Annotated[Optional[list[str]], typer.Option(
        "--status", "-s", help="Only these finished statuses (default: all finished).",
        autocompletion=complete_status)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count, delete nothing.")] = False,
    fmt: FormatOpt = Format.table,
) -> None:
    """Mark lost jobs lost, then delete finished jobs older than N days; print the count.

    Example: jobctl cleanup --days 7        # e.g. daily from cron
    """
    from . import render

    report = _api(ctx).cleanup(days=days, statuses=status_, dry_run=dry_run)
    if fmt is Format.table:
        _out(f"{report.deleted}\n")
        verb = "would delete" if dry_run else "deleted"
        lost = "would mark" if dry_run else "marked"
        _say(f"{verb} {report.deleted} finished job(s) older than {days:g} days; "
             f"{lost} {report.marked_lost} lost")
    else:
        row = {"deleted": report.deleted, "marked_lost": report.marked_lost, "dry_run": report.dry_run}
        _out(render.records([row], fmt, ("deleted", "marked_lost", "dry_run"), single=True))


@app.command("wait")
def wait_(
    ctx: typer.Context,
    job_ids: Annotated[list[str], typer.Argument(help="Job ids or unique prefixes.",
                                                 autocompletion=complete_job_id)],
    timeout: Annotated[Optional[str], typer.Option(
        "--timeout", help="Give up waiting after this long (exit 5); the jobs keep running.")] = None,
    fmt: Annotated[Optional[Format], typer.Option(
        "--format", "-f", case_sensitive=False,
        help="Print the jobs in this format once they end; without it, nothing on stdout "
             "(the outcome is on stderr and in the exit code).")] = None,
) -> None:
    """Wait for jobs to finish; exit 0 if all completed, 1 if any did not, 5 on --timeout.

    Example: jobctl wait $id --timeout 10m && echo done
    """
    api = _api(ctx)
    jobs = _wait_with_progress(api, job_ids, _seconds(timeout, "--timeout"))
    if fmt is None:
        _tell_outcomes(jobs)
    else:
        _show_jobs(jobs, fmt)
    _exit_for(jobs)


@app.command()
def cancel(
    ctx: typer.Context,
    job_ids: Annotated[list[str], typer.Argument(help="Job ids or unique prefixes.",
                                                 autocompletion=complete_job_id)],
    fmt: FormatOpt = Format.table,
) -> None:
    """Cancel jobs: queued ones at once, running ones by interrupting the call.

    Example: jobctl cancel 3f2a9c1e
    """
    from . import render

    reports = _api(ctx).cancel(job_ids)
    rows = [{"job_id": r.job.job_id, "action": r.action, "status": r.job.status.value} for r in reports]
    for r in reports:
        if r.action == "requested":
            _say(f"{r.job.job_id[:8]}: cancel requested; the worker interrupts the call within a second")
        elif r.action == "external":
            _say(f"{r.job.job_id[:8]}: running (external): written by another application, "
                 "not a jobctl worker; nothing to cancel")
        elif r.action in ("finished", "lost"):
            _say(f"{r.job.job_id[:8]}: already {r.job.status.value}, nothing to cancel")
    if fmt is Format.table:
        _out("".join(f"{r['job_id']}\t{r['status']}\n" for r in rows))
    else:
        _out(render.records(rows, fmt, ("job_id", "action", "status"), single=len(rows) == 1))


@app.command()
def describe(
    ctx: typer.Context,
    procedure: Annotated[str, typer.Argument(help="Procedure name.",
                                             autocompletion=complete_procedure)],
    fmt: FormatOpt = Format.table,
) -> None:
    """Show a procedure's parameters: name, type, mode, defaulted.

    Example: jobctl describe SUMA_SIMPLE
    """
    from . import render

    sig = _api(ctx).describe(procedure)
    if fmt is Format.table:
        _print_table(*render.signature_table_rows(sig), title=sig.name)
    elif fmt is Format.json:
        _out(render.records([{"procedure": sig.name, "params": [p.to_dict() for p in sig.params]}],
                            fmt, (), single=True))
    else:
        _out(render.records(render.signature_rows(sig), fmt, ("procedure",) + render.PARAM_COLUMNS))


@app.command()
def procedures(
    ctx: typer.Context,
    pattern: Annotated[Optional[str], typer.Argument(
        metavar="[PATTERN]", help="Only names matching this: * or % any run, ? one character; without a wildcard, "
             "names containing it. Case does not matter.")] = None,
    fmt: FormatOpt = Format.table,
    no_headers: NoHeadersOpt = False,
) -> None:
    """List the procedures you can submit, with their parameters ([...]: has a default).

    Example: jobctl procedures 'suma*'
    """
    from . import render
    from .errors import UsageError

    if no_headers and fmt in (Format.json, Format.jsonl):
        raise UsageError(f"--no-headers applies to table, csv and tsv, not {fmt.value}")
    sigs = _api(ctx).procedures(pattern)
    if fmt is Format.table:
        _print_table(*render.procedures_rows(sigs), show_headers=not no_headers)
        if not sigs and sys.stderr.isatty():
            _say("no procedure matches" if pattern else "no procedure you can call")
        return
    structured = fmt in (Format.json, Format.jsonl)
    columns = ("procedure", "params") if structured else render.PROCEDURE_COLUMNS
    _out(render.records(render.procedure_records(sigs, structured=structured), fmt, columns,
                        headers=not no_headers))


@app.command()
def doctor(
    ctx: typer.Context,
    fmt: FormatOpt = Format.table,
) -> None:
    """Check that jobctl works against this database, and say what to fix if not.

    Example: jobctl --profile prod doctor --format json > doctor.json
    """
    from . import render
    from .doctor import run as run_doctor

    report = run_doctor(_settings(ctx))
    if fmt is Format.table:
        _print_details([render.doctor_context_pairs(report.context)])
        if _colour():
            from rich.console import Console

            console = Console(soft_wrap=False)
            console.print()
            console.print(render.rich_checks(report.checks))
        else:
            _out("\n" + render.plain_checks(report.checks))
    elif fmt is Format.json:
        _out(render.records([report.to_dict()], fmt, (), single=True))
    else:
        _out(render.records([c.to_dict() for c in report.checks], fmt, render.DOCTOR_COLUMNS))
    if report.failed:
        raise JobctlError(f"doctor: {len(report.failed)} check(s) failed: "
                          + ", ".join(c.name for c in report.failed))
    counts = {r: sum(c.result == r for c in report.checks) for r in ("ok", "warn", "skip")}
    _say("doctor: no check failed (" + ", ".join(f"{n} {r}" for r, n in counts.items() if n) + ")")


@app.command("config")
def config_(
    ctx: typer.Context,
    fmt: FormatOpt = Format.table,
) -> None:
    """Say which database jobctl would use, and why: DSN (password masked), profile,
    config file, password source. Never connects.

    Example: JOBCTL_PROFILE=prod jobctl config --format json
    """
    from . import render
    from .config import describe

    info = describe(_settings(ctx))
    if fmt is Format.table:
        file = info["config_file"] + ("" if info["config_file_exists"] else " (none)")
        pairs = [("backend", info["backend"]), ("dsn", info["dsn"]),
                 ("dsn from", info["dsn_source"]), ("profile", info["profile"] or "-"),
                 ("config file", file), ("password", info["password_source"] or "none")]
        if info["database_exists"] is not None:
            pairs.append(("database", info["database"]
                          + ("" if info["database_exists"] else " (does not exist yet)")))
        pairs += [(name, value) for name, value in info["environment"].items()]
        pairs += [("note", note) for note in info["notes"]]
        _print_details([pairs])
    else:
        columns = ("backend", "dsn", "dsn_source", "profile", "config_file", "config_file_exists",
                   "password_source", "database", "database_exists", "environment", "notes")
        _out(render.records([info], fmt, columns, single=True))


@db_app.command("init")
def db_init(
    ctx: typer.Context,
    print_: Annotated[bool, typer.Option("--print", help="Print the SQL instead of running it.")] = False,
    examples: Annotated[bool, typer.Option("--examples", help="Also create the demo procedures.")] = False,
) -> None:
    """Create or upgrade ASYNC_JOBS (idempotent); --print shows the SQL.

    Example: jobctl --dsn postgresql://app@db1/prod db init --examples
    """
    api = _api(ctx, create=True)
    if print_:
        _out(api.schema_sql(examples=examples))
        return
    ran = api.db_init(examples=examples)
    _say(f"schema ready in {api.settings.connection.display} ({len(ran)} statement(s) run)")


QUEUE_COLUMNS = ("name", "limit", "queued", "running", "paused")


def _queue_rows(states) -> list[dict]:
    return [{"name": q.name, "limit": q.max_running, "queued": q.queued, "running": q.running,
             "paused": q.paused} for q in states]


@queue_app.command("list")
def queue_list(ctx: typer.Context, fmt: FormatOpt = Format.table,
               no_headers: NoHeadersOpt = False) -> None:
    """Every queue: its limit (0 = unlimited), queued and running jobs, paused or not.

    Example: jobctl queue list --format json
    """
    from . import render

    rows = _queue_rows(_api(ctx).queues())
    if fmt is Format.table:
        _print_table(["QUEUE", "LIMIT", "QUEUED", "RUNNING", "PAUSED"],
                     [[r["name"], str(r["limit"]) if r["limit"] else "unlimited", str(r["queued"]),
                       str(r["running"]), "yes" if r["paused"] else "no"] for r in rows],
                     show_headers=not no_headers)
    else:
        _out(render.records(rows, fmt, QUEUE_COLUMNS, headers=not no_headers))


def _show_queue(state, fmt: Format) -> None:
    from . import render

    row = _queue_rows([state])[0]
    if fmt is Format.table:
        limit = row["limit"] or "unlimited"
        _say(f"queue {row['name']}: limit {limit}, {row['running']} running, {row['queued']} queued"
             + (", paused" if row["paused"] else ""))
    else:
        _out(render.records([row], fmt, QUEUE_COLUMNS, single=True))


@queue_app.command("set")
def queue_set(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Queue name.")],
    max_running: Annotated[int, typer.Option(
        "--max-running", help="At most this many of its jobs at once, across all hosts (0 = unlimited).")],
    fmt: FormatOpt = Format.table,
) -> None:
    """Set a queue's limit, kept in the database (JOB_QUEUES) for every host.

    Example: jobctl queue set nightly --max-running 2
    """
    _show_queue(_api(ctx, create=True).queue_set(name, max_running=max_running), fmt)


@queue_app.command("pause")
def queue_pause(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Queue name.")],
                fmt: FormatOpt = Format.table) -> None:
    """Start no new job of the queue (running ones finish).

    Example: jobctl queue pause nightly
    """
    _show_queue(_api(ctx, create=True).queue_set(name, paused=True), fmt)


@queue_app.command("resume")
def queue_resume(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Queue name.")],
                 fmt: FormatOpt = Format.table) -> None:
    """Start the queue's jobs again, up to its limit.

    Example: jobctl queue resume nightly
    """
    _show_queue(_api(ctx, create=True).queue_set(name, paused=False), fmt)


WORKER_COLUMNS = ("worker", "host", "pid", "queues", "concurrency", "running", "state",
                  "started_at", "heartbeat_at")


@worker_app.callback()
def worker(
    ctx: typer.Context,
    queue: Annotated[Optional[list[str]], typer.Option(
        "--queue", help="Serve this queue (repeat for several; default: every queue).")] = None,
    concurrency: Annotated[int, typer.Option(
        "--concurrency", "-c", help="Run up to this many jobs at once (each on its own session).")] = 4,
    grace: Annotated[str, typer.Option(
        "--grace", help="On SIGTERM/SIGINT, let running jobs finish this long, then cancel them.")] = "60s",
) -> None:
    """Run jobs in the foreground until SIGTERM/SIGINT: up to --concurrency at
    once, within each queue's limit, with one bookkeeping connection for all.

    Example: jobctl worker --queue nightly --concurrency 8
    """
    if ctx.invoked_subcommand is not None:
        return
    from .model import parse_duration

    grace_s = parse_duration(grace, option="--grace")
    raise typer.Exit(_api(ctx).run_pool(queues=tuple(queue or ()), concurrency=concurrency,
                                        grace_s=grace_s))


@worker_app.command("list")
def worker_list(ctx: typer.Context, fmt: FormatOpt = Format.table,
                no_headers: NoHeadersOpt = False) -> None:
    """The worker pools using this database: host, pid, queues, running jobs, last heartbeat.

    Example: jobctl worker list --format json
    """
    from . import render

    rows = _api(ctx).workers()
    if fmt is Format.table:
        _print_table(["WORKER", "HOST", "PID", "QUEUES", "CONC", "RUNNING", "STATE", "HEARTBEAT"],
                     [[r["worker"], r["host"], str(r["pid"]), r["queues"], str(r["concurrency"]),
                       str(r["running"]), r["state"],
                       render.local_time(r["heartbeat_at"])] for r in rows],
                     show_headers=not no_headers)
    else:
        _out(render.records(rows, fmt, WORKER_COLUMNS, headers=not no_headers))


def _app_for(args: list[str]) -> typer.Typer:
    """The app with only the command this run invokes. Typer inspects the
    signature of every command on every run (about half a millisecond each),
    and a run needs one; help, completion and an unknown word get them all."""
    name = invoked_command(args)
    if name is None or os.environ.get("_JOBCTL_COMPLETE"):
        return app
    import copy

    if any(group.name == name for group in app.registered_groups):
        only = copy.copy(app)
        only.registered_commands = []
        return only
    chosen = [info for info in app.registered_commands
              if (info.name or getattr(info.callback, "__name__", "").lower().replace("_", "-"))
              == name]
    if not chosen:
        return app  # click says "No such command" with the full list in mind
    only = copy.copy(app)
    only.registered_commands, only.registered_groups = chosen, []
    return only


def run() -> None:
    code: object = 0
    try:
        _app_for(sys.argv[1:])()
    except SystemExit as exc:
        code = exc.code
    frontend.leave(code)
