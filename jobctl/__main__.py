"""`python -m jobctl` and the `jobctl` console script.

Kept free of imports so that the collector can be paused before anything
loads: see `main`.
"""

import gc


def main() -> None:
    # A command's imports build many objects and no garbage: the cyclic
    # collector running through them costs about a tenth of the start-up of
    # `jobctl status`.
    gc.disable()
    import sys

    from . import fastpath

    # status, list and --help without typer (fastpath.py); they end in
    # moments, so the collector stays paused for them
    code = fastpath.run(sys.argv[1:])
    if code is not None:
        from .frontend import leave

        leave(code)
    from .cli import run

    # Switched back on, with everything imported moved out of its way
    # (freeze), before a command runs: `wait` and `--watch` may run for hours.
    gc.freeze()
    gc.enable()
    run()


if __name__ == "__main__":
    main()
