"""MLflow's own auth client (``mlflow.server.get_app_client("basic-auth", …)``) managing
users and permissions on ``eventflow server --auth``, and the plain mlflow client feeling
the effect: what MLflow 3.17's basic-auth server answers, eventflow answers.

These share the session's signed-in server (conftest.py) and make their own users.
"""

from __future__ import annotations

import uuid

import httpx
import pytest

import mlflow
from mlflow.exceptions import MlflowException, RestException
from mlflow.server import get_app_client
from mlflow.tracking import MlflowClient


@pytest.fixture
def server(authed_server):
    return authed_server("password")


def sign_in(monkeypatch, username: str, password: str) -> None:
    """What the mlflow client (and its auth client) sends from now on, as a user sets it."""
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", username)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)


def refused(code: str, call, *args, **kwargs) -> RestException:
    with pytest.raises(RestException) as raised:
        call(*args, **kwargs)
    assert raised.value.error_code == code, raised.value
    return raised.value


def new_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_the_auth_client_manages_a_users_account(server, monkeypatch):
    sign_in(monkeypatch, *server.admin)
    auth = get_app_client("basic-auth", tracking_uri=server.url)
    name, first = new_name("ann"), "first-password-" + uuid.uuid4().hex
    created = auth.create_user(name, first)
    assert (created.username, created.is_admin) == (name, False) and isinstance(created.id, int)
    assert auth.get_user(name).id == created.id
    refused("RESOURCE_ALREADY_EXISTS", auth.create_user, name, "another-password-123")
    refused("RESOURCE_DOES_NOT_EXIST", auth.get_user, new_name("nobody"))

    # The admin sets another user's password without knowing it.
    second = "second-password-" + uuid.uuid4().hex
    auth.update_user_password(name, second)
    sign_in(monkeypatch, name, first)
    assert refused("UNAUTHENTICATED", MlflowClient(server.url).search_experiments).get_http_status_code() == 401
    sign_in(monkeypatch, name, second)
    assert MlflowClient(server.url).search_experiments() is not None

    # Self-service: the user changes their own password, which needs the current one.
    third = "third-password-" + uuid.uuid4().hex
    mine = get_app_client("basic-auth", tracking_uri=server.url)
    assert "Current password is required" in refused("INVALID_PARAMETER_VALUE", mine.update_user_password, name, third).message
    assert "does not match" in refused("INVALID_PARAMETER_VALUE", mine.update_user_password, name, third, current_password="wrong").message
    mine.update_user_password(name, third, current_password=second)
    refused("UNAUTHENTICATED", MlflowClient(server.url).search_experiments)  # the old password no longer signs in
    sign_in(monkeypatch, name, third)
    assert mine.get_user(name).username == name  # a user reads their own account
    refused("PERMISSION_DENIED", mine.get_user, server.admin[0])
    refused("PERMISSION_DENIED", mine.update_user_admin, name, True)

    sign_in(monkeypatch, *server.admin)
    auth.update_user_admin(name, True)
    assert auth.get_user(name).is_admin is True
    auth.update_user_admin(name, False)
    assert auth.get_user(name).is_admin is False
    refused("BAD_REQUEST", auth.delete_user, server.admin[0])  # as in MLflow: not yourself
    auth.delete_user(name)
    refused("RESOURCE_DOES_NOT_EXIST", auth.get_user, name)
    refused("RESOURCE_DOES_NOT_EXIST", auth.delete_user, name)
    sign_in(monkeypatch, name, third)
    refused("UNAUTHENTICATED", MlflowClient(server.url).search_experiments)


