"""Intervals as ISO 8601 durations, months kept: `P1Y2M3DT4H5M6.5S`.

A database interval has three parts that do not convert into each other
(months, days, microseconds: a month is not 30 days, a day is not always
24 hours across a DST change), so it is written and read as those three,
never through a number of seconds or Python's timedelta (which turns
`1 mon` into `30 days`). PostgreSQL reads this form back as the same
interval, so a RESULT can be passed to a job again as it is.
"""

from __future__ import annotations

import re
from decimal import Decimal

#: PostgreSQL's default output (IntervalStyle `postgres`):
#: `-1 years -2 mons +3 days -04:05:06.5`
_POSTGRES = re.compile(
    r"(?:(?P<y>[+-]?\d+) years? ?)?(?:(?P<mo>[+-]?\d+) mons? ?)?(?:(?P<d>[+-]?\d+) days? ?)?"
    r"(?:(?P<sign>[+-])?(?P<h>\d+):(?P<mi>\d{2}):(?P<s>\d{2}(?:\.\d{1,6})?))?")

#: ISO 8601 with PostgreSQL's per-field signs: `P-1Y2M3DT-4H5M6.5S`
_ISO = re.compile(
    r"P(?:(?P<y>[+-]?\d+)Y)?(?:(?P<mo>[+-]?\d+)M)?(?:(?P<w>[+-]?\d+)W)?(?:(?P<d>[+-]?\d+)D)?"
    r"(?:T(?:(?P<h>[+-]?\d+)H)?(?:(?P<mi>[+-]?\d+)M)?(?:(?P<s>[+-]?\d+(?:\.\d+)?)S)?)?")


def iso_interval(months: int, days: int, microseconds: int) -> str:
    """The three parts as ISO 8601, as PostgreSQL's `iso_8601` style writes
    them (a sign on each field that is negative; zero is `PT0S`)."""
    years, months = int(months / 12), months - int(months / 12) * 12  # toward zero
    negative = microseconds < 0
    rest = -microseconds if negative else microseconds
    hours, rest = divmod(rest, 3_600_000_000)
    minutes, rest = divmod(rest, 60_000_000)
    sign = "-" if negative else ""
    date = "".join(f"{v}{u}" for v, u in ((years, "Y"), (months, "M"), (days, "D")) if v)
    time = "".join(f"{sign}{v}{u}" for v, u in ((hours, "H"), (minutes, "M")) if v)
    if rest:
        seconds = str(Decimal(rest).scaleb(-6).normalize())
        if "E" in seconds:
            seconds = f"{Decimal(rest).scaleb(-6):f}".rstrip("0").rstrip(".")
        time += f"{sign}{seconds}S"
    if not date and not time:
        return "PT0S"
    return "P" + date + ("T" + time if time else "")


def parse_interval(text: str) -> tuple[int, int, int] | None:
    """(months, days, microseconds) of an interval written in ISO 8601 or as
    PostgreSQL's default style prints it; None for any other text."""
    raw = text.strip()
    m = _ISO.fullmatch(raw) if raw.startswith("P") else None
    if m and raw not in ("P", ) and not raw.endswith("T"):
        g = {k: v for k, v in m.groupdict().items() if v is not None}
        months = int(g.get("y", 0)) * 12 + int(g.get("mo", 0))
        days = int(g.get("w", 0)) * 7 + int(g.get("d", 0))
        micros = (int(g.get("h", 0)) * 3600 + int(g.get("mi", 0)) * 60) * 1_000_000
        micros += int(Decimal(g.get("s", "0")).scaleb(6))
        return months, days, micros
    m = _POSTGRES.fullmatch(raw)
    if not m or not raw:
        return None
    g = {k: v for k, v in m.groupdict().items() if v is not None}
    months = int(g.get("y", 0)) * 12 + int(g.get("mo", 0))
    micros = (int(g.get("h", 0)) * 3600 + int(g.get("mi", 0)) * 60) * 1_000_000
    micros += int(Decimal(g.get("s", "0")).scaleb(6))
    if g.get("sign") == "-":
        micros = -micros
    return months, int(g.get("d", 0)), micros


def iso_from_postgres(text: str) -> str | None:
    """PostgreSQL's interval text (default or ISO style) as ISO 8601; None
    when it is in another style (sql_standard, postgres_verbose)."""
    parts = parse_interval(text)
    return iso_interval(*parts) if parts is not None else None
