"""Helpers of the webhook tests: an in-process eventflow runtime (projector + webhook
dispatcher) with the settings a test needs — 127.0.0.0/8 allowed (the receivers live
there), fast retries, short timeouts, a consumer group of its own."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from eventflow import commands
from eventflow.log import open_log
from eventflow.server.runtime import Runtime

FAST = {
    "EVENTFLOW_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8",
    "EVENTFLOW_WEBHOOK_FIRST_RETRY": "0.05",
    "EVENTFLOW_WEBHOOK_MAX_RETRY_DELAY": "0.4",
    "EVENTFLOW_WEBHOOK_CONNECT_TIMEOUT": "2",
    "EVENTFLOW_WEBHOOK_TIMEOUT": "3",
    "EVENTFLOW_WEBHOOK_LEASE": "6",
    "EVENTFLOW_WEBHOOK_POLL_INTERVAL": "0.05",
}


@contextlib.contextmanager
def running_runtime(log_uri: str, home: Path, env: dict[str, str], views_url: str | None = None) -> Iterator[Runtime]:
    """A started runtime whose settings come from ``env`` (set only while it reads them)."""
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        views = views_url or f"sqlite:///{home / 'views.db'}"
        runtime = Runtime(open_log(log_uri), views, home / "artifacts", write_timeout=60)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    runtime.start()
    try:
        yield runtime
    finally:
        runtime.stop()


def new_run(runtime: Runtime, experiment_id: str = "0") -> str:
    run_id = commands.new_run_id()
    runtime.write([commands.create_run(run_id, experiment_id, run_name=f"r-{run_id[:6]}", user_id="t", artifact_uri="file:///tmp")])
    return run_id
