"""The type check CI runs: mypy over jobctl/ (settings in pyproject.toml),
which also holds each backend to the protocols in backends/base.py
(backends/checked.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_mypy_passes_over_jobctl():
    run = subprocess.run([sys.executable, "-m", "mypy", "jobctl"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Success" in run.stdout
