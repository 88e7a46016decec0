"""The commands on the database and the service: describe, procedures,
doctor, config, db init, queue, worker."""

import sys
from typing import Annotated, Optional

import typer
import typer.core

from ..errors import JobctlError
from ..formats import Format
# what every command uses, shared with the fast path (fastpath.py)
from ..frontend import (
    colour as _colour, out as _out, print_details as _print_details, print_table as _print_table, say as _say,
)
from .app import (
    DEFAULT_ONLY, FormatOpt, NoHeadersOpt, api_for, app, complete_procedure, db_app, queue_app,
    settings_for, worker_app,
)


@app.command()
def describe(
    ctx: typer.Context,
    procedure: Annotated[str, typer.Argument(help="Procedure name.",
                                             autocompletion=complete_procedure)],
    fmt: FormatOpt = Format.table,
) -> None:
    """Show a procedure's parameters: name, type, mode, defaulted (every overload).

    Example: jobctl describe SUMA_SIMPLE
    """
    from .. import render

    sigs = api_for(ctx).describe(procedure)
    if fmt is Format.table:
        for sig in sigs:
            _print_table(*render.signature_table_rows(sig),
                         title=sig.form if len(sigs) > 1 else sig.name)
    elif fmt is Format.json:
        _out(render.records([render.describe_record(sigs)], fmt, (), single=True))
    else:
        _out(render.records([r for sig in sigs for r in render.signature_rows(sig, several=len(sigs) > 1)],
                            fmt, ("procedure",) + render.PARAM_COLUMNS))


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
    from .. import render
    from ..errors import UsageError

    if no_headers and fmt in (Format.json, Format.jsonl):
        raise UsageError(f"--no-headers applies to table, csv and tsv, not {fmt.value}")
    sigs = api_for(ctx).procedures(pattern)
    if fmt is Format.table:
        _print_table(*render.procedures_rows(sigs), show_headers=not no_headers)
        if not sigs and sys.stderr.isatty():
            _say("no procedure matches" if pattern else "no procedure you can call")
        return
    structured = fmt in (Format.json, Format.jsonl)
    columns = ("procedure", "form", "params") if structured else render.PROCEDURE_COLUMNS
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
    from .. import render
    from ..doctor import run as run_doctor
    from ..doctor import view as doctor_view

    report = run_doctor(settings_for(ctx))
    if fmt is Format.table:
        _print_details([doctor_view.doctor_context_pairs(report.context)])
        if _colour():
            from rich.console import Console

            console = Console(soft_wrap=False)
            console.print()
            console.print(doctor_view.rich_checks(report.checks))
        else:
            _out("\n" + doctor_view.plain_checks(report.checks))
    elif fmt is Format.json:
        _out(render.records([report.to_dict()], fmt, (), single=True))
    else:
        _out(render.records([c.to_dict() for c in report.checks], fmt, doctor_view.DOCTOR_COLUMNS))
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
    from .. import render
    from ..backends import get_backend
    from ..config import describe

    settings = settings_for(ctx)
    try:
        get_backend(settings.connection)  # checks what the DSN says (an unknown keyword: exit 2)
    except ImportError:
        pass  # its driver is not installed: config still says where jobctl would connect
    info = describe(settings)
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
    api = api_for(ctx, create=True)
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
    from .. import render

    rows = _queue_rows(api_for(ctx).queues())
    if fmt is Format.table:
        _print_table(["QUEUE", "LIMIT", "QUEUED", "RUNNING", "PAUSED"],
                     [[r["name"], str(r["limit"]) if r["limit"] else "unlimited", str(r["queued"]),
                       str(r["running"]), "yes" if r["paused"] else "no"] for r in rows],
                     show_headers=not no_headers)
    else:
        _out(render.records(rows, fmt, QUEUE_COLUMNS, headers=not no_headers))


def _show_queue(state, fmt: Format) -> None:
    from .. import render

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
    """Create a queue or set its limit, kept in the database (JOB_QUEUES) for every host.

    Example: jobctl queue set nightly --max-running 2
    """
    _show_queue(api_for(ctx, create=DEFAULT_ONLY).queue_set(name, max_running=max_running), fmt)


@queue_app.command("pause")
def queue_pause(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Queue name.")],
                fmt: FormatOpt = Format.table) -> None:
    """Start no new job of the queue (running ones finish); the queue must exist.

    Example: jobctl queue pause nightly
    """
    _show_queue(api_for(ctx).queue_set(name, paused=True), fmt)


@queue_app.command("resume")
def queue_resume(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Queue name.")],
                 fmt: FormatOpt = Format.table) -> None:
    """Start the queue's jobs again, up to its limit.

    Example: jobctl queue resume nightly
    """
    _show_queue(api_for(ctx).queue_set(name, paused=False), fmt)


@queue_app.command("delete")
def queue_delete(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Queue name.")]) -> None:
    """Delete a queue that holds no queued or running job (default cannot be deleted).

    Example: jobctl queue delete bulk
    """
    api_for(ctx).queue_delete(name)
    _say(f"queue {name} deleted")


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
    from ..model import parse_duration

    grace_s = parse_duration(grace, option="--grace")
    raise typer.Exit(api_for(ctx).run_pool(queues=tuple(queue or ()), concurrency=concurrency,
                                        grace_s=grace_s))


@worker_app.command("list")
def worker_list(ctx: typer.Context, fmt: FormatOpt = Format.table,
                no_headers: NoHeadersOpt = False) -> None:
    """The worker pools using this database: host, pid, queues, running jobs, last heartbeat.

    Example: jobctl worker list --format json
    """
    from .. import render

    rows = api_for(ctx).workers()
    if fmt is Format.table:
        _print_table(["WORKER", "HOST", "PID", "QUEUES", "CONC", "RUNNING", "STATE", "HEARTBEAT"],
                     [[r["worker"], r["host"], str(r["pid"]), r["queues"], str(r["concurrency"]),
                       str(r["running"]), r["state"],
                       render.local_time(r["heartbeat_at"])] for r in rows],
                     show_headers=not no_headers)
        if not rows and sys.stderr.isatty():
            _say("no worker pool uses this database (`jobctl worker` starts one)")
    else:
        _out(render.records(rows, fmt, WORKER_COLUMNS, headers=not no_headers))


