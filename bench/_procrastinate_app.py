"""The peer for bench/pool_vs_procrastinate.py: a procrastinate app whose
one task calls the same no-op procedure as the jobctl jobs. Runs only in the
separate venv (bench/.venv-procrastinate); jobctl never imports it.

    python _procrastinate_app.py schema          # apply procrastinate's schema
    python _procrastinate_app.py defer N QUEUE   # defer N jobs into QUEUE, in one batch

The worker is procrastinate's own CLI: procrastinate --app=_procrastinate_app.app worker ...
Environment: BENCH_PG_DSN (the database), BENCH_POOL_SIZE (connections in
the app's pool; default 5: one per job at concurrency 4, plus one for the
worker's own fetch and finish queries, so no task waits for a connection)."""

from __future__ import annotations

import os
import sys

import procrastinate

app = procrastinate.App(connector=procrastinate.PsycopgConnector(
    conninfo=os.environ["BENCH_PG_DSN"],
    min_size=int(os.environ.get("BENCH_POOL_SIZE", "5")),
    max_size=int(os.environ.get("BENCH_POOL_SIZE", "5"))))


@app.task(name="bench_noop", queue="bench")
async def bench_noop() -> None:
    # a connection from the app's pool, as a task that touches the database
    # would take it; leaving the block commits, as jobctl commits the call
    async with app.connector.pool.connection() as conn:
        await conn.execute("CALL bench_noop()")


def main(argv: list[str]) -> None:
    if argv[:1] == ["schema"] and len(argv) == 1:
        with app.open():
            app.schema_manager.apply_schema()
    elif argv[:1] == ["defer"] and len(argv) == 3:
        with app.open():
            bench_noop.configure(queue=argv[2]).batch_defer(*({} for _ in range(int(argv[1]))))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
