"""The commands on jobs: submit, resubmit, status, list, stats, top, logs,
cleanup, wait, cancel."""

import sys
from typing import Annotated, Optional

import typer
import typer.core

from .. import frontend, talk
from ..errors import JobsNotCompleted
from ..formats import Format
from ..model import JobStatus
# what every command uses, shared with the fast path (fastpath.py)
from ..frontend import (
    alert as _alert, now as _now, out as _out, print_table as _print_table, say as _say,
    seconds as _seconds, show_jobs as _show_jobs, since as _since, View as _View,
)
from .app import (
    DEFAULT_ONLY, EXTRA_ARGS, MAX_LIST_LIMIT, ColumnsOpt, FormatOpt, IntervalOpt, NoHeadersOpt,
    WatchOpt, api_for, app, complete_job_id, complete_procedure, complete_status, refuse_extra_args,
)


@app.command(context_settings=EXTRA_ARGS)
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
    atomic: Annotated[bool, typer.Option(
        "--atomic", help="All or nothing: the call and its outcome in one transaction; a COMMIT "
                         "inside the procedure is refused.")] = False,
) -> None:
    """Submit a procedure as a detached job; print its id.

    Example: id=$(jobctl submit SUMA_SIMPLE -p vA=10 -p vB=5)
    """
    from .. import params as p
    from ..errors import UsageError

    refuse_extra_args(ctx)
    timeout_s = _seconds(timeout, "--timeout")
    placing = dict(queue=queue, priority=priority, after=after or (), at=at, in_=in_,
                   atomic=atomic)
    if params_file is not None:
        if param or params_json or unique:
            raise UsageError("--params-file cannot be combined with --param, --params or --unique")
        lines = _read_params_file(params_file)
        api = api_for(ctx, create=DEFAULT_ONLY)
        ids = api.submit_many(procedure, lines, timeout_s=timeout_s, retries=retries, **placing)
        _out("".join(i + "\n" for i in ids))
        _say(f"submitted {len(ids)} job(s)")
        if wait:
            jobs = _wait_with_progress(api, ids, None)
            _tell_outcomes([j for j in jobs if j.status is not JobStatus.COMPLETED])
            _exit_for(jobs)
        return
    given = p.merge(p.parse_params_json(params_json) if params_json else {},
                    p.parse_assignments(param or []))
    api = api_for(ctx, create=DEFAULT_ONLY)
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
    from ..errors import UsageError

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
        took = f" in {job.duration}" if job.duration else ""  # never `cancelled in -`
        line = f"{job.job_id[:8]} {job.status.value}{took}{result}{detail}"
        (_say if job.status is JobStatus.COMPLETED else _alert)(line)


@app.command(context_settings=EXTRA_ARGS)
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
    atomic: Annotated[Optional[bool], typer.Option(
        "--atomic/--no-atomic", help="All or nothing, a COMMIT inside refused (default: as the "
                                     "original job).")] = None,
) -> None:
    """Submit a job's procedure again, with its parameters (and any -p changes); print the new id.

    Example: jobctl resubmit 3f2a9c1e -p vB=7
    """
    from .. import params as p

    refuse_extra_args(ctx)
    overrides = p.parse_assignments(param or [])
    timeout_s = _seconds(timeout, "--timeout")
    api = api_for(ctx)
    original, submitted = api.resubmit(job_id, overrides, timeout_s=timeout_s, retries=retries,
                                       unique=unique, atomic=atomic)
    if sys.stderr.isatty():
        _say(f"resubmitted {original.job_id[:8]} ({original.procedure_name}) as {submitted.job_id[:8]}")
    _after_submit(api, submitted, wait)


def _compact(value) -> str:
    from ..jsontext import dumps

    return dumps(value)


def _exit_for(jobs) -> None:
    bad = [j for j in jobs if j.status is not JobStatus.COMPLETED]
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

    from .. import eta, render

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
            if job.status.finished and job.status is not JobStatus.COMPLETED and job.error_msg:
                lines.append(job.error_msg)   # why it ended says more than its last line
            pct = 100 if job.status is JobStatus.COMPLETED else job.progress
            # a running job that reports no progress pulses rather than sit at 0 %
            total = None if job.status is JobStatus.RUNNING and not pct else 100
            # the job's own run time (since its worker claimed it), not this command's
            ran = ((job.end_time or now) - job.start_time).total_seconds() \
                if job.start_time and job.status is not JobStatus.QUEUED else None
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
    frontend.status(lambda: api_for(ctx), job_ids, fmt, columns, no_headers, watch, interval)


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
    frontend.list_jobs(lambda: api_for(ctx), status_, procedure, since, limit, queue, fmt, columns,
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
    from .. import render

    view = _View(fmt, columns, no_headers, table_columns=render.STATS_TABLE_COLUMNS,
                 table_default=render.STATS_TABLE_DEFAULT, record_columns=render.STATS_COLUMNS,
                 record_default=render.STATS_COLUMNS)
    if chart and fmt is not Format.table:
        from ..errors import UsageError

        raise UsageError(f"--chart draws in the terminal; it cannot be combined with --format {fmt.value}")
    rows = api_for(ctx).stats(since_s=_since(since), procedure=procedure)
    if fmt is Format.table:
        _print_table(*render.stats_rows(rows, _now(), view.keys), show_headers=view.show_headers)
    else:
        _out(render.records(rows, fmt, view.keys, headers=view.show_headers))
    if not rows and sys.stderr.isatty():
        _say(frontend.nothing_since(_since(since)))
    if chart:
        from .. import charts

        drawn = api_for(ctx).stats_chart(since_s=_since(since), procedure=procedure)
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
    from .. import top as live_view

    since_s = _since(since)
    interval_s = live_view.check_interval(_seconds(interval, "--interval"))
    api = api_for(ctx)
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
    from ..render import output_lines

    api = api_for(ctx)

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
    if job.status is not JobStatus.COMPLETED:
        _tell_outcomes([job])  # how it ended, and why, as `wait` says it
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
    from .. import render

    report = api_for(ctx).cleanup(days=days, statuses=status_, dry_run=dry_run)
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
    api = api_for(ctx)
    jobs = _wait_with_progress(api, job_ids, _seconds(timeout, "--timeout"))
    if fmt is None:
        _tell_outcomes(jobs)
    else:
        # JSON: one id, one object; several, an array (as status and cancel)
        _show_jobs(jobs, fmt, single=len(job_ids) == 1)
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
    from .. import render

    reports = api_for(ctx).cancel(job_ids)
    rows = [{"job_id": r.job.job_id, "action": r.action, "status": r.job.status.value} for r in reports]
    for r in reports:
        if r.action == "requested":
            _say(f"{r.job.job_id[:8]}: cancel requested; the worker interrupts the call within a second")
        elif r.action == "external":
            _say(f"{r.job.job_id[:8]}: running (external): written by another application, "
                 "not a jobctl worker; nothing to cancel")
        elif r.nothing_to_do:
            _say(f"{r.job.job_id[:8]}: already {r.job.status.value}, nothing to cancel")
    if fmt is Format.table:
        _out("".join(f"{r['job_id']}\t{r['status']}\n" for r in rows))
    else:
        _out(render.records(rows, fmt, ("job_id", "action", "status"), single=len(job_ids) == 1))


