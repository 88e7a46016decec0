"""What the command line does besides parsing: settings, output, the one
translation of errors into a line and an exit code, the exit itself, and the
bodies of the commands that must start fast (`status`, `list`).

Two front doors share it. `jobctl.cli` is the typer app and serves every
command; `fastpath.py` serves `status`, `list` and `--help` without importing
typer (about half of a short command's start-up) and hands anything it does
not fully understand to `jobctl.cli`. Because both call the functions here, they
cannot print, resolve or fail differently.

Start-up: this module imports nothing heavy at the top; the api, the
renderers and rich load inside the functions that use them.
"""

from __future__ import annotations

import os
import sys

from . import talk
from .errors import JobctlError
from .formats import Format

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without loading typing for `jobctl --help`
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from .api import Jobctl
    from .config import Settings

_debug = False


def set_debug(on: bool) -> None:
    """--debug: tracebacks as well as the one-line error."""
    global _debug
    _debug = on


def say(message: str) -> None:
    """A notice, summary or hint: silenced by -q."""
    talk.say(message)


def alert(message: str) -> None:
    """Something went wrong: said even under -q."""
    sys.stderr.write(f"jobctl: {message}\n")
    sys.stderr.flush()


# -- the command line before parsing ------------------------------------------------

#: root options that may also follow the command (`jobctl list --dsn X`):
#: before parsing they are moved in front of it. True: the option takes a
#: value. A new global option is one more entry here.
GLOBAL_OPTIONS = {"--dsn": True, "--profile": True, "--debug": False}
#: command options that may also come before the command (`jobctl -f json
#: list`): moved after it, where the command declares them
COMMAND_OPTIONS = {"--format": True, "-f": True}


def _option_at(args: list[str], i: int, known: dict[str, bool]) -> int:
    """How many words at args[i] are one of `known` (0: none): `--dsn X`,
    `--dsn=X` or a flag."""
    word = args[i]
    name, eq, _ = word.partition("=")
    if name not in known:
        return 0
    if eq or not known[name]:
        return 1
    # without its value it stays where it is (Tab after `--dsn` completes it)
    return 2 if i + 1 < len(args) else 0


def invoked_command(args: list[str]) -> str | None:
    """The command word of a command line (`list` in `jobctl --dsn X list`),
    or None when there is none before an option the root does not share."""
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] != "--":
        n = _option_at(args, i, GLOBAL_OPTIONS) or _option_at(args, i, COMMAND_OPTIONS)
        if not n:
            return None
        i += n
    return args[i] if i < len(args) and args[i] != "--" else None


def hoist_global_options(args: list[str]) -> list[str]:
    """The root's options in front of the command, the command's --format
    after it, the rest in order. Nothing moves past `--`."""
    front: list[str] = []
    moved_down: list[str] = []
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] != "--":  # up to the command
        if n := _option_at(args, i, GLOBAL_OPTIONS):
            front += args[i:i + n]
        elif n := _option_at(args, i, COMMAND_OPTIONS):
            moved_down += args[i:i + n]
        else:
            return front + moved_down + args[i:]  # --version, -h, a mistake: click says
        i += n
    if i >= len(args) or args[i] == "--":
        return front + moved_down + args[i:]
    command, rest = args[i], []
    i += 1
    while i < len(args) and args[i] != "--":
        if n := _option_at(args, i, GLOBAL_OPTIONS):
            front += args[i:i + n]
        else:
            rest.append(args[i])
            n = 1
        i += n
    return front + [command] + moved_down + rest + args[i:]


# -- settings ---------------------------------------------------------------------------

def settings(dsn: str | None, profile: str | None) -> Settings:
    """`dsn`, `profile`: as given on the command line (None when not given,
    or given by JOBCTL_DSN / JOBCTL_PROFILE, which resolve_settings reads
    itself so that `jobctl config` can say which one chose the database)."""
    from .config import resolve_settings

    return resolve_settings(dsn, profile)


def open_api(dsn: str | None, profile: str | None, *, create: bool | str = False) -> Jobctl:
    """`create`: a SQLite file that does not exist is created only by `db
    init` (True: any file) and, the default file only, by submit, queue set
    and doctor (session.DEFAULT_ONLY); any other command on a missing one is
    exit 4."""
    from .api import Jobctl

    return Jobctl(settings(dsn, profile), create=create)


# -- output -------------------------------------------------------------------------------

def out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def terminal_width() -> int | None:
    """The width to fit tables to, or None when stdout is a pipe or a file:
    then nothing is ever cut (`jobctl list | grep long_name` finds it)."""
    if not sys.stdout.isatty():
        return None
    import shutil

    return shutil.get_terminal_size().columns  # COLUMNS wins, as for every tool


