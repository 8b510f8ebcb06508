"""The reproducibility report on plain data: each rule, and that the JSON stays parseable."""

from __future__ import annotations

import json
import math

from eventflow.projects.report import RunFacts, compare, compare_metric, parse_packages, render

COMMIT = "a" * 40


def facts(run_id: str, **changes) -> RunFacts:
    base = dict(commit=COMMIT, parameters={"lr": "0.1", "epochs": "3"}, packages="numpy==2.0.0\nEventflow_Core==0.1\n",
                python="3.11.2", datasets={"train (training)": "d1"},
                metrics={"loss": [(0, 1.0), (1, 0.5), (2, 0.25)]}, artifacts={"model.txt": "f" * 64})
    base.update(changes)
    return RunFacts(run_id, **base)


def test_identical_runs_are_reported_identical():
    report = compare(facts("a"), facts("b"))
    assert report["inputs_identical"] and report["outputs_identical"]
    assert report["metrics"] == [{"key": "loss", "same": True, "original_final": 0.25, "rerun_final": 0.25,
                                  "max_abs_difference": 0.0, "at_step": None, "steps_compared": 3, "steps_differing": 0,
                                  "steps_only_in_original": 0, "steps_only_in_rerun": 0}]
    assert "Inputs: identical" in render(report) and "DIFFERENT" not in render(report)


def test_each_differing_input_is_named_and_nothing_else():
    report = compare(facts("a"), facts("b", commit="b" * 40, parameters={"lr": "0.2", "epochs": "3"},
                                      packages="numpy==2.1.0\neventflow-core==0.1\n", datasets={"train (training)": "d2"}))
    inputs = report["inputs"]
    assert inputs["commit"] == {"same": False, "original": COMMIT, "rerun": "b" * 40}
    assert inputs["parameters"]["differences"] == [{"key": "lr", "original": "0.1", "rerun": "0.2"}]
    # eventflow-core and Eventflow_Core are one distribution: only numpy differs
    assert inputs["packages"]["differences"] == [{"name": "numpy", "original": "2.0.0", "rerun": "2.1.0"}]
    assert inputs["datasets"]["differences"] == [{"name": "train (training)", "original": "d1", "rerun": "d2"}]
    assert inputs["python"]["same"]
    assert not report["inputs_identical"]


def test_largest_difference_over_the_curve_and_its_step():
    m = compare_metric("loss", [(0, 1.0), (1, 0.5), (2, 0.25), (2, 0.2)], [(0, 1.0), (1, 0.9), (2, 0.3)])
    assert m["same"] is False
    assert m["original_final"] == 0.2  # the last value logged at the last step
    assert m["rerun_final"] == 0.3
    assert math.isclose(m["max_abs_difference"], 0.4) and m["at_step"] == 1
    assert m["steps_differing"] == 2


def test_missing_steps_and_metrics_count_as_differences():
    report = compare(facts("a"), facts("b", metrics={"loss": [(0, 1.0), (1, 0.5)], "acc": [(0, 0.9)]}))
    by_key = {m["key"]: m for m in report["metrics"]}
    assert by_key["loss"]["steps_only_in_original"] == 1 and not by_key["loss"]["same"]
    assert by_key["acc"]["original_final"] is None and not by_key["acc"]["same"]
    assert not report["outputs_identical"]


def test_nan_equals_nan_and_the_report_is_strict_json():
    same = compare_metric("x", [(0, float("nan"))], [(0, float("nan"))])
    assert same["same"] and same["original_final"] == "NaN"
    one_sided = compare_metric("x", [(0, float("nan")), (1, 2.0)], [(0, 1.0), (1, 2.5)])
    assert not one_sided["same"] and one_sided["max_abs_difference"] is None and one_sided["at_step"] == 0
    report = compare(facts("a", metrics={"x": [(0, float("inf"))]}), facts("b", metrics={"x": [(0, 1.0)]}))
    json.loads(json.dumps(report, allow_nan=False))  # no NaN or Infinity literals


def test_artifacts_compared_by_digest_and_the_report_itself_is_left_out():
    report = compare(facts("a"), facts("b", artifacts={"model.txt": "e" * 64, "extra.bin": "1" * 64, "reproducibility.json": "2" * 64}))
    assert [(a["path"], a["same"]) for a in report["artifacts"]] == [("extra.bin", False), ("model.txt", False)]
    text = render(report)
    assert "extra.bin: only in rerun" in text and "model.txt: differs: ffffffffffff -> eeeeeeeeeeee" in text


def test_freeze_lines_parse_to_names_and_pins():
    parsed = parse_packages("# comment\nNumPy==2.0.0\nfoo @ file:///tmp/foo\n-e git+https://x/y.git@abc#egg=y\n\n--index-url x\nbar===1\n")
    assert parsed == {"numpy": "2.0.0", "foo": "file:///tmp/foo", "-e git+https://x/y.git@abc#egg=y": "-e git+https://x/y.git@abc#egg=y", "bar": "1"}


def test_a_missing_package_list_is_a_difference_with_a_note():
    report = compare(facts("a"), facts("b", packages=None))
    assert not report["inputs"]["packages"]["same"] and "rerun" in report["inputs"]["packages"]["note"]
