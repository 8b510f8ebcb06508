"""The principal of the request being served, for code that runs inside it."""

from __future__ import annotations

from contextvars import ContextVar

from typing import Any

from sqlalchemy.sql.elements import ColumnElement

from eventflow.auth.permissions import Principal, visibility

# Set by the middleware for each request when auth is on; None when it is off.
PRINCIPAL: ContextVar[Principal | None] = ContextVar("eventflow_principal", default=None)


def current() -> Principal | None:
    return PRINCIPAL.get()


def visible(resource_type: str, column: Any) -> ColumnElement[bool] | None:
    """What a search may return to the request's principal (None: all; auth off: all)."""
    principal = current()
    return None if principal is None else visibility(principal, resource_type, column)
