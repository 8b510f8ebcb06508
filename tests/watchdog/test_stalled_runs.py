"""A run that is alive but logs no new metric step for EVENTFLOW_RUN_STALL_TIMEOUT becomes
``run.stalled`` (once), and its next metric ends the stall (``run.stall_ended``, once). A
real server and a real training process, which the test tells when to log again."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import pytest
from serving import ok, running_server
from watching import history_of, run_of, tags_of, wait_for

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
        stalled = wait_for(lambda: "eventflow.stalled" in tags_of(r := run_of(url, run_id)) and r, "the run to be called stalled")
        assert stalled["info"]["status"] == "RUNNING", "a stalled run is still running"
        # Stalled for twice as long again: still one run.stalled, not one per check.
        time.sleep(2 * STALL_S)  # the watchdog's checks that must not repeat it
        assert history_of(url, run_id).count("run.stalled") == 1

        go.touch()
        assert next(line for line in process.stdout if line.startswith("LOGGED"))
        wait_for(lambda: "eventflow.stalled" not in tags_of(run_of(url, run_id)), "the new step to end the stall")
        assert history_of(url, run_id).count("run.stall_ended") == 1
        (tmp_path / "end").touch()
        assert process.wait(timeout=120) == 0
        assert run_of(url, run_id)["info"]["status"] == "FINISHED"
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
        wait_for(lambda: "eventflow.stalled" in tags_of(run_of(url, probe_id)), "the probe to be called stalled")
        assert "eventflow.stalled" not in tags_of(run_of(url, quiet))
        assert "run.stalled" not in history_of(url, quiet)
    finally:
        probe.kill()
