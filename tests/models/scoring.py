"""``eventflow models serve`` as a real subprocess on a free port, for tests and benchmarks."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "server"))
from serving import free_port  # noqa: E402


@contextlib.contextmanager
def scoring_server(model_uri: str, *options: str, log_path: str, env: dict[str, str] | None = None) -> Iterator[str]:
    port = free_port()
    log = open(log_path, "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "eventflow", "models", "serve", "-m", model_uri, "--port", str(port), *options],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                log.flush()
                raise RuntimeError("the scoring server exited:\n" + open(log_path).read()[-3000:])
            try:
                if httpx.get(url + "/ping", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the scoring server did not answer /ping within 90 s")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
