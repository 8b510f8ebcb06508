"""What a receiver reads in a delivery's ``data``: metric points as one list, links and all."""

from __future__ import annotations

import json

from eventflow import commands
from eventflow.webhooks.payload import body_of

MODEL = "m-" + "0123456789abcdef" * 2


def refuse(constant: str) -> None:
    raise AssertionError(f"bare {constant} in the body: not JSON")


def test_metric_points_keep_their_model_and_dataset_and_non_finite_values_are_spelled():
    run = commands.new_run_id()
    (event,) = commands.log_batch(
        run, [("loss", float("nan"), 10, 1), ("acc", 0.75, 11, 2, MODEL, "train", "d1"), ("grad", float("-inf"), 12, 3)]
    )
    data = json.loads(body_of(event), parse_constant=refuse)["data"]
    assert data["run_id"] == run
    assert sorted(data["metrics"], key=lambda m: m["key"]) == [
        {"key": "acc", "value": 0.75, "step": 2, "timestamp": 11, "model_id": MODEL, "dataset_name": "train", "dataset_digest": "d1"},
        {"key": "grad", "value": "-Infinity", "step": 3, "timestamp": 12},
        {"key": "loss", "value": "NaN", "step": 1, "timestamp": 10},
    ]
