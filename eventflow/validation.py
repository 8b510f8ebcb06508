"""Input rules, checked at the edge (SDK call, REST request, CLI) before anything is appended.

The limits and wording follow MLflow's, because MLflow users already know them and the
MLflow client relies on the error code. Every rule lives here once; the SDK and the
server both call these functions.
"""

from __future__ import annotations

import json
import numbers
import posixpath
import re
from collections.abc import Sequence
from typing import Any

MAX_KEY_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000
MAX_EXPERIMENT_NAME_LENGTH = 500
MAX_EXPERIMENT_TAG_VALUE_LENGTH = 5000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
MAX_ENTITIES_PER_BATCH = 1000
MAX_RUN_NAME_LENGTH = 250
MAX_DATASET_NAME_LENGTH = 500
MAX_DATASET_DIGEST_LENGTH = 36
MAX_DATASET_SOURCE_LENGTH = 65535
MAX_DATASET_SCHEMA_LENGTH = 1048575
MAX_DATASET_PROFILE_LENGTH = 16777215
MAX_INPUT_TAG_KEY_LENGTH = 255
MAX_INPUT_TAG_VALUE_LENGTH = 500

_NAME = re.compile(r"^[/\w.\- :]*$")
_RUN_ID = re.compile(r"^[a-zA-Z0-9][\w\-]{0,255}$")
_EXPERIMENT_ID = re.compile(r"^[a-zA-Z0-9][\w\-]{0,63}$")
_MODEL_ID = re.compile(r"^m-[0-9a-f]{32}$")
_BAD_CHARACTERS = (
    "Names may only contain alphanumerics, underscores (_), dashes (-), periods (.), "
    "spaces ( ), colon(:) and slashes (/)."
)


_GOOD_KEYS: set[str] = set()


class InvalidInput(ValueError):
    """Input that breaks a rule; ``error_code`` is MLflow's code for it."""

    def __init__(self, message: str, error_code: str = "INVALID_PARAMETER_VALUE"):
        super().__init__(message)
        self.message = message
        self.error_code = error_code


def _shown(value: Any) -> str:
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):
        return repr(value)


def invalid_value(path: str, value: Any, why: str | None = None) -> InvalidInput:
    suffix = f": {why}" if why else "."
    return InvalidInput(f"Invalid value {_shown(value)} for parameter '{path}' supplied{suffix}")


def _check_length(what: str, limit: int, value: str) -> None:
    if len(value) > limit:
        raise InvalidInput(f"'{what}' exceeds the maximum length of {limit} characters")


def check_key(key: Any, path: str = "key", what: str = "key") -> str:
    """A param, metric or tag key: a safe, non-empty name of at most 250 characters.

    Keys may become file names (artifacts, exports), so one must not normalise to
    another: ``a/../b`` or ``/abs`` are refused.
    """
    if key.__class__ is str and key in _GOOD_KEYS:  # training loops reuse a few keys
        return key
    if key is None or key == "":
        raise invalid_value(path, key, f"A {what} name must be provided.")
    if not isinstance(key, str):
        raise invalid_value(path, key, f"A {what} name must be a string.")
    if not _NAME.match(key):
        raise invalid_value(path, key, _BAD_CHARACTERS)
    normal = posixpath.normpath(key)
    if normal != key or normal == "." or normal.startswith("..") or normal.startswith("/"):
        raise invalid_value(
            path,
            key,
            "Names may be treated as files in certain cases, and must not resolve to other names "
            f"when treated as such. This name would resolve to {normal!r}",
        )
    _check_length(path, MAX_KEY_LENGTH, key)
    if len(_GOOD_KEYS) < 100_000:
        _GOOD_KEYS.add(key)
    return key


