"""``eventflow.autolog()``: scikit-learn's ``fit`` logs itself, as MLflow's sklearn autolog does.

    eventflow.autolog(registered_model_name="churn")
    LogisticRegression().fit(X, y)   # a run: params, training_* metrics, the model, registered

Each estimator class's own ``fit`` is wrapped (``autolog(disable=True)`` puts the originals
back). Only the outermost ``fit`` of a call logs — a Pipeline's steps or a search's
candidates fit inside it. Without an active run a ``fit`` gets its own run, ended when it
returns (FAILED if it raises). Logging never breaks training: a failure to log is a warning.
"""

from __future__ import annotations

import functools
import inspect
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any

from eventflow import validation as v

MODEL_PATH = "model"


@dataclass
class _Settings:
    log_models: bool = True
    log_model_signatures: bool = True
    log_input_examples: bool = False
    log_datasets: bool = True
    exclusive: bool = False
    silent: bool = False
    registered_model_name: str | None = None
    pos_label: Any = None
    extra_tags: dict[str, str] = field(default_factory=dict)


_settings: _Settings | None = None
_originals: dict[type, Any] = {}  # class -> the fit it defined, while patched
_inside = threading.local()  # depth of autologged fits on this thread


def autolog(
    log_input_examples: bool = False,
    log_model_signatures: bool = True,
    log_models: bool = True,
    log_datasets: bool = True,
    disable: bool = False,
    exclusive: bool = False,
    disable_for_unsupported_versions: bool = False,
    silent: bool = False,
    registered_model_name: str | None = None,
    pos_label: Any = None,
    extra_tags: dict[str, Any] | None = None,
) -> None:
    """Turn on (or with ``disable=True`` off) autologging of scikit-learn's ``fit``.
    Without scikit-learn installed there is nothing to patch, and nothing happens."""
    global _settings
    if disable:
        _unpatch()
        _settings = None
        return
    if registered_model_name is not None:
        v.check_key(registered_model_name, "registered_model_name")
    tags = {str(k): str(x) for k, x in (extra_tags or {}).items()}
    for key, value in tags.items():
        v.check_tag(key, value)
    _settings = _Settings(log_models, log_model_signatures, log_input_examples, log_datasets, exclusive, silent,
                          registered_model_name, pos_label, tags)
    try:
        from sklearn.utils import all_estimators
    except ImportError:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # importing every estimator warns about experimental ones
        estimators = [cls for _, cls in all_estimators()]
    for cls in estimators:
        owner = next((c for c in cls.__mro__ if "fit" in c.__dict__), None)
        if owner is not None and owner not in _originals and callable(owner.__dict__["fit"]):
            _originals[owner] = owner.__dict__["fit"]
            owner.fit = _patched(owner.__dict__["fit"])


def _unpatch() -> None:
    for owner, original in _originals.items():
        owner.fit = original
    _originals.clear()


