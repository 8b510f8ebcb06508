"""The artifact answers MLflow's server gives, asked of ``eventflow server``.

MLflow's own server tests (tests/tracking/test_rest_tracking.py: ``test_path_validation``,
``test_upload_artifact_handler*``) and its UI's calls are the checklist: the proxied
downloads' headers and content types, ``Invalid path`` for a path with ``..``, the UI's
``/get-artifact``, ``/model-versions/get-artifact``, ``upload-artifact`` and the logged
model's ``artifacts/directories`` and ``artifacts/files`` — each download checked against
the digest the log (or the version's pins) vouches for. Every server of
``test_mlflow_client.url``: embedded, Kafka with PostgreSQL, and signed in (password, token).
"""

from __future__ import annotations

import hashlib
import os
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from test_mlflow_client import HOMES, client, events, http, url  # noqa: E402,F401  (the servers, shared fixtures)

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "server"))
from serving import running_server  # noqa: E402

import mlflow  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

PROXY = "/api/2.0/mlflow-artifacts/artifacts/"
INVALID_PATH = {"error_code": "INVALID_PARAMETER_VALUE", "message": "Invalid path"}


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _run(client: MlflowClient) -> tuple[str, str]:
    """A new run: (run_id, its path in the store)."""
    experiment_id = client.create_experiment(_unique("compat-artifacts"))
    run = client.create_run(experiment_id)
    return run.info.run_id, run.info.artifact_uri.removeprefix("mlflow-artifacts:/")


def _put(url: str, store_path: str, body: bytes, **headers: str) -> None:
    answer = http("PUT", url + PROXY + store_path, content=body, headers=headers)
    assert answer.status_code == 200, answer.text


def _refused(answer, code: str = "INVALID_PARAMETER_VALUE", status: int = 400) -> str:
    assert answer.status_code == status, answer.text
    assert answer.json()["error_code"] == code, answer.text
    return answer.json()["message"]


# -- downloads: MLflow's headers and content types ---------------------------------------------


TYPES = {
    "notes.txt": "text/plain",
    "MLmodel": "text/plain",
    "MLproject": "text/plain",
    "conf.yaml": "text/plain",
    "metrics.json": "text/plain",
    "train.py": "text/plain",
    "table.csv": "text/plain",
    "plot.png": "image/png",
    "model.pkl": "application/octet-stream",
    "weights": "application/octet-stream",
    "report.html": "text/plain",  # eventflow: never text/html (MLflow's would be); see the README
}


def test_downloads_carry_mlflows_type_and_headers(client, url):
    run_id, root = _run(client)
    body = b"<script>alert(1)</script>"
    for name in TYPES:
        # The uploader's Content-Type is not the server's answer: the file's name decides it.
        _put(url, f"{root}/{name}", body, **{"Content-Type": "text/html"})
    for name, content_type in TYPES.items():
        for address in (url + PROXY + f"{root}/{name}", url + f"/get-artifact?run_uuid={run_id}&path={name}"):
            answer = http("GET", address)
            assert answer.status_code == 200, answer.text
            assert answer.headers["content-type"] == content_type, (name, "MLflow's type, and no charset where MLflow sends none")
            assert answer.headers["x-content-type-options"] == "nosniff"
            assert answer.headers["content-disposition"] == f"attachment; filename={name}"
            assert "sandbox" in answer.headers["content-security-policy"], "an artifact is never run as this site's page"
            assert answer.content == body


def test_a_file_name_that_is_not_a_token_is_quoted_as_mlflow_quotes_it(client, url):
    run_id, root = _run(client)
    _put(url, f"{root}/my notes.txt", b"a")
    _put(url, f"{root}/résumé.txt", b"b")
    answer = http("GET", url + "/get-artifact", params={"run_id": run_id, "path": "my notes.txt"})
    assert answer.headers["content-disposition"] == 'attachment; filename="my notes.txt"'
    answer = http("GET", url + "/get-artifact", params={"run_id": run_id, "path": "résumé.txt"})
    assert answer.headers["content-disposition"] == "attachment; filename=resume.txt; filename*=UTF-8''r%C3%A9sum%C3%A9.txt"


