"""What a `jobctl doctor` check is, shared by doctor and by a backend that
brings checks of its own (Oracle): the results, one check's record, what
doctor asks a backend's catalog, and the shape of a backend's extra checks.

It sits at the bottom of the module graph so that a backend can describe its
checks without importing doctor, which is a consumer of the library far
above it; doctor finds them through `jobctl.backends.extra_checks`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
RESULTS = (OK, WARN, FAIL, SKIP)

#: the probe row's procedure name; never a real procedure
PROBE_PROCEDURE = "JOBCTL_DOCTOR_PROBE"


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def error_text(backend: Any, exc: BaseException) -> str:
    """An error as one line, in the backend's words where it has them."""
    from .errors import JobctlError

    if isinstance(exc, JobctlError):
        return one_line(exc.message)
    try:
        return one_line(backend.translate_error(exc).message)
    except Exception:
        return one_line(f"{type(exc).__name__}: {exc}")


@dataclass(frozen=True)
class Check:
    name: str
    result: str
    detail: str
    remedy: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "result": self.result, "detail": self.detail,
                "remedy": self.remedy}


@dataclass(frozen=True)
class Catalog:
    """What doctor asks a backend's catalog. `identity_sql` returns one row
    (who, where); `timezone_sql` one row (session zone, the server's UTC
    now) or is None where there is no session zone; `indexes_sql` the index
    names on ASYNC_JOBS; `helpers_sql` rows (NAME, STATUS) of the helper
    objects found, from `helpers` (name → what it is for)."""

    version_sql: str | None
    identity_sql: str | None
    timezone_sql: str | None
    utc_zones: tuple[str, ...]
    indexes_sql: str
    helpers_sql: str
    helpers: dict[str, str]
    grant_remedy: str
    connect_remedy: str
    server_version: Callable[[Any], str] | None = None


class JobRows(Protocol):
    """The part of the job lifecycle a backend's checks use for their probe
    rows; doctor hands its own `Lifecycle` in, so the checks never import
    the layer above them."""

    def enqueue(self, conn: Any, **row: Any) -> Any: ...

    def claim(self, conn: Any, job_id: str, **how: Any) -> Any: ...


@dataclass(frozen=True)
class BackendChecks:
    """A backend's own checks: its catalog, the names of its checks (fixed,
    so a script can look one up), the driver check that runs before any
    connection, and the checks themselves, run after doctor's common ones."""

    catalog: Catalog
    names: tuple[str, ...]
    driver_check: Callable[[], Check]
    run: Callable[..., list[Check]]
