"""What a browser may make this server do: the checks before any route runs.

The API has no login of its own yet, so any page a user opens could drive it through
their browser unless the server tells requests from pages apart:

- **Host allow-list** (``--allowed-hosts``): a page on ``attacker.example`` whose name
  is rebound to 127.0.0.1 (DNS rebinding) talks to this server as same-origin, but its
  requests still say ``Host: attacker.example``; only the loopback names, the bind
  address and the names the operator lists are answered, others get 403.
- **Simple requests are not API calls**: a cross-site form or ``fetch(..., {mode:
  "no-cors"})`` can POST ``text/plain`` without asking the server first. A POST or PATCH
  must say ``Content-Type: application/json`` (the event batch its Avro type), which a
  browser only sends cross-site after a CORS preflight this server does not grant.
  MLflow UI's upload (its body is the file) takes any type but a form's (text/plain,
  form-urlencoded, multipart);
  a body without one is sent with an ``Origin``, which the next check judges.
- **Origin allow-list** (``--cors-allowed-origins``, empty by default): a state-changing
  request or a websocket that carries an ``Origin`` must come from this server's own
  origin or a listed one; listed origins also get CORS answers.
- **Body caps while reading**: a body over its route's cap answers 413 as soon as the
  count passes it (or at once, from ``Content-Length``), never after holding it whole.
- **Headers**: every answer carries ``Content-Security-Policy``, ``X-Frame-Options:
  DENY`` and ``X-Content-Type-Options: nosniff``.

Settings reach every uvicorn worker through the environment (``EVENTFLOW_ALLOWED_HOSTS``,
``EVENTFLOW_CORS_ALLOWED_ORIGINS``, ``EVENTFLOW_BIND_HOST``), as the other server options do.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eventflow.server.errors import ApiError

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
NEEDS_CONTENT_TYPE = frozenset({"POST", "PATCH"})
EVENTS_PATH = "/api/2.0/eventflow/events"
EVENTS_CONTENT_TYPE = "application/vnd.eventflow.events"
# MLflow UI's upload (its body is the file): any type but the ones a page may post cross-site unasked.
UPLOAD_PATHS = ("/ajax-api/2.0/mlflow/upload-artifact",)
FORM_TYPES = ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data")
MB = 1024 * 1024
# The largest body each kind of route reads (artifact uploads stream to disk: no cap).
EVENTS_MAX_BODY = 32 * MB  # the SDK's largest batch (500 events of 1000 points) is ~13 MB
JSON_MAX_BODY = 16 * MB  # MLflow's log_batch at its limits, every character escaped, is ~9 MB
ARTIFACT_PREFIXES = ("/api/2.0/mlflow-artifacts/artifacts/", "/ajax-api/2.0/mlflow-artifacts/artifacts/")
SECURITY_HEADERS = [
    (b"content-security-policy", (
        b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
        b"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]


def _split(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def host_name(host: str) -> str:
    """A Host header's name without its port, lower case (IPv6 literals keep their brackets)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    name, colon, port = host.rpartition(":")
    return name if colon and port.isdigit() else host


@dataclass(frozen=True)
class Policy:
    allowed_hosts: frozenset[str]  # names without ports; "*" allows any, "*.example.com" a domain
    allowed_origins: tuple[str, ...]  # scheme://host[:port], exactly as browsers send them

    @classmethod
    def create(cls, hosts: Iterable[str] = (), origins: Iterable[str] = (), bind: str | None = None) -> "Policy":
        names = {*LOOPBACK_HOSTS, *(host_name(h) if h != "*" else "*" for h in hosts)}
        if bind and bind not in ("0.0.0.0", "::", ""):
            names.add(f"[{bind.lower()}]" if ":" in bind and not bind.startswith("[") else bind.lower())
        for origin in origins:
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
                raise ValueError(f"invalid CORS origin {origin!r}: write it as scheme://host[:port], e.g. https://app.example.com")
        return cls(frozenset(names), tuple(o.rstrip("/") for o in origins))

    @classmethod
    def from_env(cls) -> "Policy":
        return cls.create(_split(os.environ.get("EVENTFLOW_ALLOWED_HOSTS")),
                          _split(os.environ.get("EVENTFLOW_CORS_ALLOWED_ORIGINS")),
                          os.environ.get("EVENTFLOW_BIND_HOST"))

    def host_allowed(self, host: str) -> bool:
        name = host_name(host)
        if not name:
            return False
        if "*" in self.allowed_hosts or name in self.allowed_hosts:
            return True
        return any(a.startswith("*.") and name.endswith(a[1:]) for a in self.allowed_hosts)

    def origin_allowed(self, origin: str, host: str) -> bool:
        """This server's own origin (as the Host header names it), or a listed one."""
        parts = urlsplit(origin)
        if parts.scheme in ("http", "https") and parts.netloc.lower() == host.strip().lower():
            return True
        return origin.rstrip("/") in self.allowed_origins