# -- paths with ".." ---------------------------------------------------------------------------


def test_a_path_with_dotdot_is_an_invalid_path(client, url):
    """MLflow's test_path_validation, and the store listing beside it."""
    run_id, root = _run(client)
    experiment_id = root.split("/")[0]
    for path in ("../path", "a/../../b", "%2E%2E/x", "/etc/passwd"):
        answer = http("GET", url + "/api/2.0/mlflow/artifacts/list", params={"run_id": run_id, "path": path})
        assert (answer.status_code, answer.json()) == (400, INVALID_PATH), path
        answer = http("GET", url + "/ajax-api/2.0/mlflow/artifacts/list", params={"run_id": run_id, "path": path})
        assert (answer.status_code, answer.json()) == (400, INVALID_PATH), path
        answer = http("GET", url + "/get-artifact", params={"run_id": run_id, "path": path})
        assert (answer.status_code, answer.json()) == (400, INVALID_PATH), path
        answer = http("GET", url + "/model-versions/get-artifact", params={"name": "model", "version": 1, "path": path})
        assert (answer.status_code, answer.json()) == (400, INVALID_PATH), path
    for path in (f"{experiment_id}/..", f"{root}/../..", f"{experiment_id}/%2e%2e"):
        answer = http("GET", url + "/api/2.0/mlflow-artifacts/artifacts", params={"path": path})
        assert (answer.status_code, answer.json()) == (400, INVALID_PATH), path
    assert http("GET", url + "/api/2.0/mlflow/artifacts/list", params={"run_id": run_id, "path": "sub"}).json()["files"] == []


# -- the UI's routes ---------------------------------------------------------------------------


def test_get_artifact_serves_a_runs_file_checked_against_the_log(client, url, tmp_path):
    run_id, root = _run(client)
    (tmp_path / "metrics.json").write_text('{"acc": 1}')
    client.log_artifact(run_id, str(tmp_path / "metrics.json"), "eval")
    answer = http("GET", url + "/get-artifact", params={"run_uuid": run_id, "path": "eval/metrics.json"})
    assert answer.status_code == 200 and answer.text == '{"acc": 1}'
    message = _refused(http("GET", url + "/get-artifact", params={"run_id": run_id, "path": "eval"}))
    assert message == "Artifact path refers to a directory, not a file: 'eval'"
    _refused(http("GET", url + "/get-artifact", params={"run_id": run_id, "path": "nope.txt"}), "RESOURCE_DOES_NOT_EXIST", 404)
    message = _refused(http("GET", url + "/get-artifact", params={"run_id": uuid.uuid4().hex, "path": "a"}), "RESOURCE_DOES_NOT_EXIST", 404)
    assert message.startswith("Run with id=")
    (HOMES[url] / "artifacts" / root / "eval" / "metrics.json").write_text('{"acc": 0}')  # behind the server's back
    refused = http("GET", url + "/get-artifact", params={"run_uuid": run_id, "path": "eval/metrics.json"})
    assert refused.status_code == 500 and "does not match the sha256" in refused.json()["message"]


def _version_with_files(client: MlflowClient, tmp_path: Path) -> tuple[str, str, str]:
    """A registered version of a run's model directory: (name, its store directory, run_id)."""
    run_id, root = _run(client)
    model = tmp_path / "model"
    model.mkdir()
    (model / "MLmodel").write_text("flavors: {}\n")
    (model / "model.pkl").write_bytes(b"\x80\x04K\x01.")
    client.log_artifacts(run_id, str(model), "model")
    name = _unique("compat-mv-artifact")
    client.create_registered_model(name)
    client.create_model_version(name, f"runs:/{run_id}/model", run_id)
    return name, f"{root}/model", run_id


