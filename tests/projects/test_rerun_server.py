"""``eventflow rerun --tracking-uri http://…``: the original, the rerun and its report all
through a real ``eventflow server``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "server"))
from rerun_repos import run_script, training_repo  # noqa: E402
from serving import running_server  # noqa: E402


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("rerun-server")) as url:
        yield url


def test_a_run_logged_to_a_server_reruns_there_with_its_report_and_link(tmp_path, url):
    repo = training_repo(tmp_path / "repo")
    original = run_script(repo, url, "--lr", "0.3")
    done = subprocess.run([sys.executable, "-m", "eventflow", "rerun", original, "--tracking-uri", url, "--env-manager", "local",
                           "--set", "epochs=6", "--json"], capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in os.environ.items() if k != "EVENTFLOW_TRACKING_URI"})
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    new, report = answer["run_id"], answer["report"]
    assert [name for name, item in report["inputs"].items() if not item["same"]] == ["parameters"]
    loss = next(m for m in report["metrics"] if m["key"] == "loss")
    assert (loss["steps_compared"], loss["steps_differing"], loss["steps_only_in_rerun"]) == (5, 0, 1)

    api = httpx.Client(base_url=url, timeout=30)
    run = api.get("/api/2.0/mlflow/runs/get", params={"run_id": new}).json()["run"]
    assert {t["key"]: t["value"] for t in run["data"]["tags"]}["eventflow.rerun_of"] == original
    stored = api.get(f"/api/2.0/mlflow-artifacts/artifacts/{run['info']['artifact_uri'].removeprefix('mlflow-artifacts:/').strip('/')}"
                     "/reproducibility.json")
    assert stored.status_code == 200 and json.loads(stored.content) == report
    events = api.get("/api/2.0/eventflow/events", params={"type": ["run.created", "run.tags_set"], "max_results": 10000}).json()["events"]
    created = next(e["event"] for e in events if e["event"]["type"] == "run.created" and e["event"]["payload"]["run_id"] == original)
    links = [e["event"] for e in events if e["event"]["type"] == "run.tags_set" and e["event"]["payload"]["run_id"] == new]
    assert [e["causation_id"] for e in links] == [created["event_id"]]
