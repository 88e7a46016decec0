"""`jobctl top`: the live view of queues, running jobs, failures and durations.

Each refresh is one `Jobctl.top_frame` (one statement) laid out by
topview.py. At a terminal the frame is redrawn in place, full screen (rich's
Live), and keys are read from the terminal in cbreak mode between refreshes
(select() with the time left until the next one):

- `q` quits; Ctrl-C too;
- `/` starts a filter: type text, Enter applies it (an empty one clears
  it), Esc leaves it as it was; it keeps the jobs, procedures and queues
  whose procedure or queue name contains the text;
- `j`/`k` or the arrow keys select a running job, `c` asks to cancel it,
  and `y` cancels it (the library's `cancel`, as `jobctl cancel` does);
  any other key keeps it.

The terminal's mode and screen are restored however the loop ends (q,
Ctrl-C, an error). Piped, or with `--once`, the frame is printed once as
plain text, with no escape sequences, for a file or a mail.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from .errors import JobctlError, UsageError
from .model import utcnow
from .topview import KEYS, Line, frame_lines, frame_text, matches, rich_lines

if TYPE_CHECKING:
    from .api import Jobctl
    from .store_overview import Frame

#: `--interval` beyond this is a typo
MAX_INTERVAL_S = 3600.0
#: width of the plain frame when nothing says otherwise (COLUMNS, a terminal)
PLAIN_WIDTH = 100

__all__ = ["check_interval", "frame_text", "live", "once"]


def check_interval(interval_s: float | None) -> float:
    if interval_s is None:
        return 1.0
    if not 0 < interval_s <= MAX_INTERVAL_S:
        raise UsageError(f"--interval must be more than 0 and at most {MAX_INTERVAL_S:g} s")
    return interval_s


def _header(jc: Jobctl, since_label: str, queue: str | None, extra: str = "") -> str:
    """What the frame is of; the database last, as the part to cut on a narrow screen."""
    parts = ["jobctl top", f"since {since_label}"]
    if queue:
        parts.append(f"queue {queue}")
    parts.append(utcnow().astimezone().strftime("%H:%M:%S"))
    return " · ".join(parts) + extra + " · " + jc.backend.settings.display


def once(jc: Jobctl, *, since_s: float | None, since_label: str, queue: str | None) -> str:
    """One plain frame, as wide as COLUMNS or the terminal says (100 otherwise)."""
    import shutil

    frame = jc.top_frame(since_s=since_s, queue=queue)
    width = shutil.get_terminal_size((PLAIN_WIDTH, 40)).columns
    return frame_text(frame, width=max(20, width), header=_header(jc, since_label, queue))


# -- keys ------------------------------------------------------------------------------

class Keys:
    """The terminal's keys, read in cbreak mode (each key at once, no echo;
    Ctrl-C still interrupts). `restore` puts the terminal back as it was."""

    def __init__(self, fd: int):
        import termios
        import tty

        self.fd = fd
        self.saved = termios.tcgetattr(fd)
        tty.setcbreak(fd)

    @classmethod
    @contextlib.contextmanager
    def opened(cls) -> Iterator[Keys | None]:
        """Keys from stdin when it is a terminal, else None (no keys: Ctrl-C leaves)."""
        keys = None
        if sys.stdin.isatty():
            keys = cls(sys.stdin.fileno())
        try:
            yield keys
        finally:
            if keys is not None:
                keys.restore()

    def restore(self) -> None:
        import termios

        with contextlib.suppress(Exception):
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)

    def read(self, timeout: float) -> list[str]:
        """The keys pressed within `timeout` seconds ([] when none)."""
        import select

        ready, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        if not ready:
            return []
        return split_keys(os.read(self.fd, 256).decode("utf-8", "replace"))


ARROWS = {"\x1b[A": "up", "\x1b[B": "down", "\x1bOA": "up", "\x1bOB": "down"}


def split_keys(data: str) -> list[str]:
    """Keys as names: one character, `up`/`down`, `esc`, `enter`, `backspace`."""
    out, i = [], 0
    while i < len(data):
        seq = data[i:i + 3]
        if seq in ARROWS:
            out.append(ARROWS[seq])
            i += 3
            continue
        ch = data[i]
        if ch == "\x1b":
            if data[i + 1:i + 2] in ("[", "O") and i + 2 < len(data):
                i += 3  # another escape sequence (left, right, ...): ignored
                continue
            out.append("esc")
        elif ch in "\r\n":
            out.append("enter")
        elif ch in "\x7f\x08":
            out.append("backspace")
        else:
            out.append(ch)
        i += 1
    return out


# -- what the keys do ------------------------------------------------------------------

class State:
    """Selection, filter, the prompt being answered and the last message."""

    def __init__(self) -> None:
        self.selected: str | None = None
        self.index = 0
        self.filter: str | None = None
        self.typing: str | None = None      # the filter being typed after `/`
        self.confirm: str | None = None     # the job `c` asked about
        self.message = ""

    def visible(self, frame: Frame) -> list[str]:
        return [r.job.job_id for r in frame.running
                if not self.filter or matches(self.filter, r.job.procedure_name, r.job.queue)]

    def settle(self, frame: Frame) -> None:
        """Keep the selection on a job still shown (the one at its place if it went)."""
        ids = self.visible(frame)
        if not ids:
            self.selected, self.index = None, 0
        elif self.selected in ids:
            self.index = ids.index(self.selected)
        else:
            self.index = min(self.index, len(ids) - 1)
            self.selected = ids[self.index]

    def press(self, key: str, frame: Frame) -> str | None:
        """Act on one key: "quit", "cancel" (of self.confirm, answered yes),
        or None (redraw)."""
        if self.typing is not None:
            if key == "enter":
                self.filter = self.typing.strip() or None
                self.typing = None
                self.message = f"filter: {self.filter}" if self.filter else "filter cleared"
                self.settle(frame)
            elif key == "esc":
                self.typing = None
            elif key == "backspace":
                self.typing = self.typing[:-1]
            elif len(key) == 1 and key.isprintable():
                self.typing += key
            return None
        if self.confirm is not None:
            job_id, self.confirm = self.confirm, None
            if key in ("y", "Y"):
                self.confirm = job_id
                return "cancel"
            self.message = f"{job_id[:8]} not cancelled"
            return None
        if key in ("q", "Q"):
            return "quit"
        if key == "/":
            self.typing = self.filter or ""
        elif key in ("j", "down", "k", "up"):
            ids = self.visible(frame)
            if ids:
                step = 1 if key in ("j", "down") else -1
                self.index = max(0, min(len(ids) - 1, (self.index if self.selected in ids else 0) + step))
                self.selected = ids[self.index]
        elif key == "c":
            self.settle(frame)
            if self.selected is None:
                self.message = "no running job to cancel"
            else:
                self.confirm = self.selected
        return None

    def footer(self, frame: Frame) -> list[Line]:
        if self.typing is not None:
            first: Line = [("/", "bold"), (self.typing, ""), ("▏", "blink"),
                           ("  Enter applies, Esc leaves", "dim")]
        elif self.confirm is not None:
            name = next((r.job.procedure_name for r in frame.running
                         if r.job.job_id == self.confirm), "")
            first = [(f"cancel {self.confirm[:8]} {name}? y/n", "bold yellow")]
        else:
            first = [(self.message, "dim")]
        return [first, [(KEYS, "dim")]]


def cancel_message(jc: Jobctl, job_id: str) -> str:
    """Cancel through the library, and say how it went in one line."""
    try:
        [report] = jc.cancel([job_id])
    except JobctlError as exc:
        return f"{job_id[:8]}: {exc.message}"
    return {"requested": f"{job_id[:8]}: cancel requested; the worker interrupts the call "
                         "within a second",
            "cancelled": f"{job_id[:8]}: cancelled",
            "external": f"{job_id[:8]}: written by another application; nothing to cancel",
            }.get(report.action, f"{job_id[:8]}: already {report.job.status.value}, nothing to cancel")


# -- the loop -------------------------------------------------------------------------

def live(jc: Jobctl, *, since_s: float | None, since_label: str, interval_s: float,
         queue: str | None) -> None:
    """Redraw the frame every `interval_s` until `q` or Ctrl-C. The first
    frame is read before the screen is taken, so a bad option or an
    unreachable database ends the command as usual (its exit code)."""
    from rich.console import Console
    from rich.live import Live

    frame = jc.top_frame(since_s=since_s, queue=queue)
    state = State()
    state.settle(frame)
    console = Console()
    trouble = ""
    try:
        with Keys.opened() as keys, \
                Live(console=console, screen=True, auto_refresh=False, transient=True) as screen:
            due = time.monotonic() + interval_s
            while True:
                size = console.size
                header = _header(jc, since_label, queue, f" · every {interval_s:g}s"
                                 + (f" · filter {state.filter}" if state.filter else "") + trouble)
                screen.update(rich_lines(frame_lines(
                    frame, width=size.width, height=size.height, header=header,
                    selected=state.selected, marker=True, footer=state.footer(frame),
                    filter_text=state.filter)), refresh=True)
                left = due - time.monotonic()
                pressed: Sequence[str] = keys.read(left) if keys is not None else ()
                if keys is None and left > 0:
                    time.sleep(left)
                act = None
                for key in pressed:
                    act = state.press(key, frame) or act
                    if act == "quit":
                        return
                if act == "cancel" and state.confirm is not None:
                    state.message = cancel_message(jc, state.confirm)
                    state.confirm = None
                    due = 0.0  # show what the cancel did at once
                if time.monotonic() >= due:
                    frame, trouble = _refresh(jc, frame, since_s=since_s, queue=queue)
                    state.settle(frame)
                    due = time.monotonic() + interval_s
    except KeyboardInterrupt:
        return


def _refresh(jc: Jobctl, frame: Frame, *, since_s: float | None,
             queue: str | None) -> tuple[Frame, str]:
    """The next frame, or the last one and why not (the database is away:
    keep trying, as `list --watch` does)."""
    try:
        return jc.top_frame(since_s=since_s, queue=queue), ""
    except JobctlError as exc:
        if exc.exit_code != 4:
            raise
        jc.close()  # a connection the server dropped stays dead: open a new one
        return frame, f" · {exc.message} (retrying)"
