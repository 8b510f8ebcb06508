"""Fetching a model's files, each checked against a digest it is vouched for by.

Loading a model unpickles code, so only vouched-for files are fetched, and each is hashed
before anything is unpickled:

- a registered version (``models:/<name>/<version>``, ``models:/<name>@<alias>``) is
  checked against the digests it pinned when it was created — so a file swapped later,
  even with a new ``run.artifact_logged`` recording its digest, stops the load;
- a run's or logged model's own files (``runs:/``, ``models:/m-<id>``) are checked against
  the ``run.artifact_logged`` (or ``logged_model.artifact_logged``) events on the log.

A file that differs stops the load with its name and both digests.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from eventflow.models.descriptor import MLMODEL
from eventflow.models.uris import LoggedModelFiles, RunFiles, VersionFiles
from eventflow.sdk.stores import Store, sha256_of


class ModelLoadError(Exception):
    pass


class ModelIntegrityError(ModelLoadError):
    """A model file differs from the digest it is vouched for by: it is not loaded."""


def _root(store: Store, files: RunFiles | LoggedModelFiles, uri: str) -> str:
    """The artifact root URI of the run or logged model the files belong to."""
    if isinstance(files, RunFiles):
        run = store.get_run(files.run_id)
        if run is None:
            raise ModelLoadError(f"cannot load {uri}: run {files.run_id} does not exist")
        return run["info"]["artifact_uri"]
    model = store.get_logged_model(files.model_id)
    if model is None:
        raise ModelLoadError(f"cannot load {uri}: logged model {files.model_id} does not exist")
    return model["info"]["artifact_uri"]


def _logged(store: Store, files: RunFiles | LoggedModelFiles) -> list[dict]:
    if isinstance(files, RunFiles):
        return store.artifact_digests(files.run_id, files.path)
    return store.logged_model_digests(files.model_id, files.path)


def fetch(store: Store, files: RunFiles | LoggedModelFiles, into: Path | None = None) -> Path:
    """Download a run's (``runs:/<run>/<path>``) or a logged model's (``models:/m-<id>``)
    model into a fresh directory, every file verified against the log's record."""
    artifact_uri = _root(store, files, files.uri)
    records = _logged(store, files)
    descriptor = f"{files.path}/{MLMODEL}" if files.path else MLMODEL
    if not any(record["path"] == descriptor for record in records):
        if isinstance(files, RunFiles):
            logged = sorted({record["path"].split("/")[0] for record in store.artifact_digests(files.run_id)})
            raise ModelLoadError(
                f"cannot load {files.uri}: the run logged no model at {files.path!r} (no {MLMODEL} file); "
                f"its artifacts are {logged or 'none'}"
            )
        raise ModelLoadError(
            f"cannot load {files.uri}: the log recorded no {MLMODEL} among its files, so none of them can be verified"
        )
    return _download(store, artifact_uri, files.path, records, into, files.uri, "the log recorded {expected} when it was logged")


def fetch_version(store: Store, version: VersionFiles, into: Path | None = None) -> Path:
    """Download a registered version's files into a fresh directory, every file verified
    against the digest the version pinned when it was created (not the log's latest record)."""
    files = version.files
    pinned = store.model_version_files(version.ref.name, version.version)
    if not pinned:
        raise ModelIntegrityError(
            f"refusing to load {version.uri}: the version pinned no files when it was created (its source {files.uri} had "
            "no files recorded on the log then, or the version predates pinning), so none of its files can be verified. "
            "Register the model again, from a run or logged model whose files were logged."
        )
    if not any(pin["path"] == MLMODEL for pin in pinned):
        raise ModelIntegrityError(f"refusing to load {version.uri}: the version pinned no {MLMODEL} file, so it is not a model")
    artifact_uri = _root(store, files, version.uri)
    records = [{**pin, "path": f"{files.path}/{pin['path']}" if files.path else pin["path"]} for pin in pinned]
    return _download(store, artifact_uri, files.path, records, into, version.uri,
                     f"version {version.version} pinned {{expected}} when it was registered")


def _download(store: Store, artifact_uri: str, prefix: str, records: list[dict], into: Path | None, uri: str, vouched: str) -> Path:
    """Fetch each record's file (a path under the artifact root) below ``prefix`` into the
    target, hashing it: one that differs from its record is deleted and stops the load."""
    target = Path(into or tempfile.mkdtemp(prefix="eventflow-model-"))
    for record in records:
        relative = record["path"][len(prefix) + 1 :] if prefix else record["path"]
        local = (target / relative).resolve()
        if not local.is_relative_to(target.resolve()):
            raise ModelLoadError(f"cannot load {uri}: the recorded path {record['path']!r} leaves the model directory")
        try:
            store.download_artifact(artifact_uri, record["path"], local)
        except Exception as exc:
            # A server also refuses a file that no longer matches its recorded digest.
            error = ModelIntegrityError if "sha256" in str(exc) else ModelLoadError
            raise error(f"cannot load {uri}: {record['path']}: {exc}") from None
        actual = sha256_of(local)
        if actual != record["sha256"]:
            local.unlink()
            raise ModelIntegrityError(
                f"refusing to load {uri}: {record['path']!r} has sha256 {actual}, but {vouched.format(expected=record['sha256'])}"
                " — the stored file was changed or corrupted"
            )
    return target
