"""The registry through ``eventflow.Client`` (on the embedded log, no server) and the
``eventflow registry`` command line (against a live server and a local home)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import httpx
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "server"))
from serving import running_server  # noqa: E402

import eventflow  # noqa: E402
from eventflow.log import open_log  # noqa: E402
from eventflow.validation import InvalidInput  # noqa: E402


@pytest.fixture
def home(tmp_path, monkeypatch):
    path = tmp_path / "home"
    monkeypatch.setenv("EVENTFLOW_HOME", str(path))
    monkeypatch.setenv("EVENTFLOW_CAPTURE_ENV", "false")
    monkeypatch.setenv("EVENTFLOW_ACTOR", "sdk-user")
    eventflow.set_tracking_uri(str(path))
    yield path
    while eventflow.active_run():
        eventflow.end_run()
    eventflow.set_tracking_uri(None)


def run_with_model(tmp_path) -> str:
    model = tmp_path / "model"
    model.mkdir()
    (model / "MLmodel").write_text("flavors: {}\n")
    with eventflow.start_run() as run:
        eventflow.log_artifacts(str(model), "model")
    eventflow.flush()
    return run.run_id


def registry_events(home) -> list:
    from eventflow.codec import decode

    with open_log(str(home / "log")) as log:
        consumer = log.consumer(["eventflow.models"])
        records = []
        while batch := consumer.poll(timeout=0.5, max_records=1000):
            records += batch
        consumer.close()
    return sorted((decode(r.value) for r in records), key=lambda e: e.time)


def test_the_sdk_client_works_the_registry_on_the_embedded_log(home, tmp_path):
    run_id = run_with_model(tmp_path)
    with eventflow.Client(str(home)) as client:
        first = client.register_model(f"runs:/{run_id}/model", "sdk-model", tags={"stage": "dev"})
        second = client.register_model(f"runs:/{run_id}/model", "sdk-model")
        assert (first["version"], second["version"]) == ("1", "2") and first["tags"] == [{"key": "stage", "value": "dev"}]
        client.set_registered_model_alias("sdk-model", "production", 2)
        assert client.get_model_version_by_alias("sdk-model", "production")["version"] == "2"
        client.transition_model_version_stage("sdk-model", 1, "Staging")
        assert [v["version"] for v in client.get_latest_versions("sdk-model", ["Staging"])] == ["1"]
        assert client.get_model_version_download_uri("sdk-model", 1).startswith((home / "artifacts").as_uri())
        assert [m["name"] for m in client.search_registered_models("name LIKE 'sdk-%'")] == ["sdk-model"]
        assert client.get_model_version("sdk-model", 7) is None and client.get_registered_model("nope") is None
        with pytest.raises(InvalidInput, match="outside the artifact store") as refused:
            client.create_model_version("sdk-model", str(tmp_path))
        assert refused.value.error_code == "INVALID_PARAMETER_VALUE"
        inside = client.create_model_version("sdk-model", str(home / "artifacts"))
        assert inside["version"] == "3", "a path inside the store is a valid source"
        client.rename_registered_model("sdk-model", "sdk-model-2")
        assert client.get_registered_model("sdk-model-2")["aliases"] == [{"alias": "production", "version": "2"}]
    events = registry_events(home)
    assert [e.type for e in events] == [
        "registered_model.created", "model_version.created", "model_version.created", "model_version.alias_set",
        "model_version.stage_transitioned", "model_version.created", "registered_model.renamed",
    ]
    assert {e.actor for e in events} == {"sdk-user"}


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "eventflow", "registry", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_the_cli_registers_promotes_and_lists_against_a_server(tmp_path):
    name = "cli-" + uuid.uuid4().hex[:8]
    with running_server(tmp_path / "server") as url:
        api = url + "/api/2.0/mlflow/"
        run_id = httpx.post(api + "runs/create", json={"experiment_id": "0"}).json()["run"]["info"]["run_id"]
        uri = ["--tracking-uri", url]
        done = cli(*uri, "register", f"runs:/{run_id}/model", name, "--tag", "validated=yes", "--description", "first")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"registered {name} version 1 from runs:/{run_id}/model"
        assert cli(*uri, "register", f"runs:/{run_id}/model", name).stdout.startswith(f"registered {name} version 2")
        assert cli(*uri, "alias", name, "production", "2").stdout.strip() == f"{name}@production -> version 2"
        assert cli(*uri, "alias", name, "production").stdout.startswith(f"{name}@production -> version 2")
        assert cli(*uri, "stage", name, "1", "staging").stdout.strip() == f"{name} version 1 is in Staging"
        listing = cli(*uri, "versions", name).stdout.splitlines()
        assert listing[0].split() == ["VERSION", "STAGE", "ALIASES", "CREATED", "BY", "SOURCE"]
        assert [line.split()[:2] for line in listing[1:]] == [["2", "None"], ["1", "Staging"]]
        assert listing[1].split()[2] == "production" and listing[1].endswith(f"runs:/{run_id}/model")
        models = cli(*uri, "models", "list", "--filter", f"name = '{name}'").stdout.splitlines()
        assert models[1].split()[:3] == [name, "2", "production=2"]
        refused = cli(*uri, "register", "file:///etc/passwd", name)
        assert refused.returncode == 1
        assert "Invalid model version source 'file:///etc/passwd'" in refused.stderr and "INVALID_PARAMETER_VALUE" in refused.stderr
        missing = cli(*uri, "versions", "no-such-model")
        assert missing.returncode == 1 and "eventflow registry models list" in missing.stderr
        assert cli(*uri, "models", "delete", name, "--yes", env={"EVENTFLOW_ACTOR": "carol"}).returncode == 0
        assert httpx.get(api + "registered-models/get", params={"name": name}).status_code == 404
        page = httpx.get(api.replace("mlflow/", "eventflow/events"), params={"type": "registered_model.deleted", "max_results": 100}).json()
        assert [e["event"]["actor"] for e in page["events"] if e["event"]["payload"]["name"] == name] == ["carol"]


def test_a_server_and_an_sdk_writing_beside_it_never_share_a_version_number(tmp_path, monkeypatch):
    """Two processes number versions of one model at once (no lock in common): the
    projector keeps the first event for each number and the loser takes the next one."""
    import threading

    import mlflow

    home = tmp_path / "shared-home"
    monkeypatch.setenv("EVENTFLOW_CAPTURE_ENV", "false")
    name = "two-writers"
    with running_server(home) as url:
        api = url + "/api/2.0/mlflow/"
        run_id = httpx.post(api + "runs/create", json={"experiment_id": "0"}).json()["run"]["info"]["run_id"]
        source = f"runs:/{run_id}/model"
        mlflow.set_tracking_uri(url)
        versions: list[str] = []
        errors: list[BaseException] = []

        def over_http() -> None:
            try:
                for _ in range(5):
                    versions.append(mlflow.MlflowClient(url, url).create_model_version(name, source).version)
            except BaseException as error:
                errors.append(error)

        def in_process() -> None:
            try:
                with eventflow.Client(str(home)) as client:
                    for _ in range(5):
                        versions.append(client.create_model_version(name, source)["version"])
            except BaseException as error:
                errors.append(error)

        httpx.post(api + "registered-models/create", json={"name": name})
        threads = [threading.Thread(target=target) for target in (over_http, over_http, in_process)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert sorted(versions, key=int) == [str(i) for i in range(1, 16)]
        found = httpx.get(api + "model-versions/search", params={"filter": f"name = '{name}'"}).json()["model_versions"]
        assert sorted(int(v["version"]) for v in found) == list(range(1, 16))
    # Lost races, if any, are on the dead-letter topic: only duplicate numbers, nothing else.
    with open_log(str(home / "log")) as log:
        lost = []
        if "eventflow.dead-letter" in log.topics():
            consumer = log.consumer(["eventflow.dead-letter"])
            while batch := consumer.poll(timeout=0.5, max_records=1000):
                lost += [r.header("dead_letter.reason").decode() for r in batch]
            consumer.close()
    assert all("already exists" in reason for reason in lost), lost
    print(f"{len(lost)} lost races")
