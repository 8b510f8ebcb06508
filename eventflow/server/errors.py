"""Errors in MLflow's shape: ``{"error_code": ..., "message": ...}`` with MLflow's statuses.

The MLflow client decides what to do from the code (``get_experiment_by_name`` returns
None on RESOURCE_DOES_NOT_EXIST), so codes and statuses must match MLflow's exactly.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse

from eventflow.codec import CodecError
from eventflow.log import LogError
from eventflow.validation import InvalidInput

logger = logging.getLogger(__name__)

STATUS = {
    "INVALID_PARAMETER_VALUE": 400,
    "RESOURCE_ALREADY_EXISTS": 400,
    "BAD_REQUEST": 400,
    "INVALID_STATE": 400,
    "RESOURCE_CONFLICT": 409,
    "MALFORMED_REQUEST": 400,
    "RESOURCE_DOES_NOT_EXIST": 404,
    "ENDPOINT_NOT_FOUND": 404,
    "PERMISSION_DENIED": 403,
    "TEMPORARILY_UNAVAILABLE": 503,
    "INTERNAL_ERROR": 500,
}


class ApiError(Exception):
    def __init__(self, message: str, error_code: str = "INVALID_PARAMETER_VALUE"):
        super().__init__(message)
        self.message = message
        self.error_code = error_code

    @property
    def status(self) -> int:
        return STATUS.get(self.error_code, 400)


def not_found(message: str) -> ApiError:
    return ApiError(message, "RESOURCE_DOES_NOT_EXIST")


def error_response(error_code: str, message: str, status: int | None = None) -> JSONResponse:
    return JSONResponse({"error_code": error_code, "message": message}, status_code=status or STATUS.get(error_code, 400))


async def handle_api_error(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, ApiError):
        return error_response(exc.error_code, exc.message, exc.status)
    if isinstance(exc, InvalidInput):
        return error_response(exc.error_code, exc.message)
    if isinstance(exc, CodecError):
        return error_response("INVALID_PARAMETER_VALUE", str(exc))
    if isinstance(exc, LogError):  # the broker is unreachable, or the log closed under us
        logger.warning("log unavailable on %s %s: %s", request.method, request.url.path, exc)
        return error_response("TEMPORARILY_UNAVAILABLE", f"the event log is unavailable: {exc}")
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response("INTERNAL_ERROR", f"internal error: {type(exc).__name__}: {exc}", 500)
