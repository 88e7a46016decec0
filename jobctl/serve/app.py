"""The routes of `jobctl serve`. Each one authenticates, parses, calls the
library (`api.Jobctl`, the CLI's own) in a worker thread, and answers with
what the CLI prints for `--format json`, or with the error the CLI would
exit with (serve.errors). The server keeps no state of its own: jobs,
tokens and their last use live in the database, so several servers may
share one."""

from __future__ import annotations

import contextlib
import json
import logging
import queue
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import render
from ..api import Jobctl
from ..config import Settings
from ..errors import DatabaseError, JobctlError
from ..formats import Format
from ..jsontext import dumps
from ..model import JobStatus
from ..tokens import CANCEL, READ, SUBMIT, Principal
from . import openapi, web
from .errors import BadRequest, TooLarge, error_body

log = logging.getLogger("jobctl.serve")

#: the cookie the web page keeps its read token in (HttpOnly, SameSite=Strict)
COOKIE = "jobctl_token"
JSON_TYPE = "application/json"


@dataclass(frozen=True)
class Options:
    body_limit: int = 1024 * 1024
    metrics_window_s: float = 86400.0
    tls: bool = False
    pool_size: int = 8


class Apis:
    """Library objects for the request threads, each on its own connection
    (a connection serves one thread at a time). One that met a database
    error is closed, so the next request connects anew."""

    def __init__(self, settings: Settings, size: int):
        self.settings = settings
        self.size = size
        self._idle: queue.LifoQueue[Jobctl] = queue.LifoQueue()

    @contextlib.contextmanager
    def borrow(self) -> Iterator[Jobctl]:
        try:
            jc = self._idle.get_nowait()
        except queue.Empty:
            jc = Jobctl(self.settings, create=False)
        keep = False
        try:
            yield jc
            keep = True
        except DatabaseError:
            raise  # its connection may be dead: the next request connects anew
        except JobctlError:
            keep = True  # refused input: the connection is fine (db() rolled back)
            raise
        finally:
            if keep and self._idle.qsize() < self.size:
                self._idle.put(jc)
            else:
                jc.close()

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


def json_response(data: Any, status: int = 200, *, text: str | None = None,
                  headers: dict[str, str] | None = None) -> Response:
    body = text if text is not None else dumps(data, default=_default) + "\n"
    return Response(body, status_code=status, media_type=JSON_TYPE, headers=headers)


