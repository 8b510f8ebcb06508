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
from collections.abc import Callable
from typing import Any

from eventflow.server.errors import ApiError
from eventflow.server.openapi import ENDPOINTS, TYPES, _path
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
    """Refuse the first field of ``data`` whose value is not of its documented type
    (``path`` as the table writes it: after /api/2.0/mlflow/, or absolute; the ajax API's
    paths are the API's)."""
    checkers = _CHECKERS.get((method, path)) or _CHECKERS.get((method, _API_PATH.get(path, "")))
    if not checkers:
        return
    query = method in ("GET", "DELETE")
    for name, checker in checkers:
        value = data.get(name)
        if value is None:
            continue
        try:
            checker(value, query and isinstance(value, (str, list)))
        except _Mistyped as bad:
            raise invalid(name + "".join(reversed(bad.where)), bad.value) from None


class _Mistyped(Exception):
    """A value that does not fit; ``where`` gathers its path inside the field, innermost first."""

    def __init__(self, value: Any):
        self.value = value
        self.where: list[str] = []


Checker = Callable[[Any, bool], None]


def _integer(value: Any, query: bool) -> None:
    if isinstance(value, str):
        ok = bool(_INTEGER.match(value.strip()))
    else:
        ok = isinstance(value, int) and not isinstance(value, bool) or isinstance(value, float) and value.is_integer()
    if not ok:
        raise _Mistyped(value)


def _number(value: Any, query: bool) -> None:
    if isinstance(value, str):
        ok = bool(_NUMBER.match(value.strip()))
    else:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok:
        raise _Mistyped(value)


def _string(enum: frozenset[str] | None) -> Checker:
    def check(value: Any, query: bool) -> None:
        if not isinstance(value, str) or enum is not None and value not in enum:
            raise _Mistyped(value)

    return check


def _boolean(value: Any, query: bool) -> None:
    if not (isinstance(value, bool) or query and isinstance(value, str) and value.lower() in ("true", "false")):
        raise _Mistyped(value)


def _any_of(options: list[Checker]) -> Checker:
    def check(value: Any, query: bool) -> None:
        for option in options:
            try:
                option(value, query)
                return
            except _Mistyped:
                pass
        raise _Mistyped(value)

    return check


def _array(items: Checker | None) -> Checker:
    def check(value: Any, query: bool) -> None:
        if not isinstance(value, list):
            if query and isinstance(value, str):
                return
            raise _Mistyped(value)
        if items is None:
            return
        for i, item in enumerate(value):
            if item is None:
                continue
            try:
                items(item, query)
            except _Mistyped as bad:
                bad.where.append(f"[{i}]")
                raise

    return check


def _object(properties: list[tuple[str, Checker]]) -> Checker:
    def check(value: Any, query: bool) -> None:
        if not isinstance(value, dict):
            raise _Mistyped(value)
        for key, inner in properties:
            found = value.get(key)
            if found is None:
                continue
            try:
                inner(found, False)
            except _Mistyped as bad:
                bad.where.append(f".{key}")
                raise

    return check


def _compile(schema: dict[str, Any]) -> Checker:
    """A JSON schema of the table (the few shapes it uses) as a function that raises."""
    if "anyOf" in schema:
        return _any_of([_compile(option) for option in schema["anyOf"]])
    kind = schema.get("type")
    if kind == "string":
        return _string(frozenset(schema["enum"]) if "enum" in schema else None)
    if kind == "integer":
        return _integer
    if kind == "number":
        return _number
    if kind == "boolean":
        return _boolean
    if kind == "array":
        return _array(_compile(schema["items"]) if "items" in schema else None)
    if kind == "object":
        return _object([(key, _compile(inner)) for key, inner in schema.get("properties", {}).items()])
    return lambda value, query: None


_API_PATH = {_path(p).replace("/api/", "/ajax-api/", 1): p for _, p, _, _ in ENDPOINTS} | {_path(p): p for _, p, _, _ in ENDPOINTS}

_CHECKERS: dict[tuple[str, str], list[tuple[str, Checker]]] = {
    route: [(name, _compile(schema)) for name, schema in fields.items()] for route, fields in TABLE.items()
}
