"""Helpers of the OpenLineage consumer tests: the OpenLineage JSON schema, a real HTTP
receiver that validates what it is sent against it, and polling.

The schema is the OpenLineage project's own ``OpenLineage.json`` and its facet schemas
(``facets/*.json``), read at test time from ``$EVENTFLOW_OPENLINEAGE_SPEC`` or the cache
``~/.cache/eventflow/openlineage-spec`` (the README's OpenLineage section says how to fill it);
it is not kept in this repository, and no package registry ships it. Without it the
events are checked by ``RequiredFields`` instead: the core fields the spec requires, with
their formats (a UUID run id, a URI producer, an ISO 8601 time, the spec's schema URLs),
and each facet's ``_producer`` and ``_schemaURL`` — not the facets' own fields. ``full``
says which check ran; the tests print it.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

SPEC_ENV = "EVENTFLOW_OPENLINEAGE_SPEC"
SPEC_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "eventflow" / "openlineage-spec"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


class RequiredFields:
    """The check without the spec: the fields every OpenLineage run event and facet must
    have, in the formats the spec gives them (see the module's docstring)."""

    full = False
    core = "https://openlineage.io/spec/2-0-2/OpenLineage.json"

    def errors(self, event: dict[str, Any]) -> list[str]:
        import uuid
        from datetime import datetime
        from urllib.parse import urlparse

        found = []
        if event.get("eventType") not in ("START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"):
            found.append(f"eventType {event.get('eventType')!r} is not one of the spec's")
        try:
            datetime.fromisoformat(str(event.get("eventTime")).replace("Z", "+00:00"))
        except ValueError:
            found.append(f"eventTime {event.get('eventTime')!r} is not an ISO 8601 date-time")
        if not urlparse(str(event.get("producer", ""))).scheme:
            found.append(f"producer {event.get('producer')!r} is not a URI")
        if not str(event.get("schemaURL", "")).startswith("https://openlineage.io/spec/") or not str(
                event.get("schemaURL", "")).endswith("#/$defs/RunEvent"):
            found.append(f"schemaURL {event.get('schemaURL')!r} is not the spec's RunEvent")
        try:
            if str(uuid.UUID(event["run"]["runId"])) != event["run"]["runId"]:
                raise ValueError
        except (KeyError, TypeError, ValueError):
            found.append(f"run.runId {event.get('run', {}).get('runId')!r} is not a UUID")
        job = event.get("job") or {}
        if not (isinstance(job.get("namespace"), str) and isinstance(job.get("name"), str)):
            found.append("job needs a namespace and a name")
        for side in ("inputs", "outputs"):
            for i, dataset in enumerate(event.get(side) or ()):
                if not (isinstance(dataset.get("namespace"), str) and isinstance(dataset.get("name"), str)):
                    found.append(f"{side}[{i}] needs a namespace and a name")
        for where, facet in _facets(event):
            if not urlparse(str(facet.get("_producer", ""))).scheme:
                found.append(f"{where}: _producer {facet.get('_producer')!r} is not a URI")
            if not str(facet.get("_schemaURL", "")).startswith("https://openlineage.io/spec/"):
                found.append(f"{where}: _schemaURL {facet.get('_schemaURL')!r} is none of the spec's schemas")
        return found

    def check(self, event: dict[str, Any]) -> None:
        errors = self.errors(event)
        assert not errors, f"not a valid OpenLineage run event: {errors}\n{json.dumps(event, indent=1)}"


class Schema:
    """Validates a run event against the RunEvent schema, and each facet in it against the
    schema its ``_schemaURL`` names (which must be one of the spec's)."""

    def __init__(self, root: Path):
        from jsonschema import Draft202012Validator
        from referencing import Registry, Resource

        self.full = True
        documents = [json.loads((root / "OpenLineage.json").read_text())]
        documents += [json.loads(p.read_text()) for p in sorted((root / "facets").glob("*.json"))]
        self.ids = {d["$id"] for d in documents}
        self.core = documents[0]["$id"]
        registry = Registry().with_resources([(d["$id"], Resource.from_contents(d)) for d in documents])
        self._make = lambda ref: Draft202012Validator({"$ref": ref}, registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER)
        self.run_event = self._make(f"{self.core}#/$defs/RunEvent")

    def errors(self, event: dict[str, Any]) -> list[str]:
        found = [f"{list(e.absolute_path)}: {e.message}" for e in self.run_event.iter_errors(event)]
        if event.get("schemaURL") != f"{self.core}#/$defs/RunEvent":
            found.append(f"schemaURL {event.get('schemaURL')!r} is not the spec's RunEvent")
        for where, facet in _facets(event):
            url = facet.get("_schemaURL", "")
            if url.split("#")[0] not in self.ids:
                found.append(f"{where}: _schemaURL {url!r} is none of the spec's schemas")
                continue
            found += [f"{where}: {e.message}" for e in self._make(url).iter_errors(facet)]
        return found

    def check(self, event: dict[str, Any]) -> None:
        errors = self.errors(event)
        assert not errors, f"not a valid OpenLineage run event: {errors}\n{json.dumps(event, indent=1)}"


def _facets(event: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, facet in (event.get("run", {}).get("facets") or {}).items():
        yield f"run.facets.{name}", facet
    for name, facet in (event.get("job", {}).get("facets") or {}).items():
        yield f"job.facets.{name}", facet
    for side in ("inputs", "outputs"):
        for i, dataset in enumerate(event.get(side) or ()):
            for group in ("facets", "inputFacets", "outputFacets"):
                for name, facet in (dataset.get(group) or {}).items():
                    yield f"{side}[{i}].{group}.{name}", facet


class Receiver:
    """An OpenLineage backend in a thread: takes POSTed run events, answering
    ``refuse_status`` (503: a backend that is down) to the first ``refuse`` of them, and
    records the ones it took."""

    def __init__(self, schema: Schema):
        self.schema = schema
        self.events: list[dict[str, Any]] = []
        self.invalid: list[str] = []
        self.refuse = 0
        self.refuse_status = 503
        self.refused = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                with receiver._lock:
                    down = receiver.refused < receiver.refuse
                    if down:
                        receiver.refused += 1
                    else:
                        receiver.invalid += receiver.schema.errors(body)
                        receiver.events.append(body)
                self.send_response(receiver.refuse_status if down else 201)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def of(self, run_uuid: str) -> list[str]:
        """The eventTypes received for one run, in order."""
        with self._lock:
            return [e["eventType"] for e in self.events if e["run"]["runId"] == run_uuid]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 90.0) -> Any:
    """Poll ``condition`` until it is true (returned), or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    pause = 0.02
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(pause)
        pause = min(pause * 2, 0.25)


@dataclass(frozen=True)
class Backend:
    tracking_uri: str  # what the SDK logs to
    log_uri: str  # what the consumer reads
    views_url: str  # the views the consumer keeps its state in