def test_grants_on_an_experiment_and_a_model_take_effect_for_the_plain_client(server, monkeypatch):
    sign_in(monkeypatch, *server.admin)
    auth = get_app_client("basic-auth", tracking_uri=server.url)
    admin_client = MlflowClient(server.url)
    experiment_id = admin_client.create_experiment(new_name("granted"))
    run_id = admin_client.create_run(experiment_id).info.run_id
    model = new_name("granted-model")
    admin_client.create_registered_model(model)
    version = admin_client.create_model_version(model, f"runs:/{run_id}/model", run_id).version
    name, password = new_name("bo"), "bo-password-" + uuid.uuid4().hex
    auth.create_user(name, password)

    def as_user():
        sign_in(monkeypatch, name, password)
        return MlflowClient(server.url)

    # The server's default is READ: the user reads, but may not log.
    assert as_user().get_run(run_id).info.run_id == run_id
    assert refused("PERMISSION_DENIED", as_user().log_metric, run_id, "m", 1.0).get_http_status_code() == 403

    sign_in(monkeypatch, *server.admin)
    auth.grant_user_permission(name, "experiment", experiment_id, "EDIT")
    refused("RESOURCE_ALREADY_EXISTS", auth.grant_user_permission, name, "experiment", experiment_id, "MANAGE")
    refused("INVALID_PARAMETER_VALUE", auth.grant_user_permission, name, "experiment", experiment_id, "ALL")
    got = auth.get_user_permission(name, "experiment", experiment_id)
    assert (got.permission, got.allowed) == ("EDIT", True)
    as_user().log_metric(run_id, "m", 1.0)
    assert refused("PERMISSION_DENIED", as_user().delete_run, run_id).get_http_status_code() == 403  # deleting needs MANAGE
    mine = get_app_client("basic-auth", tracking_uri=server.url)
    assert mine.get_user_permission(name, "experiment", experiment_id).permission == "EDIT"  # a user reads their own
    refused("PERMISSION_DENIED", mine.grant_user_permission, name, "experiment", experiment_id, "MANAGE")  # but does not raise it

    sign_in(monkeypatch, *server.admin)
    auth.revoke_user_permission(name, "experiment", experiment_id)
    refused("RESOURCE_DOES_NOT_EXIST", auth.revoke_user_permission, name, "experiment", experiment_id)
    got = auth.get_user_permission(name, "experiment", experiment_id)
    assert (got.permission, got.allowed) == ("READ", False), "the default again; READ is not MLflow's can_use"
    refused("PERMISSION_DENIED", as_user().log_metric, run_id, "m", 2.0)
    sign_in(monkeypatch, *server.admin)
    auth.grant_user_permission(name, "experiment", experiment_id, "NO_PERMISSIONS")
    denied = refused("PERMISSION_DENIED", as_user().get_run, run_id)
    assert denied.get_http_status_code() == 403
    assert experiment_id not in {e.experiment_id for e in as_user().search_experiments()}

    # A registered model: MANAGE lets the user move an alias (a deployment), and revoking takes it back.
    refused("PERMISSION_DENIED", as_user().set_registered_model_alias, model, "live", version)
    sign_in(monkeypatch, *server.admin)
    auth.grant_user_permission(name, "registered_model", model, "MANAGE")
    got = auth.get_user_permission(name, "registered_model", model)
    assert (got.permission, got.allowed) == ("MANAGE", True)
    as_user().set_registered_model_alias(model, "live", version)
    assert as_user().get_model_version_by_alias(model, "live").version == version
    sign_in(monkeypatch, *server.admin)
    auth.revoke_user_permission(name, "registered_model", model)
    refused("PERMISSION_DENIED", as_user().set_registered_model_alias, model, "live", version)
    sign_in(monkeypatch, *server.admin)
    refused("RESOURCE_DOES_NOT_EXIST", auth.get_user_permission, new_name("nobody"), "registered_model", model)
    refused("INVALID_PARAMETER_VALUE", auth.get_user_permission, name, "no-such-type", model)


def test_wrong_or_missing_credentials_are_a_clear_401(server, monkeypatch):
    url = server.url + "/api/2.0/mlflow/experiments/search"
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    missing = refused("UNAUTHENTICATED", MlflowClient(server.url).search_experiments)
    assert missing.get_http_status_code() == 401 and "MLFLOW_TRACKING_USERNAME" in missing.message
    sign_in(monkeypatch, server.user[0], "not-the-password")
    wrong = refused("UNAUTHENTICATED", MlflowClient(server.url).search_experiments)
    assert wrong.get_http_status_code() == 401 and "Invalid credentials" in wrong.message
    with pytest.raises(MlflowException, match="UNAUTHENTICATED"):
        mlflow.set_tracking_uri(server.url)
        mlflow.search_runs(experiment_ids=["0"])
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME")
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", server.token[:-4] + "abcd")  # a token whose secret is wrong
    assert refused("UNAUTHENTICATED", MlflowClient(server.url).search_experiments).get_http_status_code() == 401
    # As MLflow's basic-auth server does: 401 with a challenge, so a browser asks for a password.
    for answer in (httpx.get(url), httpx.get(url, auth=(server.user[0], "wrong")), httpx.get(url, headers={"Authorization": "Bearer ef_nope"})):
        assert answer.status_code == 401 and answer.headers["www-authenticate"].startswith("Basic realm=")
        assert answer.json()["error_code"] == "UNAUTHENTICATED"
