"""The real ``mlflow`` client (from PyPI) against a live ``eventflow server``: MLflow code works unchanged."""

from __future__ import annotations

import base64
import os
import sys

import httpx
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "server"))
from serving import kafka_postgres_options, running_server  # noqa: E402

import mlflow  # noqa: E402  (a test dependency: pip install -e '.[test]')
from mlflow.tracking import MlflowClient  # noqa: E402


STARTED_MS = int(__import__("time").time() * 1000)
HOMES: dict[str, object] = {}  # each server's home, for tests that reach behind its back


CREDENTIALS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")


@pytest.fixture(scope="module", params=["embedded", "kafka+postgresql", "embedded+auth", "embedded+token"])
def url(request, tmp_path_factory):
    """A server on the embedded default, one on Kafka with PostgreSQL views, then servers
    with auth on (session-scoped, conftest.py), signed in as a non-admin user: with a
    password (MLFLOW_TRACKING_USERNAME/_PASSWORD), then with a token (MLFLOW_TRACKING_TOKEN)."""
    with pytest.MonkeyPatch.context() as environment:
        for name in CREDENTIALS:
            environment.delenv(name, raising=False)
        if request.param.startswith("embedded+"):
            authed = request.getfixturevalue("authed_server")("password" if request.param == "embedded+auth" else "token")
            if request.param == "embedded+auth":
                environment.setenv("MLFLOW_TRACKING_USERNAME", authed.user[0])
                environment.setenv("MLFLOW_TRACKING_PASSWORD", authed.user[1])
            else:
                environment.setenv("MLFLOW_TRACKING_TOKEN", authed.token)
            HOMES[authed.url] = authed.home
            yield authed.url
            return
        home = tmp_path_factory.mktemp("mlflow-compat")
        options: list[str] = []
        if request.param == "kafka+postgresql":
            options = kafka_postgres_options(request, "compat")
        with running_server(home, *options) as served:
            HOMES[served] = home
            yield served


def signed_headers() -> dict[str, str]:
    """The credentials the mlflow client sends, from the same environment variables."""
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if token:
        return {"Authorization": f"Bearer {token}"}
    username, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if username and password:
        return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}
    return {}


def http(method: str, url: str, **kwargs) -> httpx.Response:
    """A raw REST call, signed in as the mlflow client of the test is."""
    return httpx.request(method, url, headers={**signed_headers(), **kwargs.pop("headers", {})}, timeout=60, **kwargs)


@pytest.fixture
def client(url, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    mlflow.set_tracking_uri(url)
    yield MlflowClient(url)
    while mlflow.active_run():
        mlflow.end_run()


def events(url: str, **params) -> list[dict]:
    """This module's events (a shared broker holds other tests' too)."""
    found, token = [], None
    while True:
        query = {"max_results": 10000, "from_time": STARTED_MS, **params, **({"page_token": token} if token else {})}
        page = http("GET", url + "/api/2.0/eventflow/events", params=query).json()
        found += [e for e in page["events"] if "event" in e]  # undecodable records carry "error" instead
        token = page.get("next_page_token")
        if not token:
            return found


def test_fluent_logging_reads_back_and_is_on_the_log_in_order(client, url, tmp_path):
    experiment = mlflow.set_experiment("compat-fluent")
    with mlflow.start_run(run_name="outer") as run:
        mlflow.log_param("a", 1)
        mlflow.log_params({"b": 2, "c": "x"})
        mlflow.log_metric("m", 0.5, step=1)
        mlflow.log_metrics({"m": 0.7, "n": 1.0}, step=2)
        mlflow.set_tag("t", "v")
        mlflow.set_tags({"u": 1})
        with mlflow.start_run(nested=True) as child:
            mlflow.log_metric("inner", 1)
        (tmp_path / "f.txt").write_text("hello")
        mlflow.log_artifact(str(tmp_path / "f.txt"))
        mlflow.log_artifacts(str(tmp_path), "dir")
        mlflow.log_dict({"x": 1}, "cfg.json")
        mlflow.log_text("txt", "notes/a.txt")
        figure = _figure()
        mlflow.log_figure(figure, "plots/curve.png")
    got = client.get_run(run.info.run_id)
    assert got.info.status == "FINISHED" and got.info.run_name == "outer"
    assert got.data.params == {"a": "1", "b": "2", "c": "x"}
    assert got.data.metrics == {"m": 0.7, "n": 1.0}
    assert got.data.tags["t"] == "v" and got.data.tags["u"] == "1" and got.data.tags["mlflow.runName"] == "outer"
    assert client.get_run(child.info.run_id).data.tags["mlflow.parentRunId"] == run.info.run_id
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "m")] == [(1, 0.5), (2, 0.7)]
    assert sorted(f.path for f in client.list_artifacts(run.info.run_id)) == ["cfg.json", "dir", "f.txt", "notes", "plots"]
    png = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="plots/curve.png")
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n", "log_figure's PNG comes back whole"
    assert [f.path for f in client.list_artifacts(run.info.run_id, "dir")] == ["dir/f.txt"]
    downloaded = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="cfg.json")
    assert open(downloaded).read().strip().startswith("{") and '"x": 1' in open(downloaded).read()
    mine = [e["event"] for e in events(url, type="run.*") if e["event"]["payload"]["run_id"] == run.info.run_id]
    kinds = [e["type"] for e in mine]
    assert kinds[0] == "run.created" and kinds[-1] == "run.finished"
    assert kinds.count("run.artifact_logged") == 5, "each upload (f.txt, dir/f.txt, cfg.json, notes/a.txt, the figure) is an event"
    assert all(len(e["payload"]["sha256"]) == 64 for e in mine if e["type"] == "run.artifact_logged")
    assert experiment.experiment_id in {e["event"]["payload"]["experiment_id"] for e in events(url, type="experiment.created")}


