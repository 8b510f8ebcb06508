"""``eventflow users|tokens|permissions ...``: manage who may do what on a running server.

The commands speak to the server's REST API (the same routes MLflow's auth client uses)
with the caller's credentials: ``EVENTFLOW_TRACKING_USERNAME``/``_PASSWORD`` (or MLflow's
``MLFLOW_TRACKING_USERNAME``/``_PASSWORD``), or a token in ``EVENTFLOW_TRACKING_TOKEN``
(``MLFLOW_TRACKING_TOKEN``).
"""

from __future__ import annotations

import datetime
from typing import Any

import click

from eventflow.cli_common import server_url, tracking_uri_option

_tracking_uri = tracking_uri_option("The eventflow server whose users these are.")


def _credentials() -> dict[str, Any]:
    from eventflow.sdk.credentials import Credentials  # httpx: only when a command calls the server

    credentials = Credentials.from_env()
    if not credentials.present:
        raise click.UsageError(
            "no credentials: set EVENTFLOW_TRACKING_USERNAME and EVENTFLOW_TRACKING_PASSWORD (an admin's, to manage users) "
            "or EVENTFLOW_TRACKING_TOKEN"
        )
    return {"auth": credentials.auth()}


def call(tracking_uri: str | None, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    """One request; an error answer becomes a message that says what the server said."""
    import httpx  # here, not at the top: every ``eventflow`` command loads this module

    tracking_uri = server_url(tracking_uri, "users, tokens and permissions", "the server checks every request against them")

    from eventflow.sdk.unreachable import reaching

    with reaching(tracking_uri):
        answer = httpx.request(method, tracking_uri.rstrip("/") + path, timeout=60, **_credentials(), **kwargs)
    try:
        body = answer.json() if answer.content else {}
    except ValueError:
        body = {"message": answer.text[:300]}
    if answer.status_code >= 400:
        raise click.ClickException(f"{body.get('message', answer.reason_phrase)} [{body.get('error_code', answer.status_code)}]")
    return body


def _when(ms: int | None) -> str:
    return "never" if ms is None else datetime.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M")


def _table(header: list[str], rows: list[list[Any]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    for row in [header, *rows]:
        click.echo("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())


# -- users ------------------------------------------------------------------------------------


@click.group("users")
def users() -> None:
    """Accounts on a server started with ``--auth`` (admins only, but for your own).

    \b
    Examples:
      export EVENTFLOW_TRACKING_USERNAME=admin EVENTFLOW_TRACKING_PASSWORD=...
      eventflow users create alice            # asks for her password
      eventflow users list
      eventflow users set-admin alice --yes
    """


@users.command("create")
@click.argument("username")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              help="The new user's password (asked for when not given; avoid passing it on the command line).")
@click.option("--admin", is_flag=True, help="Make the user an administrator.")
@_tracking_uri
def users_create(username: str, password: str, admin: bool, tracking_uri: str) -> None:
    """Create USERNAME (it gets READ on everything by default, MANAGE on what it creates)."""
    user = call(tracking_uri, "POST", "/api/2.0/mlflow/users/create", json={"username": username, "password": password})["user"]
    if admin:
        call(tracking_uri, "PATCH", "/api/2.0/mlflow/users/update-admin", json={"username": username, "is_admin": True})
    click.echo(f"created user {user['username']} (id {user['id']}{', admin' if admin else ''})")


@users.command("list")
@_tracking_uri
def users_list(tracking_uri: str) -> None:
    """Every user, with how many permissions each holds."""
    found = call(tracking_uri, "GET", "/api/2.0/eventflow/users/list")["users"]
    _table(["ID", "USERNAME", "ADMIN", "EXPERIMENTS", "MODELS"],
           [[u["id"], u["username"], "yes" if u["is_admin"] else "", len(u["experiment_permissions"]), len(u["registered_model_permissions"])] for u in found])


@users.command("set-password")
@click.argument("username")
@click.option("--password", prompt="New password", hide_input=True, confirmation_prompt=True, help="The new password.")
@click.option("--current-password", default=None, help="Your current password, when you change your own (admins may omit it).")
@_tracking_uri
def users_set_password(username: str, password: str, current_password: str | None, tracking_uri: str) -> None:
    """Change USERNAME's password (it takes effect at once; other servers within 30 s)."""
    body = {"username": username, "password": password, **({"current_password": current_password} if current_password else {})}
    call(tracking_uri, "PATCH", "/api/2.0/mlflow/users/update-password", json=body)
    click.echo(f"password of {username} changed")


@users.command("set-admin")
@click.argument("username")
@click.option("--revoke", is_flag=True, help="Take the admin status away instead.")
@click.confirmation_option(prompt="Change this user's admin status?")
@_tracking_uri
def users_set_admin(username: str, revoke: bool, tracking_uri: str) -> None:
    """Make USERNAME an administrator (or, with --revoke, not one)."""
    call(tracking_uri, "PATCH", "/api/2.0/mlflow/users/update-admin", json={"username": username, "is_admin": not revoke})
    click.echo(f"{username} is {'no longer ' if revoke else ''}an administrator")


@users.command("delete")
@click.argument("username")
@click.confirmation_option(prompt="Delete this user, its tokens and its permissions?")
@_tracking_uri
def users_delete(username: str, tracking_uri: str) -> None:
    """Delete USERNAME with its tokens and permissions (its past events keep its name)."""
    call(tracking_uri, "DELETE", "/api/2.0/mlflow/users/delete", json={"username": username})
    click.echo(f"deleted user {username}")


# -- tokens -----------------------------------------------------------------------------------


@click.group("tokens")
def tokens() -> None:
    """Access tokens: for CI and services, instead of a password.

    A token acts for its user within its scopes: read, write, promote (move aliases and
    stages: a deployment), admin. Clients send it as ``Authorization: Bearer`` — MLflow's
    client from MLFLOW_TRACKING_TOKEN, eventflow's SDK from EVENTFLOW_TRACKING_TOKEN.

    \b
    Examples:
      eventflow tokens create --scope read --scope write --expires-in-days 90 --description "nightly training"
      eventflow tokens create --user ci-bot --scope promote --expires-in-days 30   # admins only
      eventflow tokens list
      eventflow tokens revoke 3f2a9c0d1e4b5a67
    """


@tokens.command("create")
@click.option("--scope", "scopes", multiple=True, type=click.Choice(["read", "write", "promote", "admin"]),
              default=("read", "write"), show_default=True, help="What the token may do (repeat for several).")
@click.option("--user", "username", default=None, help="Whom the token acts for (default: you; another user: admins only).")
@click.option("--expires-in-days", type=click.IntRange(1, 36500), default=None, help="Days until it stops working (default: never).")
@click.option("--description", default="", help="What the token is for, shown in `eventflow tokens list`.")
@_tracking_uri
def tokens_create(scopes: tuple[str, ...], username: str | None, expires_in_days: int | None, description: str, tracking_uri: str) -> None:
    """Issue a token and print it once: only its hash is kept, it cannot be shown again."""
    body: dict[str, Any] = {"scopes": list(scopes), "description": description}
    if username:
        body["username"] = username
    if expires_in_days:
        body["expires_in_days"] = expires_in_days
    answer = call(tracking_uri, "POST", "/api/2.0/eventflow/tokens/create", json=body)
    info = answer["token_info"]
    click.echo(answer["token"])
    click.echo(f"token {info['token_id']} for {info['username']}, scopes {','.join(info['scopes'])}, expires {_when(info['expires_time'])}"
               " — store it now: it is not shown again", err=True)


@tokens.command("list")
@click.option("--user", "username", default=None, help="Another user's tokens (admins only; admins see all by default).")
@_tracking_uri
def tokens_list(username: str | None, tracking_uri: str) -> None:
    """Your tokens (an admin: everyone's), without their secrets."""
    found = call(tracking_uri, "GET", "/api/2.0/eventflow/tokens/list", params={"username": username} if username else None)["tokens"]
    _table(["TOKEN ID", "USER", "SCOPES", "EXPIRES", "STATE", "DESCRIPTION"],
           [[t["token_id"], t["username"], ",".join(t["scopes"]), _when(t["expires_time"]), "revoked" if t["revoked"] else "active", t["description"]] for t in found])


@tokens.command("revoke")
@click.argument("token_id")
@_tracking_uri
def tokens_revoke(token_id: str, tracking_uri: str) -> None:
    """Revoke TOKEN_ID (the part of the token after ``ef_``, as `eventflow tokens list` shows)."""
    call(tracking_uri, "POST", "/api/2.0/eventflow/tokens/revoke", json={"token_id": token_id})
    click.echo(f"revoked token {token_id}")


# -- permissions ------------------------------------------------------------------------------


def _resource(experiment_id: str | None, model: str | None) -> tuple[str, str]:
    if bool(experiment_id) == bool(model):
        raise click.UsageError("name exactly one of --experiment-id and --model")
    return ("experiment", str(experiment_id)) if experiment_id else ("registered_model", str(model))


def _on(function):  # type: ignore[no-untyped-def]
    function = click.option("--model", default=None, help="A registered model, by name.")(function)
    return click.option("--experiment-id", default=None, help="An experiment, by id.")(function)


@click.group("permissions")
def permissions() -> None:
    """Who may do what on an experiment or a registered model (MLflow's model).

    READ sees it, EDIT also logs to it (runs, versions, tags), MANAGE also deletes it,
    manages its permissions and moves its aliases (a deployment); NO_PERMISSIONS hides it.
    Without a grant a user has the server's default (EVENTFLOW_AUTH_DEFAULT_PERMISSION,
    READ unless set); the creator of an experiment or model gets MANAGE; admins have all.

    \b
    Examples:
      eventflow permissions grant alice EDIT --experiment-id 1234
      eventflow permissions grant ci-bot MANAGE --model churn
      eventflow permissions show alice --experiment-id 1234
      eventflow permissions revoke alice --experiment-id 1234
    """


@permissions.command("grant")
@click.argument("username")
@click.argument("permission", type=click.Choice(["READ", "EDIT", "MANAGE", "NO_PERMISSIONS"], case_sensitive=False))
@_on
@_tracking_uri
def permissions_grant(username: str, permission: str, experiment_id: str | None, model: str | None, tracking_uri: str) -> None:
    """Give USERNAME PERMISSION on an experiment or a model (needs MANAGE on it)."""
    resource_type, resource_id = _resource(experiment_id, model)
    call(tracking_uri, "POST", "/api/3.0/mlflow/users/permissions/grant",
         json={"username": username, "resource_type": resource_type, "resource_id": resource_id, "permission": permission.upper()})
    click.echo(f"{username} has {permission.upper()} on {resource_type} {resource_id}")


@permissions.command("revoke")
@click.argument("username")
@_on
@_tracking_uri
def permissions_revoke(username: str, experiment_id: str | None, model: str | None, tracking_uri: str) -> None:
    """Remove USERNAME's grant (the default applies again)."""
    resource_type, resource_id = _resource(experiment_id, model)
    call(tracking_uri, "POST", "/api/3.0/mlflow/users/permissions/revoke",
         json={"username": username, "resource_type": resource_type, "resource_id": resource_id})
    click.echo(f"{username}'s grant on {resource_type} {resource_id} removed")


@permissions.command("show")
@click.argument("username")
@_on
@_tracking_uri
def permissions_show(username: str, experiment_id: str | None, model: str | None, tracking_uri: str) -> None:
    """What USERNAME may do with an experiment or a model, grant or default."""
    resource_type, resource_id = _resource(experiment_id, model)
    answer = call(tracking_uri, "GET", "/api/3.0/mlflow/users/permissions/get",
                  params={"username": username, "resource_type": resource_type, "resource_id": resource_id})
    click.echo(f"{username} has {answer['permission']} on {resource_type} {resource_id}")
