"""A rebuild of the views from the log keeps every login: users, tokens and grants come
back from the log, their hashes (never on the log) are carried across."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx

from serving import running_server

ENV = {"EVENTFLOW_AUTH": "true", "EVENTFLOW_ADMIN_USERNAME": "root-admin", "EVENTFLOW_ADMIN_PASSWORD": "first-admin-pw"}
ADMIN = ("root-admin", "first-admin-pw")


def test_users_tokens_and_grants_survive_a_rebuild(tmp_path):
    home = tmp_path / "home"
    with running_server(home, env=ENV) as url:
        assert httpx.post(url + "/api/2.0/mlflow/users/create", auth=ADMIN, json={"username": "ann", "password": "ann-pw"}).status_code == 200
        experiment_id = httpx.post(url + "/api/2.0/mlflow/experiments/create", auth=ADMIN, json={"name": "kept"}).json()["experiment_id"]
        httpx.post(url + "/api/3.0/mlflow/users/permissions/grant", auth=ADMIN,
                   json={"username": "ann", "resource_type": "experiment", "resource_id": experiment_id, "permission": "NO_PERMISSIONS"}).raise_for_status()
        token = httpx.post(url + "/api/2.0/eventflow/tokens/create", auth=("ann", "ann-pw"), json={"scopes": ["read"]}).json()["token"]
    done = subprocess.run([sys.executable, "-m", "eventflow", "views", "rebuild", "--home", str(home)],
                          capture_output=True, text=True, timeout=300, env=os.environ.copy())
    assert done.returncode == 0, done.stderr
    assert "rows of auth_credentials" in done.stdout
    with running_server(home, env={**ENV, "EVENTFLOW_ADMIN_PASSWORD": "ignored-now"}) as url:
        search = url + "/api/2.0/mlflow/experiments/get"
        assert httpx.get(search, auth=ADMIN, params={"experiment_id": experiment_id}).status_code == 200
        assert httpx.get(search, auth=("ann", "ann-pw"), params={"experiment_id": experiment_id}).status_code == 403  # the grant came back
        assert httpx.get(url + "/api/2.0/mlflow/experiments/search", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert httpx.get(url + "/api/2.0/mlflow/experiments/search", auth=("ann", "wrong")).status_code == 401
