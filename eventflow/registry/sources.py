"""Where a model version's files may be: only inside the artifact store.

MLflow read arbitrary files of its server through a version's ``source`` (CVE-2023-1177,
CVE-2026-2614): a source of ``file:///etc`` or ``../../`` made the server serve them. Here
a source is one of

- ``runs:/<run_id>/<path>``         a run's artifacts,
- ``models:/m-<id>[/<path>]``      a logged model (MLflow 3),
- ``mlflow-artifacts:/<path>``      the proxied store,
- a local path or ``file://`` URI  that resolves (symlinks followed) inside the store,

and everything else (other schemes, ``..`` segments, paths outside the store) is refused
with INVALID_PARAMETER_VALUE before anything reaches the log.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit
from urllib.request import url2pathname

from eventflow.validation import InvalidInput

_LOGGED_MODEL_ID = re.compile(r"^m-[0-9a-f]{32}$")
_RUN_ID = re.compile(r"^[a-zA-Z0-9][\w\-]{0,255}$")


@dataclass(frozen=True)
class Source:
    uri: str  # as given (and recorded on the log)
    kind: str  # runs | models | store
    target: str = ""  # the run id or logged model id, for runs and models
    path: str = ""  # inside the run's artifacts or the logged model


def _refuse(source: str, why: str) -> InvalidInput:
    return InvalidInput(f"Invalid model version source {source!r}: {why}. A source must point inside the artifact store "
                        "(runs:/<run_id>/<path>, models:/m-<id>, mlflow-artifacts:/<path> or a path in the store).")


def _relative(source: str, path: str) -> str:
    """A path inside something, refused if any segment (decoded) climbs out of it."""
    for text in (path, unquote(path), unquote(unquote(path))):
        if "\\" in text or any(part in ("..", ".") for part in text.split("/")):
            raise _refuse(source, "it must not hold '..' or '.' segments")
    return path.strip("/")


def check_source(source: object, store: Path) -> Source:
    if not isinstance(source, str) or not source.strip():
        raise InvalidInput("Missing value for required parameter 'source'.")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in source):
        raise _refuse(source, "it holds control characters")
    parts = urlsplit(source)
    scheme = parts.scheme.lower()
    if scheme == "runs":
        inner = _relative(source, source[len("runs:"):])
        run_id, _, path = inner.partition("/")
        if not _RUN_ID.match(run_id) or not source[len("runs:"):].startswith("/"):
            raise _refuse(source, "a runs URI is runs:/<run_id>/<path>")
        return Source(source, "runs", run_id, path)
    if scheme == "models":
        inner = _relative(source, source[len("models:"):])
        model_id, _, path = inner.partition("/")
        if not _LOGGED_MODEL_ID.match(model_id):
            raise _refuse(source, "only logged models (models:/m-<32 hex digits>) can be registered")
        return Source(source, "models", model_id, path)
    if scheme == "mlflow-artifacts":
        if parts.netloc:
            raise _refuse(source, "the store is this server's: write mlflow-artifacts:/<path>, with no host")
        _relative(source, parts.path)
        return Source(source, "store", path=parts.path.strip("/"))
    if scheme == "file" or (scheme == "" and source.startswith("/")):
        if scheme == "file" and parts.netloc not in ("", "localhost"):
            raise _refuse(source, "a file URI must name a local path")
        local = url2pathname(parts.path) if scheme == "file" else source
        _relative(source, local)
        root = store.resolve()
        target = Path(os.path.realpath(local))
        if target != root and root not in target.parents:
            raise _refuse(source, "the path is outside the artifact store")
        return Source(source, "store", path=str(target.relative_to(root)))
    if scheme == "":
        raise _refuse(source, "a relative path is ambiguous")
    raise _refuse(source, f"the scheme {parts.scheme!r} is not allowed")


def allowed_roots() -> list[Path]:
    """Local directories besides the store where the operator lets experiments keep their
    artifacts (``EVENTFLOW_ARTIFACT_ROOTS``, separated by ``os.pathsep``)."""
    return [Path(p) for p in os.environ.get("EVENTFLOW_ARTIFACT_ROOTS", "").split(os.pathsep) if p.strip()]


def resolve_relative_location(location: str) -> str:
    """A relative local ``artifact_location`` as MLflow's server resolves it: against its
    working directory (``my_location`` -> ``<cwd>/my_location``, ``file:rel`` ->
    ``file://<cwd>/rel``); anything else unchanged. The result is then checked as any
    location is (:func:`check_artifact_location`)."""
    parts = urlsplit(location)
    if parts.scheme == "" and location and not location.startswith("/"):
        return Path.cwd().joinpath(location).as_posix()
    if parts.scheme.lower() == "file" and not parts.netloc and parts.path and not parts.path.startswith("/"):
        return urlunsplit(("file", "", Path.cwd().joinpath(url2pathname(parts.path)).as_posix(), parts.query, parts.fragment))
    return location


def check_artifact_location(location: str, store: Path, roots: list[Path] | None = None, *, given: str | None = None) -> str:
    """An experiment's ``artifact_location``, refused unless it lies inside the artifact
    store (or a root the operator allows): a location of ``file:///etc`` or
    ``http://169.254.169.254/`` would otherwise become the run artifact URIs and the model
    download URIs this server hands out.

    ``mlflow-artifacts:/<name>`` names one directory of the store: runs are then found as
    ``<name>/<run_id>/artifacts``, the layout every artifact check relies on. ``given``:
    what the client sent, when ``location`` is its resolution.
    """
    def refuse(why: str) -> InvalidInput:
        resolved = f" (resolved against the server's working directory, as MLflow does, to {location!r})" if given not in (None, location) else ""
        return InvalidInput(f"Invalid artifact_location {given if given is not None else location!r}{resolved}: {why}. "
                            "It must lie inside the artifact store: "
                            "mlflow-artifacts:/<name> (one directory name), or a local path inside the store"
                            + (" or under EVENTFLOW_ARTIFACT_ROOTS" if roots or allowed_roots() else "")
                            + "; leave it out to get mlflow-artifacts:/<experiment_id>.")

    if not isinstance(location, str) or not location.strip() or len(location) > 2000:
        raise refuse("it must be a string of 1 to 2000 characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in location):
        raise refuse("it holds control characters")
    parts = urlsplit(location)
    scheme = parts.scheme.lower()
    if scheme == "mlflow-artifacts":
        name = parts.path.strip("/")
        if parts.netloc or parts.query or parts.fragment or not name or "/" in name or name in (".", "..") or "\\" in name:
            raise refuse("an mlflow-artifacts location is mlflow-artifacts:/<name>, one directory of the store, with no host")
        if unquote(name) != name:
            raise refuse("the name must not be percent-encoded")
        return location
    if scheme == "file" or (scheme == "" and location.startswith("/")):
        if scheme == "file" and parts.netloc not in ("", "localhost"):
            raise refuse("a file URI must name a local path")
        local = url2pathname(parts.path) if scheme == "file" else location
        if any(part in ("..", ".") for part in local.split("/")):
            raise refuse("it must not hold '..' or '.' segments")
        target = Path(os.path.realpath(local))
        for root in (store, *(allowed_roots() if roots is None else roots)):
            resolved = root.resolve()
            if target == resolved or resolved in target.parents:
                return location
        raise refuse("the path is outside the artifact store")
    if scheme == "":
        raise refuse("a relative path is ambiguous")
    raise refuse(f"the scheme {parts.scheme!r} is not allowed (this server serves artifacts from its own store)")
