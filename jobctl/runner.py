"""The detached worker, and how it is spawned.

The worker runs one job: started isolated (`python -I`, in `/`, so nothing
in the caller's directory is importable), its own session (it survives the
terminal closing and its parent's exit), reparented at once so its caller
has no child to reap, stdio pointed at /dev/null, files it creates private,
the connection settings and secret read from a pipe on stdin — never argv,
never the environment, from which every variable that carried a secret is
dropped. It connects (waiting out a connection storm until start_timeout),
claims the job (`queued → running`), runs the procedure
on one connection while a watchdog thread on a second connection writes the
heartbeat, hears of a cancel and records progress and output, and a timer
enforces the timeout; then writes the outcome once, guarded and retried.

Reacting within a second, with the heartbeat row still written every
heartbeat_s: a cancel is heard at once where the database announces it
(PostgreSQL NOTIFY, on the watch connection), else by reading the flag every
cancel_poll_s; the timeout is a timer of its own, which no database round
trip can delay; progress and output are written at most once a second while
they change (FLUSH_S), whatever the number of notices.
Then it reserves the next eligible job of the same queue (its own slot just
came free) and runs it on the same connections, until none is eligible: no
daemon, and never more workers than the queue's limit.

This module must import quickly: the budget from `submit` to `running` is
half a second, so no typer, no rich here.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sys
import threading
import time
import traceback
from typing import Any

from . import detached, lifecycle, store
from .backends import get_backend
from .claiming import Claiming
from .config import ConnectionSettings, Settings, Tunables
from .errors import JobctlError, describe_exception
from .jobrun import Signals
from .lookup import for_job
from .model import Job, JobStatus, format_duration, utcnow
from .params import from_stored
from .watchdog import Watchdog

#: where a worker writes what it cannot write to its job's row
log_path = detached.log_path


def _wake(connection: ConnectionSettings, tunables: Tunables, payload: dict[str, Any]) -> int:
    """A timer (`submit --at/--in`): sleep until the jobs' start time, then
    start workers for their queue. It wakes every half JOBCTL_LOST_AFTER to
    ask whether a job still waits for that second, and leaves when none does
    (all cancelled, deleted or started), so no timer outlives its jobs. Its
    lock file holds its pid (`cat ~/.local/state/jobctl/timers/*`)."""
    import fcntl
    import hashlib

    wake = payload["wake"]
    at = dt.datetime.fromisoformat(wake["at"])
    key = hashlib.sha256(f"{connection.display}\n{wake['queue']}\n{at:%Y%m%d%H%M%S}".encode())
    path = detached.log_path().parent / "timers" / key.hexdigest()[:32]
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return 0  # another timer on this host wakes the same queue at the same second
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    settings = Settings(connection=connection, tunables=tunables,
                        secret_env=tuple(payload.get("environ", {})))
    second = at.replace(microsecond=0)
    check_s = max(tunables.lost_after_s / 2, 0.1)
    while (delay := (at - utcnow()).total_seconds()) > 0:
        time.sleep(min(delay + 0.05, check_s))
        if at <= utcnow() or _awaited(settings, wake["queue"], second):
            continue
        # none waits: unlink first, then look once more, so that a submit
        # for this second whose timer found the lock still taken is seen
        with contextlib.suppress(OSError):
            path.unlink()
        if not _awaited(settings, wake["queue"], second):
            return 0
    from . import launcher

    launcher.start_workers(settings, [wake["queue"]])
    rest = (second + dt.timedelta(seconds=1) - utcnow()).total_seconds()
    if rest > 0 and _awaited(settings, wake["queue"], second):
        # a job due later in the same second shared this timer: its turn too
        time.sleep(rest + 0.05)
        launcher.start_workers(settings, [wake["queue"]])
    with contextlib.suppress(OSError):
        path.unlink()
    return 0


def _awaited(settings: Settings, queue: str, second: dt.datetime) -> bool:
    """Whether a queued job of `queue` waits to start within `second`; True
    when the database cannot tell (unreachable): a timer leaves only when sure."""
    try:
        backend = get_backend(settings.connection)
        conn = backend.connect()
    except Exception:
        return True
    try:
        found = store.queued_not_before(backend, conn, queue, second,
                                        second + dt.timedelta(seconds=1))
        conn.commit()
        return found
    except Exception:
        return True
    finally:
        with contextlib.suppress(Exception):
            conn.close()


class Worker(Claiming, Watchdog):
    """Runs one job: claim, the call with its timeout and interrupt, the
    outcome; its parts are the classes it builds on, shared with the pool."""

    def run(self, claimed: Job | None = None, session: str | None = None) -> int:
        """Claim the job and run it. `claimed`: a pool claimed it already
        (running, under this worker's token, run by server session `session`
        on the call connection it handed over)."""
        if not self.pooled:
            Signals.attach(self)
            if Signals.received:
                self.request_stop(JobStatus.CANCELLED, f"worker received {Signals.received}")
        if claimed is None:
            if not self.open_connections():
                return 1
            # the call's connection opened before the claim, so that the claim
            # records the server session that will run the call
            self.session = self.session_id()
        else:
            self.session = session
        if self.live_path is not None:
            threading.Thread(target=self.pulse, args=(self.live_path,), daemon=True,
                             name="pulse").start()
        if claimed is None:
            with self.db_lock:
                taken = self.lifecycle.claim(self.watch_conn, self.job_id, now=utcnow(),
                                             pid=os.getpid(), token=self.token, session=self.session)
                if taken:
                    # in the claim's transaction: a cancel can only be requested
                    # of a running job, and by then this connection hears it
                    self.listen_for_cancel()
                self.watch_conn.commit()
            if not taken:
                detached.note(self.job_id, "not claimed: the job is no longer queued")
                self.end_watch()
                lifecycle.remove_liveness(self.live_path)
                return 0
            self.started_mono = time.monotonic()
            with self.db_lock:
                job = store.get(self.backend, self.watch_conn, self.job_id)
                self.watch_conn.commit()
            assert job is not None  # just claimed, and only cleanup deletes (finished rows)
        else:
            job = claimed
        self.timeout_s = job.timeout_s
        self.queue = job.queue
        self.ctx.atomic = job.atomic
        max_attempts = max(1, job.max_attempts or 1)
        if claimed is not None and self.session and job.db_session != self.session:
            self.note_session()  # claimed for a connection replaced since (pool)

        try:
            stored = job.params or {}
            # run exactly what submit validated: same procedure, same overload,
            # and the values it bound (exact, typed), not a re-coercion of text
            recorded = job.signature or {}
            name = recorded.get("name") or job.procedure_name
            given = frozenset(k.casefold() for k in stored)
            sig = (self.signatures.resolve(self.call_conn, name, given, recorded)
                   if self.signatures else for_job(self.backend, self.call_conn, name, given, recorded))
            if changed := sig.changes_since(recorded):
                raise JobctlError(changed)
            values = from_stored(sig, stored)
            self.start_call_session()
        except Exception as exc:
            self.done.set()
            self.note_error(exc)
            self.finish(JobStatus.FAILED, None, describe_exception(exc))
            self.outcome = JobStatus.FAILED
            self.clean_call_session()
            lifecycle.remove_liveness(self.live_path)
            return 1

        if self.watch_later is not None:
            self.watch_later(self)
        else:
            self.start_watch()
        status, result, error = JobStatus.FAILED, None, None
        for attempt in range(1, max_attempts + 1):
            status, result, error = self.attempt(sig, values)
            if (status is not JobStatus.FAILED or attempt == max_attempts or self.stop_reason
                    or self.stop_retrying or not self.retryable()):
                break
            with self.db_lock:
                self.lifecycle.next_attempt(self.watch_conn, self.job_id, attempt + 1,
                                            f"attempt {attempt} failed: {error}")
                self.watch_conn.commit()
            backoff = self.tunables.retry_backoff_s * 2 ** (attempt - 1)
            if self.ctx.stop_requested.wait(backoff):
                status, error = self.stop_reason or JobStatus.CANCELLED, self.stop_message
                break
        self.end_watch()
        self.finish(status, result, error)
        self.outcome = status
        self.clean_call_session()
        lifecycle.remove_liveness(self.live_path)
        return 0 if status is JobStatus.COMPLETED else 1

    def retryable(self) -> bool:
        """--retries re-runs a failed call only when nothing of it was
        committed (as far as the backend can tell) and its session was not
        ended on purpose; cancel and timeout never come here."""
        if self.killed:
            return False
        return self.ctx.commits_known and not self.ctx.self_committed

    def attempt(self, sig, values) -> tuple[JobStatus, dict | None, str | None]:
        timer = None
        with self.state_lock:
            if self.stop_reason:
                return self.stop_reason, None, self.stop_message
            self.attempt_no += 1
            again = self.attempt_no > 1
        if again:
            # a retry starts in a clean session too, whatever the failed attempt left
            try:
                self.clean_call_session()
                self.start_call_session()
            except Exception as exc:  # noqa: BLE001 - the job's outcome
                self.note_error(exc)
                return JobStatus.FAILED, None, describe_exception(exc)
        with self.state_lock:
            if self.stop_reason:
                return self.stop_reason, None, self.stop_message
            self.prepare_call()
            self.in_call = True
            if self.timeout_s:
                timer = threading.Timer(self.timeout_s, self._expire, (self.attempt_no,))
                timer.daemon = True
                timer.start()
        try:
            result = self.backend.call(self.call_conn, sig, values, self.ctx)
            with self.state_lock:
                self.in_call = False
        except BaseException as exc:  # noqa: BLE001 - the job's outcome, whatever it is
            with self.state_lock:
                self.in_call = False
            self.note_error(exc)
            try:
                self.call_conn.rollback()
            except Exception:
                # connection broken (killed session): open a new one for any retry
                self.replace_call_connection()
            self.note_commits()
            if self.stop_reason:
                return self.stop_reason, None, self.stop_message
            return JobStatus.FAILED, None, describe_exception(exc)
        finally:
            if timer is not None:
                timer.cancel()
        if self.ctx.outcome_written is not None:
            return self.settle_in_call()
        return self.commit_outcome(result)

    def _expire(self, attempt_no: int) -> None:
        """The timeout's timer: a thread of its own, so no database round
        trip can delay it past the deadline."""
        if attempt_no == self.attempt_no and self.in_call:
            self.request_stop(JobStatus.TIMED_OUT, f"timed out after {format_duration(self.timeout_s)}")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m jobctl.runner JOB_ID  (settings as JSON on stdin)", file=sys.stderr)
        return 2
    job_id = argv[1]
    os.umask(0o077)  # whatever the worker creates (worker.log, a SQLite -wal) is private
    payload = json.loads(sys.stdin.read() or "{}")
    sys.path.extend(p for p in payload.get("sys_path", ()) if p not in sys.path)
    os.environ.update(payload.get("environ", {}))
    detached.SECRET_ENV[:] = list(payload.get("environ", {}))
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    try:
        connection = ConnectionSettings.from_payload(payload["connection"])
        tunables = Tunables(**payload.get("tunables", {}))
        if payload.get("wake"):
            return _wake(connection, tunables, payload)
        worker = Worker(connection, tunables, job_id, token=payload.get("token"))
        code = worker.run()
        # daemon-free draining: the slot this job held goes to the next
        # eligible job of its queue, on the same process and connections,
        # until none is eligible
        while (following := worker.next_job()) is not None:
            job_id = following[0]
            worker = Worker(connection, tunables, job_id, token=following[1],
                            connections=worker.handover())
            code = worker.run()
        worker.close()
        return code
    except BaseException as exc:  # noqa: BLE001 - a worker must leave a trace
        detached.note(job_id, "worker crashed: " + "".join(traceback.format_exception(exc)))
        try:
            backend = get_backend(ConnectionSettings.from_payload(payload["connection"]))
            jobs = lifecycle.Lifecycle(backend)
            conn = backend.connect(job_id=job_id)
            crashed = f"worker crashed: {describe_exception(exc)}"
            if not jobs.fail_unstarted(conn, job_id, utcnow(), crashed):
                jobs.finish(conn, job_id, status=JobStatus.FAILED, end_time=utcnow(),
                            duration=None, elapsed_s=None, result=None, output=None, progress=None,
                            error=crashed)
            conn.commit()
        except BaseException:
            pass
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
