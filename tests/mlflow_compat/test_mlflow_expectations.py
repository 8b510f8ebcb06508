"""What MLflow's own server tests expect of a tracking server, asked of ``eventflow server``.

Each test sends what MLflow's client sends (the real client, or raw REST in its shape)
and checks MLflow's answer: its error code, its wording where MLflow's tests match on it,
its search semantics, its sampling. Both backends: the embedded default (SQLite views)
and Kafka with PostgreSQL views.
"""

from __future__ import annotations

import json
import os
import sys
import uuid

import httpx
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from test_mlflow_client import client, http, url  # noqa: E402,F401  (the servers, shared fixtures; raw calls signed in as the client is)

import mlflow  # noqa: E402
from mlflow.entities import Metric  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

API = "/api/2.0/mlflow/"
AJAX = "/ajax-api/2.0/mlflow/"


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _refused(response: httpx.Response, code: str = "INVALID_PARAMETER_VALUE") -> str:
    assert response.status_code == (404 if code == "RESOURCE_DOES_NOT_EXIST" else 400), response.text
    body = response.json()
    assert body["error_code"] == code, body
    return body["message"]


def _run(client: MlflowClient) -> str:
    experiment_id = client.create_experiment(_unique("compat-expect"))
    return client.create_run(experiment_id).info.run_id


# -- validation and messages ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "field", "shown"),
    [
        ("runs/log-parameter", {"run_id": 31, "key": "k", "value": "v"}, "run_id", "31"),
        ("experiments/create", {"name": 123}, "name", "123"),
        ("experiments/create", {"name": "x", "artifact_location": 9}, "artifact_location", "9"),
        ("runs/create", {"experiment_id": "0", "start_time": "soon"}, "start_time", '"soon"'),
        ("runs/log-batch", {"run_id": "r", "metrics": {"key": "m"}}, "metrics", '{"key":"m"}'),
        ("runs/log-metric", {"run_id": "r", "key": "m", "value": True, "timestamp": 1}, "value", "true"),
        ("registered-models/create", {"name": ["a"]}, "name", '["a"]'),
        ("model-versions/create", {"name": "m", "source": "runs:/r/model", "run_id": 7}, "run_id", "7"),
        ("experiments/search", {"max_results": 1.5}, "max_results", "1.5"),
    ],
)
def test_a_field_of_the_wrong_type_is_refused_with_mlflows_message(url, path, body, field, shown):
    """MLflow answers a mistyped field 400 INVALID_PARAMETER_VALUE, naming it; it never
    looks the stringified value up (``"run_id": 31`` was a 404 "Run with id=31 not found")."""
    message = _refused(http("POST", url + API + path, json=body))
    assert message.startswith(f"Invalid value {shown} for parameter '{field}' supplied."), message
    assert "See the API docs" in message


def test_a_nested_field_of_the_wrong_type_is_named_by_its_path(url, client):
    run_id = _run(client)
    message = _refused(http("POST", url + API + "runs/log-batch", json={"run_id": run_id, "metrics": [{"key": "m", "value": 1, "timestamp": "x"}]}))
    assert message.startswith("Invalid value \"x\" for parameter 'metrics[0].timestamp' supplied."), message
    message = _refused(http("POST", url + API + "runs/log-batch", json={"run_id": run_id, "tags": [{"key": 5, "value": "v"}]}))
    assert message.startswith("Invalid value 5 for parameter 'tags[0].key' supplied."), message
    assert client.get_run(run_id).data.tags.get("5") is None


def test_a_metric_without_timestamp_is_refused(url, client):
    run_id = _run(client)
    message = _refused(http("POST", url + API + "runs/log-batch", json={"run_id": run_id, "metrics": [{"key": "m", "value": 1.0, "step": 0}]}))
    assert message.startswith("Missing value for required parameter 'metrics[0].timestamp'."), message
    _refused(http("POST", url + API + "runs/log-metric", json={"run_id": run_id, "key": "m", "value": 1.0}))
    assert client.get_metric_history(run_id, "m") == []


def test_experiment_name_and_webhook_url_errors_use_mlflows_wording(url):
    message = _refused(http("POST", url + API + "experiments/create", json={}))
    assert message.startswith("Missing value for required parameter 'name'."), message
    event = [{"entity": "model_version", "action": "created"}]
    message = _refused(http("POST", url + API + "webhooks", json={"name": "h", "url": "ftp://example.com/hook", "events": event}))
    assert message.startswith("Invalid webhook URL scheme: 'ftp'."), message
    message = _refused(http("POST", url + API + "webhooks", json={"name": "h", "url": "https:///no-host", "events": event}))
    assert message.startswith("Webhook URL must include a hostname"), message
    message = _refused(http("POST", url + API + "webhooks", json={"name": 7, "url": "https://example.com/hook", "events": event}))
    assert message.startswith("Invalid value 7 for parameter 'name' supplied."), message


