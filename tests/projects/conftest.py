"""Fixtures for the projects tests: real git repositories, one environment cache per
session (environments are built from PyPI once, then reused), an embedded home per test."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "server"))
sys.path.insert(0, os.path.dirname(__file__))

from projecthelpers import commit, git  # noqa: E402

@pytest.fixture(scope="session", autouse=True)
def envs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache of built environments for the whole session (EVENTFLOW_ENVS_DIR)."""
    where = Path(os.environ.get("EVENTFLOW_TEST_ENVS_DIR") or tmp_path_factory.mktemp("envs"))
    os.environ["EVENTFLOW_ENVS_DIR"] = str(where)
    return where


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh embedded eventflow home, the default target of runs and reads."""
    where = tmp_path / "home"
    monkeypatch.setenv("EVENTFLOW_HOME", str(where))
    monkeypatch.delenv("EVENTFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return where


@pytest.fixture(autouse=True)
def no_inherited_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """What other tests' clients leave in the environment (``mlflow.set_experiment``
    exports MLFLOW_EXPERIMENT_ID for subprocesses) would choose the launched run's
    experiment or run: every test here starts without them."""
    for name in ("EVENTFLOW_RUN_ID", "MLFLOW_RUN_ID", "EVENTFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_ID"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def make_repo(tmp_path: Path) -> Callable[..., Path]:
    def make(name: str = "repo") -> Path:
        repo = tmp_path / name
        repo.mkdir()
        git(repo, "init", "-q", "-b", "main")
        return repo

    return make




MLPROJECT = """\
name: training
entry_points:
  main:
    parameters:
      alpha: {type: float, default: 0.5}
      epochs: {type: int, default: 3}
      label: {type: string, default: "a b"}
    command: "python train.py --alpha {alpha} --epochs {epochs} --label {label}"
  fail:
    parameters:
      code: {type: int, default: 3}
    command: "python fail.py {code}"
  sleep:
    parameters:
      marker: string
    command: "python sleep.py {marker}"
  mlflow:
    parameters:
      alpha: {type: float, default: 0.1}
    command: "python with_mlflow.py {alpha}"
"""

TRAIN = """\
import argparse, eventflow
print("entry point started", flush=True)
parser = argparse.ArgumentParser()
parser.add_argument("--alpha", type=float)
parser.add_argument("--epochs", type=int)
parser.add_argument("--label")
parser.add_argument("--extra")
args = parser.parse_args()
with eventflow.start_run() as run:
    eventflow.log_param("label_seen", args.label)
    for epoch in range(args.epochs):
        eventflow.log_metric("loss", args.alpha / (epoch + 1), step=epoch)
print("logged into", run.run_id, "extra", args.extra, flush=True)
"""

FAIL = """\
import sys
print("about to fail", flush=True)
print("the reason: no data", flush=True)
sys.exit(int(sys.argv[1]))
"""

SLEEP = """\
import os, sys, time
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
print("ready", flush=True)
time.sleep(600)
"""

WITH_MLFLOW = """\
import sys
print("entry point started", flush=True)
import mlflow
with mlflow.start_run() as run:
    mlflow.log_param("alpha_seen", sys.argv[1])
    mlflow.log_metric("accuracy", 0.9)
    mlflow.set_tag("written_by", "mlflow")
print("mlflow logged into", run.info.run_id, flush=True)
"""


@pytest.fixture
def training_repo(make_repo) -> Path:
    """A git repository holding the training project in ``project/``: two commits, a tag."""
    repo = make_repo("training")
    commit(repo, {"project/MLproject": MLPROJECT, "project/train.py": TRAIN.replace("loss", "old_loss")}, "first")
    git(repo, "tag", "v0")
    commit(repo, {"project/train.py": TRAIN, "project/fail.py": FAIL, "project/sleep.py": SLEEP,
                  "project/with_mlflow.py": WITH_MLFLOW}, "second")
    return repo
