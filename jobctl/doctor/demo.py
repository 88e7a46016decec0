"""`jobctl doctor`'s checks with real jobs: a demo job through the detached
worker, exact values, live progress and output, and cancel. Doctor's demo
jobs are tagged with its name and deleted by id when it is done."""

from __future__ import annotations

import time
from decimal import Decimal, InvalidOperation
from typing import Any

from ..checks import FAIL, OK, SKIP, WARN, Check, error_text
from ..errors import JobsUnfinished
from ..model import Job, JobStatus

#: the exact round trip: 23 significant digits, more than a float holds
EXACT_A = "12345678901234567890.123"
EXACT_B = "0.1"
EXACT_SUM = Decimal("12345678901234567890.223")

#: how long a demo job may take to be claimed and finish on a healthy system
ROUND_TRIP_TIMEOUT_S = 30.0
#: DEMO_SLEEP length for the progress check: long enough that progress shows
#: at least twice before the end
PROGRESS_SLEEP_S = 3
#: DEMO_SLEEP length for the cancel check; cancel must end it long before
CANCEL_SLEEP_S = 60
DOCTOR_POLL_S = 0.1

DELETE_JOB_SQL = "DELETE FROM ASYNC_JOBS WHERE job_id = :job_id"


class DemoJobChecks:
    """Mixed into `Doctor`: these checks need its connection, its Jobctl and
    its list of results."""

    jc: Any
    backend: Any
    conn: Any
    tag: str
    demo_ids: list[str]

    def add(self, name: str, result: str, detail: str, remedy: str = "") -> Check:
        raise NotImplementedError

    def _end_transaction(self) -> None:
        raise NotImplementedError

    def _submit(self, proc: str, params: dict[str, str], timeout_s: float) -> str:
        job_id = self.jc.submit(proc, params, timeout_s=timeout_s, submitted_by=self.tag).job_id
        self.demo_ids.append(job_id)
        return job_id

    def _worker_hint(self) -> str:
        from ..detached import log_path

        return f"see the worker log {log_path()} and `jobctl status <id>`"

    def _round_trip_checks(self) -> None:
        job = self._round_trip()
        self._exact_check(job)
        self._progress_check()
        self._cancel_check()

    def _round_trip(self) -> Job | None:
        started = time.monotonic()
        try:
            job_id = self._submit("SUMA_SIMPLE", {"vA": EXACT_A, "vB": EXACT_B}, ROUND_TRIP_TIMEOUT_S)
            job = self.jc.wait([job_id], timeout_s=ROUND_TRIP_TIMEOUT_S)[0]
        except JobsUnfinished:
            self.add("round_trip", FAIL,
                     f"SUMA_SIMPLE was still not finished after {ROUND_TRIP_TIMEOUT_S:g} s: the "
                     "detached worker did not start, claim or finish it", self._worker_hint())
            return None
        except Exception as exc:
            self.add("round_trip", FAIL, f"SUMA_SIMPLE: {error_text(self.backend, exc)}",
                     self._worker_hint())
            return None
        took = time.monotonic() - started
        if job.status is not JobStatus.COMPLETED:
            self.add("round_trip", FAIL,
                     f"SUMA_SIMPLE ended {job.status.value}: {job.error_msg or 'no error recorded'}",
                     self._worker_hint())
            return None
        self.add("round_trip", OK, f"SUMA_SIMPLE ran in a detached worker (pid {job.worker_pid}) "
                 f"and completed; submit to result in {took:.1f} s")
        return job

    def _exact_check(self, job: Job | None) -> None:
        if job is None:
            self.add("exact_values", SKIP, "needs a completed round trip")
            return
        result = job.result or {}
        got = result.get("vresult")
        try:
            exact = got is not None and not isinstance(got, float) and Decimal(str(got)) == EXACT_SUM
        except InvalidOperation:
            exact = False
        if exact:
            self.add("exact_values", OK, f"{EXACT_A} + {EXACT_B} = {got}, exactly")
        else:
            self.add("exact_values", FAIL,
                     f"{EXACT_A} + {EXACT_B} came back as {got!r}, expected {EXACT_SUM}: "
                     "the value lost digits between the command line, the database and RESULT",
                     "report it (jobctl doctor --format json): NUMBER values must travel exactly")

    def _progress_check(self) -> None:
        seen: list[float] = []

        def on_poll(jobs: list[Job]) -> None:
            for j in jobs:
                if j.status is JobStatus.RUNNING and 0 < j.progress < 100:
                    seen.append(j.progress)

        try:
            job_id = self._submit("DEMO_SLEEP", {"p_seconds": str(PROGRESS_SLEEP_S)},
                                  ROUND_TRIP_TIMEOUT_S + PROGRESS_SLEEP_S)
            job = self.jc.wait([job_id], timeout_s=ROUND_TRIP_TIMEOUT_S + PROGRESS_SLEEP_S,
                               on_poll=on_poll)[0]
        except JobsUnfinished:
            self.add("progress_output", FAIL,
                     f"DEMO_SLEEP({PROGRESS_SLEEP_S}) did not finish in "
                     f"{ROUND_TRIP_TIMEOUT_S + PROGRESS_SLEEP_S:g} s", self._worker_hint())
            return
        except Exception as exc:
            self.add("progress_output", FAIL, f"DEMO_SLEEP: {error_text(self.backend, exc)}",
                     self._worker_hint())
            return
        if job.status is not JobStatus.COMPLETED:
            self.add("progress_output", FAIL,
                     f"DEMO_SLEEP ended {job.status.value}: {job.error_msg or 'no error recorded'}",
                     self._worker_hint())
            return
        lines = [ln for ln in (job.output or "").splitlines() if ln.strip()]
        if not lines:
            self.add("progress_output", FAIL, "DEMO_SLEEP completed but its output lines were "
                     "not captured into OUTPUT", "report it (jobctl doctor --format json)")
            return
        shown = ", ".join(f"{round(p, 1):g}%" for p in sorted(set(seen)))
        if not seen:
            self.add("progress_output", WARN,
                     f"output captured ({len(lines)} lines, e.g. {lines[0]!r}) but no progress "
                     "was seen while the job ran", "report it (jobctl doctor --format json)")
            return
        self.add("progress_output", OK, f"progress seen live ({shown}); {len(lines)} output "
                 f"line(s) captured, e.g. {lines[0]!r}")

    def _cancel_check(self) -> None:
        hb = self.jc.settings.tunables.heartbeat_s
        # the worker hears a cancel within a second; give far more
        limit = max(10.0, 10 * hb)
        try:
            job_id = self._submit("DEMO_SLEEP", {"p_seconds": str(CANCEL_SLEEP_S)}, CANCEL_SLEEP_S * 2)
            # cancel inside the call, not before it: the first progress comes a
            # second into DEMO_SLEEP; without progress (checked on its own
            # above), two seconds after the claim will do
            deadline = time.monotonic() + ROUND_TRIP_TIMEOUT_S
            running_since = None
            while True:
                job = self.jc.get(job_id)
                if job.status.finished:
                    self.add("cancel", FAIL, f"DEMO_SLEEP ended {job.status.value} before it "
                             f"could be cancelled: {job.error_msg or ''}", self._worker_hint())
                    return
                if job.status is JobStatus.RUNNING:
                    running_since = running_since or time.monotonic()
                    if job.progress > 0 or time.monotonic() - running_since > 2:
                        break
                elif time.monotonic() > deadline:
                    self.add("cancel", FAIL, f"DEMO_SLEEP was still {job.status.value} after "
                             f"{ROUND_TRIP_TIMEOUT_S:g} s: no worker claimed it", self._worker_hint())
                    return
                time.sleep(DOCTOR_POLL_S)
            asked = time.monotonic()
            self.jc.cancel([job_id])
            job = self.jc.wait([job_id], timeout_s=limit)[0]
            took = time.monotonic() - asked
        except JobsUnfinished:
            self.add("cancel", FAIL, f"DEMO_SLEEP was still running {limit:g} s after "
                     "`jobctl cancel`: the call was not interrupted",
                     "report it (jobctl doctor --format json); a DBA can end the session")
            return
        except Exception as exc:
            self.add("cancel", FAIL, f"DEMO_SLEEP: {error_text(self.backend, exc)}", self._worker_hint())
            return
        if job.status is not JobStatus.CANCELLED:
            self.add("cancel", FAIL, f"DEMO_SLEEP ended {job.status.value} instead of cancelled: "
                     f"{job.error_msg or ''}", self._worker_hint())
            return
        self.add("cancel", OK, f"DEMO_SLEEP({CANCEL_SLEEP_S}) interrupted {took:.1f} s after "
                 f"`jobctl cancel`, at {round(job.progress, 1):g}%")

    def _delete_demo_jobs(self) -> None:
        """Doctor's demo jobs go, by id, whatever happened; a worker still
        running one finds its row gone at the next heartbeat and stops."""
        if not self.demo_ids or self.conn is None:
            return
        try:
            self._end_transaction()
            for job_id in self.demo_ids:
                self.backend.execute(self.conn, DELETE_JOB_SQL, {"job_id": job_id})
            self.conn.commit()
        except Exception:
            self._end_transaction()