# -- metric histories -------------------------------------------------------------------------


def _ntile_sample(rows: list, max_results: int) -> list:
    """MLflow 3.17's rule, restated: NTILE(max_results) buckets over the ordered rows, the
    first row of each, and the last row kept (in the last sampled place when full)."""
    n = len(rows)
    if n <= max_results:
        return rows
    size, extra = divmod(n, max_results)
    starts, at = [], 0
    for bucket in range(max_results):
        starts.append(at)
        at += size + (1 if bucket < extra else 0)
    sample = [rows[i] for i in starts]
    if sample[-1] != rows[-1]:
        sample[-1] = rows[-1]
    return sample


def test_history_bulk_interval_takes_mlflows_range_and_samples_as_mlflow_does(url, client):
    run_id = _run(client)
    client.log_batch(run_id, metrics=[Metric("loss", s / 10, 1000 + s, s) for s in range(11)])
    client.log_batch(run_id, metrics=[Metric("flat", t / 10, t, 0) for t in range(1, 6)])  # one step, five points
    endpoint = url + API + "metrics/get-history-bulk-interval"

    def steps(key, **params):
        answer = http("GET", endpoint, params={"run_ids": [run_id], "metric_key": key, **params})
        assert answer.status_code == 200, answer.text
        return [(p["step"], p["timestamp"]) for p in answer.json()["metrics"]]

    expected = [(s, 1000 + s) for s in range(11)]
    assert steps("loss", max_results=4) == _ntile_sample(expected, 4) == [(0, 1000), (3, 1003), (6, 1006), (10, 1010)]
    assert steps("loss", max_results=1) == [(10, 1010)]
    assert steps("flat", max_results=2) == [(0, 1), (0, 5)], "sampled by point, not by step"
    assert steps("loss", max_results=2500) == expected
    assert steps("loss") == expected, "MLflow's default is 2,500 per run"
    message = _refused(http("GET", endpoint, params={"run_ids": [run_id], "metric_key": "loss", "max_results": 2501}))
    assert message.startswith("max_results must be between 1 and 2500."), message
    message = _refused(http("GET", endpoint, params={"run_ids": [run_id], "metric_key": "loss", "start_step": 2}))
    assert message.startswith("If either start step or end step are specified, both must be specified."), message


def test_history_bulk_is_served_on_the_ajax_api(url, client):
    first, second = _run(client), _run(client)
    client.log_batch(first, metrics=[Metric("acc", 0.1, 20, 1), Metric("acc", 0.2, 10, 2)])
    client.log_batch(second, metrics=[Metric("acc", 0.5, 5, 0)])
    answer = http("GET", url + AJAX + "metrics/get-history-bulk", params={"run_id": [second, first], "metric_key": "acc"})
    assert answer.status_code == 200, answer.text
    got = [(m["run_id"], m["step"], m["value"]) for m in answer.json()["metrics"]]
    by_run = sorted([first, second])
    expected = {first: [(first, 2, 0.2), (first, 1, 0.1)], second: [(second, 0, 0.5)]}  # each run by timestamp
    assert got == expected[by_run[0]] + expected[by_run[1]]
    message = _refused(http("GET", url + AJAX + "metrics/get-history-bulk", params={"metric_key": "acc"}))
    assert message.startswith("GetMetricHistoryBulk request must specify at least one run_id."), message


# -- search -----------------------------------------------------------------------------------


def test_like_is_case_sensitive_and_ilike_is_not(url, client):
    """On SQLite (whose LIKE ignores case by default) as on PostgreSQL."""
    tag = uuid.uuid4().hex[:8]
    upper = client.create_experiment(f"Abc-{tag}")
    lower = client.create_experiment(f"abc-{tag}")

    def experiments(filter_string):
        return {e.experiment_id for e in client.search_experiments(filter_string=filter_string)}

    assert experiments(f"name LIKE 'abc-{tag}%'") == {lower}
    assert experiments(f"name ILIKE 'abc-{tag}%'") == {lower, upper}

    run = client.create_run(upper, run_name="TrainRun", tags={"Team": "ML-Ops"})
    client.log_param(run.info.run_id, "opt", "Adam")

    def runs(filter_string):
        return {r.info.run_id for r in client.search_runs([upper], filter_string)}

    assert runs("attributes.run_name LIKE 'train%'") == set()
    assert runs("attributes.run_name ILIKE 'train%'") == {run.info.run_id}
    assert runs("tags.Team LIKE 'ml-%'") == set()
    assert runs("tags.Team ILIKE 'ml-%'") == {run.info.run_id}
    assert runs("params.opt LIKE 'adam'") == set()
    assert runs("params.opt ILIKE 'adam'") == {run.info.run_id}

    model = f"Churn-{tag}"
    client.create_registered_model(model)
    client.create_model_version(model, f"runs:/{run.info.run_id}/model", run.info.run_id)
    assert [m.name for m in client.search_registered_models(f"name LIKE 'churn-{tag}%'")] == []
    assert [m.name for m in client.search_registered_models(f"name ILIKE 'churn-{tag}%'")] == [model]
    assert [v.name for v in client.search_model_versions(f"name LIKE 'churn-{tag}%'")] == []
    assert [v.name for v in client.search_model_versions(f"name ILIKE 'churn-{tag}%'")] == [model]