def colour() -> bool:
    """Rich tables and colour only for a person at a terminal."""
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def print_table(headers, rows, title: str | None = None, *, show_headers: bool = True) -> None:
    """No rows and no title: nothing at all, not even the header line (a
    script tests for an empty stdout; at a terminal, the command may say why
    on stderr)."""
    if not rows and title is None:
        return
    from . import render

    width = terminal_width()
    if width is None or not colour():
        out((f"{title}\n" if title else "") + render.plain_table(headers, rows, width,
                                                                show_headers=show_headers))
        return
    from rich.console import Console

    Console(soft_wrap=False, width=width).print(
        render.rich_table(headers, rows, width, title, show_headers=show_headers))


def print_details(blocks) -> None:
    from . import render

    if not colour():
        out("\n".join(render.plain_pairs(pairs) for pairs in blocks))
        return
    from rich.console import Console

    console = Console(soft_wrap=False)
    for i, pairs in enumerate(blocks):
        if i:
            console.rule(style="dim")
        console.print(render.rich_pairs(pairs))


def now():
    from .model import utcnow

    return utcnow()


def seconds(text: str | None, option: str) -> float | None:
    from .model import parse_duration

    return None if text is None else parse_duration(text, option=option)


def since(text: str) -> float | None:
    """`--since`: a duration, or `all` (None: no bound)."""
    return None if text.strip().lower() == "all" else seconds(text, "--since")


class View:
    """Which columns a command shows, chosen once from --columns and --format."""

    def __init__(self, fmt: Format, requested: str | None, no_headers: bool, *, table_columns,
                 table_default, record_columns, record_default):
        from . import render
        from .errors import UsageError

        if fmt in (Format.json, Format.jsonl) and (requested is not None or no_headers):
            raise UsageError(f"--columns and --no-headers apply to table, csv and tsv, not {fmt.value}")
        aliases = render.header_aliases(table_columns)
        if fmt is Format.table:
            self.keys = render.choose_columns(requested, list(table_columns), table_default, aliases)
        else:
            self.keys = render.choose_columns(requested, list(record_columns), record_default, aliases)
        self.fmt = fmt
        self.requested = requested
        self.show_headers = not no_headers


def job_view(fmt: Format, columns: str | None, no_headers: bool, *, detail: bool) -> View:
    from . import render

    return View(fmt, columns, no_headers, table_columns=render.JOB_TABLE_COLUMNS,
                table_default=render.JOB_TABLE_DEFAULT, record_columns=render.DETAIL_COLUMNS,
                record_default=render.DETAIL_COLUMNS if detail else render.LIST_COLUMNS)


def show_jobs(jobs, fmt: Format, *, detail: bool = False, single: bool = False,
              view: View | None = None) -> None:
    from . import render

    view = view or job_view(fmt, None, False, detail=detail)
    if fmt is Format.table:
        at = now()
        if detail and view.requested is None and view.show_headers:
            print_details([render.detail_pairs(job, at) for job in jobs])
        else:
            print_table(*render.jobs_rows(jobs, at, view.keys), show_headers=view.show_headers)
        return
    out(render.records([j.to_dict() for j in jobs], fmt, view.keys, single=single,
                       headers=view.show_headers))


def nothing_since(since_s: float | None) -> str:
    from datetime import timedelta

    from .render import local_time

    if since_s is None:
        return "no jobs match"
    wider = "--since 7d" if since_s < 7 * 86400 else "--since all"
    return f"no jobs since {local_time(now() - timedelta(seconds=since_s))}; try {wider}"


# -- the commands that must start fast ---------------------------------------------------
# Their options are parsed by jobctl.cli (typer) or fastpath.py; `api` opens the
# database only after the options were checked, as every command does.

def status(api: Callable[[], Jobctl], job_ids: Sequence[str], fmt: Format, columns: str | None,
           no_headers: bool, watch: bool, interval: str | None) -> None:
    """`jobctl status`."""
    view = job_view(fmt, columns, no_headers, detail=True)
    jc = api()
    single = len(job_ids) == 1
    if not watch:
        show_jobs(jc.get_many(job_ids), fmt, detail=True, single=single, view=view)
        return
    interval_s = _watch_interval(jc, interval, fmt)
    ids = [job.job_id for job in jc.get_many(job_ids)]  # a bad id fails before the screen is taken

    def build(width):
        from . import render

        jobs = jc.get_many(ids)
        at = now()
        if view.requested is None and view.show_headers:
            from rich.console import Group
            from rich.rule import Rule

            parts = []
            for i, job in enumerate(jobs):
                if i:
                    parts.append(Rule(style="dim"))
                parts.append(render.rich_pairs(render.detail_pairs(job, at)))
            shown = Group(*parts)
        else:
            shown = render.rich_table(*render.jobs_rows(jobs, at, view.keys), width,
                                      show_headers=view.show_headers)
        return shown, all(job.status.finished for job in jobs)

    _watch_or_once(jc, lambda: show_jobs(jc.get_many(ids), fmt, detail=True, single=single, view=view),
                   build, interval_s, "jobctl status " + " ".join(i[:8] for i in ids))


