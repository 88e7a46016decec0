"""When a running job should end, for the `wait` bar.

From the job's own progress rate once it reports any (the average since it
started: progress arrives in coarse steps, and an average does not swing with
each), else from the median duration of the procedure's past completed runs.
No I/O here: the caller reads the jobs and the median.
"""

from __future__ import annotations

import datetime as dt

from .model import Job, JobStatus


def estimate(job: Job, now: dt.datetime, typical_s: float | None) -> tuple[float | None, str]:
    """(seconds left or None, where the figure comes from: "rate", "typical" or "")."""
    if job.status is not JobStatus.RUNNING or job.start_time is None:
        return None, ""
    elapsed = max(0.0, (now - job.start_time).total_seconds())
    pct = float(job.progress or 0)
    if 0 < pct < 100 and elapsed > 0:
        return elapsed * (100 - pct) / pct, "rate"
    if typical_s is not None:
        return max(0.0, typical_s - elapsed), "typical"
    return None, ""

