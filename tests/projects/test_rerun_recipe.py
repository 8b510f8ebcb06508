"""A past run's recipe read back from its events: a plain SDK run in a real git repository."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from rerun_repos import git, run_script, training_repo  # noqa: E402

from eventflow.projects import recipe  # noqa: E402
from eventflow.sdk.stores import open_store  # noqa: E402


@pytest.fixture
def home(tmp_path):
    return str(tmp_path / "home")


def test_a_plain_sdk_run_has_everything_a_rerun_needs(tmp_path, home):
    repo = training_repo(tmp_path / "repo")
    run_id = run_script(repo, home, "--lr", "0.25")
    store = open_store(home)
    try:
        found = recipe.read(store, run_id).require()
        assert found.kind == "script"
        assert found.commit == git(repo, "rev-parse", "HEAD")
        assert found.source == str(repo.resolve())  # no remote: the script's own repository
        assert found.script == str((repo / "train.py").resolve())
        assert found.command.endswith("train.py --lr 0.25")
        assert found.parameters == {"lr": "0.25", "epochs": "5"}
        assert found.python == ".".join(map(str, sys.version_info[:3]))
        assert "eventflow==" in found.packages.lower()
        facts = recipe.facts_of(store, run_id)
        assert [step for step, _ in facts.metrics["loss"]] == [0, 1, 2, 3, 4]
        assert set(facts.artifacts) == {"environment/requirements.txt", "model/weights.txt"}
    finally:
        store.close()


def test_a_run_outside_git_is_refused_naming_the_commit(tmp_path, home):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "train.py").write_text((training_repo(tmp_path / "repo") / "train.py").read_text())
    run_id = run_script(plain, home, GIT_CEILING_DIRECTORIES=str(tmp_path))
    store = open_store(home)
    try:
        with pytest.raises(recipe.RecipeIncomplete) as refused:
            recipe.read(store, run_id).require()
    finally:
        store.close()
    message = str(refused.value)
    assert f"run {run_id} cannot be rerun" in message
    assert "a git commit (tag mlflow.source.git.commit" in message
    assert refused.value.missing == ["a git commit (tag mlflow.source.git.commit: the script did not run from a git repository)"]


def test_a_dirty_tree_without_a_patch_is_named(tmp_path, home):
    repo = training_repo(tmp_path / "repo")
    (repo / "train.py").write_text((repo / "train.py").read_text() + "\n# an uncommitted change\n")
    run_id = run_script(repo, home)
    store = open_store(home)
    try:
        found = recipe.read(store, run_id)
    finally:
        store.close()
    assert found.dirty
    assert found.missing == ("a patch of its uncommitted changes (tag eventflow.git.dirty is true and the SDK records no patch)",)


def test_a_run_without_its_package_list_or_command_is_refused_naming_both(tmp_path, home):
    from eventflow import commands

    store = open_store(home)
    try:
        store.append([commands.create_experiment("7", "hand", store.experiment_artifact_location("7"))])
        run_id = commands.new_run_id()
        tags = {"mlflow.source.git.commit": "a" * 40, "mlflow.source.git.repoURL": "https://example.com/x.git",
                "mlflow.source.name": "/somewhere/train.py", "eventflow.python": "3.11.7", "eventflow.git.dirty": "false"}
        store.append([commands.create_run(run_id, "7", run_name="by-hand", user_id="t",
                                          artifact_uri=store.artifact_root("7", run_id), tags=tags)])
        found = recipe.read(store, run_id)
    finally:
        store.close()
    assert found.missing == ("the command line it ran (tag eventflow.command)",
                             "its installed packages (artifact environment/requirements.txt)")
    with pytest.raises(recipe.RecipeIncomplete, match="it lacks the command line it ran .*; its installed packages"):
        found.require()
