"""Rendering: pure functions of rows. Machine formats return strings; the
table format returns a rich renderable (rich is imported only for tables)."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Sequence
from enum import Enum
from typing import Any

from .formats import Format
from .jsontext import dumps
from .model import Job, JobStatus, Signature, format_duration


STATUS_STYLE = {
    JobStatus.QUEUED: "cyan", JobStatus.RUNNING: "blue", JobStatus.COMPLETED: "green",
    JobStatus.FAILED: "red", JobStatus.CANCELLED: "yellow", JobStatus.TIMED_OUT: "magenta",
    JobStatus.LOST: "bold red", JobStatus.ORPHANED: "bold magenta",
}
EXTERNAL = "running (external)"
LIST_COLUMNS = ("job_id", "procedure_name", "status", "progress", "start_time", "end_time",
                "duration", "elapsed_s", "attempt", "error_msg")
DETAIL_COLUMNS = tuple(Job.__dataclass_fields__)
STATS_COLUMNS = ("procedure", "total", "queued", "running", "completed", "failed", "cancelled",
                 "timed_out", "lost", "orphaned", "success_pct", "avg_s", "p50_s", "p95_s", "max_s", "last_run")
PARAM_COLUMNS = ("name", "type", "mode", "defaulted")


def local_time(value: dt.datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    return value.astimezone().strftime(fmt) if value else "-"


SHORT_TIME = "%m-%d %H:%M:%S"  # tables: the year would cost the PROCEDURE column


def live_duration(job: Job, now: dt.datetime) -> str:
    if job.duration:
        return job.duration
    if job.status is JobStatus.RUNNING and job.start_time:
        return format_duration((now - job.start_time).total_seconds()) or "-"
    return "-"


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    return str(value)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, (dict, list)):
        return dumps(value, default=_json_default)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        return value.value
    return str(value)


def records(rows: Sequence[dict[str, Any]], fmt: Format, columns: Sequence[str],
            *, single: bool = False) -> str:
    """json/jsonl/csv/tsv of plain dict rows. `single` prints one JSON object."""
    if fmt is Format.json:
        data: Any = rows[0] if single and len(rows) == 1 else list(rows)
        return dumps(data, indent=2, default=_json_default) + "\n"
    if fmt is Format.jsonl:
        return "".join(dumps(r, default=_json_default) + "\n" for r in rows)
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter="\t" if fmt is Format.tsv else ",", lineterminator="\n")
    writer.writerow(columns)
    for r in rows:
        cells = [_cell(r.get(c)) for c in columns]
        if fmt is Format.tsv:  # TSV has no quoting: keep one record per line
            cells = [c.replace("\t", " ").replace("\n", " ") for c in cells]
        writer.writerow(cells)
    return buf.getvalue()


# -- human output: the same rows, as a rich table on a terminal, plain text elsewhere --

def status_label(job: Job) -> str:
    """A running row no jobctl worker claimed reads `running (external)`."""
    return EXTERNAL if job.external else job.status.value


def jobs_rows(jobs: Sequence[Job], now: dt.datetime) -> tuple[list[str], list[list[str]]]:
    headers = ["ID", "PROCEDURE", "STATUS", "PROG", "STARTED", "DURATION"]
    rows = [[job.job_id[:8], job.procedure_name, status_label(job), f"{job.progress:g}%",
             local_time(job.start_time, SHORT_TIME), live_duration(job, now)] for job in jobs]
    return headers, rows


def detail_pairs(job: Job, now: dt.datetime) -> list[tuple[str, str]]:
    pairs = [("job", job.job_id), ("procedure", job.procedure_name), ("status", status_label(job))]
    if job.status_reason:
        pairs.append(("why", job.status_reason))
    pairs += [("progress", f"{job.progress:g}%"),
              ("params", dumps(job.params) if job.params is not None else "-")]
    if job.result is not None:
        pairs.append(("result", dumps(job.result)))
    if job.error_msg:
        pairs.append(("error", job.error_msg))
    pairs += [("submitted", f"{local_time(job.created_at)} by {job.submitted_by or '-'}"),
              ("started", local_time(job.start_time))]
    if job.end_time:
        pairs.append(("ended", local_time(job.end_time)))
    pairs.append(("duration", live_duration(job, now)))
    if job.max_attempts and job.max_attempts > 1:
        pairs.append(("attempt", f"{job.attempt or 0} of {job.max_attempts}"))
    if job.timeout_s:
        pairs.append(("timeout", format_duration(job.timeout_s) or "-"))
    if job.worker_pid:
        worker = f"{job.worker_host} pid {job.worker_pid}"
        if job.status in (JobStatus.RUNNING, JobStatus.LOST, JobStatus.ORPHANED) and job.heartbeat_at:
            age = format_duration((now - job.heartbeat_at).total_seconds())
            worker += f", last heartbeat {age} ago"
        pairs.append(("worker", worker))
    if job.db_session and not job.status.finished:
        pairs.append(("session", job.db_session))
    if job.cancel_requested and not job.status.finished:
        pairs.append(("cancel", "requested"))
    if job.output:
        pairs.append(("output", job.output))
    return pairs


def _secs(v: float | None) -> str:
    return "-" if v is None else (format_duration(v) or "-")


def stats_rows(rows: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    headers = ["PROCEDURE", "TOTAL", "OK", "FAIL", "OTHER", "OK%", "AVG", "P50", "P95", "MAX"]
    out = []
    for r in rows:
        other = r["total"] - r["completed"] - r["failed"]
        pct = "-" if r["success_pct"] is None else f"{r['success_pct']:g}"
        out.append([r["procedure"], str(r["total"]), str(r["completed"]), str(r["failed"]),
                    str(other), pct, _secs(r["avg_s"]), _secs(r["p50_s"]), _secs(r["p95_s"]),
                    _secs(r["max_s"])])
    return headers, out


def signature_table_rows(sig: Signature) -> tuple[list[str], list[list[str]]]:
    headers = ["PARAMETER", "TYPE", "MODE", "DEFAULTED"]
    rows = [[p.name, p.type_name + ("[]" if p.array and not p.type_name.endswith("]") else ""),
             p.mode, "yes" if p.defaulted else "no"] for p in sig.params]
    return headers, rows


_RIGHT = {"PROG", "DURATION", "TOTAL", "OK", "FAIL", "OTHER", "OK%", "AVG", "P50", "P95", "MAX"}


def plain_table(headers: Sequence[str], rows: Sequence[Sequence[str]], width: int = 80) -> str:
    """Aligned columns within `width`; a too-long PROCEDURE keeps its end."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    if "PROCEDURE" in headers:
        i = headers.index("PROCEDURE")
        spare = width - (sum(widths) + 2 * (len(widths) - 1))
        if spare < 0:
            widths[i] = max(len(headers[i]), widths[i] + spare)
            rows = [[("…" + c[len(c) - widths[i] + 1:]) if j == i and len(c) > widths[i] else c
                     for j, c in enumerate(r)] for r in rows]

    def line(cells: Sequence[str]) -> str:
        parts = [c.rjust(w) if h in _RIGHT else c.ljust(w) for c, w, h in zip(cells, widths, headers)]
        return "  ".join(parts).rstrip()

    return "\n".join([line(headers)] + [line(r) for r in rows]) + "\n"


