"""Reading MLflow-style requests: GET fields from the query string, the rest from JSON."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Collection
from typing import Any

from starlette.requests import Request

from eventflow.server.errors import ApiError

# Fields MLflow's GET requests repeat (``?experiment_ids=1&experiment_ids=2``).
REPEATED = {"experiment_ids", "order_by", "run_ids", "metric_keys", "stages"}


async def fields(request: Request, repeated: Collection[str] = REPEATED) -> dict[str, Any]:
    """The request's fields; in a query string, those in ``repeated`` are lists."""
    if request.method == "GET":
        out: dict[str, Any] = {}
        for key in request.query_params.keys():
            values = request.query_params.getlist(key)
            out[key] = values if key in repeated else values[-1]
        return out
    body = await request.body()
    if not body.strip():
        return dict(request.query_params)  # a DELETE may name its target in the query string
    try:
        parsed = json.loads(body)
    except json.JSONDecodeError as error:
        raise ApiError(f"Malformed JSON request body: {error}", "MALFORMED_REQUEST") from None
    if not isinstance(parsed, dict):
        raise ApiError("The request body must be a JSON object", "MALFORMED_REQUEST")
    return parsed


def required(data: dict[str, Any], name: str, path: str | None = None) -> Any:
    """A field that must be there (``path`` names it in the message when it is nested)."""
    value = data.get(name)
    if value is None or value == "":
        raise ApiError(f"Missing value for required parameter '{path or name}'. See the API docs for more information about request parameters.")
    return value


INT64 = (-(2**63), 2**63 - 1)


def as_int(data: dict[str, Any], name: str, default: int | None = None, low: int = INT64[0], high: int = INT64[1]) -> int | None:
    """An integer field (numbers may come as strings in query strings), within [low, high]."""
    value = data.get(name, default)
    if value is None or value == "":
        return default
    if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
        raise ApiError(f"Invalid value {json.dumps(value)} for parameter '{name}' supplied: it must be an integer.")
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        raise ApiError(f"Invalid value {json.dumps(value)[:100]} for parameter '{name}' supplied: it must be an integer.") from None
    if not low <= number <= high:
        raise ApiError(f"Invalid value {number} for parameter '{name}' supplied: it must be between {low} and {high}.")
    return number


def objects(data: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """A list-of-objects field (tags, metrics, datasets…), or a clear error."""
    items = data.get(name)
    if items is None:
        return []
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise ApiError(f"Invalid value {json.dumps(items)[:200]} for parameter '{name}' supplied: it must be a list of objects.")
    return items


def pairs(data: dict[str, Any], name: str) -> list[tuple[Any, Any]]:
    """A list of ``{key, value}`` objects as (key, value) pairs; checking them is the commands' job."""
    return [(item.get("key"), item.get("value")) for item in objects(data, name)]


def text(data: dict[str, Any], name: str, default: str | None = None) -> str | None:
    """An optional string field, or a clear error if it is something else."""
    value = data.get(name, default)
    if value is None or isinstance(value, str):
        return value
    raise ApiError(f"Invalid value {json.dumps(value)[:200]} for parameter '{name}' supplied: it must be a string.")


def actor(request: Request) -> str | None:
    """The user a request acts for: the HTTP Basic user name the MLflow client sends
    (``MLFLOW_TRACKING_USERNAME``), or None for the server's default actor."""
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic" or not credentials:
        return None
    try:
        user = base64.b64decode(credentials, validate=True).decode("utf-8").partition(":")[0]
    except (binascii.Error, UnicodeDecodeError):
        return None
    return user[:256] or None
