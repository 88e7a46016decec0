"""What the jobs of one worker process share: the bookkeeping connection
(claims, heartbeats, cancel flags, outcomes) with the news the database
announces on it, and a pool's cache of resolved signatures."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

from .backends.base import WORK_NEWS


class Books:
    """The bookkeeping connection: claims, heartbeats, cancel flags and
    outcomes of every job a process runs (one job after another for a
    daemon-free worker, many at once for `jobctl worker`), under one lock.
    News the database announces on it (PostgreSQL NOTIFY) is read into
    `news` by whichever thread reads first, and taken by the one it is for."""

    NEWS_KEPT = 256

    def __init__(self, backend: Any, conn: Any = None):
        self.backend = backend
        self.conn = conn
        self.lock = threading.Lock()
        self.listening = False
        self.news: set[str] = set()
        #: job id -> how to wake its watchdog when news of it arrives, however
        #: it was read (another job's watchdog, the pool)
        self.wakers: dict[str, Any] = {}

    def listen(self) -> None:
        """Ask for news on the connection (the caller commits)."""
        self.listening = self.backend.listen_cancel(self.conn)

    def read_news(self) -> None:
        """Under the lock: take in what arrived, waking the jobs it is for."""
        fresh = set(self.backend.announcements(self.conn)) - self.news
        self.news |= fresh
        for job_id in fresh:
            if (wake := self.wakers.get(job_id)) is not None:
                wake()
        if len(self.news) > self.NEWS_KEPT:
            # every worker hears every cancel: forget those of other
            # processes' jobs (kept a while: a job just claimed may not have
            # its worker yet)
            self.news = {n for n in self.news if n in self.wakers or n.startswith(WORK_NEWS)}

    def heard_cancel(self, job_id: str) -> bool:
        """Under the lock: was a cancel of job_id announced?"""
        self.read_news()
        if job_id in self.news:
            self.news.discard(job_id)
            return True
        return False

    def heard_work(self) -> bool:
        """Under the lock: was work queued (in any queue) since last asked?"""
        self.read_news()
        work = {n for n in self.news if n.startswith(WORK_NEWS)}
        self.news -= work
        return bool(work)

    def wait_fd(self) -> int | None:
        if not self.listening or self.conn is None:
            return None
        try:
            return self.backend.cancel_wait_fd(self.conn)
        except Exception:  # noqa: BLE001 - a closed connection: nothing to wait on
            return None

    def reconnect(self, job_id: str | None = None) -> None:
        """A new connection in place of a broken one (under the lock); raises
        when the database cannot be reached."""
        fresh = self.backend.connect(job_id=job_id)
        with contextlib.suppress(Exception):
            self.conn.close()
        self.conn = fresh
        if self.listening:
            self.listen()
            self.conn.commit()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()


class Signatures:
    """A pool's resolved signatures, each reused for at most TTL_S and only
    while it is the one the job's submit recorded: a pool runs many jobs of
    the same procedure, and resolving it for every one of them was a third
    of a short job's cost. A procedure replaced (with new parameters) in the
    last second before its job starts may be called with the shape resolved
    just before; the call then fails on its parameters. A job submitted
    after the change records the new fingerprint and resolves afresh."""

    TTL_S = 1.0

    def __init__(self, backend: Any):
        self.backend = backend
        self.lock = threading.Lock()
        self.seen: dict[tuple[str, frozenset[str] | str], tuple[Any, float]] = {}

    def resolve(self, conn: Any, name: str, given: frozenset[str], recorded: dict) -> Any:
        key, now = (name, recorded.get("form") or given), time.monotonic()
        with self.lock:
            hit = self.seen.get(key)
        if (hit is not None and now - hit[1] < self.TTL_S
                and recorded.get("fingerprint") in (None, hit[0].fingerprint)):
            return hit[0]
        from .lookup import for_job

        sig = for_job(self.backend, conn, name, given, recorded)
        with self.lock:
            self.seen[key] = (sig, now)
        return sig