def plain_pairs(pairs: Sequence[tuple[str, str]]) -> str:
    width = max((len(k) for k, _ in pairs), default=0)
    out = []
    for key, value in pairs:
        lines = str(value).split("\n")
        out.append(f"{key.ljust(width)}  {lines[0]}")
        out += [" " * (width + 2) + more for more in lines[1:]]
    return "\n".join(out) + "\n"


def rich_table(headers: Sequence[str], rows: Sequence[Sequence[str]], title: str | None = None):
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, title=title,
                  title_justify="left")
    for h in headers:
        table.add_column(h, justify="right" if h in _RIGHT else "left",
                         no_wrap=h not in ("PROCEDURE",), overflow="fold")
    status_col = headers.index("STATUS") if "STATUS" in headers else -1
    for r in rows:
        cells = [Text(c, style=_status_style(c)) if i == status_col else Text(c)
                 for i, c in enumerate(r)]
        table.add_row(*cells)
    return table


def rich_pairs(pairs: Sequence[tuple[str, str]]):
    from rich.table import Table
    from rich.text import Text

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for key, value in pairs:
        grid.add_row(key, Text(value, style=_status_style(value) if key == "status" else ""))
    return grid


def _status_style(value: str) -> str:
    if value == EXTERNAL:
        return STATUS_STYLE[JobStatus.RUNNING]
    try:
        return STATUS_STYLE[JobStatus(value)]
    except ValueError:
        return ""


def signature_rows(sig: Signature) -> list[dict[str, Any]]:
    return [dict(procedure=sig.name, **p.to_dict()) for p in sig.params]


# -- jobctl doctor ---------------------------------------------------------------

DOCTOR_COLUMNS = ("name", "result", "detail", "remedy")
RESULT_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}


def doctor_context_pairs(context: dict[str, Any]) -> list[tuple[str, str]]:
    config_file = context["config_file"] + ("" if context["config_file_exists"] else " (none)")
    return [("jobctl", context["jobctl_version"]), ("backend", context["backend"]),
            ("dsn", context["dsn"]), ("profile", context["profile"] or "-"),
            ("config file", config_file), ("password", context["password_source"] or "none")]


def plain_checks(checks: Sequence[Any]) -> str:
    """One line per check, the remedy indented under it: readable in a mail."""
    width = max((len(c.name) for c in checks), default=0)
    out = []
    for c in checks:
        out.append(f"{c.result:<4}  {c.name.ljust(width)}  {c.detail}".rstrip())
        if c.remedy:
            out.append(" " * (width + 8) + f"fix: {c.remedy}")
    return "\n".join(out) + "\n"


def rich_checks(checks: Sequence[Any]):
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    table.add_column("CHECK", no_wrap=True)
    table.add_column("RESULT", no_wrap=True)
    table.add_column("DETAIL", overflow="fold", ratio=3)
    table.add_column("REMEDY", overflow="fold", ratio=2)
    for c in checks:
        table.add_row(Text(c.name), Text(c.result, style=RESULT_STYLE.get(c.result, "")),
                      Text(c.detail), Text(c.remedy))
    return table
