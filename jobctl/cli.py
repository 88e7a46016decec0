"""The command line: parses options, calls `jobctl.api`, renders. No SQL and
no driver imports here; rich loads only when a table or a progress bar is shown.

Errors are translated in one place, `JobctlGroup.main`: a domain error becomes
`jobctl: error: <message>` on stderr and its exit code.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Optional

import typer
import typer.core

# typer 0.28 carries its own copy of click: its exceptions are the ones raised
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError as ClickUsageError
from typer.exceptions import Abort, Exit

from . import __version__
from .errors import JobctlError, JobsNotCompleted
from .formats import Format

_state = {"debug": False}
#: as api.MAX_LIST_LIMIT, repeated so that --help does not import the api
MAX_LIST_LIMIT = 1_000_000


def _say(message: str) -> None:
    sys.stderr.write(f"jobctl: {message}\n")
    sys.stderr.flush()


def _print_traceback() -> None:
    import traceback

    traceback.print_exc()


class JobctlGroup(typer.core.TyperGroup):
    """Every exit leaves through here: one line on stderr, the right code."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        # what jobctl creates (its directories, jobs.db and its -wal/-shm, the
        # worker's log) is private to the user: job parameters may be secrets
        umask = os.umask(0o077)
        try:
            # typer turns Ctrl-C into Exit(130) and, not standalone, returns the code
            rv = super().main(args, prog_name or "jobctl", complete_var, standalone_mode=False, **extra)
            code = rv if isinstance(rv, int) else 0
            if code == 130:
                _say("interrupted (detached jobs keep running)")
        except Exit as exc:
            code = exc.exit_code
        except Abort:
            code = 130
        except KeyboardInterrupt:
            _say("interrupted (detached jobs keep running)")
            code = 130
        except NoArgsIsHelpError as exc:
            exc.show()
            code = exc.exit_code
        except ClickException as exc:
            hint = ""
            if isinstance(exc, ClickUsageError) and exc.ctx is not None:
                hint = f" (see `{exc.ctx.command_path} --help`)"
            _say(f"error: {exc.format_message()}{hint}")
            code = exc.exit_code
        except JobctlError as exc:
            if _state["debug"]:
                _print_traceback()
            _say(f"error: {exc.message}")
            code = exc.exit_code
        except BrokenPipeError:
            code = 1
        except Exception as exc:  # a bug: say so in one line, traceback on --debug
            if _state["debug"]:
                _print_traceback()
            _say(f"error: internal error: {type(exc).__name__}: {exc} (rerun with --debug)")
            code = 1
        finally:
            os.umask(umask)
        if standalone_mode:
            sys.exit(code)
        return code


app = typer.Typer(
    cls=JobctlGroup, add_completion=False, no_args_is_help=True,
    pretty_exceptions_enable=False, pretty_exceptions_show_locals=False, rich_markup_mode=None,
    help="Run database stored procedures as detached background jobs, and keep their history "
         "in ASYNC_JOBS.",
)
db_app = typer.Typer(cls=typer.core.TyperGroup, no_args_is_help=True, rich_markup_mode=None,
                     help="Create or upgrade the ASYNC_JOBS schema.")
app.add_typer(db_app, name="db")

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
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
) -> None:
    """Run database stored procedures as detached background jobs.

    Example: jobctl submit SUMA_SIMPLE --param vA=10
    """
    _state["debug"] = debug
    ctx.obj = {"dsn": dsn, "profile": profile}


def _api(ctx: typer.Context):
    from .api import Jobctl
    from .config import resolve_settings

    root = ctx.find_root().obj or {}
    api = Jobctl(resolve_settings(root.get("dsn"), root.get("profile")))
    ctx.call_on_close(api.close)
    return api


def _out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _fancy() -> bool:
    """Rich tables and colour only for a person at a terminal."""
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def _print_table(headers, rows, title: Optional[str] = None) -> None:
    from . import render

    if not _fancy():
        _out((f"{title}\n" if title else "") + render.plain_table(headers, rows))
        return
    from rich.console import Console

    Console(soft_wrap=False).print(render.rich_table(headers, rows, title))