def _figure():
    import matplotlib

    matplotlib.use("Agg")  # no display in tests
    from matplotlib import pyplot

    figure, axes = pyplot.subplots()
    axes.plot([0, 1, 2], [0.9, 0.5, 0.2])
    return figure


@pytest.mark.parametrize("status", ["FINISHED", "FAILED", "KILLED"])
def test_end_run_with_each_status(client, status):
    mlflow.set_experiment("compat-status")
    run = mlflow.start_run()
    mlflow.end_run(status=status)
    assert client.get_run(run.info.run_id).info.status == status


def test_search_runs_filters_orders_and_pages(client):
    experiment_id = client.create_experiment("compat-search")
    for i in range(7):
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"r{i}"):
            mlflow.log_metric("acc", i / 10)
            mlflow.log_param("parity", "even" if i % 2 == 0 else "odd")
            mlflow.set_tag("team", "ml" if i < 3 else "data")
    found = mlflow.search_runs([experiment_id], filter_string="metrics.acc > 0.35 AND params.parity = 'even'", output_format="list")
    assert sorted(r.info.run_name for r in found) == ["r4", "r6"]
    ordered = client.search_runs([experiment_id], order_by=["metrics.acc DESC"])
    assert [r.info.run_name for r in ordered] == [f"r{i}" for i in range(6, -1, -1)]
    liked = client.search_runs([experiment_id], filter_string="tags.team LIKE 'm%' AND attributes.status = 'FINISHED'")
    assert sorted(r.info.run_name for r in liked) == ["r0", "r1", "r2"]
    pages, token = [], None
    while True:
        page = client.search_runs([experiment_id], max_results=3, order_by=["attributes.run_name ASC"], page_token=token)
        pages.append([r.info.run_name for r in page])
        token = page.token
        if not token:
            break
    assert pages == [["r0", "r1", "r2"], ["r3", "r4", "r5"], ["r6"]]
    with pytest.raises(mlflow.exceptions.MlflowException, match="INVALID_PARAMETER_VALUE"):
        client.search_runs([experiment_id], filter_string="metrics.acc >> 1")


def test_delete_and_restore_runs_and_experiments(client):
    experiment_id = client.create_experiment("compat-delete")
    with mlflow.start_run(experiment_id=experiment_id) as run:
        pass
    client.delete_run(run.info.run_id)
    assert client.search_runs([experiment_id]) == []
    assert len(client.search_runs([experiment_id], run_view_type=mlflow.entities.ViewType.ALL)) == 1
    client.restore_run(run.info.run_id)
    assert len(client.search_runs([experiment_id])) == 1
    client.delete_experiment(experiment_id)
    assert client.get_experiment(experiment_id).lifecycle_stage == "deleted"
    assert "compat-delete" not in {e.name for e in client.search_experiments()}
    client.restore_experiment(experiment_id)
    assert "compat-delete" in {e.name for e in client.search_experiments()}


