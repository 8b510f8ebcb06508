"""``eventflow models serve`` as a real subprocess on a free port, for tests and benchmarks."""

from __future__ import annotations

import contextlib
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "server"))
from serving import free_port, running_process  # noqa: E402


def scoring_server(model_uri: str, *options: str, log_path: str, env: dict[str, str] | None = None) -> contextlib.AbstractContextManager[str]:
    port = free_port()
    command = [sys.executable, "-m", "eventflow", "models", "serve", "-m", model_uri, "--port", str(port), *options]
    return running_process(command, port, "/ping", log_path, what="scoring server", env=env, timeout=90)
