"""Access commands: validated intent about users, tokens and permissions, as events.

Secrets never enter an event: a password or a token secret goes to
:mod:`eventflow.auth.accounts`, which keeps only its hash, off the log.
"""

from __future__ import annotations

from typing import Any

from eventflow.auth.permissions import check_permission, check_resource_type, check_scopes
from eventflow.events import Event
from eventflow.validation import InvalidInput

MAX_USERNAME = 256


def check_username(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput("Missing value for required parameter 'username'.")
    if len(value) > MAX_USERNAME or ":" in value or any(ord(ch) < 32 for ch in value):
        raise InvalidInput(f"Invalid username {value[:300]!r}: at most {MAX_USERNAME} characters, no ':' and no control characters")
    return value


def check_password(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInput("Missing value for required parameter 'password': a password must not be empty.")
    if len(value) > 1024:
        raise InvalidInput("Invalid password: at most 1024 characters")
    return value


def create_user(username: str, is_admin: bool = False) -> Event:
    return Event("user.created", {"username": check_username(username), "is_admin": bool(is_admin)})


def password_changed(username: str) -> Event:
    return Event("user.password_changed", {"username": check_username(username)})


def set_admin(username: str, is_admin: bool) -> Event:
    if not isinstance(is_admin, bool):
        raise InvalidInput(f"Invalid value {is_admin!r} for parameter 'is_admin': it must be true or false")
    return Event("user.admin_set", {"username": check_username(username), "is_admin": is_admin})


def delete_user(username: str) -> Event:
    return Event("user.deleted", {"username": check_username(username)})


def issue_token(token_id: str, username: str, scopes: Any, expires_time: int | None, description: str = "") -> Event:
    if expires_time is not None and (not isinstance(expires_time, int) or expires_time <= 0):
        raise InvalidInput(f"Invalid expires_time {expires_time!r}: milliseconds since the epoch, in the future")
    if not isinstance(description, str) or len(description) > 1000:
        raise InvalidInput("Invalid description: a string of at most 1000 characters")
    return Event(
        "token.issued",
        {"token_id": token_id, "username": check_username(username), "scopes": check_scopes(scopes),
         "expires": expires_time, "description": description},
    )


def revoke_token(token_id: str) -> Event:
    if not isinstance(token_id, str) or not token_id:
        raise InvalidInput("Missing value for required parameter 'token_id'.")
    return Event("token.revoked", {"token_id": token_id})


def set_permission(resource_type: str, resource_id: Any, username: str, permission: str) -> Event:
    if resource_id in (None, ""):
        raise InvalidInput("Missing value for the resource: give experiment_id or name")
    return Event(
        "permission.set",
        {"resource_type": check_resource_type(resource_type), "resource_id": str(resource_id),
         "username": check_username(username), "permission": check_permission(permission)},
    )


def delete_permission(resource_type: str, resource_id: Any, username: str) -> Event:
    if resource_id in (None, ""):
        raise InvalidInput("Missing value for the resource: give experiment_id or name")
    return Event(
        "permission.deleted",
        {"resource_type": check_resource_type(resource_type), "resource_id": str(resource_id), "username": check_username(username)},
    )