def body_cap(method: str, path: str) -> int | None:
    """The largest body a route reads, or None for none (artifact uploads go to disk)."""
    if method == "PUT" and path.startswith(ARTIFACT_PREFIXES):
        return None
    return EVENTS_MAX_BODY if path == EVENTS_PATH else JSON_MAX_BODY


class BodyTooLarge(ApiError):
    """Raised from ``receive`` when a body passes its cap; the app's handler answers 413."""

    status = 413

    def __init__(self, cap: int):
        super().__init__(f"the request body is larger than this route's limit of {cap // MB} MB; send less per request",
                         "REQUEST_LIMIT_EXCEEDED")


def _error(status: int, code: str, message: str) -> tuple[dict[str, object], dict[str, object]]:
    body = json.dumps({"error_code": code, "message": message}).encode()
    start = {"type": "http.response.start", "status": status,
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *SECURITY_HEADERS]}
    return start, {"type": "http.response.body", "body": body}


class BrowserGuard:
    """ASGI middleware applying the ``Policy`` to every request and websocket."""

    def __init__(self, app: ASGIApp, policy: Policy):
        self.policy = policy
        self.app: ASGIApp = app
        if policy.allowed_origins:
            self.app = CORSMiddleware(app, allow_origins=list(policy.allowed_origins), allow_methods=["*"],
                                      allow_headers=["*"], max_age=600)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            status, code, message = refusal
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})  # 403 before accept
                return
            for message_out in _error(status, code, message):
                await send(message_out)
            return
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        cap = body_cap(scope["method"], scope["path"])
        total = 0

        async def counted() -> Message:
            nonlocal total
            message = await receive()
            if cap is not None and message["type"] == "http.request":
                total += len(message.get("body", b""))
                if total > cap:
                    raise BodyTooLarge(cap)
            return message

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                message = {**message, "headers": [*message.get("headers", []), *(h for h in SECURITY_HEADERS if h[0] not in present)]}
            await send(message)

        await self.app(scope, counted, with_headers)

    def _refusal(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str, str] | None:
        host = headers.get("host", "")
        if not self.policy.host_allowed(host):
            return (403, "PERMISSION_DENIED",
                    f"Host {host!r} is not served here (a defence against DNS rebinding); an operator can allow it with "
                    f"eventflow server --allowed-hosts {host_name(host) or 'NAME'}")
        method = scope.get("method", "GET")
        origin = headers.get("origin")
        if origin is not None and (scope["type"] == "websocket" or method in STATE_CHANGING):
            if not self.policy.origin_allowed(origin, host):
                return (403, "PERMISSION_DENIED",
                        f"requests from pages on {origin!r} are not accepted; an operator can allow that origin with "
                        f"eventflow server --cors-allowed-origins {origin}")
        if scope["type"] == "http" and method in NEEDS_CONTENT_TYPE:
            given = headers.get("content-type", "").split(";")[0].strip().lower()
            wanted = (EVENTS_CONTENT_TYPE,) if scope["path"] == EVENTS_PATH else ("application/json",)
            if scope["path"] in UPLOAD_PATHS:
                if given in FORM_TYPES:
                    return (415, "BAD_REQUEST", f"a POST to {scope['path']} sends the file with any Content-Type but a "
                            f"form's (got {given}), e.g. application/octet-stream")
            elif given not in wanted:
                return (415, "BAD_REQUEST",
                        f"a {method} to {scope['path']} must have Content-Type: {wanted[0]} (got {given or 'none'})")
        cap = body_cap(method, scope["path"]) if scope["type"] == "http" else None
        length = headers.get("content-length", "")
        if cap is not None and length.isdigit() and int(length) > cap:
            return (413, "REQUEST_LIMIT_EXCEEDED", f"the request body has {int(length)} bytes; this route takes at most {cap // MB} MB")
        return None
