"""start_run(log_system_metrics=True) and EVENTFLOW_ENABLE_SYSTEM_METRICS_LOGGING: real psutil
readings land on the run as MLflow's system/... metrics, one step per interval, and stop
when the run ends (by end_run, or by the process's exit)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

import eventflow
from eventflow.validation import InvalidInput
from test_fluent import home, log_size  # noqa: F401  (the fixture)

MLFLOW_NAMES = {
    "system/cpu_utilization_percentage", "system/system_memory_usage_megabytes", "system/system_memory_usage_percentage",
    "system/disk_usage_percentage", "system/disk_usage_megabytes", "system/disk_available_megabytes",
    "system/network_receive_megabytes", "system/network_transmit_megabytes",
}


def wait_for(condition, what: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return found


def system_metrics(run_id: str) -> dict[str, dict]:
    return {m["key"]: m for m in eventflow.Client().get_run(run_id)["data"]["metrics"] if m["key"].startswith("system/")}


def test_system_metrics_are_sampled_until_the_run_ends(home, monkeypatch):
    monkeypatch.setenv("EVENTFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.1")
    with eventflow.start_run(log_system_metrics=True) as run:

        def three_samples() -> bool:
            eventflow.flush()
            return system_metrics(run.run_id).get("system/cpu_utilization_percentage", {}).get("step", -1) >= 2

        wait_for(three_samples, "three samples")
    assert not run.monitor._thread.is_alive()
    found = system_metrics(run.run_id)
    assert MLFLOW_NAMES <= set(found)
    memory = found["system/system_memory_usage_percentage"]["value"]
    assert 0 < memory <= 100 and found["system/disk_available_megabytes"]["value"] > 0
    end_time = eventflow.get_run(run.run_id).info.end_time
    history = eventflow.Client().get_metric_history(run.run_id, "system/cpu_utilization_percentage")
    assert [p["step"] for p in history] == list(range(len(history)))
    assert all(p["timestamp"] <= end_time for p in history)  # nothing sampled after the end


def test_the_environment_variable_turns_it_on_and_the_argument_wins(home, monkeypatch):
    monkeypatch.setenv("EVENTFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "true")
    monkeypatch.setenv("EVENTFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.1")
    with eventflow.start_run() as on:
        assert on.monitor is not None
    with eventflow.start_run(log_system_metrics=False) as off:
        assert off.monitor is None
    monkeypatch.delenv("EVENTFLOW_ENABLE_SYSTEM_METRICS_LOGGING")
    with eventflow.start_run() as default:
        assert default.monitor is None


@pytest.mark.parametrize(
    "variable, value, message",
    [
        ("EVENTFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "often", "expected a float"),
        ("EVENTFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0", "positive number of seconds"),
        ("EVENTFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "maybe", "expected true or false"),
    ],
)
def test_a_bad_setting_fails_start_run_before_a_run_exists(home, monkeypatch, variable, value, message):
    eventflow.set_experiment("bad-settings")
    eventflow.flush()
    before = log_size(home)
    monkeypatch.setenv(variable, value)
    with pytest.raises(InvalidInput, match=message):
        eventflow.start_run(log_system_metrics=True if variable.endswith("INTERVAL") else None)
    assert eventflow.active_run() is None
    eventflow.flush()
    assert log_size(home) == before


SCRIPT = """
import time
import eventflow

run = eventflow.start_run()
print(run.run_id, flush=True)
deadline = time.monotonic() + 60
while time.monotonic() < deadline:  # train until two samples are in
    found = eventflow.get_run(run.run_id).data.metrics
    if "system/cpu_utilization_percentage" in found and len(eventflow.Client().get_metric_history(run.run_id, "system/cpu_utilization_percentage")) >= 2:
        break
    time.sleep(0.05)
"""


def test_a_process_that_exits_without_ending_its_run_stops_sampling_and_finishes_it(home, tmp_path):
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(SCRIPT))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120,
        env={**os.environ, "EVENTFLOW_HOME": str(home), "EVENTFLOW_ENABLE_SYSTEM_METRICS_LOGGING": "1",
             "EVENTFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "0.1"},
    )
    assert done.returncode == 0, done.stderr
    run = eventflow.get_run(done.stdout.split()[0])
    assert run.info.status == "FINISHED"
    assert MLFLOW_NAMES <= set(run.data.metrics)
    history = eventflow.Client().get_metric_history(run.info.run_id, "system/cpu_utilization_percentage")
    assert len(history) >= 2 and all(p["timestamp"] <= run.info.end_time for p in history)
