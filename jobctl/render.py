"""Rendering: pure functions of rows. Machine formats return strings; the
table format returns plain text or a rich renderable (rich is imported only
for a colour terminal).

Tables never lie: a number, a time, a status and the 8-character id are
never cut. When the terminal is too narrow, names and free text are cut at
the end with `…`; below a usable width the table becomes one block of
`key value` lines per record. Piped or redirected (no width), nothing is cut.
"""

from __future__ import annotations

import datetime as dt
import math
import unicodedata
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Any

from .errors import UsageError
from .formats import Format
from .jsontext import dumps
from .model import OUTPUT_TRUNCATED_MARK, Job, JobStatus, Signature, output_lines, parse_duration


STATUS_STYLE = {
    JobStatus.QUEUED: "cyan", JobStatus.RUNNING: "blue", JobStatus.COMPLETED: "green",
    JobStatus.FAILED: "red", JobStatus.CANCELLED: "yellow", JobStatus.TIMED_OUT: "magenta",
    JobStatus.LOST: "bold red", JobStatus.ORPHANED: "bold magenta",
}
EXTERNAL = "running (external)"
LIST_COLUMNS = ("job_id", "procedure_name", "status", "progress", "start_time", "end_time",
                "duration", "elapsed_s", "attempt", "error_msg")
DETAIL_COLUMNS = tuple(Job.__dataclass_fields__)
#: per procedure: a count for each status (its name the key), then the times
STATS_COLUMNS = ("procedure", "total", *(s.value for s in JobStatus), "success_pct", "avg_s", "p50_s",
                 "p95_s", "max_s", "last_run")
_OK, _FAIL = JobStatus.COMPLETED.value, JobStatus.FAILED.value
PARAM_COLUMNS = ("name", "type", "mode", "defaulted")

#: `status` shows this many of the last output lines; `jobctl logs` has them all
STATUS_OUTPUT_LINES = 20

