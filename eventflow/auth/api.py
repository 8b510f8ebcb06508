"""The access routes: MLflow's auth API (users, experiment and registered-model
permissions, MLflow 3's per-user grants) and eventflow's tokens.

MLflow's own auth client (``mlflow.server.get_app_client("basic-auth", tracking_uri=…)``)
works against these. Managing users is for admins; a user reads and changes their own
account (a password change needs the current password); managing a resource's
permissions needs MANAGE on it; anyone may issue tokens for themselves, within their
own rights (an admin for anyone).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from eventflow.auth import accounts, context
from eventflow.auth.accounts import Accounts
from eventflow.auth.authenticator import Authenticator
from eventflow.auth.passwords import verify_secret
from eventflow.auth.permissions import EDIT, LEVELS, MANAGE, Principal, check_permission, check_resource_type, check_scopes, default_permission, granted, level
from eventflow.auth.policy import EXPERIMENT, MODEL, denied
from eventflow.server.errors import ApiError, not_found
from eventflow.server.requests import as_int, fields, required
from eventflow.views import queries

Handler = Callable[["Access", Principal, dict[str, Any]], dict[str, Any]]


class Access:
    """The state the handlers share: the runtime, its accounts and the authenticator."""

    def __init__(self, runtime: Any, authenticator: Authenticator | None):
        self.runtime = runtime
        self.accounts = Accounts(runtime)
        self.authenticator = authenticator

    def user_json(self, user: dict[str, Any]) -> dict[str, Any]:
        def perms(kind: str, field: str) -> list[dict[str, Any]]:
            rows = self.runtime.read(accounts.user_permissions, user["username"], kind)
            return [{field: r["resource_id"], "user_id": user["user_id"], "permission": r["permission"]} for r in rows]

        return {
            "id": user["user_id"], "username": user["username"], "is_admin": bool(user["is_admin"]),
            "experiment_permissions": perms(EXPERIMENT, "experiment_id"),
            "registered_model_permissions": perms(MODEL, "name"),
        }

    def user(self, username: str) -> dict[str, Any]:
        found = self.runtime.read(accounts.get_user, username)
        if found is None:
            raise not_found(f"User with username={username} not found")
        return found

    def forget(self, username: str) -> None:
        if self.authenticator is not None:
            self.authenticator.forget(username)


def _admin(principal: Principal) -> None:
    if not principal.admin:
        raise denied("Permission denied: only administrators manage users")


def _self_or_admin(principal: Principal, username: str) -> None:
    if principal.username != username and not principal.admin:
        raise denied(f"Permission denied: only {username} or an administrator may do this")


# -- users ----------------------------------------------------------------------------------


def create_user(access: Access, principal: Principal, data: dict[str, Any]) -> dict[str, Any]:
    _admin(principal)
    user = access.accounts.create_user(required(data, "username"), required(data, "password"))
    return {"user": access.user_json(user)}


def get_user(access: Access, principal: Principal, data: dict[str, Any]) -> dict[str, Any]:
    username = required(data, "username")
    _self_or_admin(principal, username)
    return {"user": access.user_json(access.user(username))}


def current_user(access: Access, principal: Principal, data: dict[str, Any]) -> dict[str, Any]:
    return {"user": access.user_json(access.user(principal.username))}


def list_users(access: Access, principal: Principal, data: dict[str, Any]) -> dict[str, Any]:
    _admin(principal)
    return {"users": [access.user_json(u) for u in access.runtime.read(accounts.list_users)]}


def update_password(access: Access, principal: Principal, data: dict[str, Any]) -> dict[str, Any]:
    """An admin sets anyone else's password; changing your own (admins too, as in MLflow)
    needs the current one, so a borrowed session cannot take the account over."""
    username, password = required(data, "username"), required(data, "password")
    _self_or_admin(principal, username)
    if principal.username == username:
        current = data.get("current_password")
        if not isinstance(current, str) or not current:
            raise ApiError("Current password is required when changing your own password.")
        stored = access.runtime.read(accounts.stored_hash, "password", username)
        if stored is None or not verify_secret(current, stored):
            raise ApiError("Current password does not match.")
        if password == current:
            raise ApiError("New password must differ from the current password.")
    access.accounts.update_password(username, password)
    access.forget(username)
    return {}


def update_admin(access: Access, principal: Principal, data: dict[str, Any]) -> dict[str, Any]:
    _admin(principal)
    username, is_admin = required(data, "username"), data.get("is_admin")
    if isinstance(is_admin, str) and is_admin.lower() in ("true", "false"):
        is_admin = is_admin.lower() == "true"
    access.accounts.set_admin(username, is_admin)
    access.forget(username)
    return {}


def delete_user(access: Access, principal: Principal, data: dict[str, Any]) -> dict[str, Any]:
    _admin(principal)
    username = required(data, "username")
    if username == principal.username:
        raise ApiError("Users cannot delete their own account. Ask another admin to delete this user instead.", "BAD_REQUEST")
    access.accounts.delete_user(username)
    access.forget(username)
    return {}


# -- permissions ----------------------------------------------------------------------------

RESOURCE_FIELD = {EXPERIMENT: "experiment_id", MODEL: "name"}
JSON_KEY = {EXPERIMENT: "experiment_permission", MODEL: "registered_model_permission"}


def _must_manage(access: Access, principal: Principal, resource_type: str, resource_id: str) -> None:
    if resource_type == EXPERIMENT:
        if access.runtime.read(queries.get_experiment, resource_id) is None:
            raise not_found(f"No Experiment with id={resource_id} exists")
    elif access.runtime.read(_model_exists, resource_id) is False:
        raise not_found(f"Registered Model with name={resource_id} not found")
    if access.runtime.read(level, principal, resource_type, resource_id) < LEVELS[MANAGE]:
        raise denied(f"Permission denied: managing the permissions of {resource_type} {resource_id!r} needs MANAGE on it")


def _model_exists(c: Any, name: str) -> bool:
    from eventflow.registry import queries as rq

    return rq.get_registered_model(c, name) is not None


def _permission_json(access: Access, resource_type: str, resource_id: str, username: str) -> dict[str, Any]:
    permission = access.runtime.read(granted, resource_type, resource_id, username)
    if permission is None:
        raise not_found(f"{JSON_KEY[resource_type]} with {RESOURCE_FIELD[resource_type]}={resource_id} and username={username} not found")
    user = access.user(username)
    return {JSON_KEY[resource_type]: {RESOURCE_FIELD[resource_type]: resource_id, "user_id": user["user_id"], "permission": permission}}


def permission_handlers(resource_type: str) -> dict[str, Handler]:
    field = RESOURCE_FIELD[resource_type]

    def target(data: dict[str, Any]) -> tuple[str, str]:
        return str(required(data, field)), required(data, "username")

    def create(access: Access, principal: Principal, data: dict[str, Any]) -> dict[str, Any]:
        resource_id, username = target(data)
        _must_manage(access, principal, resource_type, resource_id)
        if access.runtime.read(granted, resource_type, resource_id, username) is not None:
            raise ApiError(f"{JSON_KEY[resource_type]} for {field}={resource_id} and username={username} already exists", "RESOURCE_ALREADY_EXISTS")
        access.accounts.set_permission(resource_type, resource_id, username, required(data, "permission"))
        return _permission_json(access, resource_type, resource_id, username)

    def get(access: Access, principal: Principal, data: dict[str, Any]) -> dict[str, Any]:
        resource_id, username = target(data)
        if username != principal.username:
            _must_manage(access, principal, resource_type, resource_id)
        return _permission_json(access, resource_type, resource_id, username)

    def update(access: Access, principal: Principal, data: dict[str, Any]) -> dict[str, Any]:
        resource_id, username = target(data)
        _must_manage(access, principal, resource_type, resource_id)
        _permission_json(access, resource_type, resource_id, username)  # 404 when there is none to update
        access.accounts.set_permission(resource_type, resource_id, username, required(data, "permission"))
        return {}

    def remove(access: Access, principal: Principal, data: dict[str, Any]) -> dict[str, Any]:
        resource_id, username = target(data)
        _must_manage(access, principal, resource_type, resource_id)
        _permission_json(access, resource_type, resource_id, username)
        access.accounts.delete_permission(resource_type, resource_id, username)
        return {}

    return {"create": create, "get": get, "update": update, "delete": remove}


def _grant_target(data: dict[str, Any]) -> tuple[str, str, str]:
    return check_resource_type(required(data, "resource_type")), str(required(data, "resource_id")), required(data, "username")


def grant(access: Access, principal: Principal, data: dict[str, Any]) -> dict[str, Any]:
    """MLflow 3's grant: a new grant only (an existing one is changed with update, as in MLflow)."""
    resource_type, resource_id, username = _grant_target(data)
    permission = check_permission(required(data, "permission"))
    _must_manage(access, principal, resource_type, resource_id)
    access.user(username)
    if access.runtime.read(granted, resource_type, resource_id, username) is not None:
        raise ApiError(f"Permission for user={username} on resource_type={resource_type}, resource_id={resource_id} already exists.",
                       "RESOURCE_ALREADY_EXISTS")
    access.accounts.set_permission(resource_type, resource_id, username, permission)
    return {}


