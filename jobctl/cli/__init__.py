"""The command line: parses options, calls `jobctl.api`, renders. No SQL and
no driver imports here; rich loads only when a table or a progress bar is shown.

Errors are translated in one place, `frontend.failure`, called from
`JobctlGroup.main`: a domain error becomes `jobctl: error: <message>` on
stderr and its exit code. `status`, `list` and `--help` usually never get
here: `fastpath.py` serves them without typer, with the same code from
`frontend.py`.
"""

import os
import sys

import typer

from .. import frontend
from ..frontend import hoist_global_options, invoked_command  # noqa: F401 - for tests and tools
from . import admin, jobs, serving  # noqa: F401 - the commands register with the app
from .app import app, db_app  # noqa: F401 - the app, for tests and tools


def _app_for(args: list[str]) -> typer.Typer:
    """The app with only the command this run invokes. Typer inspects the
    signature of every command on every run (about half a millisecond each),
    and a run needs one; help, completion and an unknown word get them all."""
    name = invoked_command(args)
    if name is None or os.environ.get("_JOBCTL_COMPLETE"):
        return app
    import copy

    if any(group.name == name for group in app.registered_groups):
        only = copy.copy(app)
        only.registered_commands = []
        return only
    chosen = [info for info in app.registered_commands
              if (info.name or getattr(info.callback, "__name__", "").lower().replace("_", "-"))
              == name]
    if not chosen:
        return app  # click says "No such command" with the full list in mind
    only = copy.copy(app)
    only.registered_commands, only.registered_groups = chosen, []
    return only


def run() -> None:
    code: object = 0
    try:
        _app_for(sys.argv[1:])()
    except SystemExit as exc:
        code = exc.code
    frontend.leave(code)
