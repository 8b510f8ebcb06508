"""The fluent SDK end to end on the embedded default: log, then read back through the views."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

import eventflow
from eventflow.log import open_log
from eventflow.validation import InvalidInput


@pytest.fixture
def home(tmp_path, monkeypatch):
    path = tmp_path / "home"
    monkeypatch.setenv("EVENTFLOW_HOME", str(path))
    monkeypatch.setenv("EVENTFLOW_CAPTURE_ENV", "false")
    eventflow.set_tracking_uri(str(path))
    yield path
    while eventflow.active_run():
        eventflow.end_run()
    eventflow.set_tracking_uri(None)


def log_size(home) -> int:
    with open_log(str(home / "log")) as log:
        return sum(sum(log.end_offsets(t).values()) for t in log.topics())


def test_a_run_logged_through_the_sdk_reads_back_whole(home, tmp_path):
    experiment = eventflow.set_experiment("churn")
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    with eventflow.start_run(run_name="baseline", tags={"team": "ml"}) as run:
        eventflow.log_param("depth", 3)
        eventflow.log_params({"lr": 0.1, "optimizer": "adam"})
        for step in range(500):
            eventflow.log_metric("loss", 1 / (step + 1), step=step)
        eventflow.log_metrics({"acc": 0.9, "f1": 0.8}, step=7)
        eventflow.set_tag("stage", "dev")
        eventflow.set_tags({"a": 1, "b": "two"})
        eventflow.delete_tag("b")
        eventflow.log_artifact(notes, "docs")
        eventflow.log_dict({"k": [1, 2]}, "config/params.json")
        eventflow.log_text("plain", "readme.txt")
    client = eventflow.Client()
    found = client.get_run(run.run_id)
    info, data = found["info"], found["data"]
    assert info["status"] == "FINISHED" and info["experiment_id"] == experiment["experiment_id"]
    assert info["run_name"] == "baseline" and info["end_time"] >= info["start_time"]
    assert {p["key"]: p["value"] for p in data["params"]} == {"depth": "3", "lr": "0.1", "optimizer": "adam"}
    tags = {t["key"]: t["value"] for t in data["tags"]}
    assert tags["team"] == "ml" and tags["stage"] == "dev" and tags["a"] == "1" and "b" not in tags
    assert tags["mlflow.runName"] == "baseline"
    latest = {m["key"]: m for m in data["metrics"]}
    assert latest["loss"]["step"] == 499 and latest["loss"]["value"] == pytest.approx(1 / 500)
    assert latest["acc"]["value"] == 0.9 and latest["f1"]["step"] == 7
    history = client.get_metric_history(run.run_id, "loss")
    assert [p["step"] for p in history] == list(range(500))
    root = info["artifact_uri"].removeprefix("file://")
    assert open(os.path.join(root, "docs", "notes.txt")).read() == "hello"
    assert '"k"' in open(os.path.join(root, "config", "params.json")).read()
    runs = client.search_runs([experiment["experiment_id"]])
    assert [r["info"]["run_id"] for r in runs] == [run.run_id]


def test_nested_runs_and_resuming_a_run(home):
    with eventflow.start_run() as parent:
        with eventflow.start_run(nested=True) as child:
            eventflow.log_param("fold", 1)
    with eventflow.start_run(run_id=child.run_id):
        eventflow.log_metric("late", 1.0)
        with pytest.raises(InvalidInput, match="Changing param values is not allowed"):
            eventflow.log_param("fold", 2)
    found = eventflow.Client().get_run(child.run_id)
    tags = {t["key"]: t["value"] for t in found["data"]["tags"]}
    assert tags["mlflow.parentRunId"] == parent.run_id
    assert {m["key"] for m in found["data"]["metrics"]} == {"late"}


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: eventflow.log_metric("bad key!", 1.0), "Names may only contain"),
        (lambda: eventflow.log_metric("../escape", 1.0), "resolve to"),
        (lambda: eventflow.log_metric("k" * 251, 1.0), "exceeds the maximum length of 250"),
        (lambda: eventflow.log_metric("flag", True), "valid double"),
        (lambda: eventflow.log_metric("x", "1.0"), "valid double"),
        (lambda: eventflow.log_metric("x", 1.0, step=1.5), "Step must be"),
        (lambda: eventflow.log_param("p", "v" * 6001), "exceeds the maximum length of 6000"),
        (lambda: eventflow.set_tag("t", "v" * 8001), "exceeds the maximum length of 8000"),
        (lambda: eventflow.log_params({"": 1}), "must be provided"),
    ],
)
def test_bad_input_fails_at_the_call_and_nothing_reaches_the_log(home, call, message):
    with eventflow.start_run():
        eventflow.flush()
        before = log_size(home)
        with pytest.raises(InvalidInput, match=message):
            call()
        eventflow.flush()
        assert log_size(home) == before


def test_nan_and_infinity_are_metric_values(home):
    with eventflow.start_run() as run:
        eventflow.log_metric("weird", float("nan"), step=0)
        eventflow.log_metric("weird", float("inf"), step=1)
    history = eventflow.Client().get_metric_history(run.run_id, "weird")
    assert [p["step"] for p in history] == [0, 1]
    assert history[1]["value"] == float("inf")


SCRIPT = """
import os, signal, sys, time
import eventflow
eventflow.set_experiment("exits")
run = eventflow.start_run()
print(run.run_id, flush=True)
eventflow.log_metric("m", 1.0)
mode = sys.argv[1]
if mode == "raise":
    raise RuntimeError("boom")