def revoke(access: Access, principal: Principal, data: dict[str, Any]) -> dict[str, Any]:
    resource_type, resource_id, username = _grant_target(data)
    _must_manage(access, principal, resource_type, resource_id)
    access.user(username)
    if access.runtime.read(granted, resource_type, resource_id, username) is None:
        raise not_found(f"Permission for user={username} on resource_type={resource_type}, resource_id={resource_id} not found.")
    access.accounts.delete_permission(resource_type, resource_id, username)
    return {}


def get_grant(access: Access, principal: Principal, data: dict[str, Any]) -> dict[str, Any]:
    """A user's effective permission on a resource. ``allowed`` is MLflow's ``can_use``:
    true from EDIT up (MLflow's USE tier, which eventflow folds into EDIT), not for READ."""
    resource_type, resource_id, username = _grant_target(data)
    if username != principal.username and not principal.admin:
        _must_manage(access, principal, resource_type, resource_id)
    user = access.user(username)
    permission = MANAGE if user["is_admin"] else access.runtime.read(granted, resource_type, resource_id, username) or default_permission()
    return {"allowed": LEVELS[permission] >= LEVELS[EDIT], "permission": permission}


# -- tokens -----------------------------------------------------------------------------------

DAY_MS = 86_400_000


def create_token(access: Access, principal: Principal, data: dict[str, Any]) -> dict[str, Any]:
    username = data.get("username") or principal.username
    _self_or_admin(principal, username)
    scopes = data.get("scopes") or ["read", "write"]
    if principal.scopes is not None and not set(check_scopes(scopes)) <= principal.scopes:
        raise denied(f"Permission denied: a token may only hold scopes its creator's token holds ({', '.join(sorted(principal.scopes))})")
    expires_time = as_int(data, "expires_time", None, 1)
    days = as_int(data, "expires_in_days", None, 1, 36_500)
    if expires_time is not None and days is not None:
        raise ApiError("Give at most one of 'expires_time' and 'expires_in_days'.")
    if days is not None:
        expires_time = int(time.time() * 1000) + days * DAY_MS
    if expires_time is not None and expires_time <= int(time.time() * 1000):
        raise ApiError(f"Invalid expires_time {expires_time}: it is in the past")
    token, record = access.accounts.issue_token(username, scopes, expires_time=expires_time, description=data.get("description") or "")
    return {"token": token, "token_info": _token_json(record)}