def _print_details(blocks) -> None:
    from . import render

    if not _fancy():
        _out("\n".join(render.plain_pairs(pairs) for pairs in blocks))
        return
    from rich.console import Console

    console = Console(soft_wrap=False)
    for i, pairs in enumerate(blocks):
        if i:
            console.rule(style="dim")
        console.print(render.rich_pairs(pairs))


def _now():
    from .model import utcnow

    return utcnow()


def _seconds(text: Optional[str], option: str) -> Optional[float]:
    from .model import parse_duration

    return None if text is None else parse_duration(text, option=option)


def _show_jobs(jobs, fmt: Format, *, detail: bool = False, single: bool = False) -> None:
    from . import render

    if fmt is Format.table:
        now = _now()
        if detail:
            _print_details([render.detail_pairs(job, now) for job in jobs])
        else:
            _print_table(*render.jobs_rows(jobs, now))
        return
    columns = render.DETAIL_COLUMNS if detail else render.LIST_COLUMNS
    _out(render.records([j.to_dict() for j in jobs], fmt, columns, single=single))


# -- commands ---------------------------------------------------------------------

@app.command()
def submit(
    ctx: typer.Context,
    procedure: Annotated[str, typer.Argument(help="Procedure name: NAME, PKG.NAME or SCHEMA.PKG.NAME.")],
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
) -> None:
    """Submit a procedure as a detached job; print its id.

    Example: id=$(jobctl submit SUMA_SIMPLE -p vA=10 -p vB=5)
    """
    from . import params as p

    given = p.merge(p.parse_params_json(params_json) if params_json else {},
                    p.parse_assignments(param or []))
    timeout_s = _seconds(timeout, "--timeout")
    api = _api(ctx)
    submitted = api.submit(procedure, given, timeout_s=timeout_s, retries=retries, unique=unique)
    _out(submitted.job_id + "\n")
    if not submitted.created:
        _say(f"the same job is already queued or running: {submitted.job_id}")
    if wait:
        jobs = _wait_with_progress(api, [submitted.job_id], None)
        for job in jobs:
            detail = f": {job.error_msg}" if job.error_msg else ""
            result = f" result {_compact(job.result)}" if job.result else ""
            _say(f"{job.job_id[:8]} {job.status.value} in {job.duration or '-'}{result}{detail}")
        _exit_for(jobs)


def _compact(value) -> str:
    import json

    return json.dumps(value, separators=(",", ":"))


def _exit_for(jobs) -> None:
    bad = [j for j in jobs if j.status.value != "completed"]
    if bad:
        raise JobsNotCompleted(", ".join(f"{j.job_id[:8]} {j.status.value}" for j in bad))


def _wait_with_progress(api, ids, timeout_s):
    if not sys.stderr.isatty():
        return api.wait(ids, timeout_s=timeout_s)
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                        TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
                        console=Console(stderr=True), transient=False)
    tasks = {}

    def on_poll(jobs):
        for job in jobs:
            if job.job_id not in tasks:
                tasks[job.job_id] = progress.add_task(f"{job.job_id[:8]} {job.procedure_name}",
                                                      total=100, status="")
            pct = 100 if job.status.value == "completed" else job.progress
            progress.update(tasks[job.job_id], completed=pct, status=job.status.value)

    with progress:
        return api.wait(ids, timeout_s=timeout_s, on_poll=on_poll)


@app.command()
def status(
    ctx: typer.Context,
    job_ids: Annotated[list[str], typer.Argument(help="Job ids or unique prefixes (4+ characters).")],
    fmt: FormatOpt = Format.table,
) -> None:
    """Show jobs in detail: params, result, error, output, progress, worker, heartbeat.

    Example: jobctl status 3f2a9c1e --format json
    """
    jobs = _api(ctx).get_many(job_ids)
    _show_jobs(jobs, fmt, detail=True, single=len(job_ids) == 1)


