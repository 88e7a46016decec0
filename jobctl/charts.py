"""`jobctl stats --chart`: a histogram of durations and a bar per day, as
plain text (pure functions of a store_overview.Chart and the stats rows).

The numbers are stats' own: the histogram counts the completed runs stats
counts as COMPLETED (those with a duration), the days split its COMPLETED
and FAIL; a bar never hides its number, which is printed beside it whole.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import Any

from . import render
from .store_overview import Chart

BLOCK, FAILED_BLOCK = "█", "▒"


def _bar(value: int, top: int, width: int, block: str = BLOCK) -> str:
    if width <= 0 or top <= 0 or value <= 0:
        return ""
    return block * max(1, math.floor(value / top * width + 1e-9))


def _edge(seconds: float) -> str:
    return render.display_duration(seconds)


def duration_labels(edges: Sequence[float]) -> list[str]:
    if not edges:
        return ["all"]
    labels = [f"< {_edge(edges[0])}"]
    labels += [f"{_edge(lo)}–{_edge(hi)}" for lo, hi in zip(edges, edges[1:])]
    labels.append(f"≥ {_edge(edges[-1])}")
    return labels


def _rows(labels: Sequence[str], numbers: Sequence[Sequence[str]], bars: Sequence[Sequence[tuple[int, str]]],
          top: int, width: int) -> list[str]:
    """label, bar (what is left of the width), then the numbers, whole."""
    lw = max(render.text_width(label) for label in labels)
    nws = [max(render.text_width(n[i]) for n in numbers) for i in range(len(numbers[0]))]
    room = max(0, width - lw - sum(nws) - 2 * len(nws) - 2)
    out = []
    for label, nums, parts in zip(labels, numbers, bars):
        drawn = ""
        used = 0
        total = sum(v for v, _ in parts)
        whole = _bar(total, top, room) if total else ""
        for i, (value, block) in enumerate(parts):
            piece = len(whole) - used if i == len(parts) - 1 else \
                (math.floor(value / total * len(whole) + 1e-9) if total else 0)
            drawn += block * max(0, piece)
            used += max(0, piece)
        cells = "  ".join(n.rjust(w) for n, w in zip(nums, nws))
        out.append(f"{label.rjust(lw)}  {drawn.ljust(room)}  {cells}".rstrip())
    return out


def chart_text(chart: Chart, stats: Sequence[dict[str, Any]], *, width: int,
               since_label: str) -> str:
    """The histogram and the days, under the stats table."""
    completed = sum(int(r["completed"]) for r in stats)
    failed = sum(int(r["failed"]) for r in stats)
    lines = []
    timed = sum(chart.durations)
    title = f"DURATIONS  {timed} completed run{'s' if timed != 1 else ''} since {since_label}"
    if timed != completed:
        title += f" ({completed - timed} without a duration)"
    lines.append(title)
    if timed:
        labels = duration_labels(chart.edges)
        held = [i for i, n in enumerate(chart.durations) if n]
        span = range(held[0], held[-1] + 1)  # from the shortest bucket with runs to the longest
        counts = [chart.durations[i] for i in span]
        lines += _rows([labels[i] for i in span], [[str(n)] for n in counts],
                       [[(n, BLOCK)] for n in counts], max(counts), width)
    else:
        lines.append("  none")
    lines.append("")
    shown_c = sum(c for _, c, _ in chart.days)
    shown_f = sum(f for _, _, f in chart.days)
    title = f"PER DAY  {BLOCK} completed  {FAILED_BLOCK} failed"
    if (shown_c, shown_f) != (completed, failed):
        title += f"  (the last {len(chart.days)} days: {shown_c} of {completed} completed, " \
                 f"{shown_f} of {failed} failed)"
    lines.append(title)
    # from the first day with a job (the days before it would be empty bars)
    days = list(chart.days)
    while days and not days[0][1] and not days[0][2]:
        days.pop(0)
    if days:
        top = max([c + f for _, c, f in days] + [1])
        lines += _rows([_day(d) for d, _, _ in days], [[str(c), str(f)] for _, c, f in days],
                       [[(c, BLOCK), (f, FAILED_BLOCK)] for _, c, f in days], top, width)
    else:
        lines.append("  none")
    return "\n".join(lines) + "\n"


def _day(start: dt.datetime) -> str:
    return start.astimezone().strftime("%a %m-%d")
