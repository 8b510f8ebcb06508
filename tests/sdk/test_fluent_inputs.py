"""log_input and experiment tags through the fluent API, on the embedded default: the
datasets a run used reach its inputs and the audit lineage; experiment tags reach the
experiment."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import eventflow
from eventflow.audit.lineage import lineage
from eventflow.validation import InvalidInput
from test_fluent import home, log_size  # noqa: F401  (the fixture)

FRAME = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0, 1, 0]})


def dataset_inputs(run_id: str) -> list[dict]:
    return eventflow.Client().get_run(run_id)["inputs"]["dataset_inputs"]


def test_an_eventflow_dataset_is_logged_with_name_digest_source_schema_and_context(home):
    dataset = eventflow.data.from_pandas(FRAME, source="s3://bucket/train.parquet", name="train")
    with eventflow.start_run() as run:
        eventflow.log_input(dataset, context="training", tags={"split": "a"})
    [logged] = dataset_inputs(run.run_id)
    assert {t["key"]: t["value"] for t in logged["tags"]} == {"mlflow.data.context": "training", "split": "a"}
    found = logged["dataset"]
    assert found["name"] == "train" and found["digest"] == dataset.digest and len(dataset.digest) == 8
    assert found["source_type"] == "s3" and json.loads(found["source"]) == {"uri": "s3://bucket/train.parquet"}
    assert [c["name"] for c in json.loads(found["schema"])["mlflow_colspec"]] == ["x", "y"]
    assert json.loads(found["profile"])["num_rows"] == 3
    # the audit lineage reads it: the dataset is upstream of the run
    client = eventflow.Client()
    with client.store.engine.connect() as connection:
        graph = lineage(connection, f"runs:/{run.run_id}", direction="upstream")
    assert f"dataset:train@{dataset.digest}" in {node["id"] for node in graph["nodes"]}


def test_digests_follow_the_data(home):
    same = eventflow.data.from_pandas(FRAME.copy())
    changed = eventflow.data.from_pandas(FRAME.assign(x=[1.0, 2.0, 4.0]))
    assert same.digest == eventflow.data.from_pandas(FRAME).digest != changed.digest
    array = eventflow.data.from_numpy(np.arange(12).reshape(4, 3), targets=np.arange(4), name="arr")
    assert array.digest != eventflow.data.from_numpy(np.arange(12).reshape(4, 3), name="arr").digest
    assert set(json.loads(array.schema)["mlflow_tensorspec"]) == {"features", "targets"}


def test_mlflow_datasets_are_accepted(home):
    import mlflow.data

    pandas_dataset = mlflow.data.from_pandas(FRAME, source="/data/train.csv", name="mlflow-train", targets="y")
    numpy_dataset = mlflow.data.from_numpy(np.ones((2, 2)), name="mlflow-array")
    with eventflow.start_run() as run:
        eventflow.log_input(pandas_dataset, context="training")
        eventflow.log_input(numpy_dataset)
    logged = {d["dataset"]["name"]: d["dataset"] for d in dataset_inputs(run.run_id)}
    assert logged["mlflow-train"]["digest"] == pandas_dataset.digest
    assert logged["mlflow-train"]["source_type"] == pandas_dataset.source._get_source_type()
    assert logged["mlflow-array"]["digest"] == numpy_dataset.digest


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: eventflow.log_input(FRAME), "a dataset from eventflow.data"),
        (lambda: eventflow.log_input(), "needs a dataset or a model"),
        (lambda: eventflow.log_input(eventflow.data.from_pandas(FRAME, name="n" * 600)), "exceeds the maximum length"),
        (lambda: eventflow.data.from_pandas(FRAME, targets="nope"), "not a column"),
        (lambda: eventflow.set_experiment_tag("", "v"), "must be provided"),
        (lambda: eventflow.set_experiment_tags({"ok": 1, "bad": "v" * 6000}), "exceeds the maximum length"),
    ],
)
def test_bad_input_fails_at_the_call_and_nothing_reaches_the_log(home, call, message):
    eventflow.set_experiment("tags")
    eventflow.flush()
    before = log_size(home)
    with pytest.raises(InvalidInput, match=message):
        call()
    eventflow.flush()
    assert log_size(home) == before
    assert eventflow.active_run() is None  # no run was started for it either


def test_experiment_tags_reach_the_active_experiment(home):
    experiment = eventflow.set_experiment("tagged")
    eventflow.set_experiment_tag("team", "ml")
    eventflow.set_experiment_tags({"stage": "dev", "priority": 1})
    with eventflow.start_run():
        eventflow.set_experiment_tag("from_run", "yes")
    found = eventflow.Client().get_experiment(experiment["experiment_id"])
    tags = {t["key"]: t["value"] for t in found["tags"]}
    assert tags == {"team": "ml", "stage": "dev", "priority": "1", "from_run": "yes"}
