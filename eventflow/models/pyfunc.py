"""Loading a model for prediction: ``load_model(uri)`` and the ``PyFuncModel`` it returns."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from eventflow.models.descriptor import Model
from eventflow.models.flavors import Predictor, load_predictor
from eventflow.models.uris import LoggedModelFiles, RegistryRef, RunFiles, parse, resolve_registry
from eventflow.models.verified import fetch, fetch_version


class PyFuncModel:
    """A loaded model: ``predict`` checks the input against the signature, then calls the model."""

    def __init__(self, metadata: Model, predictor: Predictor, path: Path):
        self.metadata = metadata
        self.path = path
        self._predictor = predictor

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        signature = self.metadata.signature
        if signature is not None and signature.inputs is not None:
            data = signature.inputs.enforce(data)
        return self._predictor.predict(data, params)

    def unwrap_python_model(self) -> Any:
        """The object that was saved (an estimator, a callable, a class instance)."""
        return self._predictor.obj

    def __repr__(self) -> str:
        flavors = ", ".join(sorted(self.metadata.flavors))
        return f"PyFuncModel(run_id={self.metadata.run_id!r}, artifact_path={self.metadata.artifact_path!r}, flavors=[{flavors}])"


def local_copy(uri: str | os.PathLike[str], tracking_uri: str | None = None, dst_path: str | os.PathLike[str] | None = None) -> Path:
    """A local directory holding the model at ``uri``. A registered version's files are verified against
    the sha256 the version pinned for each when it was created; a run's or logged model's against the log's record."""
    from eventflow.sdk import fluent
    from eventflow.sdk.client import Client

    target = parse(uri)
    tracking = tracking_uri or fluent.get_tracking_uri()
    if isinstance(target, RegistryRef):
        version = resolve_registry(target, tracking)
        with Client(tracking) as client:
            return fetch_version(client.store, version, Path(dst_path) if dst_path else None)
    if isinstance(target, (RunFiles, LoggedModelFiles)):
        fluent.flush()  # what this process logged must be on the log before we read it back
        with Client(tracking) as client:
            return fetch(client.store, target, Path(dst_path) if dst_path else None)
    if not target.path.is_dir():
        raise FileNotFoundError(f"no model directory at {str(target.path)!r}")
    return target.path


def load_model(uri: str | os.PathLike[str], tracking_uri: str | None = None, dst_path: str | os.PathLike[str] | None = None) -> PyFuncModel:
    """Load a model for ``predict`` from ``runs:/<run>/<path>``, ``models:/<name>/<version>``,
    ``models:/<name>@<alias>``, an MLflow 3 logged model ``models:/m-<id>`` or a local directory.

    A registered version's files are checked against the digests it pinned when it was registered (a run's or
    logged model's against the log) before anything is unpickled; a changed file raises ModelIntegrityError, and
    so does a version that pinned nothing. A local directory is trusted as any file on disk is.
    """
    directory = local_copy(uri, tracking_uri, dst_path)
    metadata = Model.load(directory)
    return PyFuncModel(metadata, load_predictor(directory, metadata), directory)
