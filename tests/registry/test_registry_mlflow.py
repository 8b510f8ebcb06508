"""The model registry through the real ``mlflow`` client against a live ``eventflow server``.

Registered models, versions (from a run's artifacts, from a logged model, via
``mlflow.register_model``), tags, aliases and stages: each change is an event on the log,
in order, naming the user the client authenticated as; the views answer MlflowClient.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid

import httpx
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "server"))
from serving import kafka_postgres_options, running_server  # noqa: E402

import mlflow  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

STARTED_MS = int(time.time() * 1000)
USER = "alice"


@pytest.fixture(scope="module", params=["embedded", "kafka+postgresql"])
def url(request, tmp_path_factory):
    home = tmp_path_factory.mktemp("registry")
    options: list[str] = []
    if request.param == "kafka+postgresql":
        options = kafka_postgres_options(request, "registry")
    with running_server(home, *options) as url:
        yield url


@pytest.fixture
def client(url, monkeypatch):
    # The MLflow client sends these as HTTP Basic credentials: the events name this user.
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", USER)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "secret")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    mlflow.set_tracking_uri(url)
    # set_registry_uri also exports MLFLOW_REGISTRY_URI; monkeypatch removes it afterwards.
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", url)
    mlflow.set_registry_uri(url)
    # mlflow keeps the active experiment globally: one an earlier test set on another
    # server would be asked of this one.
    mlflow.set_experiment(experiment_id="0")
    yield MlflowClient(url, url)
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_registry_uri(None)  # global in mlflow: later tests must not reach this server


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def model_events(url: str, name: str) -> list[dict]:
    """The registry events about one model (a shared broker holds other tests' too)."""
    found, token = [], None
    while True:
        query = {"max_results": 10000, "from_time": STARTED_MS, "type": ["registered_model.*", "model_version.*"],
                 **({"page_token": token} if token else {})}
        page = httpx.get(url + "/api/2.0/eventflow/events", params=query).json()
        found += [e["event"] for e in page["events"] if "event" in e and e["event"]["payload"]["name"] == name]
        token = page.get("next_page_token")
        if not token:
            return found


def logged_run(tmp_path) -> str:
    """A run with a model directory (an MLmodel file and weights) in its artifacts."""
    model_dir = tmp_path / "model"
    model_dir.mkdir(exist_ok=True)
    (model_dir / "MLmodel").write_text("flavors: {}\n")
    (model_dir / "weights.bin").write_bytes(b"\x00" * 64)
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(model_dir), "model")
    return run.info.run_id


def test_registered_models_create_rename_update_tag_search_delete(client, url):
    name, renamed = unique("rm"), unique("rm-renamed")
    created = client.create_registered_model(name, tags={"team": "ml"}, description="first")
    assert created.name == name and created.description == "first" and created.tags == {"team": "ml"}
    with pytest.raises(MlflowException, match="already exists"):
        client.create_registered_model(name)
    client.update_registered_model(name, description="second")
    client.set_registered_model_tag(name, "owner", "alice")
    client.delete_registered_model_tag(name, "team")
    got = client.get_registered_model(name)
    assert got.description == "second" and got.tags == {"owner": "alice"}
    client.rename_registered_model(name, renamed)
    with pytest.raises(MlflowException, match="not found"):
        client.get_registered_model(name)
    assert client.get_registered_model(renamed).tags == {"owner": "alice"}
    prefix = renamed.rsplit("-", 1)[0]
    assert [m.name for m in client.search_registered_models(filter_string=f"name = '{renamed}'")] == [renamed]
    assert renamed in [m.name for m in client.search_registered_models(filter_string=f"name LIKE '{prefix}-%'")]
    assert renamed in [m.name for m in client.search_registered_models(filter_string=f"name ILIKE '{prefix.upper()}-%'")]
    assert [m.name for m in client.search_registered_models(filter_string=f"tags.owner = 'alice' AND name = '{renamed}'")] == [renamed]
    assert client.search_registered_models(filter_string=f"tags.owner = 'bob' AND name = '{renamed}'") == []
    siblings = [f"{renamed}-{i}" for i in range(3)]
    for sibling in siblings:
        client.create_registered_model(sibling)
    pages, token = [], None
    while True:
        page = client.search_registered_models(f"name LIKE '{renamed}-%'", max_results=2, order_by=["name DESC"], page_token=token)
        pages.append([m.name for m in page])
        token = page.token
        if not token:
            break
    assert pages == [siblings[:0:-1], siblings[:1]]
    client.delete_registered_model(renamed)
    with pytest.raises(MlflowException, match="RESOURCE_DOES_NOT_EXIST"):
        client.get_registered_model(renamed)
    kinds = [(e["type"], e["actor"]) for e in model_events(url, name)] + [(e["type"], e["actor"]) for e in model_events(url, renamed)]
    assert [k for k, _ in kinds] == [
        "registered_model.created", "registered_model.updated", "registered_model.tag_set", "registered_model.tag_deleted",
        "registered_model.renamed", "registered_model.deleted",
    ]
    assert {actor for _, actor in kinds} == {USER}