def test_model_version_get_artifact_serves_what_the_version_pinned(client, url, tmp_path):
    name, directory, run_id = _version_with_files(client, tmp_path)
    endpoint = url + "/model-versions/get-artifact"
    answer = http("GET", endpoint, params={"name": name, "version": "1", "path": "MLmodel"})  # what MLflow's UI asks
    assert answer.status_code == 200 and answer.text == "flavors: {}\n"
    assert answer.headers["content-type"] == "text/plain" and answer.headers["x-content-type-options"] == "nosniff"
    assert http("GET", endpoint, params={"name": name, "version": "1", "path": "model.pkl"}).headers["content-type"] == "application/octet-stream"
    _refused(http("GET", endpoint, params={"name": name, "version": "2", "path": "MLmodel"}), "RESOURCE_DOES_NOT_EXIST", 404)
    # A file put beside the model after registration was never pinned: not served as the version's.
    client.log_text(run_id, "later", "model/extra.txt")
    message = _refused(http("GET", endpoint, params={"name": name, "version": "1", "path": "extra.txt"}), "RESOURCE_DOES_NOT_EXIST", 404)
    assert "pinned" in message
    # A swapped file stops the download, naming both digests.
    (HOMES[url] / "artifacts" / directory / "model.pkl").write_bytes(b"evil")
    refused = http("GET", endpoint, params={"name": name, "version": "1", "path": "model.pkl"})
    assert refused.status_code == 500, refused.text
    assert hashlib.sha256(b"\x80\x04K\x01.").hexdigest()[:12] in refused.json()["message"]


def test_upload_artifact_as_mlflows_ui_does(client, url):
    """MLflow's test_upload_artifact_handler and _rejects_invalid_requests."""
    run_id, root = _run(client)
    endpoint = url + "/ajax-api/2.0/mlflow/upload-artifact"
    assert _refused(http("POST", endpoint, params={})) == "Request must specify run_uuid."
    assert _refused(http("POST", endpoint, params={"run_uuid": run_id})) == "Request must specify path."
    assert _refused(http("POST", endpoint, params={"run_uuid": run_id, "path": ""})) == "Request must specify path."
    assert http("POST", endpoint, params={"run_uuid": run_id, "path": "../test.txt"}, content=b"x").json() == INVALID_PATH
    assert _refused(http("POST", endpoint, params={"run_uuid": run_id, "path": "test.txt"})) == "Request must specify data."
    too_big = http("POST", endpoint, params={"run_uuid": run_id, "path": "big.bin"}, content=b"\0" * (10 * 1024 * 1024 + 1))
    assert _refused(too_big) == "Artifact size is too large. Max size is 10MB."
    # A form post is what another site's page could send: refused before anything is read.
    form = http("POST", endpoint, params={"run_uuid": run_id, "path": "f.txt"}, content=b"x", headers={"Content-Type": "text/plain"})
    assert form.status_code == 415, form.text

    answer = http("POST", endpoint, params={"run_uuid": run_id, "path": "test.txt"}, content=b"hello world")
    assert answer.status_code == 200, answer.text
    assert http("GET", url + "/get-artifact", params={"run_uuid": run_id, "path": "test.txt"}).text == "hello world"
    # MLflow's UI sends the file as a JSON string, with Content-Type: application/json.
    ui = http("POST", endpoint, params={"run_uuid": run_id, "path": "notes/n.json"}, content=b'"{}"', headers={"Content-Type": "application/json"})
    assert ui.status_code == 200, ui.text
    assert [f.path for f in client.list_artifacts(run_id)] == ["notes", "test.txt"]
    logged = [e["event"]["payload"] for e in events(url, type="run.artifact_logged") if e["event"]["payload"]["run_id"] == run_id]
    assert {(p["path"], p["size"], p["sha256"]) for p in logged} == {
        ("test.txt", 11, hashlib.sha256(b"hello world").hexdigest()),
        ("notes/n.json", 4, hashlib.sha256(b'"{}"').hexdigest()),
    }
    missing = http("POST", endpoint, params={"run_uuid": uuid.uuid4().hex, "path": "a.txt"}, content=b"x")
    _refused(missing, "RESOURCE_DOES_NOT_EXIST", 404)
    client.set_terminated(run_id)
    frozen = http("POST", endpoint, params={"run_uuid": run_id, "path": "late.txt"}, content=b"late")
    _refused(frozen, "RESOURCE_CONFLICT", 409)
    assert not (HOMES[url] / "artifacts" / root / "late.txt").exists()


