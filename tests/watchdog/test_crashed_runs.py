"""A training process killed with SIGKILL becomes run.crashed within the timeout; a quiet
process that is alive does not; a run no heartbeat ever came from (the MLflow client's) is
never called crashed; resuming the run clears it. A real server, real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from serving import ok, running_server
from watching import history_of, run_of, tags_of, wait_for

TIMEOUT_S = 2.0
ENV = {"EVENTFLOW_RUN_TIMEOUT": str(TIMEOUT_S)}
TRAIN = """
import sys, time, eventflow
eventflow.set_experiment(sys.argv[1])
run = eventflow.start_run(run_id=sys.argv[2] if len(sys.argv) > 2 else None)
eventflow.log_metric("loss", 0.5)
eventflow.flush()
print("RUN_ID=" + run.info.run_id, flush=True)
if len(sys.argv) > 2:
    eventflow.end_run()
else:
    while True:
        time.sleep(0.1)  # quiet, and alive
"""








def _start(url: str, experiment: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "EVENTFLOW_TRACKING_URI": url, "EVENTFLOW_HEARTBEAT_SECONDS": "0.3", "EVENTFLOW_CAPTURE_ENV": "false"}
    return subprocess.Popen([sys.executable, "-c", TRAIN, experiment, *args], stdout=subprocess.PIPE, text=True, env=env)


def _run_id_of(process: subprocess.Popen) -> str:
    for line in process.stdout:
        if line.startswith("RUN_ID="):
            return line.strip().removeprefix("RUN_ID=")
    raise AssertionError(f"the training process exited ({process.wait()}) without starting its run")


@pytest.fixture
def url(tmp_path):
    with running_server(tmp_path / "home", env=ENV) as served:
        yield served


def test_a_killed_training_process_becomes_crashed_and_resuming_clears_it(url):
    experiment = "crash-" + uuid.uuid4().hex[:8]
    process = _start(url, experiment)
    try:
        run_id = _run_id_of(process)
        # Quiet but alive for three timeouts: its heartbeats keep it RUNNING.
        deadline = time.monotonic() + 3 * TIMEOUT_S
        while time.monotonic() < deadline:
            assert run_of(url, run_id)["info"]["status"] == "RUNNING"
            time.sleep(0.2)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    killed_at = time.monotonic()
    crashed = wait_for(lambda: (r := run_of(url, run_id))["info"]["status"] == "FAILED" and r, "the run to be called crashed")
    assert time.monotonic() - killed_at < 30, "far later than the timeout"
    assert "eventflow.crashed" in tags_of(crashed)
    assert crashed["info"]["end_time"] <= int(time.time() * 1000) - int(TIMEOUT_S * 1000) + 1000
    history = history_of(url, run_id)
    assert history.count("run.crashed") == 1
    assert "run.alive" not in history, "signs of life are left out of the history"

    resumed = _start(url, experiment, run_id)
    assert _run_id_of(resumed) == run_id
    assert resumed.wait(timeout=120) == 0
    ended = run_of(url, run_id)
    assert ended["info"]["status"] == "FINISHED" and "eventflow.crashed" not in tags_of(ended)


def test_a_run_without_heartbeats_is_never_called_crashed(url):
    """The MLflow client sends no signs of life: a run it leaves quiet stays RUNNING."""
    experiment_id = ok(url, "POST", "experiments/create", name="quiet-" + uuid.uuid4().hex[:8])["experiment_id"]
    run_id = ok(url, "POST", "runs/create", experiment_id=experiment_id)["run"]["info"]["run_id"]
    ok(url, "POST", "runs/log-metric", run_id=run_id, key="loss", value=1.0, timestamp=1, step=0)
    probe = _start(url, "probe-" + uuid.uuid4().hex[:8])  # a watched run, to know the watchdog is judging
    try:
        probe_id = _run_id_of(probe)
        probe.send_signal(signal.SIGKILL)
        probe.wait(timeout=30)
    finally:
        if probe.poll() is None:
            probe.kill()
    wait_for(lambda: run_of(url, probe_id)["info"]["status"] == "FAILED", "the probe to be called crashed")
    assert run_of(url, run_id)["info"]["status"] == "RUNNING"