def local_time(value: dt.datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    return value.astimezone().strftime(fmt) if value else "-"


SHORT_TIME = "%m-%d %H:%M:%S"  # tables: the year would cost the PROCEDURE column


# -- display forms -------------------------------------------------------------------

def display_duration(seconds: float | None) -> str:
    """A duration for people: `0.25s`, `42.10s`, `5m00s`, `2h00m`, `2d04h`.
    Two units at most; the smaller one is floored, so a value never reads
    longer than it was. (The DURATION column keeps the original
    application's `1m30.25s` form: that is `model.format_duration`.)"""
    if seconds is None:
        return "-"
    seconds = max(0.0, float(seconds))
    if round(seconds, 2) < 60:
        return f"{seconds:.2f}s"
    total = max(60, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s"


def whole_percent(value: Any) -> str:
    """`13%`, floored: 99.6 reads 99%, so 100% means done."""
    if value is None:
        return "-"
    return f"{math.floor(float(value) + 1e-9)}%"


def _stored_seconds(job: Job) -> float | None:
    if job.elapsed_s is not None:
        return float(job.elapsed_s)
    if job.duration:  # rows written by the original application have only the text
        try:
            return parse_duration(job.duration)
        except UsageError:
            return None
    return None


def live_duration(job: Job, now: dt.datetime) -> str:
    seconds = _stored_seconds(job)
    if seconds is not None:
        return display_duration(seconds)
    if job.duration:
        return job.duration  # a text we cannot read: show it as it is
    if job.status is JobStatus.RUNNING and job.start_time:
        return display_duration((now - job.start_time).total_seconds())
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


_TSV_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def tsv_field(value: Any) -> str:
    """PostgreSQL COPY text format: backslash escapes, NULL as \\N, no quoting."""
    return "\\N" if value is None else _cell(value).translate(_TSV_ESCAPES)


def records(rows: Sequence[dict[str, Any]], fmt: Format, columns: Sequence[str],
            *, single: bool = False, headers: bool = True) -> str:
    """json/jsonl/csv/tsv of plain dict rows. `single` prints one JSON object.
    No rows: `[]` in json, nothing at all otherwise (no header line), so a
    script can test for an empty stdout whatever the format."""
    if fmt is Format.json:
        data: Any = rows[0] if single and len(rows) == 1 else list(rows)
        return dumps(data, indent=2, default=_json_default) + "\n"
    if fmt is Format.jsonl or not rows:
        return "".join(dumps(r, default=_json_default) + "\n" for r in rows)
    if fmt is Format.tsv:
        lines = (["\t".join(tsv_field(c) for c in columns)] if headers else [])
        lines += ["\t".join(tsv_field(r.get(c)) for c in columns) for r in rows]
        return "".join(line + "\n" for line in lines)
    import csv  # lazily: `status` at a terminal never needs it (start-up time)
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if headers:
        writer.writerow(columns)
    for r in rows:
        writer.writerow([_cell(r.get(c)) for c in columns])
    return buf.getvalue()


# -- choosing columns: one vocabulary (the JSON keys) for table, csv and tsv -------------

class Column:
    """A table column: its key (the JSON key), header, and (row, now) -> cell.
    A plain class, not a dataclass: this module is on every command's start-up."""

    __slots__ = ("key", "header", "show")

    def __init__(self, key: str, header: str, show: Callable[[Any, dt.datetime], str]):
        self.key, self.header, self.show = key, header, show


def _shown(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dt.datetime):
        return local_time(value)
    if isinstance(value, (dict, list)):
        return dumps(value, default=_json_default)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Enum):
        return value.value
    return str(value)


def _job_column(key: str) -> Column:
    special: dict[str, tuple[str, Callable[[Job, dt.datetime], str]]] = {
        "job_id": ("ID", lambda j, now: j.job_id[:8]),
        "procedure_name": ("PROCEDURE", lambda j, now: j.procedure_name),
        # `queued: why`, not `queued (why)`: a reason may hold brackets itself
        "status": ("STATUS", lambda j, now: status_label(j) + (
            f": {j.waiting_for}" if j.waiting_for else "")),
        "progress": ("PROG", lambda j, now: whole_percent(j.progress)),
        "start_time": ("STARTED", lambda j, now: local_time(j.start_time, SHORT_TIME)),
        "end_time": ("ENDED", lambda j, now: local_time(j.end_time, SHORT_TIME)),
        "created_at": ("SUBMITTED", lambda j, now: local_time(j.created_at, SHORT_TIME)),
        "heartbeat_at": ("HEARTBEAT", lambda j, now: local_time(j.heartbeat_at, SHORT_TIME)),
        "duration": ("DURATION", live_duration),
        "elapsed_s": ("ELAPSED", lambda j, now: display_duration(j.elapsed_s)),
        "timeout_s": ("TIMEOUT", lambda j, now: display_duration(j.timeout_s)),
        "output": ("OUTPUT", lambda j, now: (output_lines(j.output)[0] or ["-"])[-1]),
    }
    if key in special:
        header, show = special[key]
        return Column(key, header, show)
    return Column(key, key.upper(), lambda j, now: _shown(getattr(j, key)))


JOB_TABLE_DEFAULT = ("job_id", "procedure_name", "status", "progress", "start_time", "duration")
JOB_TABLE_COLUMNS = {k: _job_column(k) for k in DETAIL_COLUMNS if k != "lost_detected"}


def _other(r: dict[str, Any]) -> int:
    return int(r["total"]) - int(r[_OK]) - int(r[_FAIL])


def _duration_cell(key: str) -> Callable[[Any, dt.datetime], str]:
    return lambda r, now: display_duration(r[key])


def _count_cell(key: str) -> Callable[[Any, dt.datetime], str]:
    return lambda r, now: str(r.get(key, 0))


STATS_TABLE_DEFAULT = ("procedure", "total", _OK, _FAIL, "other", "success_pct",
                       "avg_s", "p50_s", "p95_s", "max_s")
STATS_TABLE_COLUMNS = {c.key: c for c in [
    Column("procedure", "PROCEDURE", lambda r, now: str(r["procedure"])),
    Column("total", "TOTAL", lambda r, now: str(r["total"])),
    Column(_OK, "OK", lambda r, now: str(r[_OK])),
    Column(_FAIL, "FAIL", lambda r, now: str(r[_FAIL])),
    Column("other", "OTHER", lambda r, now: str(_other(r))),
    Column("success_pct", "OK%", lambda r, now: whole_percent(r["success_pct"]).rstrip("%")),
    *(Column(k, k[:-2].upper(), _duration_cell(k)) for k in ("avg_s", "p50_s", "p95_s", "max_s")),
    *(Column(k, k.upper(), _count_cell(k))
      for k in (s.value for s in JobStatus if s not in (JobStatus.COMPLETED, JobStatus.FAILED))),
    Column("last_run", "LAST_RUN", lambda r, now: local_time(r["last_run"], SHORT_TIME)),
]}


def choose_columns(requested: str | None, available: Sequence[str], default: Sequence[str],
                   aliases: dict[str, str] | None = None) -> list[str]:
    """`--columns a,b,c` → keys, in the order given. A table header (ID,
    PROCEDURE, OK%, ...) is accepted for its key. Unknown → exit 2."""
    if requested is None:
        return list(default)
    aliases = aliases or {}
    chosen = []
    for raw in requested.split(","):
        name = raw.strip().lower()
        if not name:
            continue
        key = name if name in available else aliases.get(name)
        if key is None:
            raise UsageError(f"unknown column {raw.strip()!r} for --columns: valid columns are "
                             + ", ".join(available))
        chosen.append(key)
    if not chosen:
        raise UsageError("--columns needs at least one column: " + ", ".join(available))
    return chosen


def header_aliases(table_columns: dict[str, Column]) -> dict[str, str]:
    return {c.header.lower(): c.key for c in table_columns.values()}


def table_rows(table_columns: dict[str, Column], keys: Sequence[str], rows: Sequence[Any],
               now: dt.datetime) -> tuple[list[str], list[list[str]]]:
    cols = [table_columns[k] for k in keys]
    return [c.header for c in cols], [[c.show(r, now) for c in cols] for r in rows]


# -- human output ------------------------------------------------------------------------

def jobs_rows(jobs: Sequence[Job], now: dt.datetime,
              keys: Sequence[str] = JOB_TABLE_DEFAULT) -> tuple[list[str], list[list[str]]]:
    return table_rows(JOB_TABLE_COLUMNS, keys, jobs, now)


def output_tail(job: Job, lines: int = STATUS_OUTPUT_LINES) -> str | None:
    """The last `lines` lines of the job's output, saying how many came before."""
    kept, capped = output_lines(job.output)
    if not kept and not capped:
        return None
    shown = kept[-lines:] if lines else []
    earlier = len(kept) - len(shown)
    if earlier:
        noun = "line" if earlier == 1 else "lines"
        shown = [f"… {earlier} earlier {noun}: jobctl logs {job.job_id[:8]}"] + shown
    if capped:
        shown.append(OUTPUT_TRUNCATED_MARK)
    return "\n".join(shown)


def status_label(job: Job) -> str:
    """A running row no jobctl worker claimed reads `running (external)`."""
    return EXTERNAL if job.external else job.status.value


def detail_pairs(job: Job, now: dt.datetime) -> list[tuple[str, str]]:
    pairs = [("job", job.job_id), ("procedure", job.procedure_name), ("status", status_label(job))]
    if job.status_reason:
        pairs.append(("why", job.status_reason))
    if job.waiting_for:
        pairs.append(("waiting", job.waiting_for))
    if job.queue != "default" or job.priority:
        pairs.append(("queue", job.queue + (f", priority {job.priority}" if job.priority else "")))
    if job.after_jobs:
        pairs.append(("after", ", ".join(job.after_jobs)))
    if job.not_before:
        pairs.append(("not before", local_time(job.not_before)))
    pairs += [("progress", whole_percent(job.progress)),
              ("params", dumps(job.params) if job.params is not None else "-")]
    if job.result is not None:
        pairs.append(("result", dumps(job.result)))
    if job.error_msg:
        pairs.append(("error", job.error_msg))
    if job.db_error_code:
        pairs.append(("error code", job.db_error_code))
    if job.committed_inside is not None or job.atomic:
        pairs.append(("commits", "all or nothing (--atomic)" if job.atomic else
                      "committed inside the procedure (that work stays)" if job.committed_inside
                      else "none inside the procedure"))
    pairs += [("submitted", f"{local_time(job.created_at)} by {job.submitted_by or '-'}"),
              ("started", local_time(job.start_time))]
    if job.end_time:
        pairs.append(("ended", local_time(job.end_time)))
    pairs.append(("duration", live_duration(job, now)))
    if job.max_attempts and job.max_attempts > 1:
        pairs.append(("attempt", f"{job.attempt or 0} of {job.max_attempts}"))
    if job.timeout_s:
        pairs.append(("timeout", display_duration(job.timeout_s)))
    if job.worker_pid:
        worker = f"{job.worker_host} pid {job.worker_pid}"
        if job.status in (JobStatus.RUNNING, JobStatus.LOST, JobStatus.ORPHANED) and job.heartbeat_at:
            age = display_duration((now - job.heartbeat_at).total_seconds())
            worker += f", last heartbeat {age} ago"
        pairs.append(("worker", worker))
    if job.db_session and not job.status.finished:
        pairs.append(("session", job.db_session))
    if job.cancel_requested and not job.status.finished:
        pairs.append(("cancel", "requested"))
    tail = output_tail(job)
    if tail is not None:
        pairs.append(("output", tail))
    return pairs


def stats_rows(rows: Sequence[dict[str, Any]], now: dt.datetime | None = None,
               keys: Sequence[str] = STATS_TABLE_DEFAULT) -> tuple[list[str], list[list[str]]]:
    return table_rows(STATS_TABLE_COLUMNS, keys, rows, now or dt.datetime.now(dt.timezone.utc))


def signature_table_rows(sig: Signature) -> tuple[list[str], list[list[str]]]:
    headers = ["PARAMETER", "TYPE", "MODE", "DEFAULTED"]
    rows = [[p.name, p.shown_type, p.mode, "yes" if p.defaulted else "no"] for p in sig.params]
    return headers, rows


# -- fitting a table to a width ------------------------------------------------------------

#: right-aligned, never cut
_NUMBERS = {"PROG", "DURATION", "ELAPSED", "TIMEOUT", "TOTAL", "OK", "FAIL", "OTHER", "OK%", "AVG",
            "P50", "P95", "MAX", "QUEUED", "RUNNING", "CANCELLED", "TIMED_OUT", "LOST", "ORPHANED", "ATTEMPT",
            "MAX_ATTEMPTS", "WORKER_PID"}
#: left-aligned, never cut: ids, statuses, times, short words
_FIXED = {"ID", "STATUS", "STARTED", "ENDED", "SUBMITTED", "HEARTBEAT", "LAST_RUN", "MODE",
          "DEFAULTED", "CANCEL_REQUESTED"}
#: a name narrower than this is not worth a column: switch to blocks instead
MIN_NAME_WIDTH = 12


def text_width(text: str) -> int:
    """Terminal cells: East Asian wide characters take two."""
    if text.isascii():
        return len(text)
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else
               0 if unicodedata.combining(ch) else 1 for ch in text)


