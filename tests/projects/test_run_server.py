"""eventflow run against a server: eventflow code and MLflow code log into the same run,
and what ran is read back over HTTP (Python and REST)."""

from __future__ import annotations

import httpx
import pytest
from projecthelpers import git
from serving import running_server

import eventflow
from eventflow import projects
from eventflow.projects.records import STDOUT_ARTIFACT
from eventflow.validation import InvalidInput


@pytest.fixture
def server(tmp_path):
    with running_server(tmp_path / "server-home") as url:
        yield url


def test_mlflow_code_logs_into_the_project_run(home, training_repo, server, tmp_path):
    import mlflow

    submitted = projects.run(training_repo.as_uri() + "#project", entry_point="mlflow", parameters={"alpha": 0.3},
                             env_manager="local", tracking_uri=server, experiment_name="mlflow-projects")
    client = mlflow.MlflowClient(tracking_uri=server)
    run = client.get_run(submitted.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics == {"accuracy": 0.9}
    assert run.data.params == {"alpha": "0.3", "alpha_seen": "0.3"}
    assert run.data.tags["written_by"] == "mlflow"
    assert run.data.tags["mlflow.source.type"] == "PROJECT"
    assert run.data.tags["mlflow.project.entryPoint"] == "mlflow"
    assert run.data.tags["mlflow.source.git.commit"] == git(training_repo, "rev-parse", "HEAD")
    experiment = client.get_experiment_by_name("mlflow-projects")
    assert [r.info.run_id for r in client.search_runs([experiment.experiment_id])] == [submitted.run_id]


def test_eventflow_code_logs_into_the_run_and_the_record_reads_back_over_http(home, training_repo, server):
    submitted = projects.run(str(training_repo / "project"), parameters={"epochs": 2}, env_manager="local",
                             tracking_uri=server)
    with eventflow.Client(server) as client:
        assert [p["value"] for p in client.get_metric_history(submitted.run_id, "loss")] == [0.5, 0.25]
        assert client.get_run(submitted.run_id)["info"]["status"] == "FINISHED"
        files = {f["path"] for f in client.store.artifact_digests(submitted.run_id)}
    assert STDOUT_ARTIFACT in files
    record = projects.project_of(submitted.run_id, tracking_uri=server)
    assert record.parameters["epochs"] == "2" and record.commit == git(training_repo, "rev-parse", "HEAD")
    answer = httpx.get(f"{server}/api/2.0/eventflow/runs/project", params={"run_id": submitted.run_id}).json()
    assert answer["project"]["command"] == record.command and answer["project"]["entry_point"] == "main"
    missing = httpx.get(f"{server}/api/2.0/eventflow/runs/project", params={"run_id": "0" * 32})
    assert missing.status_code == 404 and missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert httpx.get(f"{server}/api/2.0/eventflow/runs/project").status_code == 400
    with pytest.raises(InvalidInput, match="not found"):
        projects.project_of("0" * 32, tracking_uri=server)


def test_a_plain_run_has_no_project_record(home, server):
    eventflow.set_tracking_uri(server)
    try:
        with eventflow.start_run() as run:
            pass
    finally:
        eventflow.set_tracking_uri(None)
    assert projects.project_of(run.run_id, tracking_uri=server) is None


def test_the_cli_runs_against_a_server(home, training_repo, server):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "eventflow", "run", str(training_repo / "project"), "-P", "epochs=1",
                           "--env-manager", "local", "--tracking-uri", server], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "entry point started" in done.stdout
    run_id = done.stderr.split("run ", 1)[1].split()[0]
    with eventflow.Client(server) as client:
        assert client.get_run(run_id)["info"]["status"] == "FINISHED"
