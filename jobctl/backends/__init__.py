"""Backends, one module each, imported only when their scheme is used so that
no driver loads on the way to a SQLite command."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ..config import ConnectionSettings

if TYPE_CHECKING:
    from ..checks import BackendChecks
    from .base import Backend

_MODULES = {"sqlite": "sqlite", "postgresql": "postgresql", "oracle": "oracle"}


def get_backend(settings: ConnectionSettings) -> Backend:
    module = importlib.import_module(f"{__name__}.{_MODULES[settings.scheme]}")
    backend: Backend = module.BACKEND(settings)
    return backend


#: backends whose package brings `jobctl doctor` checks of its own, in its `checks` module
_WITH_CHECKS = {"oracle"}


def extra_checks(scheme: str) -> BackendChecks | None:
    """A backend's own doctor checks, loaded only when its scheme is used
    (Oracle's import the driver)."""
    if scheme not in _WITH_CHECKS:
        return None
    checks: BackendChecks = importlib.import_module(f"{__name__}.{_MODULES[scheme]}.checks").CHECKS
    return checks
