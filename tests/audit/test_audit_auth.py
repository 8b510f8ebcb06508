"""Audit and as_of with authentication on: the history names the authenticated actor and
says so; reading it needs READ on what it is about; as_of searches show only what the
reader may READ (rights as they are now)."""

from __future__ import annotations

import uuid

import httpx
import pytest
from serving import running_server

ADMIN = ("admin", "admin-password-" + uuid.uuid4().hex[:8])


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    env = {"EVENTFLOW_AUTH": "true", "EVENTFLOW_ADMIN_USERNAME": ADMIN[0], "EVENTFLOW_ADMIN_PASSWORD": ADMIN[1]}
    with running_server(tmp_path_factory.mktemp("audit-auth") / "home", env=env) as served:
        yield served


def api(url: str, method: str, path: str, auth, **kwargs) -> httpx.Response:
    return httpx.request(method, url + path, auth=auth, timeout=60, **kwargs)


def new_user(url: str) -> tuple[str, str]:
    user = ("u-" + uuid.uuid4().hex[:10], "pw-" + uuid.uuid4().hex)
    assert api(url, "POST", "/api/2.0/mlflow/users/create", ADMIN, json={"username": user[0], "password": user[1]}).status_code == 200
    return user


def test_audit_names_the_authenticated_actor_and_needs_read(url):
    from eventflow.events import now_ms

    owner, outsider, reader = new_user(url), new_user(url), new_user(url)
    name = "m-" + uuid.uuid4().hex[:8]
    assert api(url, "POST", "/api/2.0/mlflow/registered-models/create", owner, json={"name": name}).status_code == 200
    before = now_ms()
    assert api(url, "POST", "/api/2.0/mlflow/registered-models/set-tag", owner, json={"name": name, "key": "team", "value": "risk"}).status_code == 200
    denied = api(url, "POST", "/api/2.0/mlflow/registered-models/permissions/create", owner,
                 json={"name": name, "username": outsider[0], "permission": "NO_PERMISSIONS"})
    assert denied.status_code == 200, denied.text

    answer = api(url, "GET", "/api/2.0/eventflow/audit", reader, params={"target": f"models:/{name}"})
    assert answer.status_code == 200, answer.text
    entries = answer.json()["entries"]
    assert [(e["what"], e["actor"], e["authenticated"], e["trust"]) for e in entries] == [
        (f"model {name!r} created", owner[0], True, "authenticated"), ("tag team = risk", owner[0], True, "authenticated")]
    assert "[" not in answer.json()["lines"][0].split("  ")[1]  # no "claimed" mark on an authenticated actor

    refused = api(url, "GET", "/api/2.0/eventflow/audit", outsider, params={"entity_type": "registered_model", "entity": name})
    assert refused.status_code == 403 and name in refused.json()["message"]
    assert api(url, "GET", "/api/2.0/eventflow/audit", None, params={"target": f"models:/{name}"}).status_code == 401

    # as_of searches narrow to what the reader may READ now, like live searches
    search = {"filter": f"name = '{name}'", "as_of": now_ms()}
    seen = api(url, "GET", "/api/2.0/mlflow/registered-models/search", reader, params=search).json()
    assert [m["name"] for m in seen["registered_models"]] == [name]
    hidden = api(url, "GET", "/api/2.0/mlflow/registered-models/search", outsider, params=search).json()
    assert hidden.get("registered_models", []) == []
    old = api(url, "GET", "/api/2.0/mlflow/registered-models/get", reader, params={"name": name, "as_of": before}).json()
    assert "tags" not in old["registered_model"] or old["registered_model"]["tags"] == []
    assert api(url, "GET", "/api/2.0/mlflow/registered-models/get", outsider, params={"name": name, "as_of": before}).status_code == 403


def test_lineage_needs_read_on_what_it_starts_from(url):
    owner, outsider, reader = new_user(url), new_user(url), new_user(url)
    created = api(url, "POST", "/api/2.0/mlflow/experiments/create", owner, json={"name": "lineage-" + uuid.uuid4().hex[:8]})
    assert created.status_code == 200, created.text
    experiment_id = created.json()["experiment_id"]
    run = api(url, "POST", "/api/2.0/mlflow/runs/create", owner, json={"experiment_id": experiment_id})
    assert run.status_code == 200, run.text
    run_id = run.json()["run"]["info"]["run_id"]
    denied = api(url, "POST", "/api/2.0/mlflow/experiments/permissions/create", owner,
                 json={"experiment_id": experiment_id, "username": outsider[0], "permission": "NO_PERMISSIONS"})
    assert denied.status_code == 200, denied.text

    seen = api(url, "GET", "/api/2.0/eventflow/lineage", reader, params={"uri": f"runs:/{run_id}"})
    assert seen.status_code == 200, seen.text
    assert seen.json()["root"].endswith(run_id)
    refused = api(url, "GET", "/api/2.0/eventflow/lineage", outsider, params={"uri": f"runs:/{run_id}"})
    assert refused.status_code == 403, refused.text
    assert api(url, "GET", "/api/2.0/eventflow/lineage", None, params={"uri": f"runs:/{run_id}"}).status_code == 401