def test_mlflows_error_codes_reach_the_client(client):
    assert client.get_experiment_by_name("no such experiment") is None
    with pytest.raises(mlflow.exceptions.MlflowException, match="already exists"):
        client.create_experiment("Default")
    with mlflow.start_run():
        mlflow.log_param("lr", 0.1)
        with pytest.raises(mlflow.exceptions.MlflowException, match="Changing param values is not allowed"):
            mlflow.log_param("lr", 0.2)
        with pytest.raises(mlflow.exceptions.MlflowException, match="Names may only contain"):
            mlflow.log_metric("bad key!", 1.0)


def test_nan_and_infinities_are_kept_as_mlflow_keeps_them(client, url):
    """The client sends NaN and ±inf as proto3 JSON strings ("NaN", "Infinity"); a loss
    that diverged is a data point like any other, and comes back as it went in."""
    import math

    from mlflow.entities import Metric

    import eventflow

    with mlflow.start_run() as run:
        mlflow.log_metric("loss", 0.5, step=0)
        mlflow.log_metric("loss", float("nan"), step=1)
        mlflow.log_metrics({"up": float("inf"), "down": float("-inf")}, step=1)
    MlflowClient(url).log_batch(run.info.run_id, metrics=[Metric("batched", float("nan"), STARTED_MS, 2)])
    metrics = MlflowClient(url).get_run(run.info.run_id).data.metrics
    assert math.isnan(metrics["loss"]) and math.isnan(metrics["batched"])
    assert metrics["up"] == math.inf and metrics["down"] == -math.inf
    history = MlflowClient(url).get_metric_history(run.info.run_id, "loss")
    assert [h.value for h in history][0] == 0.5 and math.isnan(history[1].value)
    found = mlflow.search_runs(filter_string=f"attributes.run_id = '{run.info.run_id}'", output_format="list")
    assert found[0].data.metrics["up"] == math.inf
    raw = http("GET", f"{url}/api/2.0/mlflow/runs/get", params={"run_id": run.info.run_id}).json()["run"]["data"]["metrics"]
    assert {m["key"]: m["value"] for m in raw}["down"] == "-Infinity", "proto3 JSON's spelling, as MLflow answers"
    logged = [e["event"]["payload"] for e in events(url, type="run.metrics_logged") if e["event"]["payload"]["run_id"] == run.info.run_id]
    values = [value for payload in logged for value in payload["columns"]["values"]]
    assert values.count("NaN") == 2 and "Infinity" in values and "-Infinity" in values, "on the log as they were sent"
    ours = eventflow.Client(url).get_run(run.info.run_id)  # the SDK reads the REST API too
    assert math.isnan({m["key"]: m["value"] for m in ours["data"]["metrics"]}["loss"])
    assert math.isnan(eventflow.Client(url).get_metric_history(run.info.run_id, "loss")[1]["value"])


def test_datasets_logged_as_inputs_come_back_with_the_run(client, url):
    import pandas as pd

    frame = pd.DataFrame({"x": [1, 2, 3], "y": [0, 1, 0]})
    dataset = mlflow.data.from_pandas(frame, source="s3://bucket/train.csv", name="train", targets="y")
    with mlflow.start_run() as run:
        mlflow.log_input(dataset, context="training")
    inputs = client.get_run(run.info.run_id).inputs.dataset_inputs
    assert [i.dataset.name for i in inputs] == ["train"]
    assert inputs[0].dataset.digest == dataset.digest
    assert {t.key: t.value for t in inputs[0].tags}["mlflow.data.context"] == "training"
    assert [e["event"]["type"] for e in events(url, type="run.inputs_logged") if e["event"]["payload"]["run_id"] == run.info.run_id] == ["run.inputs_logged"]


