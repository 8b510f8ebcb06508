"""Fetching code: local trees as they are (a dirty one as commit + patch), git URLs at a version."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

import pytest
from projecthelpers import commit, git

from eventflow.projects import sources
from eventflow.projects.sources import SourceError, apply_patch, fetch


@pytest.fixture
def repo(make_repo):
    """Three commits, a tag on the first, a branch, the project in a subdirectory."""
    repo = make_repo()
    first = commit(repo, {"model/train.py": "print('v1')\n", "README": "r\n"}, "one")
    git(repo, "tag", "v1")
    second = commit(repo, {"model/train.py": "print('v2')\n"}, "two")
    git(repo, "branch", "experiment")
    third = commit(repo, {"model/train.py": "print('v3')\n"}, "three")
    return SimpleNamespace(path=repo, commits=(first, second, third))


def test_a_git_url_is_checked_out_at_a_tag_a_branch_a_commit_or_the_head(repo):
    first, second, third = repo.commits
    url = repo.path.as_uri() + "#model"
    for version, expected, text in ((None, third, "v3"), ("v1", first, "v1"), ("experiment", second, "v2"), (second[:10], second, "v2")):
        checkout = fetch(url, version)
        try:
            assert checkout.commit == expected
            assert checkout.subdirectory == "model"
            assert checkout.repo_url == repo.path.as_uri()
            assert (checkout.directory / "train.py").read_text() == f"print('{text}')\n"
            assert checkout.patch is None
        finally:
            checkout.cleanup()
        assert not checkout.root.exists()


def test_an_unknown_version_or_subdirectory_is_refused(repo):
    with pytest.raises(SourceError, match="'nope' is not a commit, tag or branch"):
        fetch(repo.path.as_uri(), "nope")
    with pytest.raises(SourceError, match="subdirectory 'absent' does not exist"):
        fetch(repo.path.as_uri() + "#absent")
    with pytest.raises(SourceError, match="relative path"):
        fetch(repo.path.as_uri() + "#../x")
    with pytest.raises(SourceError, match="is not a directory"):
        fetch(str(repo.path / "nowhere"))


def test_a_clean_local_tree_runs_in_place_with_its_commit(repo):
    checkout = fetch(str(repo.path) + "#model")
    assert checkout.directory == repo.path / "model"
    assert checkout.commit == repo.commits[2]
    assert checkout.repo_url == repo.path.as_uri()  # no origin: the repository itself
    assert checkout.patch is None and not checkout.temporary


def test_a_dirty_tree_is_recorded_as_a_patch_that_rebuilds_it(repo):
    (repo.path / "model" / "train.py").write_text("print('edited')\n")
    (repo.path / "model" / "new.py").write_text("print('new')\n")
    git(repo.path, "add", "model/new.py")  # staged
    (repo.path / "model" / "untracked.txt").write_text("u\n")
    staged_before = git(repo.path, "diff", "--cached", "--name-only")
    checkout = fetch(str(repo.path / "model"))
    assert checkout.subdirectory == "model"
    assert checkout.patch is not None
    assert checkout.patch_sha256 == hashlib.sha256(checkout.patch).hexdigest()
    assert git(repo.path, "diff", "--cached", "--name-only") == staged_before  # the user's index is untouched
    again = fetch(checkout.repo_url + "#model", checkout.commit)
    try:
        apply_patch(again, checkout.patch)
        for name in ("train.py", "new.py", "untracked.txt"):
            assert (again.directory / name).read_text() == (repo.path / "model" / name).read_text()
    finally:
        again.cleanup()


def test_a_local_repository_at_a_version_is_cloned(repo):
    checkout = fetch(str(repo.path) + "#model", "v1")
    try:
        assert checkout.commit == repo.commits[0] and checkout.temporary
        assert (checkout.directory / "train.py").read_text() == "print('v1')\n"
    finally:
        checkout.cleanup()


def test_outside_git_there_is_no_commit(tmp_path):
    (tmp_path / "train.py").write_text("")
    checkout = fetch(str(tmp_path))
    assert checkout.commit is None and checkout.repo_url is None and checkout.patch is None
    with pytest.raises(SourceError, match="needs a git repository"):
        fetch(str(tmp_path), "v1")


def test_git_url_forms():
    assert sources.is_git_url("git@github.com:me/x.git")
    assert sources.is_git_url("https://github.com/me/x.git")
    assert not sources.is_git_url("/tmp/x")
    assert sources.split_uri("https://h/x.git#a/b/") == ("https://h/x.git", "a/b")


def test_a_folder_whose_name_starts_with_a_dot_keeps_its_name(make_repo):
    repo = make_repo()
    commit(repo, {".ml/train/train.py": "print('x')\n"}, "one")
    checkout = fetch(str(repo / ".ml" / "train"))
    assert checkout.subdirectory == ".ml/train"
    assert (checkout.directory / "train.py").exists()
