"""What a run records about where it came from: code version, command, machine, packages."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import eventflow


def git(directory, *args):
    subprocess.run(["git", "-C", str(directory), *args], check=True, capture_output=True)


def test_a_run_records_its_git_commit_command_and_packages(tmp_path):
    repo = tmp_path / "project"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "trunk")
    git(repo, "config", "user.email", "a@b.c")
    git(repo, "config", "user.name", "a")
    git(repo, "remote", "add", "origin", "https://example.invalid/team/project.git")
    (repo / "train.py").write_text(textwrap.dedent(
        """
        import eventflow
        with eventflow.start_run() as run:
            eventflow.log_metric("m", 1.0)
        print(run.run_id)
        """
    ))
    git(repo, "add", "train.py")
    git(repo, "commit", "-q", "-m", "first")
    commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    (repo / "train.py").write_text((repo / "train.py").read_text() + "\n# dirty\n")
    home = tmp_path / "home"
    done = subprocess.run(
        [sys.executable, str(repo / "train.py"), "--epochs", "3"], capture_output=True, text=True, timeout=120,
        env={**{k: v for k, v in os.environ.items() if k != "EVENTFLOW_CAPTURE_ENV"}, "EVENTFLOW_HOME": str(home)},
    )
    assert done.returncode == 0, done.stderr
    run = eventflow.Client(str(home)).get_run(done.stdout.strip())
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert tags["mlflow.source.git.commit"] == commit
    assert tags["mlflow.source.git.branch"] == "trunk"
    assert tags["mlflow.source.git.repoURL"] == "https://example.invalid/team/project.git"
    assert tags["eventflow.git.dirty"] == "true"
    assert tags["mlflow.source.name"] == str(repo / "train.py")
    assert tags["eventflow.command"].endswith("train.py --epochs 3")
    assert tags["eventflow.python"] == ".".join(map(str, sys.version_info[:3]))
    packages = open(os.path.join(run["info"]["artifact_uri"].removeprefix("file://"), "environment", "requirements.txt")).read()
    assert "fastavro==" in packages and "SQLAlchemy==" in packages
