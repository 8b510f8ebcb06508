"""eventflow run on the embedded default: real child processes logging into the run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from projecthelpers import git, wait_for

import eventflow
from eventflow import projects
from eventflow.projects.records import PATCH_ARTIFACT, STDOUT_ARTIFACT


def read_artifact(client: eventflow.Client, run_id: str, path: str, tmp_path: Path) -> bytes:
    run = client.get_run(run_id)
    target = tmp_path / "downloaded" / path
    client.store.download_artifact(run["info"]["artifact_uri"], path, target)
    return target.read_bytes()


def tags_of(run: dict) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["data"]["tags"]}


def test_an_entry_point_logs_into_its_run_with_typed_and_defaulted_parameters(home, training_repo, tmp_path):
    uri = training_repo.as_uri() + "#project"
    submitted = projects.run(uri, parameters={"alpha": "0.25", "extra": "x y"}, env_manager="local",
                             experiment_name="projects", run_name="first")
    assert submitted.get_status() == "FINISHED"
    head = git(training_repo, "rev-parse", "HEAD")
    with eventflow.Client() as client:
        run = client.get_run(submitted.run_id)
        assert run["info"]["status"] == "FINISHED" and run["info"]["run_name"] == "first"
        params = {p["key"]: p["value"] for p in run["data"]["params"]}
        assert params == {"alpha": "0.25", "epochs": "3", "label": "a b", "extra": "x y", "label_seen": "a b"}
        assert [p["value"] for p in client.get_metric_history(submitted.run_id, "loss")] == [0.25, 0.125, 0.25 / 3]
        tags = tags_of(run)
        assert tags["mlflow.source.type"] == "PROJECT"
        assert tags["mlflow.source.git.commit"] == head
        assert tags["mlflow.source.git.repoURL"] == training_repo.as_uri()
        assert tags["mlflow.source.name"] == training_repo.as_uri()
        assert tags["mlflow.project.entryPoint"] == "main"
        assert tags["mlflow.project.env"] == "local"
        experiment = client.get_experiment_by_name("projects")
        assert [r["info"]["run_id"] for r in client.search_runs([experiment["experiment_id"]])] == [submitted.run_id]
        output = read_artifact(client, submitted.run_id, STDOUT_ARTIFACT, tmp_path).decode()
    assert output.startswith("entry point started\n") and f"logged into {submitted.run_id} extra x y" in output
    record = projects.project_of(submitted.run_id)
    assert record.commit == head and record.subdirectory == "project" and record.name == "training"
    assert record.command == "python train.py --alpha 0.25 --epochs 3 --label 'a b' --extra 'x y'"
    assert record.parameters == {"alpha": "0.25", "epochs": "3", "label": "a b", "extra": "x y"}
    assert record.env_manager == "local" and record.packages and record.python_version
    assert record.patch_path is None


def test_a_version_runs_that_commit(home, training_repo):
    submitted = projects.run(training_repo.as_uri() + "#project", version="v0", env_manager="local")
    with eventflow.Client() as client:
        assert client.get_metric_history(submitted.run_id, "old_loss")
        assert not client.get_metric_history(submitted.run_id, "loss")
    assert projects.project_of(submitted.run_id).commit == git(training_repo, "rev-parse", "v0")


def test_a_dirty_tree_runs_as_it_is_and_records_its_patch(home, training_repo, tmp_path):
    (training_repo / "project" / "train.py").write_text((training_repo / "project" / "train.py").read_text().replace("loss", "dirty_loss"))
    submitted = projects.run(str(training_repo / "project"), env_manager="local")
    record = projects.project_of(submitted.run_id)
    assert record.patch_path == PATCH_ARTIFACT
    with eventflow.Client() as client:
        assert client.get_metric_history(submitted.run_id, "dirty_loss")
        patch = read_artifact(client, submitted.run_id, PATCH_ARTIFACT, tmp_path)
        digests = {d["path"]: d["sha256"] for d in client.store.artifact_digests(submitted.run_id)}
    import hashlib

    assert hashlib.sha256(patch).hexdigest() == record.patch_sha256 == digests[PATCH_ARTIFACT]
    assert b"dirty_loss" in patch


def test_a_failing_entry_point_fails_the_run_with_its_exit_code_and_last_lines(home, training_repo):
    with pytest.raises(projects.ExecutionError) as failed:
        projects.run(str(training_repo / "project"), entry_point="fail", parameters={"code": 7}, env_manager="local")
    submitted = failed.value.submitted
    assert submitted.get_status() == "FAILED" and submitted.returncode == 7
    assert "exited with code 7" in submitted.error and "the reason: no data" in submitted.error
    with eventflow.Client() as client:
        assert client.get_run(submitted.run_id)["info"]["status"] == "FAILED"


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie is gone too: its parent (the launcher) has not reaped it yet.
    return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "eventflow", *args]


def run_status(run_id: str) -> str:
    with eventflow.Client() as client:
        return client.get_run(run_id)["info"]["status"]


def test_sigterm_terminates_the_entry_point_and_kills_the_run(home, training_repo, tmp_path):
    marker = tmp_path / "ready"
    launcher = subprocess.Popen(cli("run", str(training_repo / "project"), "-e", "sleep", "-P", f"marker={marker}",
                                    "--env-manager", "local"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(marker.exists, "the entry point to start")
        child = int(marker.read_text())
        wait_for(lambda: eventflow.Client().search_runs(["0"]), "the run to be written")  # the entry point starts first
        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(timeout=120) == 128 + signal.SIGTERM
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert wait_for(lambda: gone(child), "the entry point to end")
    with eventflow.Client() as client:
        assert [r["info"]["status"] for r in client.search_runs(["0"])] == ["KILLED"]


def test_a_run_that_is_not_waited_for_can_be_cancelled(home, training_repo, tmp_path):
    marker = tmp_path / "ready"
    submitted = projects.run(str(training_repo / "project"), entry_point="sleep", parameters={"marker": str(marker)},
                             env_manager="local", synchronous=False)
    wait_for(marker.exists, "the entry point to start")
    assert submitted.get_status() == "RUNNING" and run_status(submitted.run_id) == "RUNNING"
    submitted.cancel()
    assert submitted.get_status() == "KILLED"
    assert gone(int(marker.read_text()))
    assert run_status(submitted.run_id) == "KILLED"


def test_detach_returns_the_run_id_and_the_background_launcher_ends_it(home, training_repo, tmp_path):
    marker = tmp_path / "ready"
    done = subprocess.run(cli("run", str(training_repo / "project"), "-e", "sleep", "-P", f"marker={marker}",
                              "--env-manager", "local", "--detach"), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip()
    wait_for(marker.exists, "the entry point to start")
    assert run_status(run_id) == "RUNNING"
    launcher = int(done.stderr.split("launcher pid ", 1)[1].split(";")[0].rstrip(")"))
    os.kill(launcher, signal.SIGTERM)  # what `kill PID` does: cancels the run
    wait_for(lambda: run_status(run_id) == "KILLED", "the run to be KILLED")
    assert wait_for(lambda: gone(int(marker.read_text())), "the entry point to end")


def test_a_python_env_project_runs_in_its_built_environment(home, make_repo, tmp_path):
    from projecthelpers import commit

    repo = make_repo("envproject")
    commit(repo, {
        "MLproject": "name: env\npython_env: python_env.yaml\nentry_points:\n  main:\n    command: python main.py\n",
        "python_env.yaml": "python: '3.11'\nbuild_dependencies:\n  - pip\ndependencies:\n  - six==1.16.0\n",
        "main.py": "import sys, six, eventflow\nprint(sys.prefix, six.__version__, flush=True)\n"
                   "eventflow.log_metric('m', 1.0)\n",
    }, "env")
    submitted = projects.run(str(repo), env_manager="uv")
    record = projects.project_of(submitted.run_id)
    assert record.env_manager == "uv" and "six==1.16.0" in record.packages.splitlines()
    built = projects.build(projects.EnvironmentSpec("uv", "3.11", ("pip",), ("six==1.16.0",), repo))
    assert built.cached and record.env_digest == built.digest
    with eventflow.Client() as client:
        output = read_artifact(client, submitted.run_id, STDOUT_ARTIFACT, tmp_path).decode()
        assert client.get_metric_history(submitted.run_id, "m")
    assert output.split()[:2] == [str(built.prefix), "1.16.0"]


def test_bad_requests_are_refused_before_any_run_exists(home, training_repo):
    project = str(training_repo / "project")
    refusals = [
        (cli("run", project, "-P", "alpha=fast", "--env-manager", "local"), "'alpha' is a float"),
        (cli("run", project, "-e", "nope", "--env-manager", "local"), "Could not find nope among entry points"),
        (cli("run", project, "-P", "alpha"), "is not NAME=VALUE"),
        (cli("run", project, "--experiment-name", "a", "--experiment-id", "1"), "not both"),
        (cli("run", project, "--env-manager", "pipenv"), "Invalid value for '--env-manager'"),
        (cli("run", project, "-v", "nope"), "'nope' is not a commit, tag or branch"),
        (cli("run", project, "--experiment-id", "12345", "--env-manager", "local"), "No Experiment with id=12345"),
    ]
    for argv, message in refusals:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        assert done.returncode != 0 and message in done.stderr, (argv, done.stderr)
    with eventflow.Client() as client:
        runs = [r for e in client.search_experiments() for r in client.search_runs([e["experiment_id"]])]
    assert runs == []


def test_build_only_builds_and_creates_no_run(home, training_repo):
    done = subprocess.run(cli("run", str(training_repo / "project"), "--build-only", "--env-manager", "local"),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "(local, python" in done.stdout
    with eventflow.Client() as client:
        assert [r for e in client.search_experiments() for r in client.search_runs([e["experiment_id"]])] == []


def test_help_teaches():
    done = subprocess.run(cli("run", "--help"), capture_output=True, text=True, check=True)
    for words in ("MLproject", "-P", "--env-manager", "--detach", "project/stdout.txt", "KILLED"):
        assert words in done.stdout


def test_a_long_runs_output_is_stored_at_intervals_that_keep_the_copying_linear():
    """Each store copies the whole output: at a fixed 2 s, an hour of 1 MiB/s would copy
    ~3.3 TB; the interval grows with the size, so the copying stays a small multiple of it."""
    from eventflow.projects.submitted import UPLOAD_EVERY, upload_interval

    def copied(rate: float, seconds: int) -> tuple[float, int]:
        total, stored, stored_at, uploads = 0.0, 0.0, float("-inf"), 0
        for tenth in range(seconds * 10):
            now, size = tenth / 10, rate * tenth / 10
            if size > stored and now >= stored_at + upload_interval(int(stored)):
                total, stored, stored_at, uploads = total + size, size, now, uploads + 1
        return total, uploads

    total, _ = copied(1 << 20, 3600)
    assert total < 4 * (1 << 20) * 3600
    _, uploads = copied(1024, 20)  # a quiet run's output is stored every 2 s, as before
    assert uploads == int(20 / UPLOAD_EVERY)
