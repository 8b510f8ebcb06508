"""Users, tokens and permissions as a server changes them: an event on the log for each
change, and the secrets' hashes in ``auth_credentials``, never on the log.

A hash is written only after its event took effect (``Runtime.write`` answers with the
projector's decision), so a refused ``user.created`` for a taken name can never replace
the password of the user who holds it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.engine import Connection, Engine

from eventflow.auth import commands
from eventflow.auth.passwords import hash_secret
from eventflow.auth.tables import credentials, permissions, tokens, users
from eventflow.events import now_ms
from eventflow.rules import Refused
from eventflow.views.db import upsert

TOKEN_PREFIX = "ef_"
TOKEN_ID_CHARS = 16


def get_user(c: Connection, username: str) -> dict[str, Any] | None:
    row = c.execute(select(users).where(users.c.username == username)).first()
    return dict(row._mapping) if row is not None else None


def list_users(c: Connection) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in c.execute(select(users).order_by(users.c.user_id))]


def user_permissions(c: Connection, username: str, resource_type: str) -> list[dict[str, Any]]:
    rows = c.execute(
        select(permissions).where(permissions.c.username == username, permissions.c.resource_type == resource_type).order_by(permissions.c.resource_id)
    )
    return [dict(r._mapping) for r in rows]


def list_tokens(c: Connection, username: str | None = None) -> list[dict[str, Any]]:
    query = select(tokens).order_by(tokens.c.creation_time)
    if username is not None:
        query = query.where(tokens.c.username == username)
    return [dict(r._mapping) | {"scopes": r.scopes.split(",")} for r in c.execute(query)]


def get_token(c: Connection, token_id: str) -> dict[str, Any] | None:
    row = c.execute(select(tokens).where(tokens.c.token_id == token_id)).first()
    return dict(row._mapping) | {"scopes": row.scopes.split(",")} if row is not None else None


def stored_hash(c: Connection, kind: str, name: str) -> str | None:
    return c.execute(select(credentials.c.hash).where(credentials.c.kind == kind, credentials.c.name == name)).scalar()


def _keep_hash(engine: Engine, kind: str, name: str, secret: str) -> None:
    with engine.begin() as c:
        upsert(c, credentials, [{"kind": kind, "name": name, "hash": hash_secret(secret), "updated_time": now_ms()}], ["kind", "name"])


def _forget_hash(engine: Engine, kind: str, name: str) -> None:
    with engine.begin() as c:
        c.execute(delete(credentials).where(credentials.c.kind == kind, credentials.c.name == name))


def split_token(token: str) -> tuple[str, str] | None:
    """(token id, secret) of a token as issued, or None for anything else."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    body = token[len(TOKEN_PREFIX):]
    token_id, sep, secret = body[:TOKEN_ID_CHARS], body[TOKEN_ID_CHARS:TOKEN_ID_CHARS + 1], body[TOKEN_ID_CHARS + 1:]
    return (token_id, secret) if sep == "_" and secret else None


@dataclass
class Accounts:
    """The changes, over a server's runtime (its log and views)."""

    runtime: Any  # eventflow.server.runtime.Runtime (not imported: the runtime imports nothing of auth)

    def _user_must_exist(self, username: str) -> dict[str, Any]:
        user = self.runtime.read(get_user, username)
        if user is None:
            raise Refused(f"User with username={username} not found", "RESOURCE_DOES_NOT_EXIST")
        return user

    def create_user(self, username: str, password: str, *, is_admin: bool = False) -> dict[str, Any]:
        event = commands.create_user(username, is_admin)
        commands.check_password(password)
        if self.runtime.read(get_user, username) is not None:
            raise Refused(f"User '{username}' already exists.", "RESOURCE_ALREADY_EXISTS")
        self.runtime.write([event])
        _keep_hash(self.runtime.engine, "password", username, password)
        return self._user_must_exist(username)

    def update_password(self, username: str, password: str) -> None:
        commands.check_password(password)
        event = commands.password_changed(username)
        self._user_must_exist(username)
        _keep_hash(self.runtime.engine, "password", username, password)
        self.runtime.write([event])

    def set_admin(self, username: str, is_admin: bool) -> None:
        event = commands.set_admin(username, is_admin)
        self._user_must_exist(username)
        self.runtime.write([event])

    def delete_user(self, username: str) -> None:
        event = commands.delete_user(username)
        self._user_must_exist(username)
        owned = [t["token_id"] for t in self.runtime.read(list_tokens, username)]
        self.runtime.write([event])
        _forget_hash(self.runtime.engine, "password", username)
        for token_id in owned:
            _forget_hash(self.runtime.engine, "token", token_id)

    def issue_token(self, username: str, scopes: Any, *, expires_time: int | None = None, description: str = "") -> tuple[str, dict[str, Any]]:
        """A new token (shown once: only its hash is kept) and its record."""
        token_id = secrets.token_hex(TOKEN_ID_CHARS // 2)
        secret = secrets.token_urlsafe(32)
        event = commands.issue_token(token_id, username, scopes, expires_time, description)
        self._user_must_exist(username)
        # The hash first: a token id is new, so nothing is replaced if the event is refused.
        _keep_hash(self.runtime.engine, "token", token_id, secret)
        try:
            self.runtime.write([event])
        except Exception:
            _forget_hash(self.runtime.engine, "token", token_id)
            raise
        return f"{TOKEN_PREFIX}{token_id}_{secret}", self.runtime.read(get_token, token_id)

    def revoke_token(self, token_id: str) -> None:
        event = commands.revoke_token(token_id)
        if self.runtime.read(get_token, token_id) is None:
            raise Refused(f"Token {token_id} not found", "RESOURCE_DOES_NOT_EXIST")
        self.runtime.write([event])
        _forget_hash(self.runtime.engine, "token", token_id)

    def set_permission(self, resource_type: str, resource_id: Any, username: str, permission: str) -> None:
        event = commands.set_permission(resource_type, resource_id, username, permission)
        self._user_must_exist(username)
        self.runtime.write([event])

    def delete_permission(self, resource_type: str, resource_id: Any, username: str) -> None:
        self.runtime.write([commands.delete_permission(resource_type, resource_id, username)])
