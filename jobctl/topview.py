"""How a `jobctl top` frame is laid out: pure functions of a Frame.

A frame is a list of lines, each a list of (text, style) segments, so the
plain frame (piped, `--once`) and the live screen are the same layout: the
plain one drops the styles, the live one gives them to rich.

Fitting a width never cuts a number. Each column is one of:

- fixed: counts, ids, times, durations, percentages; never cut, never shrunk;
- name: a queue, procedure or host name; cut at its end with `…` down to a
  few characters;
- bar / spark: a progress bar or a sparkline; shrinks, down to nothing;
- text: the free text at the end of a row (waiting reasons, an output or
  error line); takes what is left, cut between words (or between reasons),
  so that no number in it is cut either.

When even that does not fit, optional columns (host, queue) go first; the
fixed columns of every section fit in 60 columns.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from . import eta, render
from .model import JobStatus
from .store_overview import FailureLine, Frame, ProcedureLine, QueueLine, RunningLine

Segment = tuple[str, str]           # (text, rich style; "" for none)
Line = list[Segment]

FIXED, NAME, BAR, SPARK, TEXT = "fixed", "name", "bar", "spark", "text"
SPARK_LEVELS = "▁▂▃▄▅▆▇█"
BAR_DONE, BAR_TODO = "█", "░"
#: a name column keeps at least this many cells (more when its header is longer)
MIN_NAME = 6
#: a text column narrower than this is left out
MIN_TEXT = 5
BAR_WANT = 24
#: bars and sparklines shrink to this before names are cut, and names to
#: this before the free text goes
KEEP_BAR = 8
KEEP_NAME = 12
KEYS = "q quit · / filter · j/k ↑/↓ select · c cancel"


class Col:
    """A column: header, kind, right-aligned or not, and when it may go
    (0: never; 1 first, 2 next)."""

    __slots__ = ("header", "kind", "right", "drop", "want")

    def __init__(self, header: str, kind: str, *, right: bool = False, drop: int = 0,
                 want: int = BAR_WANT):
        self.header, self.kind, self.right, self.drop, self.want = header, kind, right, drop, want


# -- fitting ---------------------------------------------------------------------------

def _natural(col: Col, cells: Sequence[Any]) -> tuple[int, int]:
    """(natural width, least width) of a column."""
    head = render.text_width(col.header)
    if col.kind == FIXED:
        w = max([head] + [render.text_width(_plain(c)) for c in cells])
        return w, w
    if col.kind == NAME:
        w = max([head] + [render.text_width(_plain(c)) for c in cells])
        return w, min(w, max(MIN_NAME, head))
    if col.kind == BAR:
        return max(col.want, head), 0
    if col.kind == SPARK:
        w = max([0] + [len(c[0]) for c in cells if c])
        return max(w, head if w else 0), 0
    w = max([head] + [render.text_width(_plain(c)) for c in cells])
    return w, 0


def _plain(cell: Any) -> str:
    """A text, name or fixed cell as text: a (text, style) pair, a str, or a
    tuple of parts (waiting reasons) joined by commas."""
    if isinstance(cell, tuple) and len(cell) == 2 and isinstance(cell[1], str) \
            and not isinstance(cell[0], (list, tuple)):
        return str(cell[0])
    if isinstance(cell, list):
        return ", ".join(cell)
    return "" if cell is None else str(cell)


def fit(cols: Sequence[Col], rows: Sequence[Sequence[Any]], width: int) -> tuple[list[int], int]:
    """Each column's width (0: left out) and the gap between columns. The
    optional columns go when that leaves the free text a useful width."""
    best: tuple[list[int], int] | None = None
    for dropped in (0, 1, 2):
        for gap in (2, 1):
            w = _shrunk(cols, rows, width, gap, dropped)
            if w is None:
                continue
            best = (w, gap)
            natural = [_natural(c, [r[i] for r in rows])[0] for i, c in enumerate(cols)]
            short = [i for i, c in enumerate(cols) if c.kind == TEXT and _wanted(c, rows, i)
                     and w[i] < min(natural[i], WANT_TEXT)]
            if not short or all(c.drop <= dropped for c in cols):
                return best
            break
    if best is not None:
        return best
    w = _shrunk(cols, rows, width, 1, 2, force=True)
    assert w is not None
    return w, 1  # only fixed columns left, wider than the screen: shown whole


#: the free text is worth dropping an optional column for, up to this width
WANT_TEXT = 16


def _wanted(col: Col, rows: Sequence[Sequence[Any]], i: int) -> bool:
    """A text column with something in it."""
    return any(_plain(r[i]) for r in rows)


def _shrunk(cols: Sequence[Col], rows: Sequence[Sequence[Any]], width: int, gap: int,
            dropped: int, force: bool = False) -> list[int] | None:
    """Widths within `width`, the columns of drop level <= `dropped` left
    out: the free text shrinks first (to WANT_TEXT), then bars and
    sparklines (to KEEP_BAR), names (to KEEP_NAME), the text (to nothing),
    the bars (to 3), names (to their least), bars (to nothing); fixed
    columns never. None when that does not fit (unless `force`)."""
    sizes = [_natural(col, [r[i] for r in rows]) for i, col in enumerate(cols)]
    w = [0 if 0 < col.drop <= dropped else n for col, (n, _) in zip(cols, sizes)]

    def total() -> int:
        shown = [x for x in w if x > 0]
        return sum(shown) + gap * max(0, len(shown) - 1)

    # (kinds, the least width this stage takes them to)
    for kinds, floor in (((TEXT,), WANT_TEXT), ((BAR, SPARK), KEEP_BAR), ((NAME,), KEEP_NAME),
                         ((TEXT,), None), ((BAR, SPARK), 3), ((NAME,), None), ((BAR, SPARK), None)):
        for i, col in enumerate(cols):
            excess = total() - width
            if excess <= 0:
                return w
            if col.kind in kinds and w[i]:
                w[i] = max(sizes[i][1] if floor is None else min(floor, w[i]), w[i] - excess)
                if col.kind == TEXT and w[i] < MIN_TEXT:
                    w[i] = 0
                if col.kind in (BAR, SPARK) and w[i] < 3:
                    w[i] = 0
    return w if total() <= width or force else None


def cut_words(text: str, width: int) -> str:
    """`text` in `width` cells, cut between words with `…`: never inside a
    word, so never inside a number."""
    if render.text_width(text) <= width:
        return text
    words = text.split(" ")
    out = ""
    for word in words:
        candidate = f"{out} {word}" if out else word
        if render.text_width(candidate) + 1 > width:
            break
        out = candidate
    if not out and not any(ch.isdigit() for ch in words[0]):
        return render.cut(words[0], width)  # one long word without digits: cut it
    return out + "…" if render.text_width(out) + 1 <= width else out


def cut_parts(parts: Sequence[str], width: int) -> str:
    """Comma-separated parts in `width` cells, whole parts only, `…` for the rest."""
    out = ""
    for i, part in enumerate(parts):
        candidate = f"{out}, {part}" if out else part
        more = i < len(parts) - 1
        if render.text_width(candidate) + (2 if more else 0) > width:
            return (out + " …") if out and render.text_width(out) + 2 <= width else (out or "…")
        out = candidate
    return out


def bar(fraction: float | None, width: int) -> str:
    """Floored: full only when done."""
    if width <= 0:
        return ""
    if fraction is None:
        return BAR_TODO * width
    done = min(width, max(0, math.floor(fraction * width + 1e-9)))
    return BAR_DONE * done + BAR_TODO * (width - done)


def sparkline(values: Sequence[float | None], width: int) -> str:
    """The last `width` buckets, each a block as high as its share of the
    largest one shown (a blank where nothing ran)."""
    shown = list(values)[-width:] if width > 0 else []
    top = max([v for v in shown if v is not None] or [0.0])
    out = []
    for v in shown:
        if v is None:
            out.append(" ")
        elif top <= 0:
            out.append(SPARK_LEVELS[0])
        else:
            level = math.ceil(v / top * len(SPARK_LEVELS)) - 1
            out.append(SPARK_LEVELS[min(len(SPARK_LEVELS) - 1, max(0, level))])
    return "".join(out)


def _pad(text: str, width: int, right: bool) -> str:
    room = max(0, width - render.text_width(text))
    return " " * room + text if right else text + " " * room


def table(cols: Sequence[Col], rows: Sequence[Sequence[Any]], width: int, *,
          row_styles: Sequence[str] | None = None) -> list[Line]:
    """The header line and one line per row, fitted to `width`."""
    widths, gap = fit(cols, rows, width)
    shown = [i for i, w in enumerate(widths) if w > 0]
    sep = " " * gap
    head: Line = []
    for n, i in enumerate(shown):
        col = cols[i]
        text = col.header if col.kind not in (BAR, SPARK) else render.cut(col.header, widths[i])
        head.append(((sep if n else "") + _pad(text, widths[i], col.right), "bold"))
    lines = [_trim(head)]
    for r, row in enumerate(rows):
        line: Line = []
        base = row_styles[r] if row_styles else ""
        for n, i in enumerate(shown):
            col, cell, w = cols[i], row[i], widths[i]
            style = base
            if isinstance(cell, tuple) and len(cell) == 2 and isinstance(cell[1], str) \
                    and col.kind != SPARK:
                cell, own = cell
                style = f"{base} {own}".strip()
            if col.kind == BAR:
                text = bar(cell, w)
            elif col.kind == SPARK:
                text = sparkline(cell[1] if cell else (), w)
            elif col.kind == TEXT:
                text = cut_parts(cell, w) if isinstance(cell, list) else cut_words(str(cell or ""), w)
            elif col.kind == NAME:
                text = render.cut(str(cell or ""), w)
            else:
                text = str(cell)
            line.append(((sep if n else ""), base))
            line.append((_pad(text, w, col.right), style))
        lines.append(_trim(line))
    return lines


def _trim(line: Line) -> Line:
    """No blanks at the end of a line."""
    while line and not line[-1][0].strip():
        line = line[:-1]
    if line:
        text, style = line[-1]
        line = line[:-1] + [(text.rstrip(), style)]
    return line


# -- the sections ----------------------------------------------------------------------

def _count(n: int) -> str:
    return str(n)


def _pct(fraction: float | None) -> str:
    return "-" if fraction is None else render.whole_percent(fraction * 100)


def queue_rows(queues: Sequence[QueueLine]) -> tuple[list[Col], list[list[Any]]]:
    cols = [Col("QUEUE", NAME), Col("LIMIT", FIXED, right=True), Col("RUN", FIXED, right=True),
            Col("QUEUED", FIXED, right=True), Col("DONE", FIXED, right=True),
            Col("PROGRESS", BAR), Col("", FIXED, right=True), Col("WAITING", TEXT)]
    rows = []
    for q in queues:
        limit = str(q.max_running) if q.max_running else "∞"
        name = (q.name, "yellow") if q.paused else q.name
        reasons = q.waiting()
        rows.append([name, limit, _count(q.running), _count(q.queued), _count(q.done),
                     q.progress, _pct(q.progress), reasons])
    return cols, rows


def _eta(line: RunningLine, now: dt.datetime) -> tuple[str, str]:
    job = line.job
    if job.status is not JobStatus.RUNNING:
        return job.status.value, render.STATUS_STYLE.get(job.status, "")
    if job.external:
        return "external", "dim"
    if job.cancel_requested:
        return "cancel", "yellow"
    left, source = eta.estimate(job, now, line.typical_s)
    if left is None:
        return "-", ""
    shown = f"{math.ceil(left)}s" if left < 60 else render.display_duration(left)
    return ("~" + shown, "dim") if source == "typical" else (shown, "")


def running_rows(running: Sequence[RunningLine], now: dt.datetime,
                 selected: str | None, marker: bool) -> tuple[list[Col], list[list[Any]], list[str]]:
    cols = ([Col("", FIXED)] if marker else []) + [
        Col("ID", FIXED), Col("PROCEDURE", NAME), Col("QUEUE", NAME, drop=2),
        Col("HOST", NAME, drop=1), Col("ELAPSED", FIXED, right=True), Col("PROGRESS", BAR),
        Col("", FIXED, right=True), Col("ETA", FIXED, right=True), Col("OUTPUT", TEXT)]
    rows, styles = [], []
    for line in running:
        job = line.job
        ran = (now - job.start_time).total_seconds() if job.start_time else None
        reports = bool(job.progress)
        row = ([">" if job.job_id == selected else " "] if marker else []) + [
            job.job_id[:8], job.procedure_name, job.queue, job.worker_host or "-",
            render.display_duration(ran), (job.progress / 100.0) if reports else None,
            render.whole_percent(job.progress) if reports else "-", _eta(line, now),
            (line.last_line, "dim")]
        rows.append(row)
        styles.append("reverse" if marker and job.job_id == selected else "")
    return cols, rows, styles


def failure_rows(failures: Sequence[FailureLine]) -> tuple[list[Col], list[list[Any]]]:
    cols = [Col("ID", FIXED), Col("PROCEDURE", NAME), Col("QUEUE", NAME, drop=1),
            Col("STATUS", FIXED), Col("ENDED", FIXED), Col("ERROR", TEXT)]
    rows = []
    for f in failures:
        try:
            style = render.STATUS_STYLE.get(JobStatus(f.status), "")
        except ValueError:  # a status another application wrote
            style = ""
        rows.append([f.job_id[:8], f.procedure, f.queue, (f.status, style),
                     render.local_time(f.end_time or f.start_time, render.SHORT_TIME), f.first_line])
    return cols, rows


def _fail_pct(p: ProcedureLine) -> str:
    """Rounded, one decimal below 10 %, but never 0 % with a failure nor
    100 % with a success."""
    pct = p.failure_pct
    if pct is None:
        return "-"
    if p.failed in (0, p.finished):
        return f"{pct:.0f}%"
    shown = f"{pct:.1f}%" if pct < 10 else f"{pct:.0f}%"
    return {"0.0%": "<0.1%", "100%": ">99%"}.get(shown, shown)


def procedure_rows(procedures: Sequence[ProcedureLine]) -> tuple[list[Col], list[list[Any]]]:
    cols = [Col("PROCEDURE", NAME), Col("RUNS", FIXED, right=True), Col("FAIL%", FIXED, right=True),
            Col("AVG", FIXED, right=True), Col("DURATIONS", SPARK)]
    rows = []
    for p in procedures:
        done = [v for v in p.spark if v is not None]
        avg = render.display_duration(sum(done) / len(done)) if done else "-"
        fail = _fail_pct(p)
        rows.append([p.name, _count(p.finished), (fail, "red") if p.failed else fail, avg,
                     (" " * len(p.spark), p.spark)])
    return cols, rows


# -- the frame ----------------------------------------------------------------------------

def matches(text: str, *names: str) -> bool:
    folded = text.casefold()
    return any(folded in (n or "").casefold() for n in names)


def filtered(frame: Frame, text: str | None) -> Frame:
    """The frame narrowed to jobs and procedures whose procedure or queue
    contains `text` (any case), and to the queues they are in or that match."""
    if not text:
        return frame
    running = tuple(r for r in frame.running if matches(text, r.job.procedure_name, r.job.queue))
    failures = tuple(f for f in frame.failures if matches(text, f.procedure, f.queue))
    procedures = tuple(p for p in frame.procedures if matches(text, p.name, *p.queues))
    touched = ({r.job.queue for r in running} | {f.queue for f in failures}
               | {q for p in procedures if matches(text, p.name) for q in p.queues})
    queues = tuple(q for q in frame.queues if matches(text, q.name) or q.name in touched)
    return replace(frame, queues=queues, running=running, failures=failures, procedures=procedures)


def _title(text: str, extra: str, width: int) -> Line:
    extra = cut_words(extra, width - render.text_width(text) - 2) if extra else ""
    return [(text, "bold cyan")] + ([(f"  {extra}", "dim")] if extra else [])


def frame_lines(frame: Frame, *, width: int, height: int | None = None, header: str = "",
                selected: str | None = None, marker: bool = False, footer: Sequence[Line] = (),
                filter_text: str | None = None) -> list[Line]:
    """The whole frame, fitted to `width` (and `height` when given: queues
    always, then the running jobs around the selected one, the failures and
    the procedures as far as room goes). `footer` lines end it."""
    shown = filtered(frame, filter_text)
    out: list[Line] = []
    if header:
        out.append([(render.cut(header, width), "bold")])
    qcols, qrows = queue_rows(shown.queues)
    out.append(_title("QUEUES", "progress: finished since "
                                f"{render.local_time(frame.since, render.SHORT_TIME)}, of those "
                                "and the running and queued", width))
    out += table(qcols, qrows, width) if qrows else [[("  no queue matches", "dim")]]
    sections = []
    rcols, rrows, rstyles = running_rows(shown.running, frame.now, selected, marker)
    sections.append(("RUNNING", rcols, rrows, rstyles, ""))
    fcols, frows = failure_rows(shown.failures)
    sections.append(("LAST FAILURES", fcols, frows, [], ""))
    pcols, prows = procedure_rows(shown.procedures)
    sections.append(("PROCEDURES", pcols, prows, [],
                     "runs, failures and average durations in the window, oldest to newest"))
    room = None if height is None else height - len(out) - len(footer)
    for title, cols, rows, styles, extra in sections:
        if room is not None and room < 3:
            break
        out.append([])
        if not rows:
            out.append(_title(title, "none", width))
            if room is not None:
                room -= 2
            continue
        keep = list(range(len(rows)))
        if room is not None and len(rows) > room - 3:
            fits = max(1, room - 3)
            first = 0
            if title == "RUNNING" and selected is not None:
                at = next((i for i, r in enumerate(shown.running) if r.job.job_id == selected), 0)
                first = max(0, min(at - fits // 2, len(rows) - fits))
            keep = keep[first:first + fits]
        more = len(rows) - len(keep)
        out.append(_title(title, extra + (f" (+{more} not shown)" if more else ""), width))
        body = table(cols, [rows[i] for i in keep], width,
                     row_styles=[styles[i] for i in keep] if styles else None)
        out += body
        if room is not None:
            room -= 2 + len(body)
    out += list(footer)
    return out


def plain(lines: Sequence[Line]) -> str:
    return "".join("".join(text for text, _ in line).rstrip() + "\n" for line in lines)


def frame_text(frame: Frame, *, width: int, height: int | None = None, header: str = "") -> str:
    """The plain frame: `top --once`, or piped."""
    return plain(frame_lines(frame, width=width, height=height, header=header))


def rich_lines(lines: Sequence[Line]):
    """The live screen's renderable."""
    from rich.console import Group
    from rich.text import Text

    texts = []
    for line in lines:
        t = Text(no_wrap=True, overflow="crop")
        for text, style in line:
            t.append(text, style=style or None)
        texts.append(t)
    return Group(*texts)
