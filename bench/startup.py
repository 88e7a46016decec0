"""Budget: `jobctl --help` and `jobctl status ID` on SQLite start well under 150 ms."""

from __future__ import annotations

import subprocess
import sys
import time

from _common import jobctl_cmd, median_wall, scratch_env


def main() -> None:
    env = scratch_env()
    cmd = jobctl_cmd()
    job_id = subprocess.run(cmd + ["submit", "SUMA_SIMPLE", "-p", "vA=10"], env=env,
                            capture_output=True, text=True, check=True).stdout.strip()
    time.sleep(0.5)
    for label, args in (("python -c pass", None), ("jobctl --help", ["--help"]),
                        ("jobctl status ID", ["status", job_id]),
                        ("jobctl status ID -f json", ["status", job_id, "-f", "json"]),
                        ("jobctl list", ["list"])):
        full = [sys.executable, "-c", "pass"] if args is None else cmd + args
        med, p90 = median_wall(full, env)
        print(f"{label:28s} median {med * 1000:6.1f} ms   p90 {p90 * 1000:6.1f} ms")


if __name__ == "__main__":
    main()
