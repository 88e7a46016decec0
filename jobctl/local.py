"""Local procedures: Python callables standing in for stored procedures on
SQLite, which has none.

A user module registers its own with the same decorator the demos use::

    # myprocs.py, listed under `modules` in ~/.config/jobctl/config.toml
    from decimal import Decimal, localcontext
    from jobctl.local import procedure

    @procedure("NIGHTLY_ROLLUP", outputs={"rows_done": int})
    def nightly_rollup(ctx, day: str, batch: int = 1000):
        ctx.log(f"rolling up {day}")
        ctx.progress(50)
        return {"rows_done": 42}

Parameters come from the function's signature (type from its annotation,
"defaulted" when it has a default); OUT parameters from `outputs`, filled from
the dict the function returns. `ctx` gives `progress(pct)`, `log(line)`,
`sleep(seconds)` (wakes up on cancel), `cancelled` and `connection` (the jobs
database, committed on success and rolled back on failure); `print()` lines
are captured as output too.
"""

from __future__ import annotations

import datetime as dt
import importlib
import importlib.util
import inspect
import sys
import typing
from dataclasses import dataclass
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Any, Callable

from . import model
from .errors import UsageError
from .model import Param, Signature

_TYPES: dict[Any, tuple[str, str]] = {
    int: ("INTEGER", model.INTEGER),
    float: ("NUMBER", model.NUMBER),
    Decimal: ("NUMBER", model.NUMBER),
    str: ("VARCHAR2", model.TEXT),
    bool: ("BOOLEAN", model.BOOLEAN),
    dt.date: ("DATE", model.DATE),
    dt.datetime: ("TIMESTAMP", model.TIMESTAMP),
    dict: ("JSON", model.JSON),
    list: ("JSON", model.JSON),
}


@dataclass(frozen=True)
class LocalProcedure:
    name: str
    func: Callable[..., Any]
    signature: Signature


REGISTRY: dict[str, LocalProcedure] = {}


def _type_of(annotation: Any, where: str) -> tuple[str, str]:
    if annotation is inspect.Parameter.empty or annotation is Any:
        return _TYPES[str]
    origin = typing.get_origin(annotation)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return _type_of(args[0], where)
    if origin in (dict, list):
        return _TYPES[origin]
    if annotation in _TYPES:
        return _TYPES[annotation]
    raise TypeError(f"{where}: unsupported parameter type {annotation!r}")


def procedure(name: str, *, outputs: dict[str, type] | None = None):
    """Register `func(ctx, **inputs) -> dict of outputs` as procedure `name`."""
    upper = name.upper()

    def register(func: Callable[..., Any]) -> Callable[..., Any]:
        hints = typing.get_type_hints(func)
        params = []
        for i, (pname, p) in enumerate(inspect.signature(func).parameters.items()):
            if i == 0:
                continue  # ctx
            type_name, kind = _type_of(hints.get(pname, p.annotation), f"{upper}.{pname}")
            params.append(Param(pname, type_name, kind, "IN",
                                defaulted=p.default is not inspect.Parameter.empty))
        for oname, otype in (outputs or {}).items():
            type_name, kind = _type_of(otype, f"{upper}.{oname}")
            params.append(Param(oname, type_name, kind, "OUT"))
        REGISTRY[upper] = LocalProcedure(upper, func, Signature(upper, tuple(params)))
        return func

    return register


_loaded: set[str] = set()


def load_modules(modules: list[str] | tuple[str, ...]) -> None:
    """Import user modules (dotted names or .py paths) that register procedures."""
    for spec in modules:
        if spec in _loaded:
            continue
        try:
            if spec.endswith(".py") or "/" in spec:
                path = Path(spec).expanduser()
                mod_name = f"jobctl_user_{path.stem}"
                loader = importlib.util.spec_from_file_location(mod_name, path)
                if loader is None or loader.loader is None or not path.exists():
                    raise FileNotFoundError(f"no such file {path}")
                module = importlib.util.module_from_spec(loader)
                sys.modules[mod_name] = module
                loader.loader.exec_module(module)
            else:
                importlib.import_module(spec)
        except Exception as exc:  # a user's module: any failure is theirs to see
            raise UsageError(f"cannot load procedure module {spec!r}: {exc}") from None
        _loaded.add(spec)


# -- the demos every backend ships ---------------------------------------------

@procedure("SUMA_SIMPLE", outputs={"vResult": Decimal})
def suma_simple(ctx, vA: Decimal, vB: Decimal = Decimal(0)):
    """vResult := vA + vB, exactly (as NUMBER would: not rounded to the
    default 28 digits of Python's decimal context)"""
    with localcontext() as exact:
        exact.prec = 80
        return {"vResult": Decimal(vA) + Decimal(vB)}


@procedure("DEMO_SLEEP")
def demo_sleep(ctx, p_seconds: Decimal):
    """Sleep p_seconds, reporting progress and a line of output every second."""
    total = float(p_seconds)
    done = 0.0
    while done < total:
        step = min(1.0, total - done)
        ctx.sleep(step)
        done += step
        ctx.progress(100.0 * done / total if total else 100)
        ctx.log(f"slept {done:g} of {total:g} s")
    return {}


@procedure("DEMO_FAIL")
def demo_fail(ctx, p_message: str = "demo failure"):
    """Raise p_message."""
    raise RuntimeError(p_message)
