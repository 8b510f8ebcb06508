"""One scoring backend: an ``eventflow models serve`` subprocess on an internal port,
and the health check it must pass before it may take traffic.

A subprocess rather than a model loaded in the deployer: a model that crashes, leaks or
hangs takes down only its own process, and the old version keeps serving beside it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


class HealthCheckFailed(Exception):
    """The new version did not start, or did not score its own input example."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def input_example_request(directory: Path) -> bytes | None:
    """The request body that scores the model's input example (MLmodel's
    ``saved_input_example_info``), or None when the model was logged without one."""
    from eventflow.models.descriptor import Model

    info = Model.load(directory).saved_input_example_info or {}
    serving = info.get("serving_input_path")
    if serving and (directory / serving).is_file():
        return (directory / serving).read_bytes()
    example = info.get("artifact_path")
    if example and (directory / example).is_file():
        found = json.loads((directory / example).read_text())
        body = found if info.get("type") == "ndarray" else {"dataframe_split": found}
        return json.dumps(body).encode()
    return None


class Backend:
    """``eventflow models serve -m models:/NAME/VERSION`` on 127.0.0.1:<free port>."""

    def __init__(self, name: str, version: str, tracking_uri: str):
        self.name = name
        self.version = version
        self.tracking_uri = tracking_uri
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.model_uri = f"models:/{name}/{version}"
        self.inflight = 0  # requests the proxy is forwarding to it (guarded by the proxy's lock)
        self._output = tempfile.NamedTemporaryFile(prefix=f"eventflow-backend-{name}-{version}-", suffix=".log", delete=False)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "eventflow", "models", "serve", "-m", self.model_uri, "--port", str(self.port),
             "--tracking-uri", self.tracking_uri],
            stdout=self._output, stderr=subprocess.STDOUT, env={**os.environ, "EVENTFLOW_TRACKING_URI": self.tracking_uri},
        )

    def output_tail(self, chars: int = 1500) -> str:
        try:
            return Path(self._output.name).read_text(errors="replace")[-chars:].strip()
        except OSError:
            return ""

    def wait_ready(self, timeout: float) -> None:
        """Until GET /ping answers 200; HealthCheckFailed when the process exits or time runs out."""
        assert self.process is not None, "start() first"
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2) as http:
            while True:
                if self.process.poll() is not None:
                    raise HealthCheckFailed(f"{self.model_uri} exited with status {self.process.returncode}: {self.output_tail()}")
                try:
                    if http.get(self.url + "/ping").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise HealthCheckFailed(f"{self.model_uri} did not answer /ping within {timeout:.0f} s")
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._output.close()
        Path(self._output.name).unlink(missing_ok=True)


def check_scores(url: str, example: bytes | None, what: str) -> None:
    """POST the input example to ``url``/invocations; HealthCheckFailed unless it is a 200
    with predictions. Without an example, /ping answering is all that can be checked."""
    if example is None:
        return
    try:
        answer = httpx.post(url + "/invocations", content=example, headers={"content-type": "application/json"}, timeout=30)
    except httpx.HTTPError as error:
        raise HealthCheckFailed(f"{what} did not answer its input example: {error}") from None
    if answer.status_code != 200 or "predictions" not in answer.text:
        raise HealthCheckFailed(f"{what} failed its input example: HTTP {answer.status_code} {answer.text[:300]}")
