"""Each request field's type, checked on arrival from the OpenAPI document's table.

MLflow parses a request into its proto message; when that fails it answers a mistyped
field 400 INVALID_PARAMETER_VALUE, naming the field and its value ("Invalid value 31 for
parameter 'run_id' supplied…"). Without this a handler would take ``"run_id": 31`` at its
word, look up run "31" and answer 404. One table serves both: the OpenAPI document that
clients and the fuzz tests read is the one that the server enforces
(``eventflow.server.openapi.ENDPOINTS``).

What proto3 JSON takes is taken: integers as numbers or decimal strings, doubles as numbers,
numeric strings or "NaN"/"Infinity"/"-Infinity", and ``null`` as absent. A query string
carries only strings, so there a string stands for a number, a boolean or a one-item list.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from eventflow.server.errors import ApiError
from eventflow.server.openapi import ENDPOINTS, TYPES
from eventflow.server.requests import REPEATED

_INTEGER = re.compile(r"^-?\d+$")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")

# (method, path after /api/2.0/mlflow/ or absolute) -> {field: JSON schema}
TABLE: dict[tuple[str, str], dict[str, dict[str, Any]]] = {
    (method, path): {name: TYPES[kind.rstrip("!")] for name, kind in fields.items()} for method, path, fields, _ in ENDPOINTS
}


@functools.cache
def repeated(method: str, path: str) -> frozenset[str]:
    """The fields a query string may repeat (``?run_id=a&run_id=b``): the table's lists."""
    return frozenset(REPEATED) | {name for name, schema in TABLE.get((method, path), {}).items() if schema.get("type") == "array"}


def invalid(name: str, value: Any) -> ApiError:
    """MLflow's message for a value of the wrong type (its wording, so its tests match)."""
    shown = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    if len(shown) > 200:
        shown = shown[:200] + "…"
    return ApiError(
        f"Invalid value {shown} for parameter '{name}' supplied. Hint: Value was of type '{type(value).__name__}'. "
        "See the API docs for more information about request parameters."
    )


def check(method: str, path: str, data: dict[str, Any]) -> None:
    """Refuse the first field of ``data`` whose value is not of its documented type."""
    schemas = TABLE.get((method, path))
    if not schemas:
        return
    query = method in ("GET", "DELETE")
    for name, schema in schemas.items():
        value = data.get(name)
        if value is not None:
            _check(schema, name, value, query and isinstance(value, (str, list)))


def _fits(schema: dict[str, Any], value: Any, query: bool) -> bool:
    kind = schema.get("type")
    if kind == "string":
        return isinstance(value, str) and ("enum" not in schema or value in schema["enum"])
    if kind == "integer":
        if isinstance(value, str):
            return bool(_INTEGER.match(value.strip()))
        return isinstance(value, int) and not isinstance(value, bool) or isinstance(value, float) and value.is_integer()
    if kind == "number":
        if isinstance(value, str):
            return bool(_NUMBER.match(value.strip()))
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool) or query and isinstance(value, str) and value.lower() in ("true", "false")
    if kind == "array":
        return isinstance(value, list) or query and isinstance(value, str)
    if kind == "object":
        return isinstance(value, dict)
    return True


def _check(schema: dict[str, Any], name: str, value: Any, query: bool = False) -> None:
    if "anyOf" in schema:
        if not any(_fits(option, value, query) for option in schema["anyOf"]):
            raise invalid(name, value)
        return
    if not _fits(schema, value, query):
        raise invalid(name, value)
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            if item is not None:
                _check(schema["items"], f"{name}[{i}]", item, query)
    elif isinstance(value, dict):
        for key, inner in schema.get("properties", {}).items():
            if value.get(key) is not None:
                _check(inner, f"{name}.{key}", value[key])
