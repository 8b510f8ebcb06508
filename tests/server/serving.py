"""A real ``eventflow server`` process on a free port, for tests that talk HTTP to it.

Import the `server` fixture (or `running_server`) from here in a test module."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from eventflow.events import now_ms


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_process(command: list[str], port: int, probe: str, log_path: str, *, what: str,
                    env: dict[str, str] | None = None, timeout: float = 60, cwd: str | None = None) -> Iterator[str]:
    """Run ``command`` (a server on ``port``) until GET ``probe`` answers 200; stop it afterwards.
    Its output goes to ``log_path``, whose tail is shown if it exits early."""
    log = open(log_path, "w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, cwd=cwd)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                log.flush()
                raise RuntimeError(f"the {what} exited:\n" + open(log_path).read()[-3000:])
            try:
                if httpx.get(url + probe, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the {what} did not answer {probe} within {timeout:.0f} s")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def running_server(home, *options: str, env: dict[str, str] | None = None,
                   cwd: str | None = None) -> contextlib.AbstractContextManager[str]:
    """``eventflow server`` on a free port with its home in ``home`` (working in ``cwd``)."""
    port = free_port()
    os.makedirs(home, exist_ok=True)
    command = [sys.executable, "-m", "eventflow", "server", "--port", str(port), "--home", str(home), *options]
    return running_process(command, port, "/health", os.path.join(home, "server.out"), what="server", env=env, cwd=cwd)


def call(url: str, method: str, path: str, *, auth: tuple[str, str] | None = None, **body: Any) -> tuple[int, Any]:
    """An MLflow REST call (``path`` after /api/2.0/mlflow/): its status and JSON answer."""
    answer = httpx.request(method, f"{url}/api/2.0/mlflow/{path}", auth=auth, timeout=60,
                           **({"params": body} if method == "GET" else {"json": body}))
    return answer.status_code, answer.json()


def ok(url: str, method: str, path: str, *, auth: tuple[str, str] | None = None, **body: Any) -> dict[str, Any]:
    status, found = call(url, method, path, auth=auth, **body)
    assert status == 200, found
    return found


def wait_for(condition, what: str, timeout: float = 90.0):
    """``condition()``'s first truthy value, polled every 0.1 s for up to ``timeout`` seconds
    (generous: a loaded CI machine is slow, and a condition met early returns at once)."""
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def next_ms(after: int) -> None:
    """Wait until the clock passed ``after``, so the next change is stamped later than a snapshot."""
    deadline = time.monotonic() + 5
    while now_ms() <= after:
        assert time.monotonic() < deadline


def kafka_postgres_options(request: pytest.FixtureRequest, prefix: str) -> list[str]:
    """``eventflow server`` options for the session's Kafka broker and a fresh database."""
    database = request.getfixturevalue("new_postgres_database")(prefix)
    return ["--kafka", request.getfixturevalue("kafka_bootstrap"), "--db", database]


@pytest.fixture
def server(tmp_path) -> Iterator[str]:
    """A server on the embedded default, in a fresh home."""
    with running_server(tmp_path / "server-home") as url:
        yield url