def check_metric(key: Any, value: Any, timestamp: Any, step: Any, path: str = "") -> tuple[str, float, int, int]:
    """A metric point. NaN and ±inf are allowed (MLflow stores them), booleans are not numbers."""
    # The common case, checked without ABCs: a known key, a float or int, int step and time.
    value_type = value.__class__
    if (
        (value_type is float or value_type is int)
        and timestamp.__class__ is int
        and step.__class__ is int
        and key.__class__ is str
        and key in _GOOD_KEYS
        and 0 <= timestamp < 2**63
        and -(2**63) <= step < 2**63
    ):
        return key, float(value), timestamp, step
    prefix = f"{path}." if path else ""
    check_key(key, prefix + "key", "metric")
    if value is None:
        raise InvalidInput(f"Missing value for required parameter '{prefix}value'.")
    if isinstance(value, bool) or not isinstance(value, numbers.Number):
        raise invalid_value(
            prefix + "value",
            value,
            f"metric '{key}' (timestamp={timestamp}). Please specify value as a valid double (64-bit floating point)",
        )
    if isinstance(timestamp, bool) or not isinstance(timestamp, numbers.Integral) or timestamp < 0:
        raise invalid_value(
            prefix + "timestamp",
            timestamp,
            f"metric '{key}' (value={value}). Timestamp must be a nonnegative long (64-bit integer)",
        )
    if isinstance(step, bool) or not isinstance(step, numbers.Integral):
        raise invalid_value(prefix + "step", step, f"metric '{key}' (value={value}). Step must be a valid long (64-bit integer).")
    if not -(2**63) <= step < 2**63 or timestamp >= 2**63:
        raise invalid_value(prefix + "step", step, "out of the 64-bit integer range")
    number = float(value)
    return key, number, int(timestamp), int(step)


def check_param(key: Any, value: Any, path: str = "") -> tuple[str, str]:
    """A param; its value is kept as a string (MLflow stringifies params)."""
    prefix = f"{path}." if path else ""
    check_key(key, prefix + "key", "param")
    text = "" if value is None else str(value)
    _check_length(f"{prefix}value" if path else "Param value", MAX_PARAM_VALUE_LENGTH, text)
    return key, text


def check_tag(key: Any, value: Any, path: str = "", limit: int = MAX_TAG_VALUE_LENGTH) -> tuple[str, str]:
    prefix = f"{path}." if path else ""
    check_key(key, prefix + "key", "tag")
    if value is None:
        raise InvalidInput(f"Missing value for required parameter '{prefix}value'.")
    text = str(value)
    _check_length(prefix + "value", limit, text)
    return key, text


def check_experiment_tag(key: Any, value: Any) -> tuple[str, str]:
    return check_tag(key, value, limit=MAX_EXPERIMENT_TAG_VALUE_LENGTH)


def check_batch_sizes(metrics: Sequence[Any], params: Sequence[Any], tags: Sequence[Any]) -> None:
    for name, limit, items in (
        ("metrics", MAX_METRICS_PER_BATCH, metrics),
        ("params", MAX_PARAMS_TAGS_PER_BATCH, params),
        ("tags", MAX_PARAMS_TAGS_PER_BATCH, tags),
        ("metrics, params, and tags", MAX_ENTITIES_PER_BATCH, [*metrics, *params, *tags]),
    ):
        if len(items) > limit:
            raise InvalidInput(
                f"A batch logging request can contain at most {limit} {name}. Got {len(items)} {name}. "
                f"Please split up {name} across multiple requests and try again."
            )


def check_unique_param_keys(keys: Sequence[str]) -> None:
    seen: set[str] = set()
    duplicates = [key for key in keys if key in seen or seen.add(key)]  # type: ignore[func-returns-value]
    if duplicates:
        raise InvalidInput(
            f"Duplicate parameter keys have been submitted: {duplicates}. Please ensure the request "
            "contains only one param value per param key."
        )


def check_experiment_name(name: Any) -> str:
    if name is None or name == "":
        raise InvalidInput(f"Invalid experiment name: '{name}'")
    if not isinstance(name, str):
        raise InvalidInput(f"Invalid experiment name: {name!r}. Expects a string.")
    _check_length("name", MAX_EXPERIMENT_NAME_LENGTH, name)
    return name


def check_run_id(run_id: Any, path: str = "run_id") -> str:
    if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
        raise invalid_value(path, run_id)
    return run_id


def check_model_id(model_id: Any, path: str = "model_id") -> str:
    """A logged model id as MLflow 3 makes them: ``m-`` and 32 hex digits."""
    if not isinstance(model_id, str) or not _MODEL_ID.match(model_id):
        raise invalid_value(path, model_id, "logged model ids look like m-<32 hex digits>")
    return model_id