def test_search_datasets_is_served_on_the_ajax_api(url, client):
    import pandas as pd

    experiment_id = client.create_experiment(_unique("compat-datasets"))
    frame = pd.DataFrame({"x": [1, 2], "y": [0, 1]})
    dataset = mlflow.data.from_pandas(frame, source="s3://bucket/train.csv", name="train", targets="y")
    for context in ("training", "eval"):
        with mlflow.start_run(experiment_id=experiment_id):
            mlflow.log_input(dataset, context=context)
    answer = http("POST", url + AJAX + "experiments/search-datasets", json={"experiment_ids": [experiment_id]})
    assert answer.status_code == 200, answer.text
    summaries = sorted(answer.json()["dataset_summaries"], key=lambda s: s.get("context", ""))
    assert summaries == [
        {"experiment_id": experiment_id, "name": "train", "digest": dataset.digest, "context": context} for context in ("eval", "training")
    ]
    message = _refused(http("POST", url + AJAX + "experiments/search-datasets", json={"experiment_ids": []}))
    assert message.startswith("SearchDatasets request must specify at least one experiment_id."), message


# -- experiments, logged models, registry ----------------------------------------------------


def test_a_version_and_a_logged_model_may_name_a_run_that_does_not_exist(url, client):
    """MLflow checks that a runs:/ source and run_id agree, not that the run exists (a model
    may be registered from a tracking server other than the registry's)."""
    experiment_id = client.create_experiment(_unique("compat-lineage"))
    missing = uuid.uuid4().hex
    model = _unique("compat-lineage")
    client.create_registered_model(model)
    version = client.create_model_version(model, f"runs:/{missing}/model", missing)
    assert version.run_id == missing
    created = http("POST", url + API + "logged-models", json={"experiment_id": experiment_id, "source_run_id": missing})
    assert created.status_code == 200, created.text
    assert created.json()["model"]["info"]["source_run_id"] == missing


def test_deleting_a_logged_models_missing_tag_raises(url, client):
    experiment_id = client.create_experiment(_unique("compat-model-tag"))
    model = client.create_logged_model(experiment_id)
    answer = http("DELETE", url + API + f"logged-models/{model.model_id}/tags/nope")
    message = _refused(answer, "RESOURCE_DOES_NOT_EXIST")
    assert message == f"No tag with key 'nope' found for model with ID '{model.model_id}'."
    with pytest.raises(mlflow.exceptions.MlflowException, match="No tag with key"):
        client.delete_logged_model_tag(model.model_id, "nope")


def test_log_inputs_keeps_model_inputs(url, client):
    from mlflow.entities import LoggedModelInput

    experiment_id = client.create_experiment(_unique("compat-model-inputs"))
    model = client.create_logged_model(experiment_id)
    run_id = client.create_run(experiment_id).info.run_id
    client.log_inputs(run_id, models=[LoggedModelInput(model.model_id)])
    assert [m.model_id for m in client.get_run(run_id).inputs.model_inputs] == [model.model_id]


def test_a_version_made_from_a_logged_model_is_recorded_on_its_tags(url, client):
    experiment_id = client.create_experiment(_unique("compat-model-versions"))
    with mlflow.start_run(experiment_id=experiment_id) as run:
        logged = client.create_logged_model(experiment_id, source_run_id=run.info.run_id)
    name = _unique("compat-mv")
    client.create_registered_model(name)
    for _ in range(2):
        http("POST", url + API + "model-versions/create",
                   json={"name": name, "source": f"models:/{logged.model_id}", "model_id": logged.model_id}).raise_for_status()
    tag = client.get_logged_model(logged.model_id).tags["mlflow.modelVersions"]
    assert json.loads(tag) == [{"name": name, "version": "1"}, {"name": name, "version": "2"}]
