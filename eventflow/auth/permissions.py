"""MLflow's permission model, and what a principal may do with it.

A user has, on each experiment and each registered model, one of READ, EDIT, MANAGE or
NO_PERMISSIONS: the one granted (``auth_permissions``), else the server's default
(``EVENTFLOW_AUTH_DEFAULT_PERMISSION``, READ unless set, as in MLflow). Admins have
MANAGE on everything. A token acts for its user within its scopes: ``read`` reads,
``write`` does what the user may except promoting, ``promote`` reads and promotes
(moves an alias or a stage: a deployment), ``admin`` is everything the user is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import not_, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from eventflow import environment_variables as env
from eventflow.auth.tables import permissions
from eventflow.validation import InvalidInput

LEVELS = {"NO_PERMISSIONS": 0, "READ": 1, "EDIT": 2, "MANAGE": 3}
READ, EDIT, MANAGE = "READ", "EDIT", "MANAGE"
SCOPES = ("read", "write", "promote", "admin")
RESOURCE_TYPES = ("experiment", "registered_model")
# The highest level each scope lets a token use.
SCOPE_CAPS = {"read": 1, "promote": 1, "write": 3, "admin": 3}


def check_permission(value: object) -> str:
    if not isinstance(value, str) or value not in LEVELS:
        raise InvalidInput(f"Invalid permission {value!r}: it must be one of {', '.join(LEVELS)}")
    return value


def check_resource_type(value: object) -> str:
    if value not in RESOURCE_TYPES:
        raise InvalidInput(f"Invalid resource_type {value!r}: it must be one of {', '.join(RESOURCE_TYPES)}")
    return str(value)


def check_scopes(values: object) -> list[str]:
    items = values.split(",") if isinstance(values, str) else values
    if not isinstance(items, (list, tuple)) or not items:
        raise InvalidInput(f"Invalid scopes {values!r}: give one or more of {', '.join(SCOPES)}")
    scopes = sorted({str(item).strip() for item in items})
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise InvalidInput(f"Invalid scope(s) {', '.join(unknown)}: a token's scopes are among {', '.join(SCOPES)}")
    return scopes


def default_permission() -> str:
    return check_permission(env.AUTH_DEFAULT_PERMISSION.get())


@dataclass(frozen=True)
class Principal:
    """Who a request authenticated as. ``scopes`` is None for a password login (no cap)."""

    username: str
    is_admin: bool
    scopes: frozenset[str] | None = None
    token_id: str | None = None

    @property
    def admin(self) -> bool:
        return self.is_admin and (self.scopes is None or "admin" in self.scopes)

    @property
    def cap(self) -> int:
        if self.scopes is None:
            return LEVELS[MANAGE]
        return max((SCOPE_CAPS[s] for s in self.scopes), default=0)

    @property
    def may_promote(self) -> bool:
        return self.scopes is None or bool(self.scopes & {"promote", "admin"})


def granted(c: Connection, resource_type: str, resource_id: str, username: str) -> str | None:
    """The permission granted to a user on a resource, or None (the default applies)."""
    return c.execute(
        select(permissions.c.permission).where(
            permissions.c.resource_type == resource_type,
            permissions.c.resource_id == str(resource_id),
            permissions.c.username == username,
        )
    ).scalar()


def level(c: Connection, principal: Principal, resource_type: str, resource_id: str) -> int:
    """What the principal may do with a resource, as a number of LEVELS (capped by scopes)."""
    if principal.is_admin:
        own = LEVELS[MANAGE]
    else:
        own = LEVELS[granted(c, resource_type, resource_id, principal.username) or default_permission()]
    return min(own, principal.cap)


def readable(c: Connection, principal: Principal, resource_type: str, ids: list[str]) -> set[str]:
    """The ids among ``ids`` the principal may READ (one query for all of them)."""
    ids = [str(i) for i in ids]
    if not ids or principal.cap < 1:
        return set()
    if principal.is_admin:
        return set(ids)
    rows = c.execute(
        select(permissions.c.resource_id, permissions.c.permission).where(
            permissions.c.resource_type == resource_type,
            permissions.c.username == principal.username,
            permissions.c.resource_id.in_(ids),
        )
    ).all()
    grants = dict(rows)
    default = default_permission()
    return {i for i in ids if LEVELS[grants.get(i, default)] >= 1}


def visibility(principal: Principal, resource_type: str, column: Any) -> ColumnElement[bool] | None:
    """A SQL condition on ``column`` (experiment ids or model names) that keeps what the
    principal may READ, so a search neither returns nor counts the rest (and pages
    stay full); None when it may read everything."""
    if principal.is_admin:
        return None
    mine = select(permissions.c.resource_id).where(permissions.c.resource_type == resource_type, permissions.c.username == principal.username)
    if LEVELS[default_permission()] >= 1:
        return not_(column.in_(mine.where(permissions.c.permission == "NO_PERMISSIONS")))
    return column.in_(mine.where(permissions.c.permission != "NO_PERMISSIONS"))
