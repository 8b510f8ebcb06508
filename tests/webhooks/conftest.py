"""Fixtures of the webhook tests: the log to run on (embedded, or Kafka), the settings,
and an in-process runtime (see webhook_stack)."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator

import pytest

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "server"))  # serving.py

from webhook_stack import FAST, running_runtime  # noqa: E402

from eventflow.server.runtime import Runtime  # noqa: E402


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory) -> Iterator[str]:
    """A broker of the webhook tests' own. They run last, and on the session's broker each
    fresh views database first replays every earlier test's events — on a slow machine for
    longer than the tests wait (the views "did not apply it within 30 s")."""
    given = os.environ.get("EVENTFLOW_KAFKA_BOOTSTRAP", "").strip()
    if given:
        yield given
        return
    from eventflow.dev.kafka import LocalKafka

    broker = LocalKafka(data_dir=tmp_path_factory.mktemp("webhooks-kafka"), stop_timeout=20, quiet=True).start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture(params=["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
def log_uri(request, tmp_path) -> str:
    if request.param == "kafka":
        return "kafka://" + request.getfixturevalue("kafka_bootstrap")
    return str(tmp_path / "log")


@pytest.fixture
def webhook_env() -> dict[str, str]:
    """Settings for the runtime; a test may change them before asking for ``runtime``."""
    return {**FAST, "EVENTFLOW_WEBHOOK_GROUP": f"webhooks-{uuid.uuid4().hex[:8]}"}


@pytest.fixture
def runtime(log_uri, tmp_path, webhook_env) -> Iterator[Runtime]:
    with running_runtime(log_uri, tmp_path, webhook_env) as rt:
        yield rt
