"""A run that is alive but logs no new metric step for EVENTFLOW_RUN_STALL_TIMEOUT becomes
``run.stalled`` (once), and its next metric ends the stall (``run.stall_ended``, once). A
real server and a real training process, which the test tells when to log again."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from serving import ok, running_server

STALL_S = 2.0
ENV = {"EVENTFLOW_RUN_STALL_TIMEOUT": str(STALL_S), "EVENTFLOW_RUN_TIMEOUT": "60"}
TRAIN = """
import pathlib, sys, time, eventflow
go = pathlib.Path(sys.argv[2])
eventflow.set_experiment(sys.argv[1])
run = eventflow.start_run()
eventflow.log_metric("loss", 0.5, step=0)
eventflow.flush()
print("RUN_ID=" + run.info.run_id, flush=True)
while not go.exists():
    time.sleep(0.05)  # alive (its heartbeats go on), and no new step
eventflow.log_metric("loss", 0.4, step=1)
eventflow.flush()
print("LOGGED", flush=True)
while not (go.parent / "end").exists():
    time.sleep(0.05)
eventflow.end_run()
"""


def _run(url: str, run_id: str) -> dict:
    return ok(url, "GET", "runs/get", run_id=run_id)["run"]


def _tags(run: dict) -> dict:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def _history(url: str, run_id: str) -> list[str]:
    entries = httpx.get(f"{url}/api/2.0/eventflow/audit", params={"target": run_id}, timeout=60).json()["entries"]
    return [e["event_type"] for e in entries]


def _wait(condition, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.fixture
def url(tmp_path):
    with running_server(tmp_path / "home", env=ENV) as served:
        yield served


def test_an_alive_run_without_new_steps_stalls_once_and_its_next_step_ends_it(url, tmp_path):
    go = tmp_path / "go"
    env = {**os.environ, "EVENTFLOW_TRACKING_URI": url, "EVENTFLOW_HEARTBEAT_SECONDS": "0.3", "EVENTFLOW_CAPTURE_ENV": "false"}
    process = subprocess.Popen([sys.executable, "-c", TRAIN, "stall-" + uuid.uuid4().hex[:8], str(go)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        run_id = next(line.strip().removeprefix("RUN_ID=") for line in process.stdout if line.startswith("RUN_ID="))
        stalled = _wait(lambda: "eventflow.stalled" in _tags(r := _run(url, run_id)) and r, "the run to be called stalled")
        assert stalled["info"]["status"] == "RUNNING", "a stalled run is still running"
        # Stalled for twice as long again: still one run.stalled, not one per check.
        time.sleep(2 * STALL_S)  # the watchdog's checks that must not repeat it
        assert _history(url, run_id).count("run.stalled") == 1

        go.touch()
        assert next(line for line in process.stdout if line.startswith("LOGGED"))
        _wait(lambda: "eventflow.stalled" not in _tags(_run(url, run_id)), "the new step to end the stall")
        assert _history(url, run_id).count("run.stall_ended") == 1
        (tmp_path / "end").touch()
        assert process.wait(timeout=120) == 0
        assert _run(url, run_id)["info"]["status"] == "FINISHED"
    finally:
        if process.poll() is None:
            process.kill()


def test_a_run_without_heartbeats_never_stalls(url, tmp_path):
    """The MLflow client sends no signs of life: its quiet run is not judged."""
    experiment_id = ok(url, "POST", "experiments/create", name="quiet-" + uuid.uuid4().hex[:8])["experiment_id"]
    quiet = ok(url, "POST", "runs/create", experiment_id=experiment_id)["run"]["info"]["run_id"]
    ok(url, "POST", "runs/log-metric", run_id=quiet, key="loss", value=1.0, timestamp=1, step=0)
    go = tmp_path / "go"
    env = {**os.environ, "EVENTFLOW_TRACKING_URI": url, "EVENTFLOW_HEARTBEAT_SECONDS": "0.3", "EVENTFLOW_CAPTURE_ENV": "false"}
    probe = subprocess.Popen([sys.executable, "-c", TRAIN, "probe-" + uuid.uuid4().hex[:8], str(go)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        probe_id = next(line.strip().removeprefix("RUN_ID=") for line in probe.stdout if line.startswith("RUN_ID="))
        _wait(lambda: "eventflow.stalled" in _tags(_run(url, probe_id)), "the probe to be called stalled")
        assert "eventflow.stalled" not in _tags(_run(url, quiet))
        assert "run.stalled" not in _history(url, quiet)
    finally:
        probe.kill()
