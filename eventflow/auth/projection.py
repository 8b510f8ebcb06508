"""How the projector applies ``user.*``, ``token.*`` and ``permission.*`` events.

The rules are decided here, in log order, as for every other view: a second
``user.created`` of one name is refused live and on replay alike, and so is a token or a
permission for a user that does not exist.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection

from eventflow import rules
from eventflow.auth.tables import permissions, tokens, users
from eventflow.events import Event
from eventflow.views.db import upsert


def _exists(c: Connection, username: str) -> bool:
    return c.execute(select(users.c.username).where(users.c.username == username)).first() is not None


def user_created(c: Connection, batch: Any, e: Event) -> None:
    p = e.payload
    rules.username_free(p["username"], _exists(c, p["username"]))
    number = (c.execute(select(func.max(users.c.user_id))).scalar() or 0) + 1
    c.execute(insert(users).values(user_id=number, username=p["username"], is_admin=p["is_admin"], creation_time=e.time, created_by=e.actor))


def password_changed(c: Connection, batch: Any, e: Event) -> None:
    rules.user_exists(e.payload["username"], _exists(c, e.payload["username"]))


def admin_set(c: Connection, batch: Any, e: Event) -> None:
    rules.user_exists(e.payload["username"], _exists(c, e.payload["username"]))
    c.execute(update(users).where(users.c.username == e.payload["username"]).values(is_admin=e.payload["is_admin"]))


def user_deleted(c: Connection, batch: Any, e: Event) -> None:
    username = e.payload["username"]
    rules.user_exists(username, _exists(c, username))
    c.execute(delete(users).where(users.c.username == username))
    c.execute(delete(permissions).where(permissions.c.username == username))
    c.execute(update(tokens).where(tokens.c.username == username).values(revoked=True))


def token_issued(c: Connection, batch: Any, e: Event) -> None:
    p = e.payload
    rules.user_exists(p["username"], _exists(c, p["username"]))
    c.execute(
        insert(tokens).values(
            token_id=p["token_id"], username=p["username"], scopes=",".join(p["scopes"]), expires_time=p["expires"],
            description=p["description"], creation_time=e.time, revoked=False,
        )
    )


def token_revoked(c: Connection, batch: Any, e: Event) -> None:
    done = c.execute(update(tokens).where(tokens.c.token_id == e.payload["token_id"]).values(revoked=True))
    if not done.rowcount:
        raise rules.Refused(f"Token {e.payload['token_id']} not found", "RESOURCE_DOES_NOT_EXIST")


def permission_set(c: Connection, batch: Any, e: Event) -> None:
    p = e.payload
    rules.user_exists(p["username"], _exists(c, p["username"]))
    upsert(c, permissions, [dict(p)], ["resource_type", "resource_id", "username"])


def permission_deleted(c: Connection, batch: Any, e: Event) -> None:
    p = e.payload
    done = c.execute(
        delete(permissions).where(
            permissions.c.resource_type == p["resource_type"], permissions.c.resource_id == p["resource_id"], permissions.c.username == p["username"]
        )
    )
    if not done.rowcount:
        raise rules.Refused(
            f"{p['resource_type']} permission with {p['resource_type'] == 'experiment' and 'experiment_id' or 'name'}={p['resource_id']} "
            f"and username={p['username']} not found",
            "RESOURCE_DOES_NOT_EXIST",
        )


APPLY = {
    "user.created": user_created,
    "user.password_changed": password_changed,
    "user.admin_set": admin_set,
    "user.deleted": user_deleted,
    "token.issued": token_issued,
    "token.revoked": token_revoked,
    "permission.set": permission_set,
    "permission.deleted": permission_deleted,
}
