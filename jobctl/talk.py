"""What jobctl says on stderr besides errors: notices, summaries, hints.

`-q/--quiet` silences all of it (cron mails only when something went wrong);
errors are written by the CLI's error path and are never silenced. Kept
apart from the CLI so that backends can talk under the same switch.
"""

from __future__ import annotations

import sys

_quiet = False


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def is_quiet() -> bool:
    return _quiet


def say(message: str) -> None:
    """`jobctl: <message>` on stderr, unless -q."""
    if _quiet:
        return
    sys.stderr.write(f"jobctl: {message}\n")
    sys.stderr.flush()
