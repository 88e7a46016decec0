"""Shared helpers for the benchmarks: scratch databases (SQLite, or a
throwaway PostgreSQL database), timing, and sampling of processes and
sessions while jobs drain."""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

PG_ADMIN = os.environ.get("JOBCTL_TEST_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/test")
# the benchmarks' own connections carry this name, so session counts leave them out
PROBE_APP = "jobctl-bench-probe"


def jobctl_cmd() -> list[str]:
    """The installed console script next to this interpreter (no shims)."""
    script = Path(sys.executable).parent / "jobctl"
    return [str(script)] if script.exists() else [sys.executable, "-m", "jobctl"]


def scratch_env() -> dict[str, str]:
    tmp = tempfile.mkdtemp(prefix="jobctl-bench-")
    return {**os.environ, "JOBCTL_DSN": f"sqlite:///{tmp}/jobs.db",
            "XDG_CONFIG_HOME": f"{tmp}/config", "XDG_STATE_HOME": f"{tmp}/state"}


@contextlib.contextmanager
def pg_database(env: dict[str, str]) -> Iterator[str]:
    """A throwaway database on PG_ADMIN for the run, JOBCTL_DSN in `env`
    pointing at it; dropped afterwards (with any session still on it)."""
    import psycopg

    name = f"jobctl_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    dsn = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    env["JOBCTL_DSN"] = dsn
    try:
        yield dsn
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def probe_connection(dsn: str):
    """An autocommit connection whose session the counts below leave out."""
    import psycopg

    return psycopg.connect(dsn, autocommit=True, application_name=PROBE_APP)


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


def tagged_pids(tag: str) -> list[int]:
    """Detached jobctl workers of this run (they inherit JOBCTL_BENCH_TAG and
    run the bootstrap of jobctl/runner.py); not the launchers, which lead
    their new session and exit at once."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as fh:
                if f"JOBCTL_BENCH_TAG={tag}".encode() not in fh.read():
                    continue
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                if b"jobctl.runner" not in fh.read():
                    continue
            with open(f"/proc/{name}/stat", "rb") as fh:
                state, _, _, session = fh.read().rsplit(b")", 1)[1].split()[:4]
            if state != b"Z" and int(session) != int(name):
                out.append(int(name))
        except (OSError, IndexError, ValueError):
            pass
    return out


def tree_pids(root: int) -> list[int]:
    """`root` and its live descendants."""
    parent: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as fh:
                    fields = fh.read().rsplit(b")", 1)[1].split()
                if fields[0] != b"Z":
                    parent[int(name)] = int(fields[1])
            except (OSError, IndexError, ValueError):
                pass
    out, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        if pid in parent:
            out.append(pid)
            frontier.extend(p for p, pp in parent.items() if pp == pid)
    return out


def rss_kib(pid: int) -> int:
    """VmRSS of one process in KiB (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a live process has used so far (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


class Peaks:
    """The peak of each probe (a callable returning a number), sampled every
    `every` seconds in a thread while the `with` block runs."""

    def __init__(self, probes: dict[str, Callable[[], int]], every: float = 0.01) -> None:
        self.probes = probes
        self.every = every
        self.peak = dict.fromkeys(probes, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, probe in self.probes.items():
                self.peak[key] = max(self.peak[key], probe())
            self._stop.wait(self.every)

    def __enter__(self) -> "Peaks":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