def _patched(original: Any) -> Any:
    @functools.wraps(original)
    def fit(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _settings is None or getattr(_inside, "depth", 0):
            return original(self, *args, **kwargs)
        _inside.depth = 1
        try:
            return _autologged_fit(_settings, original, self, args, kwargs)
        finally:
            _inside.depth = 0

    fit.__eventflow_autolog__ = True  # type: ignore[attr-defined]
    return fit


def _autologged_fit(settings: _Settings, original: Any, estimator: Any, args: tuple, kwargs: dict) -> Any:
    from eventflow.sdk import fluent

    if settings.exclusive and fluent.active_run() is not None:
        return original(estimator, *args, **kwargs)
    own_run = fluent.active_run() is None
    if own_run:
        fluent.start_run()
    try:
        _quietly(settings, "parameters", _log_before_fit, settings, estimator)
        result = original(estimator, *args, **kwargs)
    except BaseException as error:
        if own_run:
            fluent.end_run("KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED",
                           error_message=f"{type(error).__name__}: {error}")
        raise
    X, y, sample_weight = _fit_data(original, estimator, args, kwargs)
    _quietly(settings, "training metrics", _log_metrics, settings, estimator, X, y, sample_weight)
    if settings.log_datasets and X is not None:
        _quietly(settings, "the training dataset", _log_dataset, X, y)
    if settings.log_models:
        _quietly(settings, "the model", _log_model, settings, estimator, X)
    if own_run:
        fluent.end_run()
    return result


def _quietly(settings: _Settings, what: str, log: Any, *args: Any) -> None:
    """Training goes on whatever logging meets; the user hears of it unless ``silent``."""
    try:
        log(*args)
    except Exception as error:
        if not settings.silent:
            warnings.warn(f"eventflow autolog could not log {what}: {type(error).__name__}: {error}", stacklevel=4)


def _fit_data(original: Any, estimator: Any, args: tuple, kwargs: dict) -> tuple[Any, Any, Any]:
    """X, y and sample_weight as this ``fit`` took them (by its parameter names)."""
    try:
        bound = inspect.signature(original).bind(estimator, *args, **kwargs)
    except TypeError:
        return None, None, None
    names = [n for n in bound.arguments if n != "self"]
    X = bound.arguments.get("X", bound.arguments.get(names[0]) if names else None)
    return X, bound.arguments.get("y"), bound.arguments.get("sample_weight")


def _log_before_fit(settings: _Settings, estimator: Any) -> None:
    from eventflow.sdk import fluent

    params = {key: _param_text(value) for key, value in estimator.get_params(deep=True).items()}
    fluent.log_params(params)
    cls = type(estimator)
    fluent.set_tags({"estimator_name": cls.__name__, "estimator_class": f"{cls.__module__}.{cls.__name__}",
                     **settings.extra_tags})


def _param_text(value: Any) -> str:
    text = str(value)
    return text if len(text) <= v.MAX_PARAM_VALUE_LENGTH else text[: v.MAX_PARAM_VALUE_LENGTH - 3] + "..."


def training_metrics(estimator: Any, X: Any, y: Any, sample_weight: Any = None, pos_label: Any = None) -> dict[str, float]:
    """MLflow's ``training_*`` metrics of a fitted estimator on its training data."""
    import numpy as np
    from sklearn import base, metrics

    found: dict[str, float] = {}
    if y is None:
        return found
    weights = {"sample_weight": sample_weight}
    if base.is_classifier(estimator):
        predicted = estimator.predict(X)
        average = "weighted" if pos_label is None else "binary"
        label = {} if pos_label is None else {"pos_label": pos_label}
        found["training_precision_score"] = metrics.precision_score(y, predicted, average=average, zero_division=0, **label, **weights)
        found["training_recall_score"] = metrics.recall_score(y, predicted, average=average, zero_division=0, **label, **weights)
        found["training_f1_score"] = metrics.f1_score(y, predicted, average=average, zero_division=0, **label, **weights)
        found["training_accuracy_score"] = metrics.accuracy_score(y, predicted, **weights)
        if hasattr(estimator, "predict_proba"):
            probabilities = estimator.predict_proba(X)
            found["training_log_loss"] = metrics.log_loss(y, probabilities, labels=estimator.classes_, **weights)
            scores = probabilities[:, 1] if probabilities.shape[1] == 2 else probabilities
            try:
                found["training_roc_auc"] = metrics.roc_auc_score(y, scores, average="weighted", multi_class="ovo", **weights)
            except ValueError:  # a class missing from y: no AUC, as MLflow skips it
                pass
    elif base.is_regressor(estimator):
        predicted = estimator.predict(X)
        found["training_mean_squared_error"] = metrics.mean_squared_error(y, predicted, **weights)
        found["training_root_mean_squared_error"] = float(np.sqrt(found["training_mean_squared_error"]))
        found["training_mean_absolute_error"] = metrics.mean_absolute_error(y, predicted, **weights)
        found["training_r2_score"] = metrics.r2_score(y, predicted, **weights)
    if hasattr(estimator, "score"):
        try:
            takes_weight = "sample_weight" in inspect.signature(estimator.score).parameters
            found["training_score"] = estimator.score(X, y, **(weights if takes_weight and sample_weight is not None else {}))
        except Exception:  # a score that needs more than X and y
            pass
    return {key: float(value) for key, value in found.items()}


def _log_metrics(settings: _Settings, estimator: Any, X: Any, y: Any, sample_weight: Any) -> None:
    from eventflow.sdk import fluent

    found = training_metrics(estimator, X, y, sample_weight, settings.pos_label)
    if found:
        fluent.log_metrics(found)


def _log_dataset(X: Any, y: Any) -> None:
    """The training data as the run's input (context "train"), as MLflow's autolog does."""
    import eventflow.data
    from eventflow.sdk import fluent

    if type(X).__name__ == "DataFrame":
        dataset = eventflow.data.from_pandas(X, name="dataset")
    else:
        dataset = eventflow.data.from_numpy(X, targets=y, name="dataset")
    fluent.log_input(dataset, context="train")


def _log_model(settings: _Settings, estimator: Any, X: Any) -> None:
    from eventflow.models import infer_signature, log_model

    signature = example = None
    if X is not None and (settings.log_model_signatures or settings.log_input_examples):
        sample = X[:5] if not hasattr(X, "iloc") else X.iloc[:5]
        example = sample if settings.log_input_examples else None
        if settings.log_model_signatures:
            try:
                signature = infer_signature(sample, estimator.predict(sample)) if hasattr(estimator, "predict") else infer_signature(sample)
            except Exception:  # a model whose input or output has no schema: logged without one
                signature = None
    log_model(estimator, MODEL_PATH, signature=signature, input_example=example,
              registered_model_name=settings.registered_model_name)
