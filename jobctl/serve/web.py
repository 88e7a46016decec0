"""The web page at `/`: one HTML page, a small script and a style sheet of
our own (jobctl/serve/assets/), served by jobctl itself, so it works with no
internet. Read-only: it asks for a read token once (kept in an HttpOnly,
SameSite=Strict cookie by POST /login) and polls /overview and /jobs/{id}."""

from __future__ import annotations

from importlib import resources
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..api import Jobctl
from ..model import JobStatus, utcnow

_TYPES = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8",
          "index.html": "text/html; charset=utf-8"}
#: the page runs our script only, loads nothing from elsewhere, and is never framed
_HEADERS = {"Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                                       "img-src 'self' data:; frame-ancestors 'none'; "
                                       "base-uri 'none'; form-action 'self'",
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache"}


def _asset(name: str) -> bytes:
    return resources.files("jobctl.serve").joinpath("assets", name).read_bytes()


def routes() -> list[Route]:
    def serve(name: str):
        async def endpoint(request: Request) -> Response:
            return Response(_asset(name), media_type=_TYPES[name], headers=_HEADERS)
        return endpoint

    return [Route("/", serve("index.html"), methods=["GET"]),
            Route("/assets/app.js", serve("app.js"), methods=["GET"]),
            Route("/assets/app.css", serve("app.css"), methods=["GET"])]


#: the window the page's failures and per-procedure figures cover
WINDOW_S = 86400.0
STAT_KEYS = ("procedure", "total", *(s.value for s in JobStatus), "success_pct", "p50_s",
             "p95_s", "max_s")


def overview(jc: Jobctl) -> dict[str, Any]:
    """Queues, running jobs, recent failures (top's one statement) and per
    procedure counts with p50/p95 (stats' statement), for the page."""
    frame = jc.top_frame(since_s=WINDOW_S)
    stats = jc.stats(since_s=WINDOW_S)
    now = utcnow()
    return {
        "now": now.isoformat(),
        "queues": [{"name": q.name, "limit": q.max_running, "paused": q.paused,
                    "running": q.running, "queued": q.queued, "done": q.done, "failed": q.failed,
                    "waiting": q.waiting()} for q in frame.queues],
        "running": [{"job_id": r.job.job_id, "procedure": r.job.procedure_name,
                     "queue": r.job.queue, "status": r.job.status.value,
                     "progress": r.job.progress, "host": r.job.worker_host,
                     "start_time": r.job.start_time.isoformat() if r.job.start_time else None,
                     "elapsed_s": (now - r.job.start_time).total_seconds()
                     if r.job.start_time else None,
                     "typical_s": r.typical_s, "last_line": r.last_line} for r in frame.running],
        "failures": [{"job_id": f.job_id, "procedure": f.procedure, "queue": f.queue,
                      "status": f.status,
                      "end_time": f.end_time.isoformat() if f.end_time else None,
                      "first_line": f.first_line} for f in frame.failures],
        "procedures": [{k: row.get(k) for k in STAT_KEYS} for row in stats],
    }
