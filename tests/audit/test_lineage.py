"""Lineage from real events: datasets → runs (commit, reruns, children) → logged model →
model version → alias, walked upstream and downstream, over the views and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from eventflow import commands as tc
from eventflow.audit.lineage import lineage
from eventflow.config import Home
from eventflow.consumers.base import ConsumerLoop
from eventflow.consumers.projector import Projector
from eventflow.log import open_log
from eventflow.log.event_log import EventLog
from eventflow.registry import commands as rc
from eventflow.validation import InvalidInput
from eventflow.views.db import open_views

COMMIT = "1a2b3c4d5e6f708192a3b4c5d6e7f80911223344"


def _dataset(name: str, digest: str) -> dict:
    return {"dataset": {"name": name, "digest": digest, "source_type": "local", "source": f"file:///data/{name}.csv"}, "tags": []}


def _deployment(target: str, name: str, version: str) -> list:
    """A deployment as the deployer records it (consumers/deployer.py): started, then
    succeeded, correlated by the started event's id."""
    from eventflow.events import Event, new_event_id

    payload = {"target": target, "model_uri": f"models:/{name}/{version}", "name": name, "version": version,
               "previous_version": None, "endpoint": f"http://127.0.0.1:{target.rpartition(':')[2]}"}
    first = new_event_id()
    started = Event("deployment.started", payload, event_id=first, actor="deployer", correlation_id=first)
    return [started, Event("deployment.succeeded", payload, actor="deployer", correlation_id=started.event_id,
                           causation_id=started.event_id)]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    root = tmp_path_factory.mktemp("lineage")
    home = Home.resolve(str(root / "home"))
    log = open_log(str(home.log_dir))
    exp, run, rerun, child, model_id = "1", uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex, tc.new_model_id()
    events = [
        tc.create_experiment(exp, "churn-exp", str(root / "artifacts")),
        tc.create_run(run, exp, run_name="train", user_id="ann", artifact_uri=f"{root}/a/{run}",
                      tags={"mlflow.source.git.commit": COMMIT, "mlflow.project.entryPoint": "main"}),
        tc.log_params(run, {"lr": "0.1"}),
        tc.log_inputs(run, [_dataset("train", "abc123"), _dataset("eval", "def456")]),
        tc.create_logged_model(model_id, exp, "churn-model", f"{root}/m/{model_id}", source_run_id=run),
        tc.end_run(run),
        tc.create_run(rerun, exp, run_name="train-again", user_id="ann", artifact_uri=f"{root}/a/{rerun}",
                      tags={"eventflow.rerun_of": run}),
        tc.create_run(child, exp, run_name="fold-1", user_id="ann", artifact_uri=f"{root}/a/{child}", parent_run_id=run),
        rc.create_registered_model("churn"),
        rc.create_model_version("churn", "1", f"models:/{model_id}", run_id=run, model_id=model_id),
        rc.set_alias("churn", "production", "1"),
        *_deployment("churn@production:8080", "churn", "1"),
    ]
    EventLog(log).append_many(events)
    engine = open_views(home.views_url)
    ConsumerLoop(log, Projector(engine), join_group=False).catch_up(timeout=120)
    log.close()
    yield {"home": str(root / "home"), "engine": engine, "run": run, "rerun": rerun, "child": child, "model_id": model_id}
    engine.dispose()


def _ids(graph):
    return {n["id"] for n in graph["nodes"]}


def test_upstream_from_an_alias_reaches_the_dataset_and_the_commit(home):
    with home["engine"].connect() as c:
        graph = lineage(c, "models:/churn@production", direction="upstream")
    assert graph["root"] == "alias:churn@production"
    run = f"run:{home['run']}"
    assert {"model_version:churn/1", f"logged_model:{home['model_id']}", run, "dataset:train@abc123",
            "dataset:eval@def456", f"commit:{COMMIT}"} <= _ids(graph)
    edges = {(e["source"], e["target"], e["type"]) for e in graph["edges"]}
    assert ("model_version:churn/1", "alias:churn@production", "alias") in edges
    assert (f"logged_model:{home['model_id']}", "model_version:churn/1", "registered") in edges
    assert (run, f"logged_model:{home['model_id']}", "produced") in edges
    assert ("dataset:train@abc123", run, "input") in edges
    assert (f"commit:{COMMIT}", run, "source") in edges
    # upstream only: not the rerun or the child
    assert f"run:{home['rerun']}" not in _ids(graph) and f"run:{home['child']}" not in _ids(graph)
    nodes = {n["id"]: n for n in graph["nodes"]}
    assert nodes[run]["attributes"]["commit"] == COMMIT and nodes[run]["attributes"]["entry_point"] == "main"
    assert nodes[run]["attributes"]["params"] == {"lr": "0.1"}
    assert nodes["dataset:train@abc123"]["attributes"]["source"] == "file:///data/train.csv"
    assert all(set(n) == {"id", "type", "label", "uri", "attributes"} for n in graph["nodes"])


def test_downstream_from_a_dataset_lists_the_version_the_alias_the_rerun_and_the_child(home):
    with home["engine"].connect() as c:
        graph = lineage(c, "datasets:/train", direction="downstream")
    assert graph["root"] == "dataset:train@abc123"
    assert {"model_version:churn/1", "alias:churn@production", f"run:{home['rerun']}", f"run:{home['child']}"} <= _ids(graph)
    edges = {(e["source"], e["target"], e["type"]) for e in graph["edges"]}
    assert (f"run:{home['run']}", f"run:{home['rerun']}", "rerun") in edges
    assert (f"run:{home['run']}", f"run:{home['child']}", "child") in edges
    assert f"commit:{COMMIT}" not in _ids(graph) and "dataset:eval@def456" not in _ids(graph)


