"""Fixtures of the OpenLineage consumer tests: the OpenLineage JSON schema (see
openlineage_support.py for where it is read from), a real HTTP backend that checks what
it is sent against it, and the log to run on (embedded, or Kafka)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from openlineage_support import SPEC_CACHE, SPEC_ENV, Backend, Receiver, RequiredFields, Schema  # noqa: E402


@pytest.fixture(scope="session")
def openlineage_schema() -> Schema | RequiredFields:
    """The spec's JSON schema where it is given, else the required fields and formats."""
    root = Path(os.environ.get(SPEC_ENV) or SPEC_CACHE).expanduser()
    if not (root / "OpenLineage.json").is_file():
        print(f"\nOpenLineage: no JSON schema at {root} (set {SPEC_ENV}; no registry ships it): "
              "checking the required fields and formats only", file=sys.stderr)
        return RequiredFields()
    return Schema(root)


@pytest.fixture
def receiver(openlineage_schema) -> Iterator[Receiver]:
    r = Receiver(openlineage_schema)
    yield r
    r.close()


@pytest.fixture(params=["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
def backend(request, tmp_path, monkeypatch) -> Iterator[Backend]:
    import eventflow
    from eventflow.config import Home

    home = tmp_path / "home"
    monkeypatch.setenv("EVENTFLOW_HOME", str(home))
    monkeypatch.setenv("EVENTFLOW_CAPTURE_ENV", "false")
    if request.param == "kafka":
        uri = "kafka://" + request.getfixturevalue("kafka_bootstrap")
        found = Backend(uri, uri, f"sqlite:///{home / 'kafka-views.db'}")
    else:
        found = Backend(str(home), str(Home.resolve(str(home)).log_dir), Home.resolve(str(home)).views_url)
    eventflow.set_tracking_uri(found.tracking_uri)
    yield found
    while eventflow.active_run():
        eventflow.end_run()
    eventflow.set_tracking_uri(None)