def list_jobs(api: Callable[[], Jobctl], statuses: Sequence[str] | None, procedure: str | None,
              since_text: str, limit: int, queue: str | None, fmt: Format, columns: str | None,
              no_headers: bool, watch: bool, interval: str | None) -> None:
    """`jobctl list`."""
    view = job_view(fmt, columns, no_headers, detail=False)
    since_s = since(since_text)
    jc = api()

    def jobs():
        return jc.list_jobs(statuses=statuses, procedure=procedure, since_s=since_s, limit=limit,
                            queue=queue)

    if not watch:
        shown = jobs()
        show_jobs(shown, fmt, view=view)
        if not shown and sys.stderr.isatty():
            say(nothing_since(since_s))
        return
    interval_s = _watch_interval(jc, interval, fmt)
    from . import render

    def build(width):
        return render.rich_table(*render.jobs_rows(jobs(), now(), view.keys), width,
                                 show_headers=view.show_headers), False

    _watch_or_once(jc, lambda: show_jobs(jobs(), fmt, view=view), build, interval_s, "jobctl list")


def _watch(jc: Jobctl, build, interval_s: float, what: str) -> None:
    """Refresh `build(width) -> (renderable, done)` in place until done or
    Ctrl-C. Leaving with Ctrl-C is the normal way out of a watch: exit 0."""
    import time

    from rich.console import Console, Group
    from rich.live import Live
    from rich.text import Text

    console = Console()
    shown = None
    try:
        with Live(console=console, auto_refresh=False, transient=False) as live:
            while True:
                stamp = now().astimezone().strftime("%H:%M:%S")
                head = f"{what} · every {interval_s:g}s · {stamp} · Ctrl-C to leave"
                try:
                    shown, done = build(console.width)
                except JobctlError as exc:
                    if exc.exit_code != 4:  # only the database being away is worth waiting out
                        raise
                    head += f" · {exc.message} (retrying)"
                    jc.close()  # a connection the server dropped stays dead: open a new one
                    done = False
                body = [Text(head, style="dim", no_wrap=True, overflow="ellipsis")]
                live.update(Group(*body, *([shown] if shown is not None else [])), refresh=True)
                if done:
                    return
                time.sleep(interval_s)
    except KeyboardInterrupt:
        return


def _watch_interval(jc: Jobctl, interval: str | None, fmt: Format) -> float:
    from .errors import UsageError

    if fmt is not Format.table:
        raise UsageError(f"--watch shows a table; it cannot be combined with --format {fmt.value}")
    interval_s = seconds(interval, "--interval")
    if interval_s is None:
        interval_s = jc.settings.tunables.poll_s
    if interval_s <= 0:
        raise UsageError("--interval must be more than 0")
    return interval_s


def _watch_or_once(jc: Jobctl, show_once, build, interval_s: float, what: str) -> None:
    if not sys.stdout.isatty():
        # a pipe or a file cannot be redrawn: the table once, like without --watch
        say("--watch needs a terminal; showing the table once")
        show_once()
        return
    _watch(jc, build, interval_s, what)


# -- running, failing and leaving --------------------------------------------------------

def run_command(body: Callable[[], object]) -> int:
    """Run one command line as every jobctl command runs: what it creates is
    private to the user, and whatever it raises leaves as one line on stderr
    and an exit code (`failure`). Returns the exit code."""
    # what jobctl creates (its directories, jobs.db and its -wal/-shm, the
    # worker's log) is private to the user: job parameters may be secrets
    umask = os.umask(0o077)
    try:
        rv = body()
        return rv if isinstance(rv, int) else 0
    except (KeyboardInterrupt, Exception) as exc:
        return failure(exc)
    finally:
        os.umask(umask)


def failure(exc: BaseException) -> int:
    """The one translation of an error into what the user sees: a domain
    error's message and exit code, Ctrl-C as 130, a bug as one line (the
    traceback only with --debug). Usage errors of the parser itself are
    jobctl.cli's, which knows click's exceptions."""
    if isinstance(exc, KeyboardInterrupt):
        alert("interrupted (detached jobs keep running)")
        return 130
    if isinstance(exc, JobctlError):
        if _debug:
            _print_traceback(exc)
        alert(f"error: {exc.message}")
        return exc.exit_code
    if isinstance(exc, BrokenPipeError):
        return 1
    if _debug:
        _print_traceback(exc)
    alert(f"error: internal error: {type(exc).__name__}: {exc} (rerun with --debug)")
    return 1


def _print_traceback(exc: BaseException) -> None:
    import traceback

    traceback.print_exception(exc)


def leave(code) -> None:
    """Exit as Python would, without tearing the interpreter down module by
    module (a tenth of a short command's run, for a process about to vanish):
    atexit handlers run and stdout/stderr are flushed first. With a thread
    still working, the ordinary exit waits for it."""
    import atexit

    threading = sys.modules.get("threading")  # not loaded: no thread was started
    if threading is not None and any(t.is_alive() and not t.daemon for t in threading.enumerate()
                                     if t is not threading.main_thread()):
        sys.exit(code)
    if code is None:
        code = 0
    elif not isinstance(code, int):
        sys.stderr.write(f"{code}\n")
        code = 1
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, OSError):  # `jobctl list | head -1`: the reader left
        code = code or 1
    os._exit(code)
