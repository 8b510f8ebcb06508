"""Everything is governed, not only the REST tracking routes: a user with READ on one
experiment (the default being NO_PERMISSIONS) sees nothing of another over REST, the
live websocket or the event stream; webhooks and deployments are their owners'.

All against a live ``eventflow server --auth``; the admin's view of the same data shows
each time that there was something to hide.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import sys
import time
import uuid

import httpx
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "server"))
from live_client import LiveClient  # noqa: E402
from serving import running_server  # noqa: E402

API = "/api/2.0/mlflow"
EVENTS = "/api/2.0/eventflow/events"
WEBHOOKS = "/api/2.0/eventflow/webhooks"
ADMIN = ("admin", "the-admin-password")
ALICE = ("alice", "alice-password")
BOB = ("bob", "bob-password")


def basic(user: tuple[str, str]) -> str:
    return "Basic " + base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()


def ok(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """An authed server; experiments A (alice may READ it) and B (bob MANAGEs it), each
    with a run that logged a metric."""
    home = tmp_path_factory.mktemp("governed")
    env = {
        "EVENTFLOW_AUTH": "true", "EVENTFLOW_ADMIN_USERNAME": ADMIN[0], "EVENTFLOW_ADMIN_PASSWORD": ADMIN[1],
        "EVENTFLOW_AUTH_DEFAULT_PERMISSION": "NO_PERMISSIONS",
        # Re-ask the views at every push, so that a permission change shows at once.
        "EVENTFLOW_AUTH_RECHECK_SECONDS": "0",
    }
    with running_server(home, env=env) as url:
        admin = httpx.Client(base_url=url, timeout=30, headers={"Authorization": basic(ADMIN)})
        for name, password in (ALICE, BOB):
            ok(admin.post(API + "/users/create", json={"username": name, "password": password}))
        world = {"url": url, "home": home, "admin": admin}
        for label in ("A", "B"):
            experiment_id = ok(admin.post(API + "/experiments/create", json={"name": f"exp-{label}-{uuid.uuid4().hex[:6]}"}))["experiment_id"]
            run_id = ok(admin.post(API + "/runs/create", json={"experiment_id": experiment_id, "run_name": f"run-{label}"}))["run"]["info"]["run_id"]
            ok(admin.post(API + "/runs/log-metric", json={"run_id": run_id, "key": "loss", "value": 1.0, "timestamp": 1, "step": 0}))
            world[f"exp_{label}"], world[f"run_{label}"] = experiment_id, run_id
        grant(admin, world["exp_A"], ALICE[0], "READ")
        grant(admin, world["exp_B"], BOB[0], "MANAGE")
        world["alice"] = httpx.Client(base_url=url, timeout=30, headers={"Authorization": basic(ALICE)})
        world["bob"] = httpx.Client(base_url=url, timeout=30, headers={"Authorization": basic(BOB)})
        yield world
        for name in ("admin", "alice", "bob"):
            world[name].close()


def grant(admin: httpx.Client, experiment_id: str, username: str, permission: str) -> None:
    body = {"experiment_id": experiment_id, "username": username, "permission": permission}
    existing = admin.get(API + "/experiments/permissions/get", params={"experiment_id": experiment_id, "username": username})
    if existing.status_code == 200:
        ok(admin.patch(API + "/experiments/permissions/update", json=body))
    else:
        ok(admin.post(API + "/experiments/permissions/create", json=body))


def live(world, user: tuple[str, str]) -> LiveClient:
    return LiveClient(world["url"], headers={"Authorization": basic(user)})


# -- REST ----------------------------------------------------------------------------------


def test_rest_shows_alice_her_experiment_only(world):
    alice = world["alice"]
    assert alice.post(API + "/runs/search", json={"experiment_ids": [world["exp_B"]]}).status_code == 403
    assert alice.get(API + "/runs/get", params={"run_id": world["run_B"]}).status_code == 403
    found = ok(alice.post(API + "/runs/search", json={"experiment_ids": [world["exp_A"]]}))["runs"]
    assert [r["info"]["run_id"] for r in found] == [world["run_A"]]
    assert ok(alice.get(API + "/runs/get", params={"run_id": world["run_A"]}))["run"]["info"]["run_id"] == world["run_A"]
    listed = {e["experiment_id"] for e in ok(alice.post(API + "/experiments/search", json={"max_results": 100}))["experiments"]}
    assert listed == {world["exp_A"]}


# -- the websocket ----------------------------------------------------------------------------


def test_an_unauthenticated_websocket_is_refused(world):
    with pytest.raises(Exception) as refused:
        LiveClient(world["url"])
    assert "401" in str(refused.value) or "403" in str(refused.value) or "4401" in str(refused.value)
    with pytest.raises(Exception):
        LiveClient(world["url"], headers={"Authorization": basic((ALICE[0], "wrong"))})


def test_snapshots_hold_only_what_the_user_may_read(world):
    admin_view, client = live(world, ADMIN), live(world, ALICE)
    try:
        for c in (admin_view, client):
            c.subscribe("list", "experiments")
            c.subscribe("runs", "runs", run_ids=[world["run_A"], world["run_B"]])
            c.subscribe("models", "models")
            c.until(lambda c=c: {"list", "runs", "models"} <= set(c.snapshots))
        everything = {e["experiment_id"] for e in admin_view.snapshots["list"]["experiments"]}
        assert {world["exp_A"], world["exp_B"]} <= everything  # there is something to hide
        assert {e["experiment_id"] for e in client.snapshots["list"]["experiments"]} == {world["exp_A"]}
        assert {r["run"]["info"]["run_id"] for r in admin_view.snapshots["runs"]["runs"]} == {world["run_A"], world["run_B"]}
        assert [r["run"]["info"]["run_id"] for r in client.snapshots["runs"]["runs"]] == [world["run_A"]]
        # An experiment she may not read cannot be subscribed to.
        client.subscribe("other", "experiment", experiment_id=world["exp_B"])
        client.until(lambda: any(m["type"] == "error" and m.get("sub") == "other" for m in client.messages))
        error = next(m for m in client.messages if m["type"] == "error" and m.get("sub") == "other")
        assert "Permission denied" in error["message"] and "other" not in client.snapshots
    finally:
        admin_view.close()
        client.close()


def pushed_about(client: LiveClient, sub: str, needle: str) -> bool:
    """Whether anything pushed on ``sub`` (events or points) names ``needle``."""
    return any(needle in json.dumps(e) for e in client.events[sub]) or any(
        needle in json.dumps(m.get("points", [])) for m in client.messages if m.get("sub") == sub and m["type"] == "events"
    )


def test_live_pushes_skip_what_the_user_may_not_read(world):
    """Each push is filtered: the admin's connection receives B's events, alice's only A's.
    A permission granted while she is connected shows from the next push on, and one
    taken away stops them."""
    admin, url = world["admin"], world["url"]
    watcher, client = live(world, ADMIN), live(world, ALICE)
    try:
        for c in (watcher, client):
            c.subscribe("feed", "events")
            c.subscribe("list", "experiments")
            c.subscribe("runs", "runs", run_ids=[world["run_A"], world["run_B"]])
            c.until(lambda c=c: {"feed", "list", "runs"} <= set(c.snapshots))
        assert not pushed_about(client, "feed", world["run_B"])  # the feed's snapshot too

        def log(run_key: str, marker: str) -> None:
            ok(admin.post(API + "/runs/set-tag", json={"run_id": world[run_key], "key": "marker", "value": marker}))
            ok(admin.post(API + "/runs/log-metric", json={"run_id": world[run_key], "key": marker, "value": 2.0, "timestamp": 2, "step": 1}))
            ok(admin.post(API + "/experiments/set-experiment-tag", json={
                "experiment_id": world["exp_" + run_key[-1]], "key": "marker", "value": marker}))

        hidden, shown = f"hidden-{uuid.uuid4().hex[:8]}", f"shown-{uuid.uuid4().hex[:8]}"
        log("run_B", hidden)
        log("run_A", shown)
        for sub in ("feed", "list", "runs"):
            watcher.until(lambda sub=sub: pushed_about(watcher, sub, hidden) and pushed_about(watcher, sub, shown))
            client.until(lambda sub=sub: pushed_about(client, sub, shown))
        client.drain()
        for sub in ("feed", "list", "runs"):
            assert not pushed_about(client, sub, hidden), sub

        # Granted while connected: B's next events reach her.
        grant(admin, world["exp_B"], ALICE[0], "READ")
        granted = f"granted-{uuid.uuid4().hex[:8]}"
        log("run_B", granted)
        for sub in ("feed", "list", "runs"):
            client.until(lambda sub=sub: pushed_about(client, sub, granted))

        # Taken away: they stop.
        grant(admin, world["exp_B"], ALICE[0], "NO_PERMISSIONS")
        revoked, after = f"revoked-{uuid.uuid4().hex[:8]}", f"after-{uuid.uuid4().hex[:8]}"
        log("run_B", revoked)
        log("run_A", after)
        for sub in ("feed", "list", "runs"):
            watcher.until(lambda sub=sub: pushed_about(watcher, sub, revoked))
            client.until(lambda sub=sub: pushed_about(client, sub, after))
        client.drain()
        for sub in ("feed", "list", "runs"):
            assert not pushed_about(client, sub, revoked), sub
    finally:
        watcher.close()
        client.close()
        grant(admin, world["exp_B"], ALICE[0], "NO_PERMISSIONS")


# -- the event stream ---------------------------------------------------------------------------


def read_all(client: httpx.Client, **params) -> list[dict]:
    events, token, pages = [], None, 0
    while True:
        page = ok(client.get(EVENTS, params={**params, **({"page_token": token} if token else {})}))
        events += page["events"]
        token, pages = page.get("next_page_token"), pages + 1
        if not token:
            return events
        assert pages < 1000, "paging does not end"


def test_the_event_stream_shows_only_what_the_reader_may_read(world):
    everything = read_all(world["admin"], max_results=7)
    hers = read_all(world["alice"], max_results=7)
    text = json.dumps(everything)
    assert world["run_B"] in text and '"user.created"' in text and '"permission.set"' in text  # there is something to hide
    types = {e["event"]["type"] for e in hers}
    assert {"experiment.created", "run.created", "run.metrics_logged"} <= types
    for entry in hers:
        event = entry["event"]
        payload = event["payload"]
        assert world["run_B"] not in json.dumps(entry) and payload.get("experiment_id") != world["exp_B"], event
        if event["type"].startswith("user."):
            assert payload["username"] == ALICE[0], event  # her own account's events, no one else's
        assert not event["type"].startswith(("permission.", "webhook.", "token.")) or payload.get("username") == ALICE[0], event
    assert any(e["event"]["type"] == "user.created" and e["event"]["payload"]["username"] == ALICE[0] for e in hers)


def test_appending_events_needs_edit_on_what_they_are_about(world):
    """POST /events: an SDK batch is governed event by event; an experiment it creates is
    its creator's to manage."""
    from eventflow import commands
    from eventflow.codec import encode
    from eventflow.codec.framing import CONTENT_TYPE, pack

    def post(client: httpx.Client, *events) -> httpx.Response:
        actor = ALICE[0] if client is alice else BOB[0]  # an event names its caller (the server checks)
        body = pack([encode(dataclasses.replace(e, actor=actor)) for e in events])
        return client.post(EVENTS, content=body, headers={"content-type": CONTENT_TYPE})

    alice, bob = world["alice"], world["bob"]
    tag = commands.set_tags(world["run_A"], [("via", "events")])
    refused = post(alice, tag)  # READ only
    assert refused.status_code == 403 and refused.json()["error_code"] == "PERMISSION_DENIED", refused.text
    assert post(bob, commands.set_tags(world["run_A"], [("via", "events")])).status_code == 403  # nothing on A
    assert post(bob, commands.set_tags(world["run_B"], [("via", "events")])).status_code == 200  # MANAGE on B

    # A batch that creates an experiment and a run in it: the creator may, and manages it.
    experiment_id = commands.new_experiment_id()
    run_id = commands.new_run_id()
    created = post(
        alice,
        commands.create_experiment(experiment_id, f"alices-{uuid.uuid4().hex[:6]}", f"mlflow-artifacts:/{experiment_id}", {}),
        commands.create_run(run_id, experiment_id, run_name="r", user_id="alice", artifact_uri=f"mlflow-artifacts:/{experiment_id}/{run_id}/artifacts",
                            start_time=1, tags={}, parent_run_id=None),
    )
    assert created.status_code == 200, created.text
    mine = ok(alice.get(API + "/experiments/permissions/get", params={"experiment_id": experiment_id, "username": ALICE[0]}))
    assert mine["experiment_permission"]["permission"] == "MANAGE"
    assert post(bob, commands.set_tags(run_id, [("k", "v")])).status_code == 403  # and no one else


