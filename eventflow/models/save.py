"""Writing models: ``save_model`` to a directory, ``log_model`` into the active run.

A logged model is an ordinary set of run artifacts, so each of its files gets a
``run.artifact_logged`` event with its size and sha256 — what loading checks later.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eventflow.models import environment, flavors
from eventflow.models.descriptor import Model, directory_size
from eventflow.models.frames import numpy, pandas
from eventflow.models.signature import ModelSignature, SignatureMismatch, as_frame, infer_signature

INPUT_EXAMPLE = "input_example.json"
SERVING_INPUT_EXAMPLE = "serving_input_example.json"


@dataclass
class ModelInfo:
    model_uri: str
    run_id: str | None
    artifact_path: str | None
    model_uuid: str
    signature: ModelSignature | None
    flavors: dict[str, Any]
    registered_model_version: str | None = None


def _jsonable(value: Any) -> Any:
    np = numpy()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    return value


def _save_input_example(example: Any, directory: Path) -> dict[str, Any]:
    """input_example.json as MLflow writes it (a DataFrame in ``split`` orient, or an array),
    and the request body that scores it."""
    np = numpy()
    if isinstance(example, np.ndarray):
        data = _jsonable(example)
        (directory / INPUT_EXAMPLE).write_text(json.dumps({"inputs": data}))
        (directory / SERVING_INPUT_EXAMPLE).write_text(json.dumps({"inputs": data}, indent=2))
        return {"artifact_path": INPUT_EXAMPLE, "type": "ndarray", "format": "tf-serving", "serving_input_path": SERVING_INPUT_EXAMPLE}
    frame = as_frame(example, [])
    split = {"columns": [str(c) for c in frame.columns], "data": [[_jsonable(v) for v in row] for row in frame.itertuples(index=False)]}
    (directory / INPUT_EXAMPLE).write_text(json.dumps(split))
    (directory / SERVING_INPUT_EXAMPLE).write_text(json.dumps({"dataframe_split": split}, indent=2))
    return {"artifact_path": INPUT_EXAMPLE, "type": "dataframe", "pandas_orient": "split", "serving_input_path": SERVING_INPUT_EXAMPLE}


def save_model(
    obj: Any,
    path: str | os.PathLike[str],
    signature: ModelSignature | None = None,
    input_example: Any = None,
    code_paths: list[str] | None = None,
    extra_pip_requirements: list[str] | None = None,
    *,
    run_id: str | None = None,
    artifact_path: str | None = None,
) -> Model:
    """Write ``obj`` as a model directory at ``path`` (which must not exist yet).

    A scikit-learn estimator gets the ``sklearn`` flavor, anything else with ``predict``
    (or any callable) the ``python_function`` flavor. With an input example and no
    signature, the signature is inferred from the example and the model's output on it.
    """
    directory = Path(path)
    if directory.exists() and any(directory.iterdir()):
        raise FileExistsError(f"{directory} already exists and is not empty: save a model into a new directory")
    directory.mkdir(parents=True, exist_ok=True)
    if flavors.is_sklearn(obj):
        if code_paths:
            raise ValueError("code_paths are for python_function models; a scikit-learn model is pickled whole")
        model_flavors, requirements = flavors.save_sklearn(obj, directory)
    else:
        model_flavors, requirements = flavors.save_python_function(obj, directory, code_paths)
    descriptor = Model(flavors=model_flavors, run_id=run_id, artifact_path=artifact_path, signature=signature)
    if input_example is not None:
        _check_example_readable(input_example)
        descriptor.saved_input_example_info = _save_input_example(input_example, directory)
        if signature is None:
            descriptor.signature = _infer_from_example(directory, descriptor, input_example)
    environment.write(directory, requirements + list(extra_pip_requirements or []))
    descriptor.model_size_bytes = directory_size(directory)
    descriptor.save(directory)
    return descriptor


def _check_example_readable(example: Any) -> None:
    """A numpy array needs numpy only; any other example is read as a table, with pandas:
    without it, say so before anything is saved or logged (not after training, mid-run)."""
    if example is not None and not isinstance(example, numpy().ndarray):
        pandas()


def _infer_from_example(directory: Path, descriptor: Model, example: Any) -> ModelSignature:
    """The example's schema, and the output's if the model runs on it."""
    signature = infer_signature(example)
    try:
        output = flavors.load_predictor(directory, descriptor).predict(signature.inputs.enforce(example) if signature.inputs else example)
        return infer_signature(example, output)
    except (SignatureMismatch, ValueError, TypeError) as exc:
        warnings.warn(f"the model did not run on its input example, so its output schema is not recorded: {exc}", stacklevel=3)
        return signature


def log_model(
    obj: Any,
    name: str,
    signature: ModelSignature | None = None,
    input_example: Any = None,
    registered_model_name: str | None = None,
    code_paths: list[str] | None = None,
    extra_pip_requirements: list[str] | None = None,
) -> ModelInfo:
    """Save ``obj`` as a model under ``name`` in the active run's artifacts (starting a run
    if none is active) and return where it is: ``runs:/<run_id>/<name>``.

    With ``registered_model_name`` the model is also registered as a new version through the
    tracking server's registry (MLflow's ``registered-models/create`` and
    ``model-versions/create``).
    """
    import eventflow
    from eventflow import validation

    name = name.strip("/")
    if not name or ".." in name.split("/"):
        raise validation.InvalidInput(f"invalid model name {name!r}: give a relative artifact path such as 'model'")
    _check_example_readable(input_example)
    run = eventflow.active_run() or eventflow.start_run()
    with tempfile.TemporaryDirectory(prefix="eventflow-model-") as tmp:
        local = Path(tmp) / "model"
        descriptor = save_model(
            obj, local, signature, input_example, code_paths, extra_pip_requirements, run_id=run.run_id, artifact_path=name
        )
        eventflow.log_artifacts(local, name)
    eventflow.flush()
    info = ModelInfo(f"runs:/{run.run_id}/{name}", run.run_id, name, descriptor.model_uuid, descriptor.signature, descriptor.flavors)
    if registered_model_name:
        info.registered_model_version = register(registered_model_name, info.model_uri, run.run_id)
    return info


def register(name: str, source: str, run_id: str) -> str | None:
    """Register ``source`` as a new version of ``name``; None (with a warning) where the
    tracking server has no registry."""
    import httpx

    from eventflow.sdk.fluent import get_tracking_uri

    tracking = get_tracking_uri()
    if not tracking.startswith(("http://", "https://")):
        warnings.warn(f"model {name!r} was logged but not registered: registering needs a tracking server (http://...)", stacklevel=3)
        return None
    base = tracking.rstrip("/") + "/api/2.0/mlflow"
    from eventflow.sdk.credentials import Credentials
    from eventflow.sdk.unreachable import reaching

    with reaching(tracking), httpx.Client(timeout=30, auth=Credentials.from_env().auth()) as http:
        created = http.post(f"{base}/registered-models/create", json={"name": name})
        if created.status_code == 404 or created.status_code == 405:
            warnings.warn(f"model {name!r} was logged but not registered: the tracking server has no model registry", stacklevel=3)
            return None
        if created.status_code != 200 and "RESOURCE_ALREADY_EXISTS" not in created.text:
            raise RuntimeError(f"registering model {name!r} failed: {created.text}")
        version = http.post(f"{base}/model-versions/create", json={"name": name, "source": source, "run_id": run_id})
        if version.status_code != 200:
            raise RuntimeError(f"creating a version of model {name!r} failed: {version.text}")
        return str(version.json()["model_version"]["version"])