if mode == "wait":
    eventflow.flush()
    print("ready", flush=True)
    time.sleep(60)
"""


@pytest.mark.parametrize("mode, status", [("ok", "FINISHED"), ("raise", "FAILED"), ("sigterm", "KILLED"), ("sigint", "KILLED")])
def test_how_a_process_ends_decides_how_its_run_ends(home, tmp_path, mode, status):
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(SCRIPT))
    process = subprocess.Popen(
        [sys.executable, str(script), "wait" if mode.startswith("sig") else mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "EVENTFLOW_HOME": str(home)},
    )
    run_id = process.stdout.readline().strip()
    if mode.startswith("sig"):
        assert process.stdout.readline().strip() == "ready"
        process.send_signal(signal.SIGTERM if mode == "sigterm" else signal.SIGINT)
    process.communicate(timeout=60)
    found = eventflow.Client().get_run(run_id)
    assert found["info"]["status"] == status
    assert [m["key"] for m in found["data"]["metrics"]] == ["m"]


def test_a_process_started_for_a_run_logs_into_it_and_leaves_its_end_to_the_launcher(home, tmp_path):
    """EVENTFLOW_RUN_ID (set by eventflow run): start_run resumes that run, not a new one,
    and the process's end does not end it — the launcher does, by the exit code."""
    with eventflow.start_run() as launched:
        pass
    launcher = eventflow.Client()
    script = tmp_path / "child.py"
    script.write_text("import eventflow\nwith eventflow.start_run() as run:\n    eventflow.log_metric('m', 2.0)\nprint(run.run_id)\n")
    # The launcher's run is open again for the test: a fresh one made the way eventflow run makes it.
    from eventflow import commands

    run_id = commands.new_run_id()
    store = launcher.store
    experiment = launched.info.experiment_id
    store.append([commands.create_run(run_id, experiment, run_name="launched", user_id="u",
                                      artifact_uri=store.artifact_root(experiment, run_id))])
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "EVENTFLOW_HOME": str(home), "EVENTFLOW_RUN_ID": run_id})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == run_id
    found = launcher.get_run(run_id)
    assert found["info"]["status"] == "RUNNING"
    assert [(m["key"], m["value"]) for m in found["data"]["metrics"]] == [("m", 2.0)]
    assert len(launcher.search_runs([experiment])) == 2  # the launcher's, and the one made above
