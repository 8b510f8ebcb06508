"""Where a project's code comes from, pinned to the exact commit that ran.

A URI is a local directory or a git URL (``file://``, ``https://``, ``ssh://``,
``git@host:path``), with ``#sub/dir`` to pick a folder of the repository, as in MLflow.
A git URL is cloned into a fresh directory and checked out at ``version`` (a commit, tag
or branch; by default the default branch's head). A local directory runs where it is,
as it is: when its working tree differs from its commit, the difference — changes and
new untracked files — is kept as a patch, so the run can be rebuilt later as commit +
patch (``apply_patch``). Every checkout knows its commit and a URL it can be cloned from.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

GIT_SCHEMES = ("file://", "https://", "http://", "ssh://", "git://", "git+")


class SourceError(ValueError):
    """A project URI or version that cannot be fetched, with what git said."""


@dataclass(frozen=True)
class Checkout:
    """A project's code on disk, and what it is.

    ``directory`` is the project (the subdirectory, if one was asked for); ``root`` the
    repository's top (or the directory itself outside git); ``patch`` the difference
    between the working tree and ``commit`` (None when clean, or outside git)."""

    directory: Path
    uri: str
    repo_url: str | None
    commit: str | None
    subdirectory: str
    patch: bytes | None
    root: Path
    temporary: bool = False  # a clone of ours: removed by ``cleanup``

    @property
    def patch_sha256(self) -> str | None:
        return None if self.patch is None else hashlib.sha256(self.patch).hexdigest()

    def cleanup(self) -> None:
        if self.temporary:
            shutil.rmtree(self.root, ignore_errors=True)


def git(directory: Path | None, *args: str, env: dict[str, str] | None = None, binary: bool = False) -> str | bytes:
    """Run git; a failure raises SourceError with git's own message."""
    command = ["git", *(["-C", str(directory)] if directory is not None else []), *args]
    try:
        done = subprocess.run(command, capture_output=True, check=False, env={**os.environ, **(env or {})}, timeout=600)
    except FileNotFoundError:
        raise SourceError("git is not installed (or not on PATH): it is needed to fetch or pin a project's code") from None
    if done.returncode != 0:
        raise SourceError(f"git {' '.join(args[:2])} failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout if binary else done.stdout.decode().strip()


def split_uri(uri: str) -> tuple[str, str]:
    """(the URI without its ``#subdirectory``, the subdirectory or "")."""
    base, _, sub = str(uri).partition("#")
    sub = sub.strip("/")
    if sub and (sub.startswith("/") or ".." in sub.split("/")):
        raise SourceError(f"the subdirectory {sub!r} in {uri!r} must be a relative path inside the repository")
    return base, sub


def is_git_url(base: str) -> bool:
    return base.startswith(GIT_SCHEMES) or (base.startswith("git@") and ":" in base)


def fetch(uri: str, version: str | None = None) -> Checkout:
    """The project at ``uri`` (at ``version``, for git), ready to run, with its commit."""
    base, sub = split_uri(uri)
    if is_git_url(base):
        return _clone(uri, base, sub, version)
    directory = Path(base).expanduser().resolve()
    if not directory.is_dir():
        raise SourceError(f"no project at {uri!r}: {directory} is not a directory, and the URI is not a git URL")
    top = _toplevel(directory)
    if version is not None:
        if top is None:
            raise SourceError(f"--version {version!r} needs a git repository, and {directory} is not in one")
        return _clone(uri, Path(top).as_uri(), _join(directory.relative_to(top).as_posix(), sub), version, shown=uri)
    project = directory / sub if sub else directory
    if not project.is_dir():
        raise SourceError(f"the subdirectory {sub!r} does not exist in {directory}")
    if top is None:
        return Checkout(project, uri, None, None, sub, None, directory)
    commit = _head(top)
    relative = _join(directory.relative_to(top).as_posix(), sub)
    return Checkout(project, uri, _remote(top), commit, relative, working_tree_patch(top) if commit else None, top)


def _join(a: str, b: str) -> str:
    """``a/b`` without empty or ``.`` parts (a folder's own leading dot is kept: ``.ml``)."""
    parts = [p for part in (a, b) for p in part.split("/")]
    return "/".join(p for p in parts if p and p != ".")


def _toplevel(directory: Path) -> Path | None:
    try:
        return Path(str(git(directory, "rev-parse", "--show-toplevel")))
    except SourceError:
        return None


def _head(top: Path) -> str | None:
    try:
        return str(git(top, "rev-parse", "HEAD"))
    except SourceError:
        return None  # a repository without a commit yet


def _remote(top: Path) -> str:
    """Where the code can be cloned from again: origin, else the repository itself."""
    try:
        url = str(git(top, "config", "--get", "remote.origin.url"))
        if url:
            return url
    except SourceError:
        pass
    return top.as_uri()


def working_tree_patch(top: Path) -> bytes | None:
    """``git diff HEAD`` of the working tree, new untracked (not ignored) files included.

    A throw-away index is used to add the untracked files, so the user's own index
    (what they staged) is left exactly as it was."""
    with tempfile.TemporaryDirectory() as scratch:
        env = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
        git(top, "read-tree", "HEAD", env=env)
        git(top, "add", "-A", ".", env=env)
        patch = git(top, "diff", "--cached", "--binary", "--no-color", "--no-ext-diff", "HEAD", env=env, binary=True)
    return bytes(patch) or None


def _clone(uri: str, url: str, sub: str, version: str | None, *, shown: str | None = None) -> Checkout:
    root = Path(tempfile.mkdtemp(prefix="eventflow-project-"))
    try:
        git(None, "clone", "--quiet", "--no-checkout", url, str(root))
        commit = _resolve(root, version) if version else str(git(root, "rev-parse", "HEAD"))
        git(root, "-c", "advice.detachedHead=false", "checkout", "--quiet", commit)
    except SourceError:
        shutil.rmtree(root, ignore_errors=True)
        raise
    project = root / sub if sub else root
    if not project.is_dir():
        shutil.rmtree(root, ignore_errors=True)
        raise SourceError(f"the subdirectory {sub!r} does not exist in {url} at {commit[:12]}")
    return Checkout(project, shown or uri, url, commit, sub, None, root, temporary=True)


def _resolve(root: Path, version: str) -> str:
    """A commit, tag or branch (local or the remote's) to the full commit id."""
    for candidate in (version, f"origin/{version}", f"refs/tags/{version}"):
        try:
            return str(git(root, "rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}"))
        except SourceError:
            continue
    raise SourceError(f"version {version!r} is not a commit, tag or branch of the repository")


def apply_patch(checkout: Checkout, patch: bytes) -> None:
    """Apply a recorded working-tree patch on top of a checkout of its commit."""
    if not patch:
        return
    with tempfile.NamedTemporaryFile(suffix=".diff", delete=False) as handle:
        handle.write(patch)
    try:
        git(checkout.root, "apply", "--binary", "--whitespace=nowarn", handle.name)
    except SourceError as error:
        raise SourceError(f"the recorded patch does not apply to {checkout.commit}: {error}") from None
    finally:
        os.unlink(handle.name)


def local_path(uri: str) -> Path | None:
    """The local directory a ``file://`` URI names (None for other URIs)."""
    parsed = urlparse(uri)
    return Path(url2pathname(unquote(parsed.path))) if parsed.scheme == "file" else None
