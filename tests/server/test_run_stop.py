"""Stopping a running run from outside its process (issue 16, MLflow issue 4391), against a
real server: ``POST /api/2.0/eventflow/runs/stop`` appends ``run.stop_requested``, and a real
training process (the SDK in a loop) ends the run KILLED and exits as on Ctrl-C — over the
server, and over the embedded log it shares with the server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serving import ok, running_server

STOP = "/api/2.0/eventflow/runs/stop"

# Logs a point every 50 ms until something stops it; prints its run id first.
STOPPABLE = textwrap.dedent(
    """
    import sys, time
    import eventflow

    eventflow.set_experiment(sys.argv[1])
    with eventflow.start_run(run_name="stoppable") as run:
        eventflow.flush()
        print(run.run_id, flush=True)
        step = 0
        while True:
            eventflow.log_metric("loss", 1.0 / (step + 1), step=step)
            step += 1
            time.sleep(0.05)
    """
)


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("run-stop")


@pytest.fixture(scope="module")
def url(home) -> Iterator[str]:
    with running_server(home) as url:
        yield url


def stop_events(url: str, run_id: str) -> list[dict]:
    found = httpx.get(f"{url}/api/2.0/eventflow/events", params={"type": "run.stop_requested", "max_results": 10000}).json()
    return [e["event"] for e in found.get("events", []) if e["event"]["payload"]["run_id"] == run_id]


def start_training(tmp_path: Path, tracking_uri: str, sigint_ignored: bool = False) -> tuple[subprocess.Popen, str]:
    script = tmp_path / "stoppable.py"
    script.write_text(STOPPABLE)
    process = subprocess.Popen(
        [sys.executable, str(script), f"stop-{uuid.uuid4().hex[:6]}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "EVENTFLOW_TRACKING_URI": tracking_uri},
        # as a shell script's `python train.py &` starts it: SIGINT ignored
        preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint_ignored else None,
    )
    run_id = process.stdout.readline().strip()
    assert run_id, "the training script did not start its run: " + process.stderr.read()[-2000:]
    return process, run_id


def status(url: str, run_id: str) -> str:
    return ok(url, "GET", "runs/get", run_id=run_id)["run"]["info"]["status"]


def wait_status(url: str, run_id: str, wanted: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while status(url, run_id) != wanted:
        assert time.monotonic() < deadline, f"run {run_id} is {status(url, run_id)}, not {wanted}, after {timeout:.0f} s"
        time.sleep(0.1)


def test_stopping_an_unknown_run_is_404_and_nothing_is_logged(url):
    run_id = uuid.uuid4().hex
    answer = httpx.post(url + STOP, json={"run_id": run_id})
    assert answer.status_code == 404, answer.text
    assert answer.json() == {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"Run with id={run_id} not found"}
    assert httpx.get(url + STOP, params={"run_id": run_id}).status_code == 404
    assert stop_events(url, run_id) == []


def test_stopping_an_ended_run_is_400_naming_its_status_and_nothing_is_logged(url):
    run_id = ok(url, "POST", "runs/create", experiment_id="0", run_name="done")["run"]["info"]["run_id"]
    ok(url, "POST", "runs/update", run_id=run_id, status="FINISHED", end_time=int(time.time() * 1000))
    answer = httpx.post(url + STOP, json={"run_id": run_id})
    assert answer.status_code == 400, answer.text
    assert answer.json()["message"] == f"Run {run_id} is FINISHED: only a RUNNING or SCHEDULED run can be stopped."
    assert stop_events(url, run_id) == []


def test_a_malformed_stop_request_is_refused_naming_the_field(url):
    answer = httpx.post(url + STOP, json={})
    assert answer.status_code == 400 and "'run_id'" in answer.json()["message"]
    run_id = ok(url, "POST", "runs/create", experiment_id="0", run_name="typed")["run"]["info"]["run_id"]
    answer = httpx.post(url + STOP, json={"run_id": run_id, "reason": 7})
    assert answer.status_code == 400 and "'reason'" in answer.json()["message"], answer.text
    assert httpx.post(url + STOP, json={"run_id": run_id, "reason": "x" * 501}).status_code == 400
    assert stop_events(url, run_id) == []
    assert httpx.get(url + STOP, params={"run_id": run_id}).json() == {}


def test_a_stop_request_is_an_event_that_names_who_asked_and_changes_no_status(url):
    run_id = ok(url, "POST", "runs/create", experiment_id="0", run_name="asked")["run"]["info"]["run_id"]
    answer = httpx.post(url + STOP, json={"run_id": run_id, "reason": "diverged"}, auth=("kim", "x"))
    assert answer.status_code == 200, answer.text
    assert answer.json()["stop_request"]["actor"] == "kim"
    assert [(e["actor"], e["payload"]["reason"]) for e in stop_events(url, run_id)] == [("kim", "diverged")]
    assert httpx.get(url + STOP, params={"run_id": run_id}).json()["stop_request"]["reason"] == "diverged"
    assert status(url, run_id) == "RUNNING"  # the training process ends it, not the request
    history = httpx.get(f"{url}/api/2.0/eventflow/audit", params={"entity_type": "run", "entity": run_id}).json()["entries"]
    assert [(e["actor"], e["what"]) for e in history if e["event_type"] == "run.stop_requested"] == [("kim", "stop requested: diverged")]
    ok(url, "POST", "runs/update", run_id=run_id, status="KILLED", end_time=int(time.time() * 1000))
    assert httpx.get(url + STOP, params={"run_id": run_id}).json() == {}  # answered by the end


@pytest.mark.parametrize("over", ["server", "embedded log", "server, SIGINT ignored"])
def test_the_training_process_ends_the_run_killed_and_exits_as_on_ctrl_c(url, home, tmp_path, over):
    process, run_id = start_training(tmp_path, str(home) if over == "embedded log" else url, sigint_ignored="ignored" in over)
    try:
        wait_status(url, run_id, "RUNNING")
        asked = time.monotonic()
        assert httpx.post(url + STOP, json={"run_id": run_id}).status_code == 200
        code = process.wait(timeout=30)
        took = time.monotonic() - asked
    finally:
        if process.poll() is None:
            process.kill()
    stderr = process.stderr.read()
    assert code == -signal.SIGINT, stderr[-2000:]  # as Ctrl-C ends Python: by the signal
    assert "KeyboardInterrupt" in stderr and f"run {run_id} was asked to stop" in stderr
    assert took < 15, f"the process took {took:.1f} s to hear of the stop"
    wait_status(url, run_id, "KILLED")


MLFLOW_TRAINING = textwrap.dedent(
    """
    import sys
    import mlflow

    mlflow.set_experiment(sys.argv[1])
    with mlflow.start_run(run_name="mlflow-client") as run:
        print(run.info.run_id, flush=True)
        sys.stdin.readline()  # the test asks for the stop meanwhile
        mlflow.log_metric("loss", 0.5, step=1)
    """
)


def test_a_process_using_the_mlflow_client_does_not_hear_a_stop_and_ends_its_run_itself(url, tmp_path):
    """MLflow's client never asks for stop requests: the request is recorded (and shown), the
    process carries on logging and ends the run as it would have, FINISHED."""
    pytest.importorskip("mlflow")
    script = tmp_path / "mlflow_training.py"
    script.write_text(MLFLOW_TRAINING)
    process = subprocess.Popen(
        [sys.executable, str(script), f"mlflow-stop-{uuid.uuid4().hex[:6]}"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env={**os.environ, "MLFLOW_TRACKING_URI": url},
    )
    try:
        run_id = process.stdout.readline().strip()
        assert run_id, process.stderr.read()[-2000:]
        assert httpx.post(url + STOP, json={"run_id": run_id}).status_code == 200
        process.stdin.write("go\n")
        process.stdin.flush()
        assert process.wait(timeout=60) == 0, process.stderr.read()[-2000:]
    finally:
        if process.poll() is None:
            process.kill()
    run = ok(url, "GET", "runs/get", run_id=run_id)["run"]
    assert run["info"]["status"] == "FINISHED" and [m["key"] for m in run["data"]["metrics"]] == ["loss"]
    assert [e["type"] for e in stop_events(url, run_id)] == ["run.stop_requested"]
