"""`python -m jobctl` and the `jobctl` console script.

Kept free of imports so that the collector can be paused before typer and
jobctl load: see `main`.
"""

import gc


def main() -> None:
    # A command's imports build many objects and no garbage: the cyclic
    # collector running through them costs about a tenth of the start-up of
    # `jobctl status`. It is switched back on, with everything imported moved
    # out of its way (freeze), before a command runs: `wait` and `--watch`
    # may run for hours.
    gc.disable()
    from .cli import run

    gc.freeze()
    gc.enable()
    run()


if __name__ == "__main__":
    main()
