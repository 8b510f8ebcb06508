"""The ASGI middleware that authenticates every request when auth is on.

It runs after the browser checks (eventflow/server/browsers.py) and before any route:
a request without valid credentials is answered 401 in MLflow's error shape, with a
``WWW-Authenticate`` challenge so a browser asks for a password; a websocket is closed
before it is accepted. The principal is put in the scope (``eventflow.principal``) and
in :data:`eventflow.auth.context.PRINCIPAL`, and names the events the request makes.
"""

from __future__ import annotations

import json

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from eventflow.auth.authenticator import Authenticator
from eventflow.auth.context import PRINCIPAL
from eventflow.events import ACTOR

# Answered to anyone: a load balancer's probe, and the API's description.
OPEN_PATHS = frozenset({"/health", "/version", "/api/2.0/eventflow/openapi.json"})
SCOPE_KEY = "eventflow.principal"
UNAUTHENTICATED = (
    "You are not authenticated: send a user name and password (HTTP Basic; MLflow's clients read "
    "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD) or a token (Authorization: Bearer; "
    "MLFLOW_TRACKING_TOKEN). An administrator creates users with `eventflow users create`."
)


class AuthMiddleware:
    def __init__(self, app: ASGIApp, authenticator: Authenticator):
        self.app = app
        self.authenticator = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        header = Headers(scope=scope).get("authorization")
        principal = None
        if header:
            principal = self.authenticator.cached(header) or await run_in_threadpool(self.authenticator.verify, header)
        if principal is None:
            await self._refuse(scope, send, bool(header))
            return
        scope[SCOPE_KEY] = principal
        principal_token, actor_token = PRINCIPAL.set(principal), ACTOR.set(principal.username)
        try:
            await self.app(scope, receive, send)
        finally:
            PRINCIPAL.reset(principal_token)
            ACTOR.reset(actor_token)

    async def _refuse(self, scope: Scope, send: Send, had_credentials: bool) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 4401, "reason": "not authenticated"})
            return
        message = ("Invalid credentials: the user name, password or token is wrong, expired or revoked. " if had_credentials else "") + UNAUTHENTICATED
        body = json.dumps({"error_code": "UNAUTHENTICATED", "message": message}).encode()
        await send({
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b'Basic realm="eventflow", charset="UTF-8"'),
            ],
        })
        await send({"type": "http.response.body", "body": body})