@app.command("list")
def list_(
    ctx: typer.Context,
    status_: Annotated[Optional[list[str]], typer.Option(
        "--status", "-s", help="queued, running, completed, failed, cancelled, timed_out, lost; "
                               "repeatable or comma-separated.")] = None,
    procedure: Annotated[Optional[str], typer.Option("--procedure", "-P", help="Only this procedure.")] = None,
    since: Annotated[str, typer.Option("--since", help="How far back (start time): 1h, 24h, 7d.")] = "24h",
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=MAX_LIST_LIMIT,
                                       help="At most this many rows.")] = 50,
    fmt: FormatOpt = Format.table,
) -> None:
    """List recent jobs, newest first.

    Example: jobctl list --status running --since 1h
    """
    jobs = _api(ctx).list_jobs(statuses=status_, procedure=procedure,
                               since_s=_seconds(since, "--since"), limit=limit)
    _show_jobs(jobs, fmt)


@app.command()
def stats(
    ctx: typer.Context,
    since: Annotated[str, typer.Option("--since", help="How far back (start time): 24h, 7d, 30d.")] = "7d",
    procedure: Annotated[Optional[str], typer.Option("--procedure", "-P", help="Only this procedure.")] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Per procedure: counts by status, success %, avg/p50/p95/max seconds, last run.

    Example: jobctl stats --since 7d --format json
    """
    from . import render

    rows = _api(ctx).stats(since_s=_seconds(since, "--since"), procedure=procedure)
    if fmt is Format.table:
        _print_table(*render.stats_rows(rows))
    else:
        _out(render.records(rows, fmt, render.STATS_COLUMNS))


@app.command()
def cleanup(
    ctx: typer.Context,
    days: Annotated[float, typer.Option("--days", min=0, help="Delete finished jobs older than N days.")],
    status_: Annotated[Optional[list[str]], typer.Option(
        "--status", "-s", help="Only these finished statuses (default: all finished).")] = None,
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
    job_ids: Annotated[list[str], typer.Argument(help="Job ids or unique prefixes.")],
    timeout: Annotated[Optional[str], typer.Option(
        "--timeout", help="Give up waiting after this long (exit 5); the jobs keep running.")] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Wait for jobs to finish; exit 0 if all completed, 1 if any did not, 5 on --timeout.

    Example: jobctl wait $id --timeout 10m && echo done
    """
    api = _api(ctx)
    jobs = _wait_with_progress(api, job_ids, _seconds(timeout, "--timeout"))
    _show_jobs(jobs, fmt)
    _exit_for(jobs)


@app.command()
def cancel(
    ctx: typer.Context,
    job_ids: Annotated[list[str], typer.Argument(help="Job ids or unique prefixes.")],
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
            _say(f"{r.job.job_id[:8]}: cancel requested; the worker interrupts the call at its next heartbeat")
        elif r.action in ("finished", "lost"):
            _say(f"{r.job.job_id[:8]}: already {r.job.status.value}, nothing to cancel")
    if fmt is Format.table:
        _out("".join(f"{r['job_id']}\t{r['status']}\n" for r in rows))
    else:
        _out(render.records(rows, fmt, ("job_id", "action", "status"), single=len(rows) == 1))


@app.command()
def describe(
    ctx: typer.Context,
    procedure: Annotated[str, typer.Argument(help="Procedure name.")],
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


@db_app.command("init")
def db_init(
    ctx: typer.Context,
    print_: Annotated[bool, typer.Option("--print", help="Print the SQL instead of running it.")] = False,
    examples: Annotated[bool, typer.Option("--examples", help="Also create the demo procedures.")] = False,
) -> None:
    """Create or upgrade ASYNC_JOBS (idempotent); --print shows the SQL.

    Example: jobctl --dsn postgresql://app@db1/prod db init --examples
    """
    api = _api(ctx)
    if print_:
        _out(api.schema_sql(examples=examples))
        return
    ran = api.db_init(examples=examples)
    _say(f"schema ready in {api.settings.connection.display} ({len(ran)} statement(s) run)")


def run() -> None:
    app()
