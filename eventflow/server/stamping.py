"""Identity is the server's word: what the server stamps on every event it appends.

``Runtime.write`` (the one place the server appends) passes every event through
``stamp``, which sets

- ``actor``: the authenticated principal's user name when the request authenticated;
  otherwise the actor the event was built with (the request's unchecked HTTP Basic name
  or the server's default when authentication is off, the client's claim on
  ``POST /events``);
- ``time``: the server's clock (the client's own time, on an event it posted, is kept
  as ``source.client_time``);
- ``source``: ``stamped_by="server"``, ``authenticated`` (whether the actor's
  credentials were checked), and ``client_address``, the peer the server saw.

The request's side reaches ``Runtime.write`` through a context variable set by the
``RequestOrigin`` middleware, which must sit inside the authentication middleware so
that it sees ``scope["eventflow.principal"]``. ``POST /events`` passes its origin
explicitly and first refuses, with ``check_actors``, an event that names someone other
than the authenticated caller.

Events an SDK writes to the log itself (``kafka://`` or the embedded log) never pass
here and say ``stamped_by="client"`` (the schema's default): their whole envelope is the
producer's claim. The marker is as trustworthy as the log's write access: whoever may
produce to the topics directly may write anything, so only the server (and eventflow's
own services) should hold that access when the audit must be believed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from contextvars import ContextVar
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from eventflow.events import Event, now_ms
from eventflow.server.errors import ApiError

PRINCIPAL_KEY = "eventflow.principal"  # set in the ASGI scope by the authentication middleware
SERVER, CLIENT = "server", "client"  # the values of source.stamped_by


@dataclasses.dataclass(frozen=True)
class Origin:
    """Who a request came from, as the server knows it."""

    client_address: str | None = None
    principal: str | None = None  # the authenticated user name; None when nobody authenticated

    @classmethod
    def of(cls, scope: Scope) -> "Origin":
        client = scope.get("client")
        principal = scope.get(PRINCIPAL_KEY)
        return cls(client[0] if client else None, getattr(principal, "username", None) or None)


# The origin of the request being served; None outside requests (the server acting alone).
ORIGIN: ContextVar[Origin | None] = ContextVar("eventflow_origin", default=None)


class RequestOrigin:
    """Pure ASGI middleware: makes each request's ``Origin`` known to the writes it makes."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        token = ORIGIN.set(Origin.of(scope))
        try:
            await self.app(scope, receive, send)
        finally:
            ORIGIN.reset(token)


def check_actors(events: Sequence[Event], origin: Origin | None) -> None:
    """Refuse (400) events a client posted that name someone other than the authenticated
    caller: the server records who acted, it does not take a client's word for it."""
    if origin is None or origin.principal is None:
        return  # authentication off: the actor stays the client's claim (authenticated=false)
    for event in events:
        if event.actor != origin.principal:
            raise ApiError(
                f"event {event.event_id} ({event.type}) names actor {event.actor!r}, but this request "
                f"authenticated as {origin.principal!r}: an event may only name its caller "
                f"(send actor={origin.principal!r}; nothing of this batch was appended)",
                "INVALID_PARAMETER_VALUE",
            )


def stamp(events: Sequence[Event], origin: Origin | None, *, from_client: bool = False) -> list[Event]:
    """The events as the server appends them: its actor, its time, its view of the client.

    ``from_client`` marks events a client built and posted: their own time is kept as
    ``source.client_time``. Anything the client wrote in the stamped fields is replaced.
    """
    now = now_ms()
    address = origin.client_address if origin else None
    principal = origin.principal if origin else None
    out = []
    for event in events:
        source: dict[str, Any] = {
            **event.source,
            "stamped_by": SERVER,
            "authenticated": principal is not None,
            "client_address": address,
            "client_time": event.time if from_client else None,
        }
        out.append(dataclasses.replace(event, time=now, actor=principal or event.actor, source=source))
    return out
