"""A real deployer in the history: an alias move → the deployment it started → how it
ended, and ``as_of`` on the deployments (what served then)."""

from __future__ import annotations

import os
import sys
import uuid

import httpx
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "deploy"))
pytest.importorskip("pandas")
from test_deployer import Deployer, constant, flaky, free_port, promote, register, wait_for  # noqa: E402
from test_deployer import server  # noqa: E402,F401  (the fixture: a real server, both backends)

from eventflow.events import now_ms  # noqa: E402


def test_alias_moves_lead_to_their_deployments_and_as_of_shows_what_served(server, tmp_path):
    url, backend = server
    name = "audit-deploy-" + uuid.uuid4().hex[:8]
    port = free_port()
    v1, v2 = register(name, constant(1)), register(name, flaky())
    promote(url, name, v1)
    deployer = Deployer(url, backend, name, port, tmp_path / "deployer.out")
    try:
        wait_for(url, deployer.target, 2, log=deployer.out)
        served_v1 = now_ms()
        promote(url, name, v2)
        wait_for(url, deployer.target, 5, log=deployer.out)
    finally:
        deployer.stop()

    entries = httpx.get(f"{url}/api/2.0/eventflow/audit", params={"target": f"models:/{name}@production"}).json()["entries"]
    moves = [e for e in entries if e["event_type"] == "model_version.alias_set"]
    assert [m["what"] for m in moves] == [f"alias production: → version {v1}", f"alias production: version {v1} → {v2}"]
    first, second = ([x for x in m["effects"] if x["kind"] == "deployment"] for m in moves)
    assert first[0]["what"].endswith("→ succeeded") and first[0]["target"] == deployer.target
    assert second[0]["what"].endswith("→ failed, rolled_back")
    rolled = [e for e in entries if e["event_type"] == "deployment.rolled_back"]
    assert rolled[0]["what"].startswith(f"{deployer.target} rolled back to version {v1}") and rolled[0]["actor"] == "deployer"
    assert rolled[0]["caused_by"]["event_id"] == [e for e in entries if e["event_type"] == "deployment.started"][1]["event_id"]

    target = httpx.get(f"{url}/api/2.0/eventflow/audit", params={"target": deployer.target}).json()
    assert target["entity_type"] == "deployment"
    kinds = [e["event_type"] for e in target["entries"]]
    assert kinds == ["model_version.alias_set", "deployment.started", "deployment.succeeded",
                     "model_version.alias_set", "deployment.started", "deployment.failed", "deployment.rolled_back"]
    started = [e for e in target["entries"] if e["event_type"] == "deployment.started"]
    assert started[1]["caused_by"]["position"] == target["entries"][3]["position"]

    then = httpx.get(f"{url}/api/2.0/eventflow/deployments", params={"target": deployer.target, "as_of": served_v1}).json()
    assert (then["deployments"][0]["serving_version"], then["deployments"][0]["status"]) == (v1, "SUCCEEDED")
    now = httpx.get(f"{url}/api/2.0/eventflow/deployments", params={"target": deployer.target}).json()
    assert (now["deployments"][0]["serving_version"], now["deployments"][0]["status"]) == (v1, "ROLLED_BACK")
    assert len(now["history"]) == 5 and len(then["history"]) == 2