def cut(text: str, width: int) -> str:
    """`text` in at most `width` cells, cut at the end with `…`."""
    if text_width(text) <= width:
        return text
    out, used = [], 0
    for ch in text:
        w = text_width(ch)
        if used + w > width - 1:
            break
        out.append(ch)
        used += w
    return "".join(out) + "…"


def _pad(text: str, width: int, right: bool) -> str:
    space = " " * max(0, width - text_width(text))
    return space + text if right else text + space


class Layout:
    __slots__ = ("widths", "gap")

    def __init__(self, widths: list[int], gap: int):
        self.widths, self.gap = widths, gap


def fit(headers: Sequence[str], rows: Sequence[Sequence[str]], width: int | None,
        *, show_headers: bool = True) -> Layout | None:
    """Column widths within `width` cells, or None when only blocks fit.
    Single-line cells assumed (a newline is shown as ⏎ by the renderers)."""
    natural = [max([text_width(h) if show_headers else 1] + [text_width(r[i]) for r in rows])
               for i, h in enumerate(headers)]
    if width is None:
        return Layout(natural, 2)
    shrinkable = [i for i, h in enumerate(headers) if h not in _NUMBERS and h not in _FIXED]
    for gap in (2, 1):
        widths = list(natural)
        excess = sum(widths) + gap * (len(widths) - 1) - width
        floor = {i: min(natural[i], max(MIN_NAME_WIDTH, text_width(headers[i]) if show_headers else 1))
                 for i in shrinkable}
        if excess > sum(natural[i] - floor[i] for i in shrinkable):
            continue
        while excess > 0:  # take from the widest name first
            i = max((i for i in shrinkable if widths[i] > floor[i]), key=lambda i: widths[i])
            widths[i] -= 1
            excess -= 1
        return Layout(widths, gap)
    return None


