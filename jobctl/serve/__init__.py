"""`jobctl serve`: the seed's HTTP contract over the same library as the
command line (jobctl.api), Bearer tokens (jobctl.tokens), a read-only web
page and Prometheus metrics. Imported only by `jobctl serve`: Starlette,
uvicorn and prometheus_client (the `serve` extra) load nowhere else."""