def test_a_logged_models_directories_and_files(client, url, tmp_path):
    experiment_id = client.create_experiment(_unique("compat-lm-artifacts"))
    model = client.create_logged_model(experiment_id)
    (tmp_path / "sub").mkdir()
    (tmp_path / "MLmodel").write_text("flavors: {}\n")
    (tmp_path / "sub" / "w.bin").write_bytes(b"\1\2\3")
    client.log_model_artifacts(model.model_id, str(tmp_path))
    for prefix in ("/api/2.0/mlflow/", "/ajax-api/2.0/mlflow/"):
        listed = http("GET", url + prefix + f"logged-models/{model.model_id}/artifacts/directories")
        assert listed.status_code == 200, listed.text
        assert listed.json() == {
            "root_uri": model.artifact_location,
            "files": [{"path": "MLmodel", "is_dir": False, "file_size": 12}, {"path": "sub", "is_dir": True}],
        }
        inner = http("GET", url + prefix + f"logged-models/{model.model_id}/artifacts/directories", params={"artifact_directory_path": "sub"})
        assert inner.json()["files"] == [{"path": "sub/w.bin", "is_dir": False, "file_size": 3}]
        dotdot = http("GET", url + prefix + f"logged-models/{model.model_id}/artifacts/directories", params={"artifact_directory_path": "../x"})
        assert (dotdot.status_code, dotdot.json()) == (400, INVALID_PATH)
    missing = http("GET", url + f"/api/2.0/mlflow/logged-models/m-{uuid.uuid4().hex}/artifacts/directories")
    _refused(missing, "RESOURCE_DOES_NOT_EXIST", 404)

    files = url + f"/ajax-api/2.0/mlflow/logged-models/{model.model_id}/artifacts/files"
    answer = http("GET", files, params={"artifact_file_path": "MLmodel"})
    assert answer.status_code == 200 and answer.text == "flavors: {}\n"
    assert answer.headers["content-type"] == "text/plain" and answer.headers["content-disposition"] == "attachment; filename=MLmodel"
    assert http("GET", files, params={"artifact_file_path": "sub/w.bin"}).content == b"\1\2\3"
    assert _refused(http("GET", files), "BAD_REQUEST") == 'Request must include the "artifact_file_path" query parameter.'
    assert http("GET", files, params={"artifact_file_path": "../../x"}).json() == INVALID_PATH
    stored = HOMES[url] / "artifacts" / model.artifact_location.removeprefix("mlflow-artifacts:/") / "sub" / "w.bin"
    stored.write_bytes(b"\3\2\1")
    refused = http("GET", files, params={"artifact_file_path": "sub/w.bin"})
    assert refused.status_code == 500 and "does not match the sha256" in refused.json()["message"]


# -- experiments: a relative artifact_location -------------------------------------------------


def test_a_relative_artifact_location_outside_the_store_is_refused_naming_where_it_resolved(client, url):
    """Resolved against the server's working directory (as MLflow's server does): this
    server runs in the test's, outside its artifact store."""
    resolved = Path.cwd().joinpath("my_location").as_posix()
    with pytest.raises(Exception, match="outside the artifact store") as raised:
        client.create_experiment(_unique("compat-relative"), artifact_location="my_location")
    assert resolved in str(raised.value)


