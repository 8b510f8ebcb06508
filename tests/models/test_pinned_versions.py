"""What was registered is what is served: a model version pins the sha256 of each of its
files when it is created, and loading, serving and deploying it check against those pins,
not against whatever the log recorded last. Against a real ``eventflow server``.

The attack: a pickled model is logged, its run ended, version 1 registered. Then the
pickle is swapped for one that runs code when unpickled — by an upload (refused: the run
has ended), or on the store's disk together with a forged ``run.artifact_logged``
appended to the log that vouches for the evil bytes. ``models:/<name>/1`` must still load
what was registered, or refuse, and never run the evil pickle.
"""

from __future__ import annotations

import hashlib
import sqlite3
import os
import pickle
import subprocess
import sys
import uuid

import httpx
import pytest

import eventflow
import eventflow.models as models
from eventflow import commands
from eventflow.codec import encode
from eventflow.codec.framing import CONTENT_TYPE, pack

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "server"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "deploy"))
from serving import free_port, running_server  # noqa: E402

pd = pytest.importorskip("pandas")
sklearn_linear = pytest.importorskip("sklearn.linear_model")

API = "/api/2.0/mlflow/"


class Evil:
    """Unpickling it creates the marker file: proof that the swapped pickle's code ran."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    home = tmp_path_factory.mktemp("pinned-server")
    with running_server(home) as url:
        os.environ["EVENTFLOW_CAPTURE_ENV"] = "false"
        eventflow.set_tracking_uri(url)
        try:
            yield url, home
        finally:
            while eventflow.active_run():
                eventflow.end_run()
            eventflow.set_tracking_uri(None)
            os.environ.pop("EVENTFLOW_CAPTURE_ENV", None)


@pytest.fixture
def frame():
    return pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0], "b": [1, 0, 1, 0, 1, 0]})


def call(url: str, method: str, path: str, **body) -> dict:
    answer = httpx.request(method, url + API + path, **({"params": body} if method == "GET" else {"json": body}))
    assert answer.status_code == 200, answer.text
    return answer.json()


def registered(url: str, frame, source_of=lambda run: f"runs:/{run['info']['run_id']}/model") -> dict:
    """A pickled model logged in a run that has ended, then registered as version 1."""
    estimator = sklearn_linear.LogisticRegression().fit(frame, [0, 0, 0, 1, 1, 1])
    with eventflow.start_run() as active:
        models.log_model(estimator, "model")
    run = call(url, "GET", "runs/get", run_id=active.run_id)["run"]
    assert run["info"]["status"] == "FINISHED"
    name = f"pinned-{uuid.uuid4().hex[:8]}"
    call(url, "POST", "registered-models/create", name=name)
    version = call(url, "POST", "model-versions/create", name=name, source=source_of(run), run_id=active.run_id)["model_version"]
    assert version["version"] == "1"
    return {"name": name, "run": run, "estimator": estimator, "relative": run["info"]["artifact_uri"].removeprefix("mlflow-artifacts:/")}


def evil_pickle(tmp_path) -> tuple[bytes, str]:
    marker = str(tmp_path / "evil-code-ran")
    return pickle.dumps(Evil(marker)), marker


def pinned(url: str, name: str, version: str = "1") -> list[dict]:
    answer = httpx.get(url + "/api/2.0/eventflow/model-versions/files", params={"name": name, "version": version})
    assert answer.status_code == 200, answer.text
    return answer.json()["files"]


def forge_artifact_record(url: str, home, run_id: str, path: str, content: bytes) -> None:
    """Make the run's record vouch for ``content``. Through the SDK's transport it is refused
    (the run has ended: its files are frozen, on every path); so, as an attacker who can
    write the views' database would, change the record behind the API."""
    event = commands.log_artifact(run_id, path, len(content), hashlib.sha256(content).hexdigest())
    answer = httpx.post(url + "/api/2.0/eventflow/events", content=pack([encode(event)]), headers={"content-type": CONTENT_TYPE})
    assert answer.status_code == 409 and answer.json()["error_code"] == "RESOURCE_CONFLICT", answer.text
    with sqlite3.connect(home / "views.db") as db:
        changed = db.execute("UPDATE artifacts SET size = ?, sha256 = ? WHERE run_id = ? AND path = ?",
                             (len(content), hashlib.sha256(content).hexdigest(), run_id, path)).rowcount
    assert changed == 1