def _unset(value: Any) -> Any:
    return None if value is None or value == "" else value


def check_metric_link(model_id: Any, dataset_name: Any, dataset_digest: Any, path: str = "") -> dict[str, str | None] | None:
    """What an MLflow 3 metric point is about: a logged model, a dataset (name and digest), or
    both; None when it is a plain run metric. Empty strings count as unset, as in MLflow's
    proto-JSON. MLflow refuses a dataset name without its digest and the other way round."""
    prefix = f"{path}." if path else ""
    link = {"model_id": _unset(model_id), "dataset_name": _unset(dataset_name), "dataset_digest": _unset(dataset_digest)}
    if link["model_id"] is None and link["dataset_name"] is None and link["dataset_digest"] is None:
        return None
    if link["model_id"] is not None:
        check_model_id(link["model_id"], prefix + "model_id")
    if (link["dataset_name"] is None) != (link["dataset_digest"] is None):
        raise InvalidInput("Both dataset_name and dataset_digest must be provided if one is provided")
    for name, limit in (("dataset_name", MAX_DATASET_NAME_LENGTH), ("dataset_digest", MAX_DATASET_DIGEST_LENGTH)):
        value = link[name]
        if value is not None:
            if not isinstance(value, str):
                raise invalid_value(prefix + name, value, "it must be a string")
            _check_length(prefix + name, limit, value)
    return link


def check_experiment_id(experiment_id: Any) -> str:
    text = str(experiment_id) if isinstance(experiment_id, int) and not isinstance(experiment_id, bool) else experiment_id
    if not isinstance(text, str) or not _EXPERIMENT_ID.match(text):
        raise InvalidInput(f"Invalid experiment ID: '{experiment_id}'")
    return text


def check_run_name(name: Any) -> str:
    if not isinstance(name, str):
        raise InvalidInput(f"Invalid run name: {name!r}. Expects a string.")
    _check_length("run_name", MAX_RUN_NAME_LENGTH, name)
    return name


def check_dataset_input(item: Any, path: str) -> dict[str, Any]:
    """One of MLflow's DatasetInput: a dataset (name, digest, source…) and its input tags."""
    if not isinstance(item, dict) or not isinstance(item.get("dataset"), dict):
        raise InvalidInput(f"Missing value for required parameter '{path}.dataset'.")
    dataset = item["dataset"]
    checked: dict[str, Any] = {}
    for name, limit, required in (
        ("name", MAX_DATASET_NAME_LENGTH, True),
        ("digest", MAX_DATASET_DIGEST_LENGTH, True),
        ("source_type", MAX_DATASET_NAME_LENGTH, True),
        ("source", MAX_DATASET_SOURCE_LENGTH, True),
        ("schema", MAX_DATASET_SCHEMA_LENGTH, False),
        ("profile", MAX_DATASET_PROFILE_LENGTH, False),
    ):
        value = dataset.get(name)
        if value is None or value == "":
            if required:
                raise InvalidInput(f"Missing value for required parameter '{path}.dataset.{name}'.")
            checked[name] = None
            continue
        if not isinstance(value, str):
            raise invalid_value(f"{path}.dataset.{name}", value, "it must be a string")
        _check_length(f"{path}.dataset.{name}", limit, value)
        checked[name] = value
    tags = []
    for i, tag in enumerate(item.get("tags") or []):
        key, value = tag.get("key"), tag.get("value")
        if not key or not isinstance(key, str):
            raise InvalidInput(f"Missing value for required parameter '{path}.tags[{i}].key'.")
        if value is None:
            raise InvalidInput(f"Missing value for required parameter '{path}.tags[{i}].value'.")
        _check_length(f"{path}.tags[{i}].key", MAX_INPUT_TAG_KEY_LENGTH, key)
        _check_length(f"{path}.tags[{i}].value", MAX_INPUT_TAG_VALUE_LENGTH, str(value))
        tags.append({"key": key, "value": str(value)})
    return {"tags": tags, "dataset": checked}
