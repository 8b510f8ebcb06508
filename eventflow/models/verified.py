"""Fetching a model's files, each checked against the sha256 the log recorded.

Loading a model unpickles code, so only files the log vouches for are fetched — the list
comes from the ``run.artifact_logged`` (or ``logged_model.artifact_logged``) events, not from the store's directory — and each
is hashed before anything is unpickled. A file changed after it was logged stops the load
with its name and both digests.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from eventflow.models.descriptor import MLMODEL
from eventflow.models.uris import LoggedModelFiles, RunFiles
from eventflow.sdk.stores import Store, sha256_of


class ModelLoadError(Exception):
    pass


class ModelIntegrityError(ModelLoadError):
    """A model file differs from what the log recorded: it is not loaded."""


def _listing(store: Store, files: RunFiles | LoggedModelFiles) -> tuple[str, list[dict]]:
    """(artifact root URI, recorded files under the model's path) of a run or a logged model."""
    if isinstance(files, RunFiles):
        run = store.get_run(files.run_id)
        if run is None:
            raise ModelLoadError(f"cannot load {files.uri}: run {files.run_id} does not exist")
        return run["info"]["artifact_uri"], store.artifact_digests(files.run_id, files.path)
    model = store.get_logged_model(files.model_id)
    if model is None:
        raise ModelLoadError(f"cannot load {files.uri}: logged model {files.model_id} does not exist")
    return model["info"]["artifact_uri"], store.logged_model_digests(files.model_id, files.path)


def fetch(store: Store, files: RunFiles | LoggedModelFiles, into: Path | None = None) -> Path:
    """Download a run's (``runs:/<run>/<path>``) or a logged model's (``models:/m-<id>``)
    model into a fresh directory, every file verified."""
    artifact_uri, records = _listing(store, files)
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
    target = Path(into or tempfile.mkdtemp(prefix="eventflow-model-"))
    for record in records:
        relative = record["path"][len(files.path) + 1 :] if files.path else record["path"]
        local = (target / relative).resolve()
        if not local.is_relative_to(target.resolve()):
            raise ModelLoadError(f"cannot load {files.uri}: the recorded path {record['path']!r} leaves the model directory")
        try:
            store.download_artifact(artifact_uri, record["path"], local)
        except Exception as exc:
            # A server also refuses a file that no longer matches its recorded digest.
            error = ModelIntegrityError if "sha256" in str(exc) else ModelLoadError
            raise error(f"cannot load {files.uri}: {record['path']}: {exc}") from None
        actual = sha256_of(local)
        if actual != record["sha256"]:
            local.unlink()
            raise ModelIntegrityError(
                f"refusing to load {files.uri}: {record['path']!r} has sha256 {actual}, but the log recorded "
                f"{record['sha256']} when it was logged — the stored file was changed or corrupted"
            )
    return target