def test_a_relative_artifact_location_is_resolved_as_mlflows_server_resolves_it(tmp_path, monkeypatch):
    """MLflow's test_create_get_search_experiment: ``my_location`` becomes
    ``<the server's working directory>/my_location`` — here the artifact store itself."""
    home = tmp_path / "home"
    store = home / "artifacts"
    store.mkdir(parents=True)
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with running_server(home, cwd=str(store)) as served:
        client = MlflowClient(served)
        experiment_id = client.create_experiment("My Experiment", artifact_location="my_location", tags={"key1": "val1"})
        experiment = client.get_experiment(experiment_id)
        assert experiment.artifact_location == store.resolve().joinpath("my_location").as_posix()
        assert client.create_run(experiment_id).info.artifact_uri.startswith(experiment.artifact_location + "/")
        in_uri = client.get_experiment(client.create_experiment("file-relative", artifact_location="file:sub/dir")).artifact_location
        assert in_uri == "file://" + store.resolve().joinpath("sub/dir").as_posix()
        with pytest.raises(Exception, match="outside the artifact store|'..'"):
            client.create_experiment("escapes", artifact_location="../elsewhere")
        assert client.get_experiment_by_name("escapes") is None


# -- permissions -------------------------------------------------------------------------------


def test_the_ui_routes_are_governed_as_the_other_artifact_routes(authed_server, tmp_path):
    """READ on the experiment (or the model) to download, EDIT to upload."""
    import httpx

    server = authed_server("password")
    reader = ("compat-reader-" + uuid.uuid4().hex[:6], "reader-password-" + uuid.uuid4().hex)
    created = httpx.post(server.url + "/api/2.0/mlflow/users/create", json={"username": reader[0], "password": reader[1]}, auth=server.admin)
    assert created.status_code == 200, created.text
    owner = MlflowClient(server.url)
    with pytest.MonkeyPatch.context() as environment:
        environment.setenv("MLFLOW_TRACKING_USERNAME", server.user[0])
        environment.setenv("MLFLOW_TRACKING_PASSWORD", server.user[1])
        environment.setenv("MLFLOW_TRACKING_URI", server.url)  # the mlflow-artifacts: uploads go there
        mlflow.set_tracking_uri(server.url)
        name, _, run_id = _version_with_files(owner, tmp_path)
        experiment_id = owner.get_run(run_id).info.experiment_id
        model_id = owner.create_logged_model(experiment_id).model_id

    def call(method: str, route: str, auth=reader, **params):
        return httpx.request(method, server.url + route, params=params, auth=auth, content=b"x" if method == "POST" else None, timeout=30)

    # The default permission is READ: a reader downloads and lists, and cannot upload.
    assert call("GET", "/get-artifact", run_id=run_id, path="model/MLmodel").status_code == 200
    assert call("GET", "/model-versions/get-artifact", name=name, version="1", path="MLmodel").status_code == 200
    assert call("GET", f"/api/2.0/mlflow/logged-models/{model_id}/artifacts/directories").status_code == 200
    refused = call("POST", "/ajax-api/2.0/mlflow/upload-artifact", run_uuid=run_id, path="x.txt")
    assert (refused.status_code, refused.json()["error_code"]) == (403, "PERMISSION_DENIED")
    # With NO_PERMISSIONS on the experiment and the model, nothing of them is served.
    for path, body in (("/api/2.0/mlflow/experiments/permissions/create", {"experiment_id": experiment_id}),
                       ("/api/2.0/mlflow/registered-models/permissions/create", {"name": name})):
        granted = httpx.post(server.url + path, json={**body, "username": reader[0], "permission": "NO_PERMISSIONS"}, auth=server.admin)
        assert granted.status_code == 200, granted.text
    assert call("GET", "/get-artifact", run_id=run_id, path="model/MLmodel").status_code == 403
    assert call("GET", "/model-versions/get-artifact", name=name, version="1", path="MLmodel").status_code == 403
    assert call("GET", f"/ajax-api/2.0/mlflow/logged-models/{model_id}/artifacts/files", artifact_file_path="MLmodel").status_code == 403
    assert call("GET", f"/api/2.0/mlflow/logged-models/{model_id}/artifacts/directories").status_code == 403
    assert call("POST", "/ajax-api/2.0/mlflow/upload-artifact", run_uuid=run_id, path="x.txt", auth=server.user).status_code == 200
