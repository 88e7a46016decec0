"""What `jobctl serve` reads besides jobs: how many jobs the database holds
at start, whether it is ready (reachable, schema current), and the rows of
one /metrics scrape (one statement)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from . import store
from .lifecycle import describe_worker
from .model import JobStatus, PoolState, utcnow
from .session import Service

#: the upper edges (seconds) of the duration histogram of /metrics
DURATION_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 300, 600, 1800, 3600, 7200, 21600, 86400)


class ServerReads(Service):
    def jobs_since(self, seconds: float) -> int:
        with self.db() as conn:
            now = self.lifecycle.clock(conn)
            n = store.count_since(self.backend, conn, now - dt.timedelta(seconds=seconds))
            conn.commit()
        return n

    def ready(self) -> None:
        """Raises a DatabaseError when the database is unreachable or its
        schema is not current (ASYNC_JOBS' columns, JOB_TOKENS)."""
        from .tokens import Tokens

        with self.db() as conn:
            self.session.require_table(conn)
        with Tokens(self.session).tokens_db() as conn:
            store.check_tokens_table(self.backend, conn)
            conn.commit()

    def metrics(self, window_s: float) -> dict[str, Any]:
        """One statement: jobs per (status, queue) (queued and running: all;
        finished: started in the window), completed runs per procedure and
        duration bucket in the window, and the pools alive."""
        with self.db() as conn:
            rows = store.read_metrics(self.backend, conn, since=utcnow() - dt.timedelta(
                seconds=window_s), edges=DURATION_BUCKETS)
            conn.commit()
        clock = next((self.backend.from_db_time(r["t"]) for r in rows if r["kind"] == "c"), None)
        now = clock or utcnow()
        jobs: dict[tuple[str, str], int] = {}
        hist: dict[str, dict[str, Any]] = {}
        pools = 0
        for r in rows:
            kind = str(r["kind"]).strip()
            if kind == "j":
                key = (str(r["status"]), str(r["queue"]))
                jobs[key] = jobs.get(key, 0) + int(r["n"] or 0)
            elif kind == "h":
                h = hist.setdefault(str(r["name"]), {"counts": [0] * (len(DURATION_BUCKETS) + 1),
                                                     "sum": 0.0})
                b = min(max(int(r["bucket"]), 0), len(DURATION_BUCKETS))
                h["counts"][b] += int(r["n"] or 0)
                h["sum"] += float(r["total_s"] or 0)
            elif kind == "w":
                row = store.WorkerRow(worker_id=str(r["name"]), host=str(r["host"]),
                                      pid=int(r["n"]), queues=(), concurrency=0, running=0,
                                      state=str(r["status"]), started_at=None,
                                      heartbeat_at=self.backend.from_db_time(r["t"]))
                if describe_worker(row, host=self.lifecycle.host,
                                   lost_after_s=self.settings.tunables.lost_after_s,
                                   now=now) != PoolState.GONE.value:
                    pools += 1
        running = sum(n for (s, _), n in jobs.items() if s == JobStatus.RUNNING.value)
        queued = sum(n for (s, _), n in jobs.items() if s == JobStatus.QUEUED.value)
        return {"jobs": jobs, "durations": hist, "buckets": DURATION_BUCKETS,
                "running": running, "queued": queued, "pools_alive": pools}