def _default(value: Any) -> Any:
    import datetime as dt

    if isinstance(value, dt.datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def error_response(exc: BaseException) -> Response:
    status, body = error_body(exc)
    headers = {"WWW-Authenticate": 'Bearer realm="jobctl"'} if status == 401 else None
    return json_response(body, status, headers=headers)


def bearer(request: Request, *, cookie: bool) -> str | None:
    """The token of a request: `Authorization: Bearer`, or (`cookie`: GET
    requests only, so the page cannot be made to write) the page's cookie."""
    header = request.headers.get("authorization")
    if header:
        kind, _, value = header.partition(" ")
        return value.strip() if kind.lower() == "bearer" else None
    return request.cookies.get(COOKIE) if cookie else None


async def read_json(request: Request, limit: int) -> Any:
    """The body as JSON (numbers exact: Decimal), refused over `limit` bytes
    (413) or when it is not JSON (400)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"request body over the limit of {limit} bytes")
    size, chunks = 0, []
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"request body over the limit of {limit} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise BadRequest("the request body is empty: expected a JSON object")
    try:
        return json.loads(raw.decode("utf-8"), parse_float=Decimal,
                          parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise BadRequest("the request body is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise BadRequest(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def _no_constant(name: str) -> Any:
    raise BadRequest(f"invalid JSON: {name} is not a number jobctl accepts")


class Server:
    """The routes over one pool of library objects."""

    def __init__(self, settings: Settings, options: Options):
        self.options = options
        self.apis = Apis(settings, options.pool_size)

    async def call(self, fn: Callable[[Jobctl], Any]) -> Any:
        def run() -> Any:
            with self.apis.borrow() as jc:
                return fn(jc)

        return await run_in_threadpool(run)

    async def principal(self, request: Request, scope: str, *, cookie: bool = False) -> Principal:
        token = bearer(request, cookie=cookie)

        def check(jc: Jobctl) -> Principal:
            who = jc.tokens.authenticate(token)
            who.require(scope)
            return who

        return await self.call(check)

    # -- the seed's two endpoints --------------------------------------------------------
    async def submit(self, request: Request) -> Response:
        """POST /procedure/async: 202 with the job id and its status."""
        from .requests import parse_submit

        try:
            declared = request.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > self.options.body_limit:
                raise TooLarge(f"request body over the limit of {self.options.body_limit} bytes")
            who = await self.principal(request, SUBMIT)
            name, given, placing = parse_submit(await read_json(request, self.options.body_limit))

            def work(jc: Jobctl) -> dict[str, Any]:
                _allowed(jc, who, name)
                submitted = jc.submit(name, given, submitted_by=who.name, **placing)
                return {"job_id": submitted.job_id,
                        "status": JobStatus.QUEUED.value if submitted.created else jc.get(submitted.job_id).status.value,
                        "created": submitted.created}

            out = await self.call(work)
        except Exception as exc:
            return error_response(exc)
        log.info("submitted %s (%s) for token %s", out["job_id"], name, who.name)
        return json_response(out, 202, headers={"Location": f"/jobs/{out['job_id']}"})

    async def job(self, request: Request) -> Response:
        """GET /jobs/{job_id}: as `jobctl status ID -f json` prints it."""
        try:
            await self.principal(request, READ, cookie=True)
            ref = request.path_params["job_id"]
            job = await self.call(lambda jc: jc.get(ref))
        except Exception as exc:
            return error_response(exc)
        return json_response(None, text=render.records([job.to_dict()], Format.json,
                                                       render.DETAIL_COLUMNS, single=True))

    # -- the rest of the command line's reads and cancel -----------------------------
    async def jobs(self, request: Request) -> Response:
        """GET /jobs: `jobctl list`'s filters, as `list -f json` prints."""
        from .requests import list_filters

        try:
            await self.principal(request, READ, cookie=True)
            filters = list_filters(request.query_params)
            jobs = await self.call(lambda jc: jc.list_jobs(**filters))
        except Exception as exc:
            return error_response(exc)
        return json_response(None, text=render.records([j.to_dict() for j in jobs], Format.json,
                                                       render.LIST_COLUMNS))

    async def cancel(self, request: Request) -> Response:
        """POST /jobs/{job_id}/cancel: as `jobctl cancel ID -f json`."""
        try:
            who = await self.principal(request, CANCEL)
            ref = request.path_params["job_id"]

            def work(jc: Jobctl) -> dict[str, Any]:
                job = jc.get(ref)
                who.require_procedure(job.procedure_name)
                report = jc.cancel([job.job_id])[0]
                return {"job_id": report.job.job_id, "action": report.action,
                        "status": report.job.status.value}

            out = await self.call(work)
        except Exception as exc:
            return error_response(exc)
        log.info("cancel %s: %s, by token %s", out["job_id"], out["action"], who.name)
        return json_response(out)

    async def stats(self, request: Request) -> Response:
        """GET /stats: as `jobctl stats -f json` (since=7d, procedure=)."""
        from .requests import query, since_param

        try:
            await self.principal(request, READ, cookie=True)
            params = query(request.query_params, {"since", "procedure"})
            since_s = since_param(params.get("since", "7d"))
            rows = await self.call(lambda jc: jc.stats(since_s=since_s,
                                                       procedure=params.get("procedure")))
        except Exception as exc:
            return error_response(exc)
        return json_response(None, text=render.records(rows, Format.json, render.STATS_COLUMNS))

    async def queues(self, request: Request) -> Response:
        """GET /queues: as `jobctl queue list -f json`."""
        try:
            await self.principal(request, READ, cookie=True)
            states = await self.call(lambda jc: jc.queues())
        except Exception as exc:
            return error_response(exc)
        return json_response([{"name": q.name, "limit": q.max_running, "queued": q.queued,
                               "running": q.running, "paused": q.paused} for q in states])

    async def procedure(self, request: Request) -> Response:
        """GET /procedures/{name}: as `jobctl describe NAME -f json`."""
        try:
            await self.principal(request, READ, cookie=True)
            name = request.path_params["name"]
            sigs = await self.call(lambda jc: jc.describe(name))
        except Exception as exc:
            return error_response(exc)
        return json_response(None, text=render.records([render.describe_record(sigs)], Format.json,
                                                       (), single=True))

    async def overview(self, request: Request) -> Response:
        """GET /overview: what the web page shows, in one answer."""
        try:
            await self.principal(request, READ, cookie=True)
            data = await self.call(web.overview)
        except Exception as exc:
            return error_response(exc)
        return json_response(data)

    # -- operations ------------------------------------------------------------------------
    async def healthz(self, request: Request) -> Response:
        return json_response({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        try:
            await self.call(lambda jc: jc.server_reads.ready())
        except Exception as exc:
            return error_response(exc)
        return json_response({"status": "ready"})

    async def metrics(self, request: Request) -> Response:
        from . import metrics

        try:
            await self.principal(request, READ, cookie=True)
            window = self.options.metrics_window_s
            data = await self.call(lambda jc: jc.server_reads.metrics(window))
        except Exception as exc:
            return error_response(exc)
        body, content_type = metrics.exposition(data, window)
        return Response(body, media_type=content_type)

    async def openapi(self, request: Request) -> Response:
        return json_response(openapi.document())

    # -- the page's sign-in -------------------------------------------------------------
    async def login(self, request: Request) -> Response:
        """POST /login {"token": ...}: a read token checked once, then kept in
        an HttpOnly, SameSite=Strict cookie (scripts on the page never see it)."""
        try:
            body = await read_json(request, 4096)
            token = body.get("token") if isinstance(body, dict) else None
            if not isinstance(token, str) or not token.strip():
                raise BadRequest('expected {"token": "<a read token>"}')

            def check(jc: Jobctl) -> Principal:
                who = jc.tokens.authenticate(token)
                who.require(READ)
                return who

            who = await self.call(check)
        except Exception as exc:
            return error_response(exc)
        response = json_response({"name": who.name, "scopes": list(who.scopes)})
        response.set_cookie(COOKIE, token.strip(), httponly=True, samesite="strict",
                            secure=self.options.tls, path="/")
        return response

    async def logout(self, request: Request) -> Response:
        response = json_response({"status": "signed out"})
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict",
                               secure=self.options.tls)
        return response


def _allowed(jc: Jobctl, who: Principal, name: str) -> None:
    """403 unless the token's procedure pattern admits the procedure, by the
    name as given or as the database resolves it. A name it does not admit is
    refused before the database is asked whether it exists."""
    normalized = jc.backend.normalize_name(name)
    if who.may_run(name, normalized):
        return
    from ..errors import NotFound, UsageError

    try:
        resolved = jc.describe(name)[0].name
    except (NotFound, UsageError):  # unknown or ambiguous: the pattern refuses it all the same
        resolved = ""
    who.require_procedure(name, normalized, resolved)


def build_app(settings: Settings, options: Options) -> Starlette:
    server = Server(settings, options)
    routes = [
        Route("/procedure/async", server.submit, methods=["POST"]),
        Route("/jobs", server.jobs, methods=["GET"]),
        Route("/jobs/{job_id}", server.job, methods=["GET"]),
        Route("/jobs/{job_id}/cancel", server.cancel, methods=["POST"]),
        Route("/stats", server.stats, methods=["GET"]),
        Route("/queues", server.queues, methods=["GET"]),
        Route("/procedures/{name}", server.procedure, methods=["GET"]),
        Route("/overview", server.overview, methods=["GET"]),
        Route("/metrics", server.metrics, methods=["GET"]),
        Route("/healthz", server.healthz, methods=["GET"]),
        Route("/readyz", server.readyz, methods=["GET"]),
        Route("/openapi.json", server.openapi, methods=["GET"]),
        Route("/login", server.login, methods=["POST"]),
        Route("/logout", server.logout, methods=["POST"]),
        *web.routes(),
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        from starlette.exceptions import HTTPException

        status = exc.status_code if isinstance(exc, HTTPException) else 500
        message = {404: f"no such endpoint {request.url.path} (see /openapi.json)",
                   405: f"{request.method} is not allowed on {request.url.path}"}
        return json_response({"error": message.get(status, "bad request"),
                              "code": 3 if status == 404 else 2}, status)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        server.apis.close()

    return Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found},
                     lifespan=lifespan)
