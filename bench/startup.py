"""Budget: `jobctl --help` and `jobctl status ID` on SQLite start within 6x a
bare `python -c pass` (median, side by side) and well under 150 ms.

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
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import jobctl_cmd, scratch_env

BUDGET_RATIO = 6.0


def _wall(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


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
             ("completion: list --status", cmd)]
    completion_env = {**env, "_JOBCTL_COMPLETE": "complete_bash",
                      "COMP_WORDS": "jobctl list --status ru", "COMP_CWORD": "3"}
    envs = {"completion: list --status": completion_env}
    times: dict[str, list[float]] = {label: [] for label, _ in cases}
    for label, full in cases:  # warm the page cache
        _wall(full, envs.get(label, env))
    for _ in range(runs):
        for label, full in cases:
            times[label].append(_wall(full, envs.get(label, env)))
    base = statistics.median(times["python -c pass"])
    for label, _ in cases:
        samples = sorted(times[label])
        med = statistics.median(samples)
        p90 = samples[int(len(samples) * 0.9) - 1]
        ratio = med / base
        mark = "" if label == "python -c pass" else (
            "  ok" if ratio <= BUDGET_RATIO else f"  OVER {BUDGET_RATIO:g}x")
        print(f"{label:28s} median {med * 1000:6.1f} ms   p90 {p90 * 1000:6.1f} ms   "
              f"{ratio:4.1f}x{mark}")


if __name__ == "__main__":
    main()