# -- webhooks ----------------------------------------------------------------------------------


def test_webhooks_are_their_creators(world):
    alice, bob = world["alice"], world["bob"]
    target = "https://hooks.example.com/endpoint"
    # Unscoped: an admin's; scoped: MANAGE there.
    assert alice.post(WEBHOOKS, json={"url": target, "events": ["run.*"]}).status_code == 403
    assert alice.post(WEBHOOKS, json={"url": target, "events": ["run.*"], "experiment_id": world["exp_A"]}).status_code == 403  # READ only
    created = ok(bob.post(WEBHOOKS, json={"url": target, "events": ["run.*"], "experiment_id": world["exp_B"]}))
    sid = created["webhook"]["subscription_id"]
    assert created["webhook"]["created_by"] == BOB[0]
    # Bob lists and rotates his; alice can neither list nor touch it; the admin sees all.
    assert sid in {w["subscription_id"] for w in ok(bob.get(WEBHOOKS))["webhooks"]}
    assert sid in {w["subscription_id"] for w in ok(world["admin"].get(WEBHOOKS))["webhooks"]}
    assert sid not in {w["subscription_id"] for w in ok(alice.get(WEBHOOKS))["webhooks"]}
    for method, path in (("POST", "/rotate-secret"), ("GET", ""), ("PATCH", ""), ("DELETE", ""), ("GET", "/deliveries")):
        response = alice.request(method, f"{WEBHOOKS}/{sid}{path}", **({"json": {}} if method in ("POST", "PATCH") else {}))
        assert response.status_code == 403, (method, path, response.text)
    rotated = ok(bob.post(f"{WEBHOOKS}/{sid}/rotate-secret", json={}))
    assert rotated["secret"] != created["secret"]
    # Bob cannot move his webhook onto what he may not manage.
    assert bob.patch(f"{WEBHOOKS}/{sid}", json={"experiment_id": world["exp_A"]}).status_code == 403
    assert bob.patch(f"{WEBHOOKS}/{sid}", json={"experiment_id": None}).status_code == 403
    ok(bob.delete(f"{WEBHOOKS}/{sid}"))


