"""The ASGI application: one REST surface (MLflow 2.0 + /api/2.0/eventflow/...), one runtime."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from eventflow import __version__
from eventflow.audit import api as audit_api
from eventflow.codec import CodecError
from eventflow.log import LogError
from eventflow.server import alerts_api, api_docs, artifacts, dashboard, stamping, deployments_api, events_api, jobs_api, live, mlflow_webhooks_api, openapi, projects_api, runs_api, tracking, ui_artifacts, webhooks_api
from eventflow.server.browsers import BrowserGuard, Policy
from eventflow.server.errors import FAULTS, ApiError, error_response, handle_api_error
from eventflow.server.runtime import Runtime
from eventflow.validation import InvalidInput


def create_app(runtime: Runtime, policy: Policy | None = None, *, auth: bool | None = None) -> Starlette:
    """The app over ``runtime``; ``policy`` says what browsers may do, ``auth`` whether
    requests must authenticate (both from the environment by default)."""
    from eventflow.auth import api as access_api
    from eventflow.auth.authenticator import Authenticator
    from eventflow.auth.middleware import AuthMiddleware

    if auth is None:
        auth = auth_from_environment()
    authenticator = Authenticator(runtime) if auth else None

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        runtime.hub.bind(asyncio.get_running_loop())
        runtime.start()
        if authenticator is not None:
            access_api.ensure_admin(runtime)
        try:
            yield
        finally:
            runtime.stop()

    async def health(request: Request) -> PlainTextResponse:
        return PlainTextResponse("OK")

    async def version(request: Request) -> PlainTextResponse:
        return PlainTextResponse(__version__)

    async def openapi_document(request: Request) -> JSONResponse:
        return JSONResponse(openapi.document())

    async def not_found(request: Request, exc: Exception) -> JSONResponse:
        return error_response("ENDPOINT_NOT_FOUND", f"No API endpoint {request.method} {request.url.path}", 404)

    async def not_allowed(request: Request, exc: Exception) -> JSONResponse:
        return error_response("BAD_REQUEST", f"{request.method} is not allowed on {request.url.path}", 405)

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/version", version, methods=["GET"]),
        Route("/api/2.0/eventflow/openapi.json", openapi_document, methods=["GET"]),
        *api_docs.routes(),
        *tracking.routes(runtime),
        *artifacts.routes(runtime),
        *ui_artifacts.routes(runtime),
        *events_api.routes(runtime),
        *webhooks_api.routes(runtime),
        *alerts_api.routes(runtime),
        *jobs_api.routes(runtime),
        *mlflow_webhooks_api.routes(runtime),
        *deployments_api.routes(runtime),
        *audit_api.routes(runtime),
        *projects_api.routes(runtime),
        *runs_api.routes(runtime),
        *live.routes(runtime),
        *dashboard.routes(),
        *access_api.routes(runtime, authenticator),
    ]
    handlers = {
        ApiError: handle_api_error,
        InvalidInput: handle_api_error,
        CodecError: handle_api_error,
        LogError: handle_api_error,
        **{fault: handle_api_error for fault in FAULTS},
        Exception: handle_api_error,
        404: not_found,
        405: not_allowed,
    }
    middleware = [Middleware(BrowserGuard, policy=policy or Policy.from_env())]
    if authenticator is not None:
        middleware.append(Middleware(AuthMiddleware, authenticator=authenticator))
    middleware.append(Middleware(stamping.RequestOrigin))  # inside auth: it reads the principal
    app = Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan, middleware=middleware)
    app.state.runtime = runtime  # the error handlers name the store that failed
    return app


def auth_from_environment() -> bool:
    """Whether ``eventflow server --auth`` asked for authentication (EVENTFLOW_AUTH)."""
    from eventflow import environment_variables as env

    return bool(env.AUTH.get())


def app_from_environment() -> Starlette:
    """The app for ``eventflow server``: options come through the environment, so that
    every uvicorn worker process builds the same app."""
    import os

    from eventflow.server.runtime import open_runtime

    runtime = open_runtime(
        home=os.environ.get("EVENTFLOW_HOME"),
        kafka=os.environ.get("EVENTFLOW_KAFKA"),
        db=os.environ.get("EVENTFLOW_DB"),
        artifacts=os.environ.get("EVENTFLOW_ARTIFACTS"),
        run_consumers=os.environ.get("EVENTFLOW_SERVER_CONSUMERS", "true") != "false",
        allow_finite_retention=os.environ.get("EVENTFLOW_ALLOW_FINITE_RETENTION", "") == "true",
    )
    return create_app(runtime)
