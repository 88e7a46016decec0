"""How `jobctl doctor` shows its report: the context, one line per check
with its fix under it (plain, readable in a mail), or a rich table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


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
