"""Servers the benchmarks start side by side: ``mlflow server`` (SQLite) and ``eventflow server``."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serving(command: list[str], port: int, what: str) -> Iterator[str]:
    """Run a server process until its /health answers; stop it afterwards."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=60)


def mlflow_server(directory: str) -> contextlib.AbstractContextManager[str]:
    port = free_port()
    return serving(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{directory}/mlflow.db", "--artifacts-destination", f"{directory}/artifacts",
         "--workers", "1"],
        port,
        "mlflow server",
    )


def eventflow_server(home: str, *options: str) -> contextlib.AbstractContextManager[str]:
    port = free_port()
    return serving([sys.executable, "-m", "eventflow", "server", "--port", str(port), "--home", home, *options], port, "eventflow server")
