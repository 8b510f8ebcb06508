"""The OpenLineage consumer end to end: runs logged through the SDK (embedded log and
Kafka) come out as OpenLineage run events, to a file and to a real HTTP backend, each
valid against the OpenLineage JSON schema; a restart sends nothing twice; a backend that
is down is retried, nothing skipped."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from openlineage_support import Backend, wait_until

import eventflow
from eventflow import commands as tc
from eventflow.consumers.openlineage import INSTALL_HINT, LineageConsumer, MissingExtra, open_client, require_client, run_uuid
from eventflow.log import open_log
from eventflow.log.event_log import EventLog
from eventflow.registry import commands as rc
from eventflow.views.db import open_views

DIGEST = "d1g35t"


def _dataset(name: str) -> dict[str, Any]:
    schema = json.dumps({"mlflow_colspec": [{"name": "age", "type": "long"}, {"name": "churned", "type": "boolean"}]})
    return {"dataset": {"name": name, "digest": DIGEST, "source_type": "local", "source": f"/data/{name}.csv", "schema": schema},
            "tags": [{"key": "mlflow.data.context", "value": "training"}]}


def log_run(backend: Backend, experiment: str, dataset: str | None = None, fail: bool = False, model: str | None = None) -> str:
    """A run through the SDK; its dataset input (and the logged model it produced, with id
    ``model``) appended to the log between its start and end."""
    experiment_id = eventflow.set_experiment(experiment)["experiment_id"]

    def body() -> str:
        run = eventflow.active_run()
        eventflow.log_param("lr", 0.1)
        eventflow.flush()  # run.created is on the log: the inputs come after it
        events = [tc.log_inputs(run.run_id, [_dataset(dataset)])] if dataset is not None else []
        if model is not None:
            events += [tc.create_logged_model(model, experiment_id, "churn-model", f"file:///models/{model}", source_run_id=run.run_id),
                       tc.log_outputs(run.run_id, [{"model_id": model, "step": 0}])]
        if events:
            with open_log(backend.log_uri) as log:
                EventLog(log).append_many(events)
        if fail:
            raise ValueError("the data was bad")
        return run.run_id

    if not fail:
        with eventflow.start_run(run_name="train"):
            return body()
    with pytest.raises(ValueError), eventflow.start_run(run_name="train") as run:
        body()
    return run.run_id


class Running:
    """A consumer in a thread, until stopped."""

    def __init__(self, backend: Backend, client: Any, group: str):
        self.log = open_log(backend.log_uri)
        self.engine = open_views(backend.views_url)
        self.consumer = LineageConsumer(self.log, self.engine, client, group=group, first_delay=0.05, max_delay=0.3)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.consumer.run, args=(self.stop,), daemon=True)
        self.thread.start()

    def __enter__(self) -> "Running":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "the consumer did not stop"
        self.engine.dispose()
        self.log.close()


def _group() -> str:
    return f"openlineage-{uuid.uuid4().hex[:8]}"


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _types(events: list[dict[str, Any]], run_id: str) -> list[str]:
    return [e["eventType"] for e in events if e["run"]["runId"] == run_uuid(run_id)]


def _of(events: list[dict[str, Any]], run_id: str, kind: str) -> dict[str, Any]:
    return next(e for e in events if e["run"]["runId"] == run_uuid(run_id) and e["eventType"] == kind)


def test_runs_reach_a_file_and_an_http_backend_as_valid_openlineage_events(backend, receiver, openlineage_schema, tmp_path):
    experiment = f"churn-{uuid.uuid4().hex[:6]}"
    model_id = tc.new_model_id()
    good = log_run(backend, experiment, dataset="customers", model=model_id)
    bad = log_run(backend, experiment, fail=True)
    out = tmp_path / "lineage.jsonl"
    to_file = Running(backend, open_client(file=str(out)), _group())
    to_http = Running(backend, open_client(url=receiver.url), _group())
    try:
        for run_id, end in ((good, "COMPLETE"), (bad, "FAIL")):
            wait_until(lambda: _types(_lines(out), run_id) == ["START", end], f"START, {end} of {run_id} in the file")
            wait_until(lambda: receiver.of(run_uuid(run_id)) == ["START", end], f"START, {end} of {run_id} at the backend")
    finally:
        to_file.close()
        to_http.close()
    assert not receiver.invalid
    written = _lines(out)
    for event in written:
        openlineage_schema.check(event)
    for events in (written, receiver.events):
        start, done, failed = _of(events, good, "START"), _of(events, good, "COMPLETE"), _of(events, bad, "FAIL")
        assert start["job"] == done["job"] == {**done["job"], "namespace": "eventflow", "name": experiment}
        assert done["producer"].startswith("urn:eventflow:") and done["schemaURL"].endswith("OpenLineage.json#/$defs/RunEvent")
        assert done["run"]["facets"]["eventflow_run"]["runId"] == good
        (dataset,) = done["inputs"]
        assert (dataset["namespace"], dataset["name"]) == ("file", "/data/customers.csv")
        assert dataset["facets"]["version"]["datasetVersion"] == DIGEST
        assert dataset["facets"]["eventflow_dataset"]["name"] == "customers"
        assert [f["name"] for f in dataset["facets"]["schema"]["fields"]] == ["age", "churned"]
        assert [(o["namespace"], o["name"]) for o in done["outputs"]] == [("eventflow", f"models:/{model_id}")]
        assert failed["run"]["facets"]["errorMessage"]["message"] == "ValueError: the data was bad"
        assert start["eventTime"] <= done["eventTime"]


def test_a_restart_sends_nothing_twice_and_a_down_backend_is_retried(backend, receiver):
    experiment = f"retrain-{uuid.uuid4().hex[:6]}"
    group = _group()
    receiver.refuse = 3  # down for the first three attempts
    first = log_run(backend, experiment, dataset="clicks")
    with Running(backend, open_client(url=receiver.url), group):
        wait_until(lambda: receiver.of(run_uuid(first)) == ["START", "COMPLETE"], "the first run, once the backend is up")
    assert receiver.refused == 3
    second = log_run(backend, experiment, dataset="clicks")
    with Running(backend, open_client(url=receiver.url), group):  # the same consumer, restarted
        wait_until(lambda: receiver.of(run_uuid(second)) == ["START", "COMPLETE"], "the second run after the restart")
    assert receiver.of(run_uuid(first)) == ["START", "COMPLETE"], "the restart sent the first run again"
    assert not receiver.invalid


def test_an_event_the_backend_refuses_is_dead_lettered_and_the_rest_goes_on(backend, receiver):
    from eventflow.consumers.dead_letters import read_dead_letters

    receiver.refuse, receiver.refuse_status = 1, 400  # the first event is refused for good
    group = _group()
    run_id = log_run(backend, f"refused-{uuid.uuid4().hex[:6]}")
    with Running(backend, open_client(url=receiver.url), group):
        wait_until(lambda: "COMPLETE" in receiver.of(run_uuid(run_id)), "the run's end after the refusal")
        with open_log(backend.log_uri) as log:
            letters = wait_until(lambda: [d for d in read_dead_letters(log) if d.group == group], "the refused event's dead letter")
    assert receiver.refused == 1, "a 4xx is not retried"
    (letter,) = letters
    assert "HTTP 400" in letter.reason


def test_a_version_registered_after_the_run_ended_goes_out_as_an_output(backend, receiver):
    experiment = f"reg-{uuid.uuid4().hex[:6]}"
    run_id = log_run(backend, experiment, dataset="orders")
    name = f"churn-{uuid.uuid4().hex[:6]}"
    with Running(backend, open_client(url=receiver.url), _group()):
        wait_until(lambda: receiver.of(run_uuid(run_id)) == ["START", "COMPLETE"], "the run's end")
        with open_log(backend.log_uri) as log:
            EventLog(log).append_many([rc.create_registered_model(name), rc.create_model_version(name, "1", "file:///m", run_id=run_id)])
        wait_until(lambda: receiver.of(run_uuid(run_id)) == ["START", "COMPLETE", "OTHER"], "the version as an OTHER event of the run")
    other = _of(receiver.events, run_id, "OTHER")
    assert [(o["namespace"], o["name"]) for o in other["outputs"]] == [("eventflow", f"models:/{name}/1")]
    assert not receiver.invalid


def test_a_views_rebuild_keeps_what_was_sent(tmp_path, receiver):
    """What the consumer sent is carried into the rebuilt views with its offsets: it
    resumes where it was and sends only what is new."""
    from eventflow.config import Home

    home = Home.resolve(str(tmp_path / "home"))
    backend = Backend(str(home.path), str(home.log_dir), home.views_url)
    group = _group()

    def new_run() -> str:
        run_id = tc.new_run_id()
        with open_log(backend.log_uri) as log:
            EventLog(log).append_many([tc.create_run(run_id, "0", run_name="r", user_id="u", artifact_uri="file:///tmp"), tc.end_run(run_id)])
        return run_id

    first = new_run()
    with Running(backend, open_client(url=receiver.url), group):
        wait_until(lambda: receiver.of(run_uuid(first)) == ["START", "COMPLETE"], "the first run")
    done = subprocess.run([sys.executable, "-m", "eventflow", "views", "rebuild", "--home", str(home.path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "openlineage_state" in done.stdout
    second = new_run()
    with Running(backend, open_client(url=receiver.url), group):
        wait_until(lambda: receiver.of(run_uuid(second)) == ["START", "COMPLETE"], "the run after the rebuild")
    assert receiver.of(run_uuid(first)) == ["START", "COMPLETE"], "the rebuild made the consumer send the first run again"


def test_eventflow_consume_openlineage_writes_the_file(tmp_path, openlineage_schema, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("EVENTFLOW_HOME", str(home))
    monkeypatch.setenv("EVENTFLOW_CAPTURE_ENV", "false")
    eventflow.set_tracking_uri(str(home))
    try:
        with eventflow.start_run(experiment="cli") as run:
            eventflow.log_param("k", 1)
    finally:
        eventflow.set_tracking_uri(None)
    out = tmp_path / "out.jsonl"
    process = subprocess.Popen([sys.executable, "-m", "eventflow", "consume", "openlineage", "--home", str(home), "--file", str(out),
                                "--namespace", "team-a"], stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: _types(_lines(out), run.run_id) == ["START", "COMPLETE"], "the CLI consumer's file")
    finally:
        process.terminate()
        _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    for event in _lines(out):
        openlineage_schema.check(event)
        assert event["job"]["namespace"] == "team-a"


def test_eventflow_server_sends_its_runs_when_told_where(tmp_path, openlineage_schema):
    """EVENTFLOW_OPENLINEAGE_FILE (or _URL) set: the server runs the consumer itself."""
    sys.path.insert(0, str(Path(__file__).parent.parent / "server"))
    from serving import ok, running_server

    out = tmp_path / "server-lineage.jsonl"
    env = {"EVENTFLOW_OPENLINEAGE_FILE": str(out), "EVENTFLOW_OPENLINEAGE_NAMESPACE": "served"}
    with running_server(tmp_path / "home", env=env) as url:
        experiment_id = ok(url, "POST", "experiments/create", name="served-" + uuid.uuid4().hex[:8])["experiment_id"]
        run_id = ok(url, "POST", "runs/create", experiment_id=experiment_id)["run"]["info"]["run_id"]
        ok(url, "POST", "runs/update", run_id=run_id, status="FINISHED", end_time=1_700_000_000_000)
        wait_until(lambda: _types(_lines(out), run_id) == ["START", "COMPLETE"], "the server's lineage file")
    for event in _lines(out):
        openlineage_schema.check(event)
        assert event["job"]["namespace"] == "served"


def test_without_the_client_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "openlineage.client", None)
    with pytest.raises(MissingExtra, match=INSTALL_HINT.replace("[", r"\[").replace("]", r"\]")):
        require_client()


def test_the_schema_check_is_not_vacuous(openlineage_schema):
    """The validator refuses what the spec refuses: a run id that is not a UUID, a facet
    without _producer, a facet whose _schemaURL is none of the spec's."""
    good = {"eventType": "START", "eventTime": "2026-12-02T10:00:00.000Z", "producer": "urn:eventflow:test",
            "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
            "run": {"runId": run_uuid("r")}, "job": {"namespace": "eventflow", "name": "j"}}
    assert openlineage_schema.errors(good) == []
    assert openlineage_schema.errors({**good, "run": {"runId": "0123456789abcdef0123456789abcdef"}})
    assert openlineage_schema.errors({**good, "producer": "eventflow 0.1.0"}), "the producer must be a URI"
    assert openlineage_schema.errors({**good, "eventTime": "yesterday"})
    facet = {"_producer": "urn:eventflow:test", "_schemaURL": "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet"}
    if openlineage_schema.full:  # a facet's own fields are known only to its schema
        assert openlineage_schema.errors({**good, "run": {"runId": run_uuid("r"), "facets": {"errorMessage": {**facet, "message": "m"}}}})
    assert openlineage_schema.errors({**good, "run": {"runId": run_uuid("r"), "facets": {"x": {"_schemaURL": facet["_schemaURL"]}}}})
    assert openlineage_schema.errors({**good, "run": {"runId": run_uuid("r"), "facets": {"x": {**facet, "_schemaURL": "https://example.invalid/X.json"}}}})


def test_the_run_uuid_is_fixed_for_ever():
    assert run_uuid("0123456789abcdef0123456789abcdef") == run_uuid("0123456789abcdef0123456789abcdef")
    assert str(uuid.UUID(run_uuid("x"))) == run_uuid("x") != run_uuid("y")
