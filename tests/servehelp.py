"""A real `jobctl serve` subprocess for the tests of the HTTP door
(test_serve.py, test_serve_browser.py): started as a user starts it, on a
free loopback port, against the test's database; killed with SIGKILL or
stopped with SIGTERM; its log kept for the assertions."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    def __init__(self, log: Path, *args: str, env: dict[str, str] | None = None, tls: bool = False):
        self.port = free_port()
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.tls = tls
        self.log_path = log
        self.args = args
        self.env = env
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> Served:
        self._fh = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jobctl", "serve", "--port", str(self.port), *self.args],
            stdout=self._fh, stderr=subprocess.STDOUT, env={**os.environ, **(self.env or {})})
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"jobctl serve exited {self.proc.returncode}:\n{self.log()}")
            try:
                # a test's certificate is self-signed: not verified
                if httpx.get(f"{self.url}/healthz", timeout=1, verify=not self.tls).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"jobctl serve did not answer in {timeout} s:\n{self.log()}")
            time.sleep(0.1)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._fh.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc is not None:
            self._fh.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, verify=not self.tls)


def create_token(env, name: str, *scopes: str, procedures: str | None = None,
                 expires: str | None = None) -> str:
    args = ["token", "create", name, *[a for s in scopes for a in ("--scope", s)]]
    if procedures:
        args += ["--procedures", procedures]
    if expires:
        args += ["--expires", expires]
    result = env.cli(*args)
    assert result.exit_code == 0, result.stderr
    token = result.stdout.strip()
    assert "\n" not in token and token.startswith("jct_")
    return token
