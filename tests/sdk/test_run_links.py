"""Where to see a run: a training process that logs to a real server prints MLflow's two
lines when its run ends, and the run link opens that run's page in the dashboard (real
Chromium). The embedded default prints nothing (it has no address to give)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "server"))
from browsing import browser, page  # noqa: E402,F401  (fixtures)
from serving import running_server  # noqa: E402

SCRIPT = """
import eventflow
eventflow.set_experiment("links")
with eventflow.start_run(run_name="shown") as run:
    eventflow.log_metric("m", 1.0)
    with eventflow.start_run(run_name="child", nested=True) as child:
        pass
print("ids", run.info.experiment_id, run.run_id, child.run_id)
"""


def train(env: dict[str, str]) -> tuple[list[str], list[str]]:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "EVENTFLOW_CAPTURE_ENV": "false", **env})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    return [line for line in lines if not line.startswith("ids ")], lines[-1].split()[1:]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("links") / "home") as url:
        yield url


def test_a_run_ended_against_a_server_prints_where_to_see_it(server):
    printed, (experiment_id, run_id, child_id) = train({"EVENTFLOW_TRACKING_URI": server})
    experiment_url = f"{server}/#/experiments/{experiment_id}"
    assert printed == [  # the nested run ends first, as in MLflow
        f"🏃 View run child at: {experiment_url}/runs/{child_id}",
        f"🧪 View experiment at: {experiment_url}",
        f"🏃 View run shown at: {experiment_url}/runs/{run_id}",
        f"🧪 View experiment at: {experiment_url}",
    ]


def test_credentials_in_the_tracking_uri_are_not_printed(server):
    printed, _ = train({"EVENTFLOW_TRACKING_URI": server.replace("http://", "http://ann:secret@")})
    assert printed and not any("secret" in line or "ann@" in line for line in printed)
    assert printed[0].split(" at: ")[1].startswith(server + "/#/experiments/")


@pytest.mark.parametrize("variable", ["EVENTFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"])
def test_the_lines_can_be_turned_off(server, variable):
    printed, _ = train({"EVENTFLOW_TRACKING_URI": server, variable: "true"})
    assert printed == []


def test_the_embedded_default_prints_nothing(tmp_path):
    printed, _ = train({"EVENTFLOW_HOME": str(tmp_path / "home"), "EVENTFLOW_TRACKING_URI": ""})
    assert printed == []


def test_the_printed_run_link_opens_the_run_page(server, page):
    printed, (_, run_id, _) = train({"EVENTFLOW_TRACKING_URI": server})
    link = next(line for line in printed if run_id in line).split(" at: ")[1]
    page.goto(link)
    page.wait_for_selector(f"#summary:has-text('{run_id}')", timeout=30000)
    assert page.locator("#run-name").inner_text() == "shown"
