"""Budget: `jobctl --help`, `jobctl status ID` and `jobctl list` on SQLite
start within 6x a bare `python -c pass` (median, side by side) and well under
150 ms. They take jobctl/fastpath.py, without typer; "via typer" is the same
status through cli.py, to show what that saves. Completion needs typer.

Side by side: the bare interpreter and each command run in turn, round after
round, so a busy machine slows both alike and the ratio stays meaningful.
The package is byte-compiled first, as `pip install` does: with
PYTHONDONTWRITEBYTECODE set (or a read-only install) every run would
otherwise compile jobctl's sources again and measure the compiler.

    python bench/startup.py [--runs 31]
"""

from __future__ import annotations

import argparse
import compileall
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import jobctl_cmd, scratch_env

BUDGET_RATIO = 6.0
#: the rows the budget is about (the others are shown for comparison)
BUDGETED = ("jobctl --help", "jobctl status ID", "jobctl status ID -f json", "jobctl list")


def _run(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds user + system) of one run: CPU time is what
    a busy machine disturbs least."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}")
    return wall, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=31)
    runs = parser.parse_args().runs
    compileall.compile_dir(str(Path(__file__).resolve().parent.parent / "jobctl"), quiet=1)
    env = scratch_env()
    cmd = jobctl_cmd()
    job_id = subprocess.run(cmd + ["submit", "SUMA_SIMPLE", "-p", "vA=10"], env=env,
                            capture_output=True, text=True, check=True).stdout.strip()
    time.sleep(0.5)
    cases = [("python -c pass", [sys.executable, "-c", "pass"]),
             ("jobctl --help", cmd + ["--help"]),
             ("jobctl status ID", cmd + ["status", job_id]),
             ("jobctl status ID -f json", cmd + ["status", job_id, "-f", "json"]),
             ("jobctl list", cmd + ["list"]),
             ("jobctl status ID via typer", [sys.executable, "-c", "from jobctl.cli import run; run()",
                                             "status", job_id]),
             ("completion: list --status", cmd)]
    completion_env = {**env, "_JOBCTL_COMPLETE": "complete_bash",
                      "COMP_WORDS": "jobctl list --status ru", "COMP_CWORD": "3"}
    envs = {"completion: list --status": completion_env}
    walls: dict[str, list[float]] = {label: [] for label, _ in cases}
    cpus: dict[str, list[float]] = {label: [] for label, _ in cases}
    for label, full in cases:  # warm the page cache
        _run(full, envs.get(label, env))
    for _ in range(runs):
        for label, full in cases:
            wall, cpu = _run(full, envs.get(label, env))
            walls[label].append(wall)
            cpus[label].append(cpu)
    base = statistics.median(walls["python -c pass"])
    base_cpu = statistics.median(cpus["python -c pass"])
    print(f"{'':28s} {'wall median':>12s} {'p90':>8s} {'ratio':>6s}   {'cpu median':>10s} {'ratio':>6s}")
    for label, _ in cases:
        samples = sorted(walls[label])
        med = statistics.median(samples)
        p90 = samples[int(len(samples) * 0.9) - 1]
        cpu = statistics.median(cpus[label])
        ratio = med / base
        mark = "" if label not in BUDGETED else (
            "  ok" if ratio <= BUDGET_RATIO else f"  over {BUDGET_RATIO:g}x")
        print(f"{label:28s} {med * 1000:9.1f} ms {p90 * 1000:5.1f} ms {ratio:5.1f}x   "
              f"{cpu * 1000:7.1f} ms {cpu / base_cpu if base_cpu else 0:5.1f}x{mark}")


if __name__ == "__main__":
    main()