def test_a_deployment_is_downstream_of_its_data_and_upstream_reaches_the_run(home):
    with home["engine"].connect() as c:
        down = lineage(c, "datasets:/train", direction="downstream")
        up = lineage(c, "deployments:/churn@production:8080", direction="upstream")
    assert "deployment:churn@production:8080" in _ids(down)
    edges = {(e["source"], e["target"], e["type"]) for e in down["edges"]}
    assert ("alias:churn@production", "deployment:churn@production:8080", "deployed") in edges
    assert up["root"] == "deployment:churn@production:8080"
    assert {"alias:churn@production", "model_version:churn/1", f"run:{home['run']}", "dataset:train@abc123"} <= _ids(up)
    node = next(n for n in up["nodes"] if n["id"] == up["root"])
    assert node["uri"] == "deployments:/churn@production:8080"


def test_both_directions_and_depth_limits(home):
    with home["engine"].connect() as c:
        one = lineage(c, f"runs:/{home['run']}", depth=1)
        bare = lineage(c, home["run"], direction="both", depth=1)
        two = lineage(c, "models:/churn/1", direction="upstream", depth=2)
    assert _ids(one) == _ids(bare)
    assert {"dataset:train@abc123", f"commit:{COMMIT}", f"logged_model:{home['model_id']}", f"run:{home['rerun']}"} <= _ids(one)
    assert "model_version:churn/1" not in _ids(one)
    assert f"run:{home['run']}" in _ids(two) and "dataset:train@abc123" not in _ids(two)


@pytest.mark.parametrize("uri, message", [
    ("models:/churn@staging", "alias 'staging'"), ("models:/nope/3", "'nope'"), ("runs:/deadbeef", "run 'deadbeef'"),
    ("datasets:/missing", "dataset 'missing'"), ("deployments:/churn@production:9999", "deployment"), ("", "uri"),
])
def test_unknown_things_are_named(home, uri, message):
    with home["engine"].connect() as c, pytest.raises(InvalidInput) as error:
        lineage(c, uri)
    assert message in error.value.message


def test_a_bad_direction_is_named(home):
    with home["engine"].connect() as c, pytest.raises(InvalidInput, match="direction"):
        lineage(c, "models:/churn@production", direction="sideways")


def test_the_cli_prints_the_chain_and_json(home):
    done = subprocess.run([sys.executable, "-m", "eventflow", "lineage", "models:/churn@production", "--direction", "upstream",
                           "--tracking-uri", home["home"]], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "alias churn@production"
    assert any("churn version 1" in line for line in lines)
    assert any(f"run {home['run']} (commit {COMMIT[:12]}…, entry point main)" in line for line in lines)
    assert any("dataset train@abc123" in line for line in lines)
    done = subprocess.run([sys.executable, "-m", "eventflow", "lineage", "datasets:/train@abc123", "--json", "--depth", "2",
                           "--tracking-uri", home["home"]], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["root"] == "dataset:train@abc123"
    bad = subprocess.run([sys.executable, "-m", "eventflow", "lineage", "models:/churn@nope", "--tracking-uri", home["home"]],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "RESOURCE_DOES_NOT_EXIST" in bad.stderr


# Over REST, on a real server (embedded, and Kafka + PostgreSQL): the views catch up
# asynchronously, so the test polls for the graph rather than sleeping a fixed time.
from test_audit_and_as_of import ok, server  # noqa: E402,F401  (the fixture: both backends)


def _poll(url, params, until, timeout=60.0):
    import time

    import httpx

    deadline = time.monotonic() + timeout
    while True:
        got = httpx.get(f"{url}/api/2.0/eventflow/lineage", params=params, timeout=60)
        if got.status_code == 200 and until(got.json()):
            return got.json()
        assert time.monotonic() < deadline, got.text
        time.sleep(0.2)


def test_lineage_over_rest(server):
    import httpx

    url, _, _ = server
    exp = ok(url, "POST", "experiments/create", name="lineage-" + uuid.uuid4().hex[:8])["experiment_id"]
    run = ok(url, "POST", "runs/create", experiment_id=exp, tags=[{"key": "mlflow.source.git.commit", "value": COMMIT}])["run"]["info"]["run_id"]
    ok(url, "POST", "runs/log-inputs", run_id=run, datasets=[_dataset("rest-train", "fff000")])
    graph = _poll(url, {"uri": "datasets:/rest-train", "direction": "downstream"}, lambda g: f"run:{run}" in _ids(g))
    assert graph["root"] == "dataset:rest-train@fff000" and graph["lines"][0] == "dataset rest-train@fff000"
    up = _poll(url, {"uri": f"runs:/{run}", "direction": "upstream", "depth": "1"}, lambda g: f"commit:{COMMIT}" in _ids(g))
    assert "dataset:rest-train@fff000" in _ids(up)
    bad = httpx.get(f"{url}/api/2.0/eventflow/lineage", params={"uri": f"runs:/{run}", "direction": "sideways"})
    assert bad.status_code == 400 and bad.json()["error_code"] == "INVALID_PARAMETER_VALUE" and "direction" in bad.json()["message"]
    deep = httpx.get(f"{url}/api/2.0/eventflow/lineage", params={"uri": f"runs:/{run}", "depth": "51"})
    assert deep.status_code == 400 and "depth" in deep.json()["message"]
    missing = httpx.get(f"{url}/api/2.0/eventflow/lineage", params={"uri": "models:/nope@production"})
    assert missing.status_code == 404 and missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