def test_mlflow_webhooks_are_for_administrators(world):
    body = {"name": "hook", "url": "https://hooks.example.com/x", "events": [{"entity": "model_version", "action": "created"}]}
    assert world["bob"].post(API + "/webhooks", json=body).status_code == 403
    made = ok(world["admin"].post(API + "/webhooks", json=body))["webhook"]["webhook_id"]
    assert made not in {w["webhook_id"] for w in ok(world["bob"].get(API + "/webhooks")).get("webhooks", [])}
    assert world["bob"].get(f"{API}/webhooks/{made}").status_code == 403
    assert world["bob"].delete(f"{API}/webhooks/{made}").status_code == 403
    ok(world["admin"].delete(f"{API}/webhooks/{made}"))


# -- deployments ---------------------------------------------------------------------------------


def test_deployments_are_listed_to_who_may_read_the_model(world):
    from eventflow.config import Home
    from eventflow.events import Event
    from eventflow.log import open_log
    from eventflow.log.event_log import EventLog

    admin = world["admin"]
    names = {label: f"model-{label}-{uuid.uuid4().hex[:6]}" for label in ("A", "B")}
    for label, name in names.items():
        ok(admin.post(API + "/registered-models/create", json={"name": name}))
    ok(admin.post(API + "/registered-models/permissions/create", json={"name": names["A"], "username": ALICE[0], "permission": "READ"}))
    log = open_log(str(Home.resolve(str(world["home"])).log_dir))
    try:  # as the deployer writes them
        EventLog(log).append_many([
            Event("deployment.succeeded", {"target": f"target-{label}", "model_uri": f"models:/{name}/1", "name": name, "version": "1",
                                           "previous_version": None, "endpoint": "http://127.0.0.1:1"})
            for label, name in names.items()
        ])
    finally:
        log.close()
    deadline = time.monotonic() + 30
    while {d["name"] for d in ok(admin.get("/api/2.0/eventflow/deployments"))["deployments"]} < set(names.values()):
        assert time.monotonic() < deadline, "the deployment events did not show"
        time.sleep(0.1)
    hers = ok(world["alice"].get("/api/2.0/eventflow/deployments"))
    assert {d["name"] for d in hers["deployments"]} == {names["A"]}
    assert {h["name"] for h in hers["history"]} == {names["A"]}
