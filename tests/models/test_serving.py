"""Models logged to a real ``eventflow server``, loaded back by runs:/ URI, and scored by
``eventflow models serve`` running as a subprocess, over HTTP, in every payload format."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import httpx
import pytest

import eventflow
import eventflow.models as models

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "server"))
sys.path.insert(0, os.path.dirname(__file__))
from scoring import scoring_server  # noqa: E402
from serving import running_server  # noqa: E402

pd = pytest.importorskip("pandas")

JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    """A real tracking server, and the fluent SDK pointed at it."""
    home = tmp_path_factory.mktemp("models-server")
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


@pytest.fixture(scope="module")
def logged(tracking, tmp_path_factory):
    """A scikit-learn model and a custom pyfunc (its class shipped as a code path), logged."""
    from sklearn.linear_model import LogisticRegression

    frame = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0], "b": [1, 0, 1, 0, 1, 0]})
    estimator = LogisticRegression().fit(frame, [0, 0, 0, 1, 1, 1])
    code = tmp_path_factory.mktemp("code")
    (code / "served_scorer.py").write_text(
        "class Scorer:\n"
        "    def predict(self, frame, params=None):\n"
        "        return [2 * x * (params or {}).get('scale', 1) for x in frame['x']]\n"
    )
    sys.path.insert(0, str(code))
    try:
        import served_scorer

        eventflow.set_experiment("models-serving")
        with eventflow.start_run() as run:
            sk = models.log_model(estimator, "model", input_example=frame.head(2))
            custom = models.log_model(
                served_scorer.Scorer, "scorer", input_example=pd.DataFrame({"x": [1.0]}), code_paths=[str(code / "served_scorer.py")]
            )
    finally:
        sys.path.remove(str(code))
        sys.modules.pop("served_scorer", None)
    return {"run_id": run.run_id, "sklearn": sk, "custom": custom, "estimator": estimator, "frame": frame}


@pytest.fixture(scope="module")
def sklearn_server(tracking, logged, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "serve.out"
    with scoring_server(logged["sklearn"].model_uri, "--tracking-uri", tracking[0], log_path=str(log)) as url:
        yield url


def test_models_logged_to_the_server_load_back(logged):
    frame, estimator = logged["frame"], logged["estimator"]
    model = models.load_model(logged["sklearn"].model_uri)
    assert list(model.predict(frame)) == list(estimator.predict(frame))
    assert model.metadata.run_id == logged["run_id"]
    custom = models.load_model(f"runs:/{logged['run_id']}/scorer")
    assert custom.predict({"x": [1.0, 2.5]}) == [2.0, 5.0]
    with pytest.raises(models.SignatureMismatch, match="'x'"):
        custom.predict({"y": [1.0]})


def test_the_digest_listing_is_what_the_log_recorded(tracking, logged):
    import hashlib

    url, run_id = tracking[0], logged["run_id"]
    found = httpx.get(url + "/api/2.0/eventflow/artifacts/digests", params={"run_id": run_id, "path": "model"})
    assert found.status_code == 200, found.text
    files = found.json()["files"]
    assert {f["path"] for f in files} >= {"model/MLmodel", "model/model.pkl"}
    assert all(f["path"].startswith("model/") for f in files)  # only the model's, not the scorer's
    run = httpx.get(url + "/api/2.0/mlflow/runs/get", params={"run_id": run_id}).json()["run"]
    base = run["info"]["artifact_uri"].removeprefix("mlflow-artifacts:/")
    for record in files:
        content = httpx.get(f"{url}/api/2.0/mlflow-artifacts/artifacts/{base}/{record['path']}").content
        assert (len(content), hashlib.sha256(content).hexdigest()) == (record["size"], record["sha256"])
    unknown = httpx.get(url + "/api/2.0/eventflow/artifacts/digests", params={"run_id": "f" * 32})
    assert unknown.status_code == 404 and unknown.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert httpx.get(url + "/api/2.0/eventflow/artifacts/digests").status_code == 400


def test_every_payload_format_scores(sklearn_server, logged):
    frame, estimator = logged["frame"], logged["estimator"]
    expected = [int(v) for v in estimator.predict(frame)]
    rows = frame.values.tolist()
    payloads = [
        {"dataframe_split": {"columns": ["a", "b"], "data": rows}},
        {"dataframe_split": frame.to_dict(orient="split")},
        {"dataframe_records": frame.to_dict(orient="records")},
        {"instances": rows},
        {"instances": frame.to_dict(orient="records")},
        {"inputs": {"a": frame["a"].tolist(), "b": frame["b"].tolist()}},
        {"inputs": rows},
    ]
    for payload in payloads:
        response = httpx.post(sklearn_server + "/invocations", json=payload)
        assert response.status_code == 200, (payload, response.text)
        assert response.json() == {"predictions": expected}, payload
    csv = httpx.post(sklearn_server + "/invocations", content=frame.to_csv(index=False), headers={"content-type": "text/csv"})
    assert csv.status_code == 200, csv.text
    assert csv.json() == {"predictions": expected}
    for path in ("/ping", "/health"):
        assert httpx.get(sklearn_server + path).status_code == 200
    assert httpx.get(sklearn_server + "/version").text == eventflow.__version__


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (b"{not json", "application/json", 400, "not valid JSON"),
        (b"[1, 2]", "application/json", 400, "must be a JSON object"),
        (b'{"data": [[1, 2]]}', "application/json", 400, "exactly one of the keys"),
        (b'{"instances": [[1, 0]], "inputs": [[1, 0]]}', "application/json", 400, "exactly one of the keys"),
        (b'{"dataframe_split": {"columns": ["a", "b"]}}', "application/json", 400, "'dataframe_split' must be an object with 'data'"),
        (b'{"dataframe_records": [[1.0, 0]]}', "application/json", 400, "'dataframe_records' must be a list of objects"),
        (b'{"instances": [[1.0, 0], [2.0]]}', "application/json", 400, "not a regular array"),
        (b'{"instances": 5}', "application/json", 400, "must be a list of rows"),
        (b'{"dataframe_records": [{"a": 1.0}]}', "application/json", 400, r"needs input column(s) ['b']"),
        (b'{"dataframe_records": [{"a": "x", "b": 1}]}', "application/json", 400, "column 'a': cannot safely convert"),
        (b'{"dataframe_records": [{"a": 1.0, "b": 0.5}]}', "application/json", 400, "column 'b': cannot safely convert float64 to long"),
        (b'{"dataframe_split": {"columns": ["a", "b"], "data": [[1.0, 0]]}, "params": 3}', "application/json", 400, "'params' must be"),
        (b"a,b\n1.0,0\n", "text/plain", 415, "unsupported content type 'text/plain'"),
        (b"a,b\n1.0,0\n", "", 415, "unsupported content type"),
    ],
)
def test_bad_payloads_are_clear_400s(sklearn_server, body, content_type, status, message):
    headers = {"content-type": content_type} if content_type else {}
    response = httpx.post(sklearn_server + "/invocations", content=body, headers=headers)
    assert response.status_code == status, response.text
    found = response.json()
    assert found["error_code"] == "BAD_REQUEST"
    assert message in found["message"], found["message"]


def test_custom_pyfunc_serves_with_params_from_two_workers(tracking, logged, tmp_path):
    # Each worker process loads the verified copy and imports the model's own code from it.
    with scoring_server(logged["custom"].model_uri, "--tracking-uri", tracking[0], "--workers", "2", log_path=str(tmp_path / "serve.out")) as url:
        response = httpx.post(url + "/invocations", json={"inputs": {"x": [1.0, 2.0]}, "params": {"scale": 10}})
        assert response.status_code == 200, response.text
        assert response.json() == {"predictions": [20.0, 40.0]}
        records = httpx.post(url + "/invocations", json={"dataframe_records": [{"x": 3}]})
        assert records.json() == {"predictions": [6.0]}


def test_a_model_file_changed_in_the_artifact_store_is_refused(tracking, logged, tmp_path):
    url, home = tracking
    from sklearn.tree import DecisionTreeClassifier

    frame = logged["frame"]
    with eventflow.start_run() as run:
        info = models.log_model(DecisionTreeClassifier().fit(frame, [0, 1, 0, 1, 0, 1]), "tree")
    assert list(models.load_model(info.model_uri).predict(frame)) == [0, 1, 0, 1, 0, 1]
    stored = next(home.rglob(f"{run.run_id}/artifacts/tree/model.pkl"))
    stored.write_bytes(stored.read_bytes()[:-1] + b"\x00")
    with pytest.raises(models.ModelIntegrityError, match=r"tree/model.pkl.*sha256"):
        models.load_model(info.model_uri)
    # The scoring server refuses to start, saying why.
    result = subprocess.run(
        [sys.executable, "-m", "eventflow", "models", "serve", "-m", info.model_uri, "--tracking-uri", url, "--port", "1"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0
    assert "tree/model.pkl" in result.stderr and "sha256" in result.stderr, result.stderr


def test_registering_without_a_registry_logs_and_says_so(tracking, logged):
    with eventflow.start_run():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            info = models.log_model(lambda frame: [0] * len(frame), "constant", registered_model_name="constant-model")
    registry_missing = any("no model registry" in str(w.message) for w in caught)
    if registry_missing:
        assert info.registered_model_version is None
    else:  # the registry branch is merged: the version is real
        assert info.registered_model_version == "1"
    assert models.load_model(info.model_uri).predict([[1], [2]]) == [0, 0]


def _has_registry(url: str) -> bool:
    response = httpx.get(url + "/api/2.0/mlflow/registered-models/get", params={"name": "probe"})
    return "ENDPOINT_NOT_FOUND" not in response.text


def test_models_uris_resolve_through_the_registry(tracking, logged, tmp_path):
    url = tracking[0]
    if not _has_registry(url):
        pytest.skip("the tracking server has no model registry in this tree (it comes with the registry branch)")
    frame, estimator = logged["frame"], logged["estimator"]
    with eventflow.start_run():
        info = models.log_model(estimator, "model", registered_model_name="churn-served")
    version = info.registered_model_version
    assert version is not None
    promoted = httpx.post(url + "/api/2.0/mlflow/registered-models/alias", json={"name": "churn-served", "alias": "production", "version": version})
    assert promoted.status_code == 200, promoted.text
    for uri in (f"models:/churn-served/{version}", "models:/churn-served@production"):
        model = models.load_model(uri)
        assert model.metadata.run_id == info.run_id
        assert list(model.predict(frame)) == list(estimator.predict(frame))
    with scoring_server("models:/churn-served@production", "--tracking-uri", url, log_path=str(tmp_path / "serve.out")) as scoring:
        response = httpx.post(scoring + "/invocations", json={"dataframe_records": frame.to_dict(orient="records")})
        assert response.json() == {"predictions": [int(v) for v in estimator.predict(frame)]}
    with pytest.raises(models.ModelUriError, match="cannot resolve models:/churn-served@staging"):
        models.load_model("models:/churn-served@staging")


def test_a_model_registered_by_mlflow_resolves_to_its_logged_model(tracking, logged):
    mlflow = pytest.importorskip("mlflow")
    import mlflow.sklearn

    url = tracking[0]
    if not _has_registry(url):
        pytest.skip("the tracking server has no model registry in this tree (it comes with the registry branch)")
    frame, estimator = logged["frame"], logged["estimator"]
    mlflow.set_tracking_uri(url)
    mlflow.set_experiment(experiment_id="0")  # not an experiment another test left active on another server
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(estimator, name="model", registered_model_name="churn-from-mlflow")
    version = info.registered_model_version
    model = models.load_model(f"models:/churn-from-mlflow/{version}")
    assert model.metadata.extra.get("model_id") == info.model_id
    assert list(model.predict(frame)) == list(estimator.predict(frame))


def test_mlflow_loads_an_eventflow_model_from_the_server(tracking, logged):
    mlflow = pytest.importorskip("mlflow")
    import mlflow.pyfunc

    mlflow.set_tracking_uri(tracking[0])
    frame, estimator = logged["frame"], logged["estimator"]
    loaded = mlflow.pyfunc.load_model(logged["sklearn"].model_uri)
    assert list(loaded.predict(frame)) == list(estimator.predict(frame))


@pytest.mark.parametrize("serialization", ["cloudpickle", "skops"])
def test_mlflow_log_model_loads_and_serves_by_its_models_uri(tracking, logged, tmp_path, serialization):
    """MLflow 3's own ``mlflow.sklearn.log_model`` (a logged model, ``models:/m-...``) against
    the eventflow server: the server records each uploaded file's sha256, eventflow loads
    and serves it, and refuses it once a file changed."""
    mlflow = pytest.importorskip("mlflow")
    import mlflow.sklearn

    if serialization == "skops":
        pytest.importorskip("skops")
    url, home = tracking
    frame, estimator = logged["frame"], logged["estimator"]
    mlflow.set_tracking_uri(url)
    mlflow.set_experiment("models-from-mlflow")
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(estimator, name="model", serialization_format=serialization, input_example=frame.head(2))
    assert info.model_uri.startswith("models:/m-")
    model = models.load_model(info.model_uri)
    assert list(model.predict(frame)) == list(estimator.predict(frame))
    with scoring_server(info.model_uri, "--tracking-uri", url, log_path=str(tmp_path / "serve.out")) as scoring:
        response = httpx.post(scoring + "/invocations", json={"dataframe_records": frame.to_dict(orient="records")})
        assert response.json() == {"predictions": [int(v) for v in estimator.predict(frame)]}
    stored = next(home.rglob(f"models/{info.model_id}/artifacts/MLmodel"))
    stored.write_text(stored.read_text() + "\n# changed\n")
    with pytest.raises(models.ModelIntegrityError, match="MLmodel.*sha256"):
        models.load_model(info.model_uri)


def test_mlflow_logged_sklearn_model_loads_with_eventflow(tracking, logged, tmp_path):
    """MLflow code logs a model's files into a run on the eventflow server; eventflow loads
    them back through runs:/, each file checked against the log."""
    mlflow = pytest.importorskip("mlflow")
    import mlflow.sklearn

    frame, estimator = logged["frame"], logged["estimator"]
    mlflow.set_tracking_uri(tracking[0])
    mlflow.set_experiment("models-from-mlflow")
    with mlflow.start_run() as run:
        mlflow.sklearn.save_model(estimator, str(tmp_path / "m"), serialization_format="cloudpickle",
                                  signature=mlflow.models.infer_signature(frame, estimator.predict(frame)))
        mlflow.log_artifacts(str(tmp_path / "m"), "model")
    model = models.load_model(f"runs:/{run.info.run_id}/model")
    assert list(model.predict(frame)) == list(estimator.predict(frame))
