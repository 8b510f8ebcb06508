"""Flavors: how a model object is written into a model directory and read back.

Two flavors, written the way MLflow writes them so either tool loads the other's models:

- ``python_function``: any callable, or any object (or class) with ``predict``, pickled
  with cloudpickle; ``code_paths`` are copied into ``code/`` and put on ``sys.path``
  before unpickling. Its loader module is this one (MLflow calls ``_load_pyfunc``).
- ``sklearn``: a scikit-learn estimator, pickled with cloudpickle, with MLflow's own
  ``mlflow.sklearn`` loader module, so plain MLflow loads it too.
"""

from __future__ import annotations

import inspect
import os
import platform
import shutil
import sys
from pathlib import Path
from typing import Any

import cloudpickle

from eventflow import __version__
from eventflow.models.descriptor import PYFUNC, Model
from eventflow.models.environment import PYTHON_ENV, pinned

PYFUNC_LOADER = "eventflow.models.flavors"
SKLEARN_LOADER = "mlflow.sklearn"
PYFUNC_DATA = "python_model.pkl"
SKLEARN_DATA = "model.pkl"
CODE = "code"


class UnsupportedModel(ValueError):
    pass


def _pyfunc_conf(**keys: Any) -> dict[str, Any]:
    return {"env": {"virtualenv": PYTHON_ENV}, "python_version": platform.python_version(), **keys}


def is_sklearn(obj: Any) -> bool:
    sklearn_base = sys.modules.get("sklearn.base")
    return sklearn_base is not None and isinstance(obj, sklearn_base.BaseEstimator)


# -- saving -------------------------------------------------------------------------


def save_python_function(obj: Any, directory: Path, code_paths: list[str] | None = None) -> tuple[dict[str, Any], list[str]]:
    """Pickle a callable or a ``predict``-bearing object (a class is instantiated first)."""
    if isinstance(obj, type):
        obj = obj()
    if not (callable(getattr(obj, "predict", None)) or callable(obj)):
        raise UnsupportedModel(f"a python_function model must be callable or have a predict method; {type(obj).__name__} has neither")
    code = None
    if code_paths:
        code = CODE
        (directory / CODE).mkdir()
        for source in map(Path, code_paths):
            if not source.exists():
                raise FileNotFoundError(f"code path {str(source)!r} does not exist")
            target = directory / CODE / source.name
            shutil.copytree(source, target) if source.is_dir() else shutil.copyfile(source, target)
    with open(directory / PYFUNC_DATA, "wb") as handle:
        cloudpickle.dump(obj, handle)
    flavors = {PYFUNC: _pyfunc_conf(loader_module=PYFUNC_LOADER, data=PYFUNC_DATA, code=code)}
    return flavors, [f"eventflow=={__version__}", *pinned("cloudpickle", "numpy", "pandas")]


def save_sklearn(estimator: Any, directory: Path) -> tuple[dict[str, Any], list[str]]:
    import sklearn

    with open(directory / SKLEARN_DATA, "wb") as handle:
        cloudpickle.dump(estimator, handle)
    flavors = {
        PYFUNC: _pyfunc_conf(loader_module=SKLEARN_LOADER, model_path=SKLEARN_DATA, predict_fn="predict"),
        "sklearn": {
            "pickled_model": SKLEARN_DATA,
            "sklearn_version": sklearn.__version__,
            "serialization_format": "cloudpickle",
            "code": None,
        },
    }
    return flavors, pinned("scikit-learn", "cloudpickle", "numpy", "pandas", "scipy")


# -- loading ------------------------------------------------------------------------


class Predictor:
    """What a flavor loads to: ``predict(data, params)`` over the user's object."""

    def __init__(self, obj: Any, method: str = "predict"):
        self.obj = obj
        self.function = getattr(obj, method) if hasattr(obj, method) else obj
        try:
            self.takes_params = "params" in inspect.signature(self.function).parameters
        except (TypeError, ValueError):
            self.takes_params = False

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        if params and self.takes_params:
            return self.function(data, params=params)
        return self.function(data)


def _load_pyfunc(path: str, model_config: Any = None) -> Predictor:
    """MLflow's loader hook: ``path`` is the pickled object (``data`` of the flavor)."""
    with open(path, "rb") as handle:
        return Predictor(cloudpickle.load(handle))


def _load_sklearn(directory: Path, descriptor: Model) -> Predictor:
    conf = descriptor.flavors.get("sklearn", {})
    model_file = directory / (conf.get("pickled_model") or descriptor.pyfunc.get("model_path") or SKLEARN_DATA)
    form = conf.get("serialization_format", "cloudpickle")
    if form in ("cloudpickle", "pickle"):
        with open(model_file, "rb") as handle:
            estimator = cloudpickle.load(handle)
    elif form == "skops":
        try:
            import skops.io
        except ImportError:
            raise UnsupportedModel("this scikit-learn model is saved with skops: pip install skops to load it") from None
        # The file's sha256 was checked against the log already: its types are the ones logged.
        estimator = skops.io.load(model_file, trusted=skops.io.get_untrusted_types(file=model_file))
    else:
        raise UnsupportedModel(f"unknown scikit-learn serialization format {form!r}")
    return Predictor(estimator, descriptor.pyfunc.get("predict_fn") or "predict")


def load_predictor(directory: Path, descriptor: Model) -> Predictor:
    """Unpickle a model directory's object: call only on files already verified."""
    conf = descriptor.pyfunc
    if conf.get(CODE):
        code = str(directory / conf[CODE])
        if code not in sys.path:
            sys.path.insert(0, code)
    loader = conf.get("loader_module")
    if loader == PYFUNC_LOADER:
        return _load_pyfunc(os.path.join(directory, conf.get("data", PYFUNC_DATA)))
    if loader == SKLEARN_LOADER:
        return _load_sklearn(directory, descriptor)
    raise UnsupportedModel(
        f"the model's loader module is {loader!r}: eventflow loads python_function models saved by eventflow "
        "and scikit-learn models (mlflow.sklearn); load this one with mlflow.pyfunc.load_model"
    )