def test_versions_from_a_run_tags_aliases_stages_and_download(client, url, tmp_path):
    name = unique("mv")
    run_id = logged_run(tmp_path)
    client.create_registered_model(name)
    v1 = client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id, tags={"k": "v"}, description="one")
    v2 = mlflow.register_model(f"runs:/{run_id}/model", name)
    assert (v1.version, v2.version) == ("1", "2")
    assert v1.run_id == run_id and v1.tags == {"k": "v"} and v1.status == "READY" and v1.current_stage == "None"
    assert v2.source.startswith("mlflow-artifacts:/") and v2.source.endswith(f"/{run_id}/artifacts/model")
    uri = client.get_model_version_download_uri(name, "1")
    assert uri.endswith(f"/{run_id}/artifacts/model")
    downloaded = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(tmp_path / "dl"))
    assert open(os.path.join(downloaded, "weights.bin"), "rb").read() == b"\x00" * 64
    # (MLflow's client adds a registered_model_meta file of its own to what it downloads)
    assert {"MLmodel", "weights.bin"} <= set(os.listdir(mlflow.artifacts.download_artifacts(f"models:/{name}/2", dst_path=str(tmp_path / "dl2"))))

    client.update_model_version(name, "1", description="uno")
    client.set_model_version_tag(name, "1", "validated", "yes")
    client.delete_model_version_tag(name, "1", "k")
    got = client.get_model_version(name, "1")
    assert got.description == "uno" and got.tags == {"validated": "yes"}

    client.set_registered_model_alias(name, "champion", "1")
    assert client.get_model_version_by_alias(name, "champion").version == "1"
    client.set_registered_model_alias(name, "champion", "2")  # the promotion
    assert client.get_model_version_by_alias(name, "champion").version == "2"
    assert client.get_registered_model(name).aliases == {"champion": "2"}
    assert {"MLmodel", "weights.bin"} <= set(os.listdir(mlflow.artifacts.download_artifacts(f"models:/{name}@champion", dst_path=str(tmp_path / "dl3"))))
    client.delete_registered_model_alias(name, "champion")
    client.delete_registered_model_alias(name, "never-set")  # as in MLflow: nothing to do, and no event
    client.delete_model_version_tag(name, "1", "never-set")
    with pytest.raises(MlflowException, match="alias champion not found"):
        client.get_model_version_by_alias(name, "champion")
    with pytest.raises(MlflowException, match="reserved"):
        client.set_registered_model_alias(name, "latest", "1")

    client.transition_model_version_stage(name, "1", "Production")
    v3 = client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id)
    moved = client.transition_model_version_stage(name, v3.version, "production", archive_existing_versions=True)
    assert moved.current_stage == "Production"
    assert client.get_model_version(name, "1").current_stage == "Archived"
    client.transition_model_version_stage(name, "2", "Staging")
    assert {v.current_stage: v.version for v in client.get_latest_versions(name)} == {"Archived": "1", "Staging": "2", "Production": "3"}
    assert [v.version for v in client.get_latest_versions(name, stages=["Staging"])] == ["2"]

    found = client.search_model_versions(f"name = '{name}'")
    assert sorted(v.version for v in found) == ["1", "2", "3"]
    assert sorted(v.version for v in client.search_model_versions(f"name = '{name}' AND run_id = '{run_id}'")) == ["1", "2", "3"]
    assert [v.version for v in client.search_model_versions(f"name = '{name}' AND tags.validated = 'yes'")] == ["1"]
    like = client.search_model_versions(f"name = '{name}' AND source_path LIKE '%/{run_id}/artifacts/model'")
    assert [v.version for v in like] == ["2"]

    client.delete_model_version(name, "2")
    with pytest.raises(MlflowException, match="not found"):
        client.get_model_version(name, "2")
    assert client.create_model_version(name, f"runs:/{run_id}/model").version == "4", "a deleted version's number is not reused"

    events = model_events(url, name)
    assert [e["type"] for e in events] == [
        "registered_model.created",
        "model_version.created", "model_version.created",
        "model_version.updated", "model_version.tag_set", "model_version.tag_deleted",
        "model_version.alias_set", "model_version.alias_set", "model_version.alias_deleted",
        "model_version.stage_transitioned", "model_version.created",
        "model_version.stage_transitioned", "model_version.stage_transitioned",
        "model_version.stage_transitioned",
        "model_version.deleted", "model_version.created",
    ]
    assert {e["actor"] for e in events} == {USER}
    promotions = [(e["payload"]["alias"], e["payload"]["version"]) for e in events if e["type"] == "model_version.alias_set"]
    assert promotions == [("champion", "1"), ("champion", "2")]
    archived = [e["payload"] for e in events if e["type"] == "model_version.stage_transitioned"][1:3]
    assert archived == [
        {"name": name, "version": "3", "stage": "Production", "archive_existing_versions": True},
        {"name": name, "version": "1", "stage": "Archived", "archive_existing_versions": False},
    ]


