"""The scoring server: MLflow's scoring protocol over one loaded model.

``POST /invocations`` takes JSON with exactly one of ``dataframe_split``,
``dataframe_records``, ``instances`` or ``inputs`` (and optional ``params``), or a CSV
body, and answers ``{"predictions": ...}``. ``GET /ping`` and ``/health`` answer 200 once
the model is loaded; ``/version`` gives eventflow's version. A bad payload is a 400 that
names the problem, in MLflow's error shape.
"""

from __future__ import annotations

import io
import json
import math
import os
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from eventflow import __version__
from eventflow.models.frames import numpy, pandas
from eventflow.models.pyfunc import PyFuncModel, load_model
from eventflow.models.signature import SignatureMismatch

INPUT_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
MAX_BODY = 64 * 1024 * 1024


class BadPayload(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


def _error(message: str, status: int = 400) -> JSONResponse:
    code = {400: "BAD_REQUEST", 413: "BAD_REQUEST", 415: "BAD_REQUEST"}.get(status, "INTERNAL_ERROR")
    return JSONResponse({"error_code": code, "message": message}, status_code=status)


# -- reading a request --------------------------------------------------------------


def parse_json(body: bytes) -> tuple[Any, dict[str, Any] | None]:
    """(model input, params) from a JSON request body."""
    pd = pandas()
    try:
        found = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadPayload(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(found, dict):
        raise BadPayload(f"the request body must be a JSON object with one of the keys {list(INPUT_KEYS)}, not a {type(found).__name__}")
    keys = [key for key in INPUT_KEYS if key in found]
    unknown = sorted(set(found) - set(INPUT_KEYS) - {"params"})
    if len(keys) != 1 or unknown:
        raise BadPayload(
            f"the request body must have exactly one of the keys {list(INPUT_KEYS)} (and optionally 'params'); "
            f"it has {sorted(found)}"
        )
    key, value = keys[0], found[keys[0]]
    params = found.get("params")
    if params is not None and not isinstance(params, dict):
        raise BadPayload("'params' must be a JSON object of parameter names to values")
    if key == "dataframe_split":
        if not isinstance(value, dict) or not isinstance(value.get("data"), list):
            raise BadPayload("'dataframe_split' must be an object with 'data' (a list of rows) and optionally 'columns' and 'index'")
        try:
            rows = numpy().asarray(value["data"]) if value["data"] else None
            if rows is not None and rows.ndim == 2 and rows.dtype.kind in "biuf":
                data = rows  # all numbers: one block, built in C
            else:
                data = value["data"]
            return pd.DataFrame(data, columns=value.get("columns"), index=value.get("index")), params
        except (ValueError, TypeError) as exc:
            raise BadPayload(f"'dataframe_split' does not make a table: {exc}") from None
    if key == "dataframe_records":
        if not isinstance(value, list) or not all(isinstance(row, dict) for row in value):
            raise BadPayload("'dataframe_records' must be a list of objects, one per row ({column: value})")
        return pd.DataFrame.from_records(value), params
    # instances / inputs: rows of values, records, or a mapping of column to values.
    if isinstance(value, list) and value and all(isinstance(row, dict) for row in value):
        return pd.DataFrame.from_records(value), params
    if isinstance(value, dict):
        try:
            return pd.DataFrame({k: v if isinstance(v, list) else [v] for k, v in value.items()}), params
        except ValueError as exc:
            raise BadPayload(f"'{key}' as a mapping of columns needs lists of equal length: {exc}") from None
    if not isinstance(value, list):
        raise BadPayload(f"'{key}' must be a list of rows (or of records), or an object of column to values")
    try:
        array = numpy().asarray(value)
    except ValueError as exc:
        raise BadPayload(f"'{key}' is not a regular array (rows of different lengths?): {exc}") from None
    if array.dtype == object:
        raise BadPayload(f"'{key}' is not a regular array: every row needs the same number of values")
    return array, params


def parse_csv(body: bytes) -> Any:
    pd = pandas()
    try:
        return pd.read_csv(io.BytesIO(body))
    except (ValueError, pd.errors.ParserError) as exc:
        raise BadPayload(f"the CSV body cannot be read: {exc}") from None


# -- writing a response -------------------------------------------------------------


def jsonable(predictions: Any) -> Any:
    """Predictions as plain JSON: arrays to lists, frames to records, NaN to null."""
    pd, np = pandas(), numpy()
    if isinstance(predictions, pd.DataFrame):
        return [{str(k): jsonable(v) for k, v in row.items()} for row in predictions.to_dict(orient="records")]
    if isinstance(predictions, (pd.Series, np.ndarray)):
        return jsonable(predictions.tolist())
    if isinstance(predictions, dict):
        return {str(k): jsonable(v) for k, v in predictions.items()}
    if isinstance(predictions, (list, tuple)):
        return [jsonable(v) for v in predictions]
    if isinstance(predictions, np.generic):
        return jsonable(predictions.item())
    if isinstance(predictions, float) and not math.isfinite(predictions):
        return None
    return predictions


def create_app(model: PyFuncModel) -> Starlette:
    async def ping(request: Request) -> Response:
        return PlainTextResponse("\n")

    async def version(request: Request) -> Response:
        return PlainTextResponse(__version__)

    async def invocations(request: Request) -> Response:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in ("application/json", "text/csv"):
            return _error(
                f"unsupported content type {content_type or '(none)'!r}: send application/json "
                f"({', '.join(INPUT_KEYS)}) or text/csv",
                415,
            )
        body = await request.body()
        if len(body) > MAX_BODY:
            return _error(f"the request body has {len(body)} bytes; at most {MAX_BODY} are taken", 413)
        try:
            data, params = parse_json(body) if content_type == "application/json" else (parse_csv(body), None)
            predictions = await run_in_threadpool(model.predict, data, params)
            payload = json.dumps({"predictions": jsonable(predictions)}, allow_nan=False)
        except BadPayload as exc:
            return _error(exc.message, exc.status)
        except SignatureMismatch as exc:
            return _error(f"the input does not match the model's signature: {exc}")
        except (ValueError, TypeError, KeyError) as exc:
            # What the model itself rejects (a wrong number of features...): the caller's to fix.
            return _error(f"the model could not score this input: {type(exc).__name__}: {exc}")
        return Response(payload, media_type="application/json")

    return Starlette(
        routes=[
            Route("/ping", ping, methods=["GET"]),
            Route("/health", ping, methods=["GET"]),
            Route("/version", version, methods=["GET"]),
            Route("/invocations", invocations, methods=["POST"]),
        ]
    )


MODEL_DIR_ENV = "EVENTFLOW_SERVE_MODEL_DIR"


def app_from_environment() -> Starlette:
    """The app of each uvicorn worker: the model directory, already fetched and verified by
    ``eventflow models serve``, comes through the environment."""
    return create_app(load_model(os.environ[MODEL_DIR_ENV]))