def test_history_bulk_interval_samples_each_runs_steps(client, url):
    run_ids = []
    for _ in range(2):
        with mlflow.start_run() as run:
            client.log_batch(run.info.run_id, metrics=[mlflow.entities.Metric("loss", s / 10, 1, s) for s in range(1000)])
        run_ids.append(run.info.run_id)
    answer = http("GET", url + "/api/2.0/mlflow/metrics/get-history-bulk-interval",
                       params={"run_ids": run_ids, "metric_key": "loss", "max_results": 11, "start_step": 100, "end_step": 600}).json()
    for run_id in run_ids:
        steps = [p["step"] for p in answer["metrics"] if p["run_id"] == run_id]
        # MLflow 3.17's sampling: 501 points in 11 near-equal buckets (46 points in the first
        # six, 45 in the rest), the first point of each, the last point in the last place.
        assert steps == [100, 146, 192, 238, 284, 330, 376, 421, 466, 511, 600]
    wrong = http("GET", url + "/api/2.0/mlflow/metrics/get-history-bulk-interval", params={"run_ids": run_ids, "metric_key": "loss", "start_step": 5, "end_step": 1})
    assert wrong.status_code == 400 and wrong.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_sklearn_autolog_lands_params_metrics_tags_and_a_loadable_model(client, url):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    mlflow.set_experiment("compat-autolog")
    mlflow.sklearn.autolog(log_input_examples=False, silent=True)
    try:
        features, labels = load_iris(return_X_y=True)
        with mlflow.start_run() as run:
            LogisticRegression(max_iter=300).fit(features, labels)
    finally:
        mlflow.sklearn.autolog(disable=True)
    got = client.get_run(run.info.run_id)
    assert got.data.params["max_iter"] == "300"
    assert got.data.metrics["training_accuracy_score"] > 0.9
    assert got.data.tags["estimator_class"] == "sklearn.linear_model._logistic.LogisticRegression"
    [output] = got.outputs.model_outputs
    model = client.get_logged_model(output.model_id)
    assert model.status == mlflow.entities.LoggedModelStatus.READY and model.source_run_id == run.info.run_id
    loaded = mlflow.sklearn.load_model(f"models:/{output.model_id}")
    assert list(loaded.predict(features[:3])) == [0, 0, 0]
    created = [e["event"] for e in events(url, type="logged_model.*") if e["event"]["payload"]["model_id"] == output.model_id]
    assert [e["type"] for e in created][:1] == ["logged_model.created"] and "logged_model.finalized" in [e["type"] for e in created]
    found = client.search_logged_models(experiment_ids=[got.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'")
    assert [m.model_id for m in found] == [output.model_id]


def test_a_download_is_checked_against_the_sha256_on_the_log(client, url, tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"\x01" * 1000)
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(tmp_path / "weights.bin"))
    assert open(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="weights.bin", dst_path=str(tmp_path / "a")), "rb").read() == b"\x01" * 1000
    experiment_id = client.get_run(run.info.run_id).info.experiment_id
    relative = f"{experiment_id}/{run.info.run_id}/artifacts/weights.bin"
    # Tamper with the stored file behind the server's back.
    stored = http("GET", url + "/api/2.0/mlflow-artifacts/artifacts/" + relative)
    assert stored.status_code == 200
    (HOMES[url] / "artifacts" / relative).write_bytes(b"\x02" * 1000)
    refused = http("GET", url + "/api/2.0/mlflow-artifacts/artifacts/" + relative)
    assert refused.status_code == 500 and "does not match the sha256" in refused.json()["message"]


def _linked(metrics) -> list[tuple]:
    return sorted((m.key, m.value, m.step, m.timestamp, m.run_id, m.model_id, m.dataset_name, m.dataset_digest) for m in metrics or [])


def test_metrics_logged_about_a_logged_model_come_back_with_it(client, url):
    import pandas as pd

    from mlflow.entities import Metric

    experiment = mlflow.set_experiment("compat-model-metrics")
    model = client.create_logged_model(experiment.experiment_id, name="scorer")
    other = client.create_logged_model(experiment.experiment_id, name="other")
    dataset = mlflow.data.from_pandas(pd.DataFrame({"x": [1, 2], "y": [0, 1]}), source="s3://bucket/eval.csv", name="eval", targets="y")
    with mlflow.start_run() as run:
        mlflow.log_metric("acc", 0.9, step=1, timestamp=1_000, model_id=model.model_id)
        mlflow.log_metric("acc", 0.95, step=2, timestamp=2_000, model_id=model.model_id, dataset=dataset)
        client.log_batch(run.info.run_id, metrics=[
            Metric("f1", 0.8, 3_000, 3, model_id=model.model_id, dataset_name="eval", dataset_digest=dataset.digest),
            Metric("f1", 0.1, 3_000, 3, model_id=other.model_id),
            Metric("plain", 1.0, 3_000, 0),
        ])
    rid = run.info.run_id
    assert _linked(mlflow.get_logged_model(model.model_id).metrics) == [
        ("acc", 0.9, 1, 1_000, rid, model.model_id, None, None),
        ("acc", 0.95, 2, 2_000, rid, model.model_id, "eval", dataset.digest),
        ("f1", 0.8, 3, 3_000, rid, model.model_id, "eval", dataset.digest),
    ]
    assert _linked(client.get_logged_model(other.model_id).metrics) == [("f1", 0.1, 3, 3_000, rid, other.model_id, None, None)]
    # The run keeps every point, as before.
    assert client.get_run(rid).data.metrics == {"acc": 0.95, "f1": 0.8, "plain": 1.0}  # f1: same step and time, the larger value
    assert [(m.step, m.value) for m in client.get_metric_history(rid, "acc")] == [(1, 0.9), (2, 0.95)]
    # search_logged_models returns the metrics too, and filters on them (any point, as MLflow).
    found = client.search_logged_models([experiment.experiment_id], filter_string="metrics.f1 > 0.5")
    assert [m.model_id for m in found] == [model.model_id]
    assert _linked(found[0].metrics) == _linked(mlflow.get_logged_model(model.model_id).metrics)
    assert {m.model_id for m in client.search_logged_models([experiment.experiment_id], filter_string="metrics.f1 > 0")} == {model.model_id, other.model_id}
    on_eval = client.search_logged_models([experiment.experiment_id], datasets=[{"dataset_name": "eval"}])
    assert [m.model_id for m in on_eval] == [model.model_id]
    assert not client.search_logged_models([experiment.experiment_id], filter_string="metrics.f1 < 0.5", datasets=[{"dataset_name": "eval", "dataset_digest": dataset.digest}])
    linked = [p for e in events(url, type="run.metrics_logged") if e["event"]["payload"]["run_id"] == rid for p in e["event"]["payload"]["points"]]
    assert sorted((p["key"], p["value"], p["model_id"], p["dataset_name"] or "") for p in linked) == [
        ("acc", 0.9, model.model_id, ""), ("acc", 0.95, model.model_id, "eval"), ("f1", 0.1, other.model_id, ""), ("f1", 0.8, model.model_id, "eval"),
    ], "the links are on the log, in the v3 schema's points"