def _token_json(record: dict[str, Any]) -> dict[str, Any]:
    keys = ("token_id", "username", "scopes", "expires_time", "description", "creation_time", "revoked")
    return {key: record[key] for key in keys}


def list_tokens(access: Access, principal: Principal, data: dict[str, Any]) -> dict[str, Any]:
    username = data.get("username") or (None if principal.admin else principal.username)
    if username is not None:
        _self_or_admin(principal, username)
    return {"tokens": [_token_json(t) for t in access.runtime.read(accounts.list_tokens, username)]}


def revoke_token(access: Access, principal: Principal, data: dict[str, Any]) -> dict[str, Any]:
    token_id = required(data, "token_id")
    record = access.runtime.read(accounts.get_token, token_id)
    if record is None:
        raise not_found(f"Token {token_id} not found")
    _self_or_admin(principal, record["username"])
    access.accounts.revoke_token(token_id)
    access.forget(record["username"])
    return {}


def _endpoint(access: Access, handler: Handler) -> Callable[[Request], Awaitable[JSONResponse]]:
    async def endpoint(request: Request) -> JSONResponse:
        principal = context.current()
        if principal is None:
            raise ApiError("Authentication is off on this server: users, permissions and tokens need `eventflow server --auth`", "BAD_REQUEST")
        data = await fields(request)
        return JSONResponse(await run_in_threadpool(handler, access, principal, data))

    return endpoint


