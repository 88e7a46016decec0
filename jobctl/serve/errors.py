"""The one translation of an error into an HTTP answer: the CLI's exit code
and message, as JSON `{"error": ..., "code": ...}`, with the status the code
maps to (2 → 400 or 422, 3 → 404, 4 → 503; a token refused → 401/403)."""

from __future__ import annotations

import logging

from ..errors import DatabaseError, JobctlError, NotFound, UsageError
from ..tokens import Forbidden, Unauthorized

log = logging.getLogger("jobctl.serve")


class BadRequest(UsageError):
    """The request itself is malformed (not JSON, not the expected shape): 400.
    A value the library refuses is a UsageError: 422."""


class TooLarge(UsageError):
    """The body is over the limit: 413."""


def status_for(exc: BaseException) -> int:
    if isinstance(exc, Unauthorized):
        return 401
    if isinstance(exc, Forbidden):
        return 403
    if isinstance(exc, TooLarge):
        return 413
    if isinstance(exc, BadRequest):
        return 400
    if isinstance(exc, UsageError):
        return 422
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, DatabaseError):
        return 503
    return 500


def error_body(exc: BaseException) -> tuple[int, dict]:
    """(HTTP status, JSON body) for any exception. A bug says only its type:
    its text may quote a value, and the log has it (never a token: the
    server never puts one in an exception)."""
    status = status_for(exc)
    if isinstance(exc, JobctlError):
        return status, {"error": exc.message, "code": exc.exit_code}
    log.error("internal error: %s", type(exc).__name__, exc_info=exc)
    return status, {"error": f"internal error: {type(exc).__name__}", "code": 1}
