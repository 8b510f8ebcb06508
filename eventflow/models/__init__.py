"""Models: MLflow's model format (``MLmodel``), saved, logged, loaded and served.

    import eventflow, eventflow.models
    with eventflow.start_run():
        info = eventflow.models.log_model(estimator, "model", input_example=X[:5])
    model = eventflow.models.load_model(info.model_uri)   # runs:/<run>/model
    model.predict(X)

A logged model's files are run artifacts, each recorded on the log with its sha256;
loading checks every file against that record before unpickling anything.
"""

from eventflow.models.descriptor import Model
from eventflow.models.flavors import UnsupportedModel
from eventflow.models.pyfunc import PyFuncModel, load_model
from eventflow.models.save import ModelInfo, log_model, save_model
from eventflow.models.signature import ColSpec, ModelSignature, Schema, SignatureMismatch, TensorSpec, infer_signature
from eventflow.models.uris import ModelUriError
from eventflow.models.verified import ModelIntegrityError, ModelLoadError

__all__ = [
    "ColSpec",
    "Model",
    "ModelInfo",
    "ModelIntegrityError",
    "ModelLoadError",
    "ModelSignature",
    "ModelUriError",
    "PyFuncModel",
    "Schema",
    "SignatureMismatch",
    "TensorSpec",
    "UnsupportedModel",
    "infer_signature",
    "load_model",
    "log_model",
    "save_model",
]