def _one_line(cell: str) -> str:
    return cell.replace("\r\n", "⏎").replace("\n", "⏎").replace("\r", "⏎").replace("\t", " ")


def _flat(rows: Sequence[Sequence[str]]) -> list[list[str]]:
    return [[_one_line(c) for c in r] for r in rows]


def _table_lines(headers, rows, layout: Layout, show_headers: bool) -> list[list[str]]:
    """Each line as its padded cells (so a renderer can style them)."""
    lines = [list(headers)] if show_headers else []
    lines += rows
    out = []
    for cells in lines:
        out.append([_pad(cut(c, w), w, h in _NUMBERS) for c, w, h in zip(cells, layout.widths, headers)])
    return out


def plain_table(headers: Sequence[str], rows: Sequence[Sequence[str]], width: int | None = None,
                *, show_headers: bool = True) -> str:
    """Aligned columns within `width` (None: a pipe, nothing is ever cut);
    one block per record when a table cannot fit."""
    rows = _flat(rows)
    layout = fit(headers, rows, width, show_headers=show_headers)
    if layout is None:
        return plain_blocks(headers, rows)
    sep = " " * layout.gap
    return "".join(sep.join(cells).rstrip() + "\n"
                   for cells in _table_lines(headers, rows, layout, show_headers))


