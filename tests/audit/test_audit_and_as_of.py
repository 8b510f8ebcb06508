"""Audit and time travel against a real server, on the embedded log and on Kafka +
PostgreSQL: live snapshots taken while a model is promoted, renamed and re-versioned
equal the ``as_of`` answers afterwards, and the history says what happened in words."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import httpx
import pytest
from serving import call, kafka_postgres_options, next_ms, ok, running_server

from eventflow.events import now_ms


@pytest.fixture(scope="module", params=["embedded", "kafka+postgresql"])
def server(request, tmp_path_factory):
    home = tmp_path_factory.mktemp("audit") / "home"
    options = kafka_postgres_options(request, "audit") if request.param == "kafka+postgresql" else []
    with running_server(home, *options) as url:
        yield url, home, request.param


def test_as_of_answers_equal_live_snapshots_and_audit_tells_the_story(server, tmp_path):
    url, home, backend = server
    tag = uuid.uuid4().hex[:6]
    old, new = f"churn-{tag}", f"churn-{tag}-v2"
    experiment_id = ok(url, "POST", "experiments/create", name=f"audit-{tag}")["experiment_id"]
    run_id = ok(url, "POST", "runs/create", experiment_id=experiment_id)["run"]["info"]["run_id"]
    snapshots: list[tuple[int, list[tuple[str, dict, tuple]]]] = []

    def reads(name: str) -> list[tuple[str, dict]]:
        return [
            ("registered-models/get", {"name": name}),
            ("registered-models/alias", {"name": name, "alias": "production"}),
            ("model-versions/get", {"name": name, "version": "1"}),
            ("model-versions/get", {"name": name, "version": "2"}),
            ("model-versions/search", {"filter": f"name = '{name}'"}),
            ("registered-models/search", {"filter": f"name LIKE 'churn-{tag}%'"}),
            ("registered-models/get-latest-versions", {"name": name}),
            ("runs/get", {"run_id": run_id}),
            ("experiments/get", {"experiment_id": experiment_id}),
        ]

    def snapshot(name: str) -> None:
        taken = [(path, params, call(url, "GET", path, **params)) for path, params in reads(name)]
        moment = now_ms()
        # the same reads again: nothing moved while they were taken
        assert [call(url, "GET", path, **params) for path, params, _ in taken] == [answer for _, _, answer in taken]
        snapshots.append((moment, taken))
        next_ms(moment)

    snapshot(old)  # nothing yet: 404s, as_of must say so too
    ok(url, "POST", "runs/log-parameter", run_id=run_id, key="lr", value="0.01")
    ok(url, "POST", "runs/log-batch", run_id=run_id, metrics=[
        {"key": k, "value": float(i), "step": i, "timestamp": 1000 + i} for i in range(50) for k in ("loss", "acc")])
    ok(url, "POST", "registered-models/create", name=old)
    for _ in range(3):
        ok(url, "POST", "model-versions/create", name=old, source=f"runs:/{run_id}/model", run_id=run_id)
    snapshot(old)
    ok(url, "POST", "registered-models/alias", name=old, alias="production", version="1")
    ok(url, "POST", "model-versions/transition-stage", name=old, version="1", stage="Production")
    snapshot(old)
    ok(url, "POST", "registered-models/alias", name=old, alias="production", version="2")
    ok(url, "POST", "runs/set-tag", run_id=run_id, key="note", value="second")
    snapshot(old)
    ok(url, "POST", "registered-models/rename", name=old, new_name=new)
    snapshot(new)
    snapshot(old)  # the old name is gone now: 404 then as well
    ok(url, "POST", "model-versions/create", name=new, source=f"runs:/{run_id}/model", run_id=run_id)
    ok(url, "POST", "model-versions/transition-stage", name=new, version="2", stage="Production")
    ok(url, "POST", "registered-models/alias", name=new, alias="production", version="4")
    ok(url, "POST", "model-versions/transition-stage", name=new, version="4", stage="Production", archive_existing_versions=True)
    ok(url, "POST", "runs/update", run_id=run_id, status="FINISHED", end_time=now_ms())
    snapshot(new)

    for moment, taken in snapshots:
        for as_of in (moment, _iso(moment)):
            for path, params, live in taken:
                assert call(url, "GET", path, **params, as_of=as_of) == live, (path, params, as_of)

    # -- the audit of the model, under its new name, with its old name's history --------------
    answer = httpx.get(f"{url}/api/2.0/eventflow/audit", params={"entity_type": "registered_model", "entity": new}, timeout=60)
    assert answer.status_code == 200, answer.text
    entries = answer.json()["entries"]
    whats = [e["what"] for e in entries]
    assert whats[0] == f"model {old!r} created"
    assert f"model renamed {old!r} → {new!r}" in whats
    assert "alias production: → version 1" in whats
    assert "alias production: version 1 → 2" in whats
    assert "alias production: version 2 → 4" in whats
    assert "version 1: stage None → Production" in whats
    assert "version 4: stage None → Production, 2 other versions archived" in whats
    assert [e["time"] for e in entries] == sorted(e["time"] for e in entries)
    first = entries[0]
    assert first["stamped_by"] == "server" and first["authenticated"] is False and first["trust"] == "claimed (not authenticated)"
    assert first["position"].startswith("eventflow.models[") and first["source"]["client_address"] == "127.0.0.1"
    reverse = httpx.get(f"{url}/api/2.0/eventflow/audit", params={"target": f"models:/{new}", "reverse": "true"}, timeout=60).json()["entries"]
    assert [e["event_id"] for e in reverse] == [e["event_id"] for e in reversed(entries)]

    # -- a version's, an alias's and the run's history ------------------------------------------
    version = httpx.get(f"{url}/api/2.0/eventflow/audit", params={"target": f"models:/{new}/2"}).json()["entries"]
    assert [e["what"] for e in version if e["event_type"].startswith("model_version")] == [
        f"version 2 created from run {run_id} (source runs:/{run_id}/model)", "alias production: version 1 → 2",
        "version 2: stage None → Production", "version 2: stage Production → Archived"]
    run = httpx.get(f"{url}/api/2.0/eventflow/audit", params={"entity_type": "run", "entity": run_id}).json()["entries"]
    run_whats = [e["what"] for e in run]
    assert "param lr = 0.01" in run_whats and "tag note = second" in run_whats and "run finished" in run_whats
    [points] = [e for e in run if e["event_type"] == "run.metrics_logged"]
    assert points["points"] == 100 and points["metrics"] == ["acc", "loss"]
    assert points["what"].startswith("logged 100 points of 2 metrics (acc, loss) between ")
    listed = httpx.get(f"{url}/api/2.0/eventflow/audit", params={"entity_type": "run", "entity": run_id, "points": "true"}).json()["entries"]
    assert "logged 100 points of acc, loss" in [e["what"] for e in listed]
    paged, token = [], None
    while True:
        page = httpx.get(f"{url}/api/2.0/eventflow/audit", params={"target": f"models:/{new}", "max_results": 3, **({"page_token": token} if token else {})}).json()
        paged += page["entries"]
        token = page.get("next_page_token")
        if not token:
            break
    assert [e["event_id"] for e in paged] == [e["event_id"] for e in entries]
    since = entries[len(entries) // 2]["time"]
    later = httpx.get(f"{url}/api/2.0/eventflow/audit", params={"target": f"models:/{new}", "since": since}).json()["entries"]
    assert later and all(e["time"] >= since for e in later) and len(later) < len(entries)

    # -- the CLI, over REST --------------------------------------------------------------------
    env = {**os.environ, "EVENTFLOW_TRACKING_URI": url}
    shown = subprocess.run([sys.executable, "-m", "eventflow", "audit", f"models:/{new}@production"], capture_output=True, text=True, env=env, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "alias production: version 1 → 2" in shown.stdout and "[claimed (not authenticated)]" in shown.stdout
    moves = subprocess.run([sys.executable, "-m", "eventflow", "registry", "alias-history", new, "production", "--json"],
                           capture_output=True, text=True, env=env, timeout=120)
    assert moves.returncode == 0, moves.stderr
    spans = [json.loads(line) for line in moves.stdout.splitlines()]
    assert [s["version"] for s in spans] == [1, 2, 4]
    assert spans[0]["until"] == spans[1]["since"] and spans[-1]["until"] is None


def _iso(ms: int) -> str:
    from eventflow.audit.history import iso

    return iso(ms)


def test_bad_as_of_and_targets_are_refused_clearly(server):
    url, _, _ = server
    status, answer = call(url, "GET", "registered-models/get", name="x", as_of="yesterday")
    assert status == 400 and "as_of" in answer["message"] and "ISO 8601" in answer["message"]
    bad = httpx.get(f"{url}/api/2.0/eventflow/audit", params={"entity_type": "planet", "entity": "x"})
    assert bad.status_code == 400 and "entity_type" in bad.json()["message"]
    unknown = httpx.get(f"{url}/api/2.0/eventflow/audit", params={"target": "no-such-thing"})
    assert unknown.status_code == 404 and "no-such-thing" in unknown.json()["message"]
    deployments = httpx.get(f"{url}/api/2.0/eventflow/deployments", params={"as_of": "soon"})
    assert deployments.status_code == 400 and "as_of" in deployments.json()["message"]


def _live_model(url: str, name: str) -> tuple:
    return call(url, "GET", "registered-models/get", name=name)


def _snapshot_model(engine, name: str) -> tuple:
    """What a server over the snapshot database answers (the same handler, rendered alike)."""
    from pathlib import Path

    from eventflow.audit.asof import Snapshot
    from eventflow.registry import api as registry
    from eventflow.server.responses import ProtoJSONResponse
    from eventflow.validation import InvalidInput

    try:
        found = registry.get_registered_model(Snapshot(engine, Path("."), 0), {"name": name})
    except InvalidInput as error:
        return 404, {"error_code": error.error_code, "message": error.message}
    return 200, json.loads(ProtoJSONResponse(found).body)


def test_views_rebuild_until_makes_a_snapshot_of_that_moment(server, tmp_path, request):
    from eventflow.views.db import open_views

    url, home, backend = server
    name = f"snap-{uuid.uuid4().hex[:6]}"
    run_id = ok(url, "POST", "runs/create", experiment_id="0")["run"]["info"]["run_id"]
    ok(url, "POST", "registered-models/create", name=name)
    for _ in range(2):
        ok(url, "POST", "model-versions/create", name=name, source=f"runs:/{run_id}/model", run_id=run_id)
    ok(url, "POST", "registered-models/alias", name=name, alias="production", version="1")
    then = _live_model(url, name)
    moment = now_ms()
    next_ms(moment)
    ok(url, "POST", "registered-models/alias", name=name, alias="production", version="2")
    ok(url, "POST", "model-versions/transition-stage", name=name, version="2", stage="Staging")
    now = _live_model(url, name)
    assert now != then

    entries = httpx.get(f"{url}/api/2.0/eventflow/audit", params={"target": f"models:/{name}"}).json()["entries"]
    [first_move] = [e for e in entries if e["what"] == "alias production: → version 1"]
    topic, rest = first_move["position"].split("[", 1)
    partition, offset = rest.rstrip("]").split("]@")[0], first_move["position"].rsplit("@", 1)[1]
    kafka = ["--kafka", request.getfixturevalue("kafka_bootstrap")] if backend == "kafka+postgresql" else []
    for n, until in enumerate((str(moment), f"{topic}:{partition}:{offset}")):
        into = request.getfixturevalue("new_postgres_database")("snapshot") if kafka else f"sqlite:///{tmp_path / f'snapshot{n}.db'}"
        done = subprocess.run([sys.executable, "-m", "eventflow", "views", "rebuild", "--until", until, "--into", into, "--home", str(home), *kafka],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr + done.stdout
        engine = open_views(into)
        try:
            assert _snapshot_model(engine, name) == then, until
        finally:
            engine.dispose()
    assert _live_model(url, name) == now  # the live views were not touched
    refused = subprocess.run([sys.executable, "-m", "eventflow", "views", "rebuild", "--until", "tomorrow-ish", "--home", str(home), *kafka],
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "--into" in refused.stderr
