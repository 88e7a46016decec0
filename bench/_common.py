"""Shared helpers for the benchmarks: a scratch SQLite database and timing."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def jobctl_cmd() -> list[str]:
    """The installed console script next to this interpreter (no shims)."""
    script = Path(sys.executable).parent / "jobctl"
    return [str(script)] if script.exists() else [sys.executable, "-m", "jobctl"]


def scratch_env() -> dict[str, str]:
    tmp = tempfile.mkdtemp(prefix="jobctl-bench-")
    return {**os.environ, "JOBCTL_DSN": f"sqlite:///{tmp}/jobs.db",
            "XDG_CONFIG_HOME": f"{tmp}/config", "XDG_STATE_HOME": f"{tmp}/state"}


def median_wall(cmd: list[str], env: dict[str, str], runs: int = 21) -> tuple[float, float]:
    """(median, p90) wall seconds of running `cmd`, after one warm-up run."""
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - t0)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.9) - 1]