def plain_blocks(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """One record per block of `key value` lines, a blank line between."""
    return "\n".join(plain_pairs([(h.lower(), c) for h, c in zip(headers, r)]) for r in rows)


def plain_pairs(pairs: Sequence[tuple[str, str]]) -> str:
    width = max((len(k) for k, _ in pairs), default=0)
    out = []
    for key, value in pairs:
        lines = str(value).split("\n")
        out.append(f"{key.ljust(width)}  {lines[0]}".rstrip())
        out += [" " * (width + 2) + more for more in lines[1:]]
    return "\n".join(out) + "\n"


def rich_table(headers: Sequence[str], rows: Sequence[Sequence[str]], width: int,
               title: str | None = None, *, show_headers: bool = True):
    """The same layout as `plain_table` at `width`, with a bold header, a rule
    and coloured statuses."""
    from rich.console import Group
    from rich.text import Text

    rows = _flat(rows)
    layout = fit(headers, rows, width, show_headers=show_headers)
    parts: list[Any] = [Text(title, style="bold")] if title else []
    if layout is None:
        for i, r in enumerate(rows):
            if i:
                parts.append(Text(""))
            parts.append(rich_pairs([(h.lower(), c) for h, c in zip(headers, r)]))
        return Group(*parts)
    status_col = headers.index("STATUS") if "STATUS" in headers else -1
    sep = " " * layout.gap
    lines = _table_lines(headers, rows, layout, show_headers)
    total = sum(layout.widths) + layout.gap * (len(layout.widths) - 1)
    for n, cells in enumerate(lines):
        is_header = show_headers and n == 0
        line = Text(no_wrap=True, overflow="crop", end="\n")
        for i, cell in enumerate(cells):
            if i:
                line.append(sep)
            style = "bold" if is_header else (_status_style(cell.strip()) if i == status_col else "")
            line.append(cell, style=style)
        line.rstrip()
        parts.append(line)
        if is_header:
            parts.append(Text("─" * total, style="dim", no_wrap=True, overflow="crop"))
    return Group(*parts)


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
        return STATUS_STYLE[JobStatus(value.split(":", 1)[0])]  # `queued: why` too
    except ValueError:
        return ""


def signature_rows(sig: Signature, *, several: bool = False) -> list[dict[str, Any]]:
    """csv/tsv: a row per parameter; an overload named by its form."""
    return [dict(p.to_dict(), procedure=sig.form if several else sig.name) for p in sig.params]


def describe_record(sigs: Sequence[Signature]) -> dict[str, Any]:
    """`describe -f json`: one overload {procedure, form, params}; several
    {procedure, overloads: [{form, params}, ...]}."""
    each = [{"form": s.form, "params": [p.to_dict() for p in s.params]} for s in sigs]
    return {"procedure": sigs[0].name, **(each[0] if len(each) == 1 else {"overloads": each})}


# -- jobctl procedures ------------------------------------------------------------

PROCEDURE_COLUMNS = ("procedure", "parameters")


def parameters_text(sig: Signature) -> str:
    """A signature on one line, as a user would fill it in: `vA NUMBER,
    [vB NUMBER], OUT vResult NUMBER` (brackets: the parameter has a default)."""
    shown = []
    for p in sig.params:
        text = ("VARIADIC " if p.variadic else "") + p.name + " " + p.shown_type.removeprefix("VARIADIC ")
        if p.mode != "IN":
            text = f"{p.mode} {text}"
        shown.append(f"[{text}]" if p.defaulted else text)
    return ", ".join(shown)


def procedures_rows(sigs: Sequence[Signature]) -> tuple[list[str], list[list[str]]]:
    return ["PROCEDURE", "PARAMETERS"], [[s.name, parameters_text(s)] for s in sigs]


def procedure_records(sigs: Sequence[Signature], *, structured: bool) -> list[dict[str, Any]]:
    """JSON: the parameters as objects; csv/tsv: as the table's one-line text."""
    if structured:
        return [dict(procedure=s.name, form=s.form, params=[p.to_dict() for p in s.params]) for s in sigs]
    return [{"procedure": s.name, "parameters": parameters_text(s)} for s in sigs]
