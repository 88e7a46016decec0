"""`jobctl serve` under load: N concurrent HTTP clients, each submitting
jobs (POST /procedure/async) into a queue that a `jobctl worker` pool
serves, and reading each job back (GET /jobs/{id}); requests/s and p50/p95
latency for submit and for read, beside the CLI's per-job submit cost
(`jobctl submit` as a process, the same queue).

Bounded: --clients x --jobs requests of each kind, loopback only.

    python bench/serve_load.py                      # SQLite
    python bench/serve_load.py --backend postgresql --clients 16 --jobs 50
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

import httpx
from _common import jobctl_cmd, pg_database, scratch_env

QUEUE = "bench"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _p(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def _line(what: str, lat: list[float], wall: float) -> str:
    return (f"{what:<28} {len(lat) / wall:8.1f} req/s   p50 {statistics.median(lat) * 1000:7.1f} ms"
            f"   p95 {_p(lat, 0.95) * 1000:7.1f} ms   ({len(lat)} requests)")


def run(env: dict[str, str], clients: int, jobs: int, concurrency: int) -> None:
    cmd = jobctl_cmd()
    subprocess.run(cmd + ["db", "init", "--examples"], env=env, check=True, capture_output=True)
    subprocess.run(cmd + ["queue", "set", QUEUE, "--max-running", str(concurrency)], env=env,
                   check=True, capture_output=True)
    token = subprocess.run(cmd + ["token", "create", "bench", "--scope", "submit", "--scope", "read"],
                           env=env, check=True, capture_output=True, text=True).stdout.strip()
    pool = subprocess.Popen(cmd + ["worker", "--queue", QUEUE, "--concurrency", str(concurrency)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port = _free_port()
    server = subprocess.Popen(cmd + ["serve", "--port", str(port), "--log-level", "warning"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("jobctl serve did not start")
            time.sleep(0.1)
        time.sleep(1.0)  # the pool registers itself: submit then leaves the queue to it
        submit_lat: list[float] = []
        read_lat: list[float] = []
        ids: list[str] = []
        lock = threading.Lock()
        errors: list[str] = []

        def client(n: int) -> None:
            mine_s, mine_r, mine_ids = [], [], []
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                              timeout=60) as http:
                for i in range(jobs):
                    t0 = time.perf_counter()
                    r = http.post("/procedure/async", json={
                        "name": "SUMA_SIMPLE", "queue": QUEUE,
                        "params": [{"name": "vA", "value": n * 1000 + i}]})
                    mine_s.append(time.perf_counter() - t0)
                    if r.status_code != 202:
                        errors.append(r.text)
                        continue
                    job_id = r.json()["job_id"]
                    mine_ids.append(job_id)
                    t0 = time.perf_counter()
                    r = http.get(f"/jobs/{job_id}")
                    mine_r.append(time.perf_counter() - t0)
                    if r.status_code != 200:
                        errors.append(r.text)
            with lock:
                submit_lat.extend(mine_s)
                read_lat.extend(mine_r)
                ids.extend(mine_ids)

        threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        # every job completed, read back over HTTP (bounded wait)
        deadline = time.monotonic() + 120
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as http:
            pending = list(ids)
            while pending and time.monotonic() < deadline:
                pending = [i for i in pending if http.get(f"/jobs/{i}").json()["status"] != "completed"]
                time.sleep(0.2)
        drained = time.perf_counter() - t0
        # the CLI's per-job submit cost, into the same queue
        cli = []
        for i in range(15):
            c0 = time.perf_counter()
            subprocess.run(cmd + ["submit", "SUMA_SIMPLE", "-p", f"vA={i}", "-Q", QUEUE], env=env,
                           check=True, capture_output=True)
            cli.append(time.perf_counter() - c0)
        print(f"{clients} clients x {jobs} jobs, pool --concurrency {concurrency}, "
              f"{env['JOBCTL_DSN'].split(':', 1)[0]}")
        print(_line("HTTP submit (mixed load)", submit_lat, wall))
        print(_line("HTTP read   (mixed load)", read_lat, wall))
        print(f"{'all requests':<28} {(len(submit_lat) + len(read_lat)) / wall:8.1f} req/s")
        print(f"{'all jobs completed after':<28} {drained:8.2f} s   "
              f"({len(ids) - len(pending)}/{len(ids)} completed, {len(errors)} errors)")
        print(f"{'CLI jobctl submit (process)':<28} {'':8}         p50 {statistics.median(cli) * 1000:7.1f} ms"
              f"   p95 {_p(cli, 0.95) * 1000:7.1f} ms   (15 runs, one at a time)")
        if errors:
            print("first error:", errors[0])
    finally:
        for proc in (server, pool):
            proc.send_signal(signal.SIGTERM)
        for proc in (server, pool):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=25, help="jobs per client")
    parser.add_argument("--concurrency", type=int, default=4, help="the pool's --concurrency")
    args = parser.parse_args()
    if not (1 <= args.clients <= 64 and 1 <= args.jobs <= 1000):
        sys.exit("--clients 1..64, --jobs 1..1000")
    env = scratch_env()
    if args.backend == "postgresql":
        with pg_database(env):
            run(env, args.clients, args.jobs, args.concurrency)
    else:
        run(env, args.clients, args.jobs, args.concurrency)


if __name__ == "__main__":
    main()