def test_a_runs_output_model_gets_the_runs_later_metrics(client):
    from sklearn.linear_model import LogisticRegression

    mlflow.set_experiment("compat-model-metrics-auto")
    with mlflow.start_run() as run:
        info = mlflow.sklearn.log_model(LogisticRegression().fit([[0], [1], [2], [3]], [0, 0, 1, 1]), name="clf")
        mlflow.log_metric("acc", 0.93)  # step 0, the step the model was logged at: linked by the client
        mlflow.log_metric("acc", 0.97, step=5)  # no model output at step 5: the run's alone
    model = mlflow.get_logged_model(info.model_id)
    assert [(m.key, m.value, m.step, m.run_id, m.model_id) for m in model.metrics] == [("acc", 0.93, 0, run.info.run_id, info.model_id)]
    assert client.get_run(run.info.run_id).data.metrics == {"acc": 0.97}


def test_a_bad_model_link_is_refused_and_nothing_reaches_the_log(client, url):
    from mlflow.entities import Metric

    experiment = mlflow.set_experiment("compat-model-metrics-bad")
    model = client.create_logged_model(experiment.experiment_id, name="real")
    api = url + "/api/2.0/mlflow/runs/"
    with mlflow.start_run() as run:
        with pytest.raises(mlflow.exceptions.MlflowException, match="m-<32 hex digits>") as refused:
            client.log_metric(run.info.run_id, "acc", 0.5, model_id="m-not-hex")
        assert refused.value.error_code == "INVALID_PARAMETER_VALUE" and refused.value.get_http_status_code() == 400
        with pytest.raises(mlflow.exceptions.MlflowException, match="Logged model with ID 'm-0{32}' not found") as missing:
            client.log_batch(run.info.run_id, metrics=[Metric("acc", 0.5, 1, 0), Metric("acc", 0.6, 1, 1, model_id="m-" + "0" * 32)])
        assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"
        half = http("POST", api + "log-batch", json={"run_id": run.info.run_id, "metrics": [
            {"key": "ok", "value": 1, "timestamp": 1},
            {"key": "acc", "value": 1, "timestamp": 1, "model_id": model.model_id, "dataset_name": "eval"},
        ]})
        assert half.status_code == 400 and half.json() == {
            "error_code": "INVALID_PARAMETER_VALUE", "message": "Both dataset_name and dataset_digest must be provided if one is provided",
        }
        wrong_type = http("POST", api + "log-metric", json={"run_id": run.info.run_id, "key": "acc", "value": 1, "timestamp": 1, "model_id": 7})
        assert wrong_type.status_code == 400 and wrong_type.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert [e for e in events(url, type="run.metrics_logged") if e["event"]["payload"]["run_id"] == run.info.run_id] == []
    assert client.get_run(run.info.run_id).data.metrics == {} and mlflow.get_logged_model(model.model_id).metrics in (None, [])
