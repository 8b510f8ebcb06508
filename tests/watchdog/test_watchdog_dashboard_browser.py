"""The dashboard says what the watchdog found, live, in real headless Chromium: a run alive
without new metrics reads STALLED on its page, and CRASHED once its process is killed with
SIGKILL — live on the open page and in its experiment's table (MLflow's clients read FAILED)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid

import pytest

from browsing import browser, page, shot  # noqa: F401 - fixtures
from serving import ok, running_server

ENV = {"EVENTFLOW_RUN_TIMEOUT": "2", "EVENTFLOW_RUN_STALL_TIMEOUT": "2"}
TRAIN = """
import sys, time, eventflow
eventflow.set_experiment(sys.argv[1])
run = eventflow.start_run(run_name="hangs")
eventflow.log_metric("loss", 0.5, step=0)
eventflow.flush()
print("RUN_ID=" + run.info.run_id, flush=True)
while True:
    time.sleep(0.05)  # alive, and no new step: a hung training loop
"""


@pytest.fixture
def url(tmp_path):
    with running_server(tmp_path / "home", env=ENV) as served:
        yield served


def badge_reads(page, scope: str, status: str) -> None:
    page.wait_for_function("([scope, status]) => document.querySelector(scope + ' .badge')?.dataset.status === status",
                           arg=[scope, status], timeout=60000)


def test_a_hung_run_reads_stalled_then_crashed_once_killed(page, url):
    experiment = "hangs-" + uuid.uuid4().hex[:8]
    env = {**os.environ, "EVENTFLOW_TRACKING_URI": url, "EVENTFLOW_HEARTBEAT_SECONDS": "0.3", "EVENTFLOW_CAPTURE_ENV": "false"}
    process = subprocess.Popen([sys.executable, "-c", TRAIN, experiment], stdout=subprocess.PIPE, text=True, env=env)
    try:
        run_id = next(line.strip().removeprefix("RUN_ID=") for line in process.stdout if line.startswith("RUN_ID="))
        page.goto(f"{url}/#/runs/{run_id}")
        badge_reads(page, "#status", "STALLED")
        shot(page, "run-stalled")
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        badge_reads(page, "#status", "CRASHED")
    finally:
        if process.poll() is None:
            process.kill()
    assert ok(url, "GET", "runs/get", run_id=run_id)["run"]["info"]["status"] == "FAILED"
    experiment_id = ok(url, "GET", "experiments/get-by-name", experiment_name=experiment)["experiment"]["experiment_id"]
    page.goto(f"{url}/#/experiments/{experiment_id}")
    badge_reads(page, f'#runs tr[data-run="{run_id}"]', "CRASHED")