def test_a_version_pins_every_file_of_its_source_when_created(tracking, frame):
    url, _ = tracking
    model = registered(url, frame)
    logged = httpx.get(url + "/api/2.0/eventflow/artifacts/digests", params={"run_id": model["run"]["info"]["run_id"], "path": "model"}).json()["files"]
    files = pinned(url, model["name"])
    assert {"MLmodel", "model.pkl"} <= {f["path"] for f in files}
    assert files == [{**f, "path": f["path"].removeprefix("model/")} for f in logged]  # paths inside the model
    [created] = [e["event"] for e in httpx.get(url + "/api/2.0/eventflow/events", params={"type": "model_version.created"}).json()["events"]
                 if e["event"]["payload"]["name"] == model["name"]]
    assert created["payload"]["files"] == files, "the pins are on the log, in the version's own event"
    missing = httpx.get(url + "/api/2.0/eventflow/model-versions/files", params={"name": model["name"], "version": "2"})
    assert missing.status_code == 404 and missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_uploading_over_a_registered_model_is_refused_and_it_still_loads(tracking, frame, tmp_path):
    url, _ = tracking
    model = registered(url, frame)
    content, marker = evil_pickle(tmp_path)
    answer = httpx.put(f"{url}/api/2.0/mlflow-artifacts/artifacts/{model['relative']}/model/model.pkl", content=content)
    assert answer.status_code == 409 and answer.json()["error_code"] == "RESOURCE_CONFLICT", answer.text
    loaded = models.load_model(f"models:/{model['name']}/1")
    assert list(loaded.predict(frame)) == list(model["estimator"].predict(frame))
    assert not os.path.exists(marker)


def swapped(tracking, frame, tmp_path, source_of=lambda run: f"runs:/{run['info']['run_id']}/model") -> dict:
    """Version 1 (aliased production) loads; then its pickle is swapped on disk for an evil
    one and the run's record is forged to vouch for the evil bytes."""
    url, home = tracking
    model = registered(url, frame, source_of)
    run_id, name = model["run"]["info"]["run_id"], model["name"]
    assert list(models.load_model(f"models:/{name}/1").predict(frame)) == list(model["estimator"].predict(frame))
    call(url, "POST", "registered-models/alias", name=name, alias="production", version="1")
    content, marker = evil_pickle(tmp_path)
    evil = hashlib.sha256(content).hexdigest()
    next(home.rglob(f"{run_id}/artifacts/model/model.pkl")).write_bytes(content)
    forge_artifact_record(url, home, run_id, "model/model.pkl", content)
    logged = httpx.get(url + "/api/2.0/eventflow/artifacts/digests", params={"run_id": run_id, "path": "model/model.pkl"}).json()["files"]
    assert logged == [{"path": "model/model.pkl", "size": len(content), "sha256": evil}], "the log now vouches for the evil file"
    good = next(f for f in pinned(url, name) if f["path"] == "model.pkl")["sha256"]
    assert good != evil
    return {**model, "good": good, "evil": evil, "marker": marker}


