"""MLflow code in a project run on the embedded default: the launcher serves the home over
loopback for the run (eventflow/projects/loopback.py), so the real mlflow client logs into
the run — params, metrics, tags and a file, recorded on the log with its digest — and the
port answers only the run's token."""

from __future__ import annotations

import hashlib
from pathlib import Path

import eventflow
from eventflow import projects

MLFLOW_ENTRY = """\
import json, os, sys, urllib.error, urllib.request
import mlflow

with open("weights.txt", "w") as handle:
    handle.write("w=0.25\\n")
with mlflow.start_run() as run:
    mlflow.log_param("alpha_seen", sys.argv[2])  # undeclared: --alpha 0.3
    for step, loss in enumerate([0.5, 0.25, 0.125]):
        mlflow.log_metric("loss", loss, step=step)
    mlflow.set_tag("written_by", "mlflow")
    mlflow.log_artifact("weights.txt")
    # The same server without the token: a stranger on this machine who found the port.
    request = urllib.request.Request(os.environ["MLFLOW_TRACKING_URI"] + "/api/2.0/mlflow/runs/get?run_id=" + run.info.run_id)
    try:
        urllib.request.urlopen(request, timeout=30)
        print("without the token: 200", flush=True)
    except urllib.error.HTTPError as error:
        print(f"without the token: {error.code}", flush=True)
    print("mlflow logged into", run.info.run_id, flush=True)
"""


def test_mlflow_code_logs_into_a_project_run_on_the_embedded_default(home: Path, tmp_path: Path) -> None:
    project = tmp_path / "mlflow-project"
    project.mkdir()
    (project / "train.py").write_text(MLFLOW_ENTRY)

    submitted = projects.run(str(project), entry_point="train.py", parameters={"alpha": "0.3"}, env_manager="local")

    assert submitted.wait(timeout=300), submitted.error
    with eventflow.Client() as client:
        run = client.get_run(submitted.run_id)
        assert run["info"]["status"] == "FINISHED"
        params = {p["key"]: p["value"] for p in run["data"]["params"]}
        assert params["alpha_seen"] == "0.3"
        tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
        assert tags["written_by"] == "mlflow"
        assert tags["mlflow.source.type"] == "PROJECT"
        assert [(p["step"], p["value"]) for p in client.get_metric_history(submitted.run_id, "loss")] == [(0, 0.5), (1, 0.25), (2, 0.125)]
        digests = {f["path"]: f for f in client.store.artifact_digests(submitted.run_id)}
        # MLflow's end_run froze the run's files: the launcher stored the output just before
        kept = tmp_path / "stdout.txt"
        client.store.download_artifact(run["info"]["artifact_uri"], "project/stdout.txt", kept)
    assert digests["weights.txt"]["sha256"] == hashlib.sha256(b"w=0.25\n").hexdigest()
    printed = kept.read_text()
    assert f"mlflow logged into {submitted.run_id}" in printed
    assert "without the token: 401" in printed
    assert digests["project/stdout.txt"]["sha256"] == hashlib.sha256(kept.read_bytes()).hexdigest()
