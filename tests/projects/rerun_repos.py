"""Real git repositories and real training processes for the rerun tests."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

# Deterministic: the same code and arguments give the same curve and the same file.
TRAIN = textwrap.dedent(
    """
    import argparse
    import eventflow

    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    SHRINK = 1.0
    with eventflow.start_run():
        eventflow.log_params({"lr": args.lr, "epochs": args.epochs})
        w = 1.0
        for step in range(args.epochs):
            w -= args.lr * w * SHRINK
            eventflow.log_metric("loss", w, step=step)
            eventflow.log_metric("accuracy", 1 - w, step=step)
        eventflow.log_text(f"w={w:.12f}\\n", "model/weights.txt")
    """
)

MLPROJECT = textwrap.dedent(
    """
    name: shrink
    entry_points:
      main:
        parameters:
          lr: {type: float, default: 0.1}
          epochs: {type: int, default: 5}
        command: "python train.py --lr {lr} --epochs {epochs}"
    """
)


def git(directory: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(directory), *args], capture_output=True, text=True, check=True,
                          env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
                               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"})
    return done.stdout.strip()


def training_repo(directory: Path, *, mlproject: bool = False) -> Path:
    """A repository with the training script (and an MLproject) in two commits: the second
    shrinks twice as fast. Returns its path; ``git(repo, "rev-parse", "HEAD~1")`` is the first."""
    directory.mkdir(parents=True)
    git(directory, "init", "-q", "-b", "main")
    (directory / "train.py").write_text(TRAIN)
    if mlproject:
        (directory / "MLproject").write_text(MLPROJECT)
    git(directory, "add", "-A")
    git(directory, "commit", "-q", "-m", "first")
    (directory / "train.py").write_text(TRAIN.replace("SHRINK = 1.0", "SHRINK = 2.0"))
    git(directory, "commit", "-q", "-am", "faster")
    git(directory, "checkout", "-q", "HEAD~1")  # the runs below are of the first commit
    return directory


def run_script(repo: Path, tracking_uri: str, *args: str, **env: str) -> str:
    """Run train.py as plain training code (no runner) and return its run id (the newest run)."""
    script = repo / "train.py"
    done = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=120,
        env={**os.environ, "EVENTFLOW_TRACKING_URI": tracking_uri, **env},
    )
    assert done.returncode == 0, done.stderr
    return _run_id_of(tracking_uri, done)


def _run_id_of(tracking_uri: str, done: subprocess.CompletedProcess) -> str:
    from eventflow.sdk.client import Client

    with Client(tracking_uri) as client:
        runs = client.search_runs([e["experiment_id"] for e in client.search_experiments()], order_by=["start_time DESC"])
    assert runs, done.stderr
    return runs[0]["info"]["run_id"]
