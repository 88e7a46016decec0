"""Backends, one module each, imported only when their scheme is used so that
no driver loads on the way to a SQLite command."""

from __future__ import annotations

import importlib

from ..config import ConnectionSettings

_MODULES = {"sqlite": "sqlite", "postgresql": "postgresql", "oracle": "oracle"}


def get_backend(settings: ConnectionSettings):
    module = importlib.import_module(f"{__name__}.{_MODULES[settings.scheme]}")
    return module.BACKEND(settings)
