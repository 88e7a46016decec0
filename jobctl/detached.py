"""Starting a detached worker, and the log of what it cannot write to its
job's row. Below the lifecycle: the launcher (submit, heal, timers) and the
worker itself both use it, and it imports nothing of theirs.

Kept small: `submit` imports it on every call, and the budget from `submit`
to `running` is half a second."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

from .config import Settings
from .model import utcnow


#: the variables that carried a secret to this worker: kept out of the
#: environment of any worker it starts in turn
SECRET_ENV: list[str] = []


#: The worker's first lines, run as `python -I -c`. Isolated mode puts neither
#: the caller's directory nor PYTHON* variables on sys.path, so a `jobctl/`
#: planted where the user stands cannot run as them; jobctl comes from the
#: directory it was installed in (argv[1]). The launcher forks and exits at
#: once: the caller reaps it straight away and never has a child to wait for,
#: and the worker, reparented, inherits the stdin pipe with the settings.
_BOOTSTRAP = (
    "import os, sys\n"
    "if os.fork(): os._exit(0)\n"
    "sys.path.insert(0, sys.argv[1])\n"
    "from jobctl.runner import main\n"
    "sys.exit(main(['jobctl.runner', sys.argv[2]]))\n"
)


def _importable_path() -> list[str]:
    """The caller's sys.path minus anything relative to where it stands, for
    the drivers and user modules the worker imports (user site, PYTHONPATH)."""
    cwd = os.getcwd()
    return [p for p in sys.path if p and os.path.isabs(p) and os.path.realpath(p) != cwd]


def spawn(settings: Settings, job_id: str, token: str | None = None,
          wake: dict[str, str] | None = None) -> None:
    """Start the detached worker for `job_id` and return once it is on its own.
    `token`: the reservation claim_next made for it, which only this worker
    may claim (handed over in the pipe, like the settings)."""
    # secrets travel in the pipe only: every variable that carried one is left
    # out of the worker's environment, and handed over in the pipe for a driver
    # that reads it itself (PGPASSWORD, an Oracle wallet's password_env); the
    # worker sets them in its memory, which /proc/PID/environ does not show
    import subprocess  # lazily: reading commands import this module and rarely spawn

    hidden = {"JOBCTL_PASSWORD", *settings.secret_env}
    env = {k: v for k, v in os.environ.items() if k not in hidden}
    payload = json.dumps({"connection": settings.connection.to_payload(),
                          "tunables": asdict(settings.tunables),
                          "sys_path": _importable_path(), "token": token, "wake": wake,
                          "environ": {k: os.environ[k] for k in hidden if k in os.environ}})
    package_root = str(Path(__file__).resolve().parent.parent)
    proc = subprocess.Popen(
        [sys.executable, "-I", "-c", _BOOTSTRAP, package_root, job_id],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, close_fds=True, env=env, cwd="/",
    )
    assert proc.stdin is not None
    try:
        proc.stdin.write(payload.encode())
        proc.stdin.close()
    finally:
        code = proc.wait()  # the launcher: it only forks, so this takes milliseconds
    if code != 0:
        raise OSError(f"the worker launcher {sys.executable} exited with status {code}")


def spawn_timer(settings: Settings, queue: str, wake_at: dt.datetime) -> None:
    """A detached process that holds no connection, sleeps until `wake_at`
    and then starts workers for `queue`'s free slots (--at / --in). One per
    database, queue and second on this host: the others exit at once."""
    spawn(settings, "-", wake={"queue": queue, "at": wake_at.isoformat()})


def log_path() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "jobctl" / "worker.log"


def note(job_id: str, message: str) -> None:
    """Last resort for what cannot be written to the job row. Private to its
    owner (0600 in a 0700 directory): it may quote a job's data."""
    try:
        path = log_path()
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.fchmod(fd, 0o600)  # one an older jobctl left readable by others, too
        with os.fdopen(fd, "a") as fh:
            fh.write(f"{utcnow().isoformat()} {job_id} pid={os.getpid()}: {message}\n")
    except OSError:
        pass