@pytest.mark.parametrize("source", ["runs", "store path"])
def test_a_file_swapped_with_a_forged_log_record_is_refused_and_never_unpickled(tracking, frame, tmp_path, source):
    url, _ = tracking
    source_of = (lambda run: f"runs:/{run['info']['run_id']}/model") if source == "runs" else (lambda run: run["info"]["artifact_uri"] + "/model")
    model = swapped(tracking, frame, tmp_path, source_of)
    name, good, evil, marker = model["name"], model["good"], model["evil"], model["marker"]
    for uri in (f"models:/{name}/1", f"models:/{name}@production"):
        with pytest.raises(models.ModelIntegrityError) as refused:
            models.load_model(uri, dst_path=tmp_path / uuid.uuid4().hex)
        message = str(refused.value)
        assert "model/model.pkl" in message and evil in message and good in message and "pinned" in message, message
    assert not os.path.exists(marker), "the evil pickle was unpickled"

    # Serving it (what the deployer runs for each backend: ``eventflow models serve -m models:/NAME/VERSION``) refuses too.
    served = subprocess.run(
        [sys.executable, "-m", "eventflow", "models", "serve", "-m", f"models:/{name}@production", "--tracking-uri", url, "--port", str(free_port())],
        capture_output=True, text=True, timeout=120,
    )
    assert served.returncode != 0
    assert "model/model.pkl" in served.stderr and evil in served.stderr and good in served.stderr, served.stderr
    assert not os.path.exists(marker), "the scoring server unpickled the evil file"


def test_the_deployer_refuses_a_swapped_version(tracking, frame, tmp_path):
    """``eventflow consume deployer`` promoted onto the swapped version: deployment.failed
    naming the file and both digests; the evil pickle never ran."""
    from test_deployer import Deployer, wait_for

    url, home = tracking
    model = swapped(tracking, frame, tmp_path)
    deployer = Deployer(url, ["--home", str(home)], model["name"], free_port(), str(tmp_path / "deployer.out"))
    try:
        events = wait_for(url, deployer.target, 2, log=deployer.out)
    finally:
        deployer.stop()
    assert [(e["type"], e["payload"]["version"]) for e in events] == [("deployment.started", "1"), ("deployment.failed", "1")]
    error = events[1]["payload"]["error"]
    assert "model/model.pkl" in error and model["evil"] in error and model["good"] in error, error
    assert not os.path.exists(model["marker"]), "the deployer unpickled the evil file"


def test_a_version_whose_source_had_no_files_is_created_but_never_loaded(tracking):
    """MLflow lets a version name a run of another server (or one with no artifacts yet);
    such a version pins nothing, so nothing of it can be verified: loading it says so."""
    url, _ = tracking
    run_id = call(url, "POST", "runs/create", experiment_id="0")["run"]["info"]["run_id"]
    name = f"unpinned-{uuid.uuid4().hex[:8]}"
    call(url, "POST", "registered-models/create", name=name)
    call(url, "POST", "model-versions/create", name=name, source=f"runs:/{run_id}/model", run_id=run_id)
    assert pinned(url, name) == []
    with pytest.raises(models.ModelIntegrityError, match=rf"refusing to load models:/{name}/1: the version pinned no files when it was created"):
        models.load_model(f"models:/{name}/1")


def test_the_in_process_sdk_pins_the_same_way(tmp_path, monkeypatch, frame):
    """``eventflow.Client`` on an embedded home runs the same registry handlers in process."""
    home = tmp_path / "home"
    monkeypatch.setenv("EVENTFLOW_CAPTURE_ENV", "false")
    eventflow.set_tracking_uri(str(home))
    try:
        with eventflow.start_run() as run:
            models.log_model(sklearn_linear.LogisticRegression().fit(frame, [0, 0, 0, 1, 1, 1]), "model")
        with eventflow.Client(str(home)) as client:
            client.create_registered_model("local")
            client.create_model_version("local", f"runs:/{run.run_id}/model")
            files = client.store.model_version_files("local", "1")
            logged = client.store.artifact_digests(run.run_id, "model")
    finally:
        eventflow.set_tracking_uri(None)
    assert {"MLmodel", "model.pkl"} <= {f["path"] for f in files}
    assert files == [{**f, "path": f["path"].removeprefix("model/")} for f in logged]