def routes(runtime: Any, authenticator: Authenticator | None) -> list[Route]:
    access = Access(runtime, authenticator)
    mlflow: dict[str, tuple[Handler, str]] = {
        "users/create": (create_user, "POST"),
        "users/get": (get_user, "GET"),
        "users/current": (current_user, "GET"),
        "users/list": (list_users, "GET"),
        "users/update-password": (update_password, "PATCH"),
        "users/update-admin": (update_admin, "PATCH"),
        "users/delete": (delete_user, "DELETE"),
    }
    verbs = {"create": "POST", "get": "GET", "update": "PATCH", "delete": "DELETE"}
    for resource_type, path in ((EXPERIMENT, "experiments"), (MODEL, "registered-models")):
        for verb, handler in permission_handlers(resource_type).items():
            mlflow[f"{path}/permissions/{verb}"] = (handler, verbs[verb])
    out = []
    for prefix in ("/api/2.0/mlflow/", "/ajax-api/2.0/mlflow/"):
        out += [Route(prefix + path, _endpoint(access, handler), methods=[method]) for path, (handler, method) in mlflow.items()]
    three = {"users/permissions/grant": (grant, "POST"), "users/permissions/revoke": (revoke, "POST"), "users/permissions/get": (get_grant, "GET"),
             "users/current/permissions": (current_user, "GET")}
    for prefix in ("/api/3.0/mlflow/", "/ajax-api/3.0/mlflow/"):
        out += [Route(prefix + path, _endpoint(access, handler), methods=[method]) for path, (handler, method) in three.items()]
    tokens = {"tokens/create": (create_token, "POST"), "tokens/list": (list_tokens, "GET"), "tokens/revoke": (revoke_token, "POST"),
              "users/list": (list_users, "GET")}
    out += [Route("/api/2.0/eventflow/" + path, _endpoint(access, handler), methods=[method]) for path, (handler, method) in tokens.items()]
    return out


def ensure_admin(runtime: Any) -> None:
    """The first admin, from EVENTFLOW_ADMIN_USERNAME / EVENTFLOW_ADMIN_PASSWORD (no default
    password exists); a server with auth on and no user at all refuses to start."""
    from eventflow import environment_variables as env
    from eventflow.rules import Refused

    username, password = env.ADMIN_USERNAME.get(), env.ADMIN_PASSWORD.get()
    if username and password:
        if runtime.read(accounts.get_user, username) is None:
            from eventflow.events import ACTOR

            reset = ACTOR.set("eventflow-server (EVENTFLOW_ADMIN_USERNAME)")  # the audit names where the first admin came from
            try:
                Accounts(runtime).create_user(username, password, is_admin=True)
            except Refused:
                pass  # another worker made it first
            finally:
                ACTOR.reset(reset)
        return
    if not runtime.read(accounts.list_users):
        raise SystemExit(
            "eventflow server --auth: there is no user yet. Set EVENTFLOW_ADMIN_USERNAME and EVENTFLOW_ADMIN_PASSWORD "
            "to create the first administrator (there is no default password)."
        )