def test_register_a_logged_model_mlflow_3(client, url):
    from sklearn.linear_model import LogisticRegression

    name = unique("lm")
    features, labels = [[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1]
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(LogisticRegression().fit(features, labels), name="clf")
    version = mlflow.register_model(info.model_uri, name)
    assert version.version == "1" and version.source == f"models:/{info.model_id}"
    # (MLflow's client drops model_id when it reads a ModelVersion; the REST answer has it)
    answer = httpx.get(url + "/api/2.0/mlflow/model-versions/get", params={"name": name, "version": "1"}).json()["model_version"]
    assert answer["model_id"] == info.model_id and answer["run_id"] == info.run_id
    loaded = mlflow.sklearn.load_model(f"models:/{name}/1")
    assert list(loaded.predict([[0.0], [3.0]])) == [0, 1]
    client.set_registered_model_alias(name, "production", "1")
    served = mlflow.pyfunc.load_model(f"models:/{name}@production")
    assert list(served.predict([[0.0], [3.0]])) == [0, 1]
    [created] = [e for e in model_events(url, name) if e["type"] == "model_version.created"]
    assert created["payload"]["model_id"] == info.model_id and created["payload"]["source"] == f"models:/{info.model_id}"


@pytest.mark.parametrize(
    "source",
    [
        "file:///etc",
        "file:///etc/passwd",
        "/etc/passwd",
        "mlflow-artifacts:/../../etc",
        "mlflow-artifacts:/0/%2e%2e/%2e%2e/etc",
        "runs:/0123456789abcdef0123456789abcdef/../../../etc",
        "http://169.254.169.254/latest/meta-data",
        "s3://bucket/model",
        "models:/other-model/1",
        "relative/path",
    ],
)
def test_sources_outside_the_store_are_refused(client, url, source):
    name = unique("cve")
    client.create_registered_model(name)
    with pytest.raises(MlflowException, match="INVALID_PARAMETER_VALUE"):
        client.create_model_version(name, source)
    assert [e["type"] for e in model_events(url, name)] == ["registered_model.created"], "nothing of it reached the log"


def test_concurrent_registrations_get_distinct_versions(client, url, tmp_path):
    name = unique("race")
    run_id = logged_run(tmp_path)
    versions: list[str] = []
    errors: list[BaseException] = []

    def register() -> None:
        try:
            versions.append(mlflow.register_model(f"runs:/{run_id}/model", name).version)
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=register) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(versions, key=int) == [str(i) for i in range(1, 9)]
    created = [e["payload"]["version"] for e in model_events(url, name) if e["type"] == "model_version.created"]
    assert sorted(created, key=int) == [str(i) for i in range(1, 9)]
