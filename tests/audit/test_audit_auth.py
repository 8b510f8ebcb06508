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


def test_lineage_leaves_out_what_the_reader_may_not_read(url):
    """A version the reader may READ, registered from a run in an experiment it may not:
    the graph stops at the version (no run, params, dataset), and says something was left out."""
    owner, outsider = new_user(url), new_user(url)
    experiment = api(url, "POST", "/api/2.0/mlflow/experiments/create", owner, json={"name": "hidden-" + uuid.uuid4().hex[:8]})
    assert experiment.status_code == 200, experiment.text
    experiment_id = experiment.json()["experiment_id"]
    assert api(url, "POST", "/api/2.0/mlflow/experiments/permissions/create", owner,
               json={"experiment_id": experiment_id, "username": outsider[0], "permission": "NO_PERMISSIONS"}).status_code == 200
    run = api(url, "POST", "/api/2.0/mlflow/runs/create", owner, json={"experiment_id": experiment_id})
    assert run.status_code == 200, run.text
    run_id = run.json()["run"]["info"]["run_id"]
    assert api(url, "POST", "/api/2.0/mlflow/runs/log-parameter", owner, json={"run_id": run_id, "key": "secret_lr", "value": "0.3"}).status_code == 200
    dataset = {"name": "secret-data", "digest": "d1g3st", "source_type": "local", "source": "/private/rows.csv"}
    logged = api(url, "POST", "/api/2.0/mlflow/runs/log-inputs", owner, json={"run_id": run_id, "datasets": [{"dataset": dataset}]})
    assert logged.status_code == 200, logged.text
    name = "visible-" + uuid.uuid4().hex[:8]
    assert api(url, "POST", "/api/2.0/mlflow/registered-models/create", owner, json={"name": name}).status_code == 200
    version = api(url, "POST", "/api/2.0/mlflow/model-versions/create", owner,
                  json={"name": name, "source": f"runs:/{run_id}/model", "run_id": run_id})
    assert version.status_code == 200, version.text

    def graph(who) -> dict:
        answer = api(url, "GET", "/api/2.0/eventflow/lineage", who, params={"uri": f"models:/{name}/1"})
        assert answer.status_code == 200, answer.text
        return answer.json()

    full = graph(owner)
    assert f"run:{run_id}" in {n["id"] for n in full["nodes"]}
    assert any(n["type"] == "dataset" for n in full["nodes"])
    assert full.get("hidden", 0) == 0

    limited = graph(outsider)
    ids = {n["id"] for n in limited["nodes"]}
    assert f"model_version:{name}/1" in ids
    assert not any(n["type"] in ("run", "dataset") for n in limited["nodes"]), limited["nodes"]
    assert "secret" not in str(limited)  # (the run id is in the version, as model-versions/get shows it)
    assert limited["hidden"] == 1  # the run, and nothing found through it
    assert "1 linked node(s) you may not read left out" in limited["lines"][-1]
