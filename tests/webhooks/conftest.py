"""An in-process eventflow runtime (projector + webhook dispatcher) on the embedded log
or on Kafka, with the webhook settings a test needs: 127.0.0.0/8 allowed (the receivers
live there), fast retries, short timeouts, and a consumer group of its own."""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "server"))  # serving.py

from eventflow import commands  # noqa: E402
from eventflow.log import open_log  # noqa: E402
from eventflow.server.runtime import Runtime  # noqa: E402

FAST = {
    "EVENTFLOW_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8",
    "EVENTFLOW_WEBHOOK_FIRST_RETRY": "0.05",
    "EVENTFLOW_WEBHOOK_MAX_RETRY_DELAY": "0.4",
    "EVENTFLOW_WEBHOOK_CONNECT_TIMEOUT": "2",
    "EVENTFLOW_WEBHOOK_TIMEOUT": "3",
    "EVENTFLOW_WEBHOOK_LEASE": "6",
    "EVENTFLOW_WEBHOOK_POLL_INTERVAL": "0.05",
}


@pytest.fixture(params=["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
def log_uri(request, tmp_path) -> str:
    if request.param == "kafka":
        return "kafka://" + request.getfixturevalue("kafka_bootstrap")
    return str(tmp_path / "log")


@contextlib.contextmanager
def running_runtime(log_uri: str, home: Path, env: dict[str, str], views_url: str | None = None) -> Iterator[Runtime]:
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


@pytest.fixture
def webhook_env() -> dict[str, str]:
    """Settings for the runtime; a test may change them before asking for ``runtime``."""
    return {**FAST, "EVENTFLOW_WEBHOOK_GROUP": f"webhooks-{uuid.uuid4().hex[:8]}"}


@pytest.fixture
def runtime(log_uri, tmp_path, webhook_env) -> Iterator[Runtime]:
    with running_runtime(log_uri, tmp_path, webhook_env) as rt:
        yield rt


def new_run(runtime: Runtime, experiment_id: str = "0") -> str:
    run_id = commands.new_run_id()
    runtime.write([commands.create_run(run_id, experiment_id, run_name=f"r-{run_id[:6]}", user_id="t", artifact_uri="file:///tmp")])
    return run_id
