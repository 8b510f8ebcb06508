"""Reading MLflow-style requests: GET fields from the query string, the rest from JSON."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from eventflow.server.errors import ApiError

# Fields MLflow's GET requests repeat (``?experiment_ids=1&experiment_ids=2``).
REPEATED = {"experiment_ids", "order_by", "run_ids", "metric_keys"}


async def fields(request: Request) -> dict[str, Any]:
    if request.method == "GET":
        out: dict[str, Any] = {}
        for key in request.query_params.keys():
            values = request.query_params.getlist(key)
            out[key] = values if key in REPEATED else values[-1]
        return out
    body = await request.body()
    if not body.strip():
        return {}
    try:
        parsed = json.loads(body)
    except json.JSONDecodeError as error:
        raise ApiError(f"Malformed JSON request body: {error}", "MALFORMED_REQUEST") from None
    if not isinstance(parsed, dict):
        raise ApiError("The request body must be a JSON object", "MALFORMED_REQUEST")
    return parsed


def required(data: dict[str, Any], name: str) -> Any:
    value = data.get(name)
    if value is None or value == "":
        raise ApiError(f"Missing value for required parameter '{name}'. See the API docs for more information about request parameters.")
    return value


def as_int(data: dict[str, Any], name: str, default: int | None = None) -> int | None:
    value = data.get(name, default)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ApiError(f"Invalid value {json.dumps(value)} for parameter '{name}' supplied: it must be an integer.") from None
