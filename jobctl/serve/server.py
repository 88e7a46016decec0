"""Starting `jobctl serve`: the safe defaults checked (loopback unless TLS
or an explicit opt-out, TLS files readable), the database and its last day
logged (DSN masked), then uvicorn in the foreground. Jobs are started as
`jobctl submit` starts them (detached workers, or a pool serving the
queue), so stopping or killing the server never stops one."""

from __future__ import annotations

import ipaddress
import logging
import os
import sys
from dataclasses import replace

from ..api import Jobctl
from ..config import Settings
from ..errors import DatabaseError, UsageError
from .app import Options, build_app

log = logging.getLogger("jobctl.serve")

#: the opt-out a non-loopback address without TLS needs; its name says what it risks
PLAINTEXT_FLAG = "--insecure-tokens-in-cleartext"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_listen(host: str, certfile: str | None, keyfile: str | None, cleartext_ok: bool) -> bool:
    """True: TLS. Refuses a non-loopback address without TLS (tokens and
    job data would cross the network in clear) unless told so explicitly."""
    if (certfile is None) != (keyfile is None):
        raise UsageError("--certfile and --keyfile go together")
    for option, path in (("--certfile", certfile), ("--keyfile", keyfile)):
        if path is not None and not os.access(path, os.R_OK):
            raise UsageError(f"{option} {path}: not a readable file")
    tls = certfile is not None
    if not tls and not is_loopback(host) and not cleartext_ok:
        raise UsageError(f"--host {host} is reachable from other machines: give --certfile and "
                         f"--keyfile for TLS, or {PLAINTEXT_FLAG} to send tokens and job data "
                         "unencrypted")
    return tls


def _logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("jobctl")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def serve(settings: Settings, *, host: str = "127.0.0.1", port: int = 8080,
          certfile: str | None = None, keyfile: str | None = None, cleartext_ok: bool = False,
          body_limit: int = 1024 * 1024, metrics_window_s: float = 86400.0,
          log_level: str = "info") -> int:
    if not 0 <= port <= 65535:
        raise UsageError("--port must be from 0 to 65535")
    if body_limit < 1024:
        raise UsageError("--body-limit must be at least 1024 bytes")
    tls = check_listen(host, certfile, keyfile, cleartext_ok)
    if log_level.lower() not in ("critical", "error", "warning", "info", "debug"):
        raise UsageError("--log-level must be one of critical, error, warning, info, debug")
    _logging(log_level)
    first = Jobctl(settings, create=False)  # here, in the main thread: it may ask for a password
    try:
        try:
            held = first.server_reads.jobs_since(86400)
            log.info("database %s: %d job(s) of the last 24 h", settings.connection.display, held)
        except DatabaseError as exc:
            # serve anyway: /readyz says 503 until the database is back
            log.warning("database %s: %s", settings.connection.display, exc.message)
        # the backend's settings hold a password asked for at the prompt
        settings = replace(settings, connection=first.backend.settings)
    finally:
        first.close()
    app = build_app(settings, Options(body_limit=body_limit, metrics_window_s=metrics_window_s,
                                      tls=tls))
    import uvicorn

    scheme = "https" if tls else "http"
    log.info("listening on %s://%s:%d (web page at /, OpenAPI at /openapi.json)",
             scheme, host, port)
    uvicorn.run(app, host=host, port=port, ssl_certfile=certfile, ssl_keyfile=keyfile,
                log_level=log_level.lower(), server_header=False, proxy_headers=False,
                access_log=True, timeout_graceful_shutdown=5)
    return 0
