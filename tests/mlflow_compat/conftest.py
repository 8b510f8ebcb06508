"""``eventflow server`` with authentication on, for the MLflow compatibility modules.

A server start costs seconds and CI minutes, so these are session-scoped: one for the
compatibility tests signed in with a password (which the auth client's tests share), one
for them signed in with a token; each started once per session (per xdist worker).
"""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "server"))
from serving import running_server  # noqa: E402


@dataclass(frozen=True)
class AuthedServer:
    """The server, its administrator, and a non-admin user signed in as the tests sign in."""

    url: str
    home: object
    admin: tuple[str, str]
    user: tuple[str, str]
    token: str  # the user's, with the scopes read, write and promote


def _start(stack: contextlib.ExitStack, home) -> AuthedServer:
    admin = ("admin", "admin-password-" + uuid.uuid4().hex)
    env = {"EVENTFLOW_AUTH": "true", "EVENTFLOW_ADMIN_USERNAME": admin[0], "EVENTFLOW_ADMIN_PASSWORD": admin[1]}
    url = stack.enter_context(running_server(home, env=env))
    user = ("compat-user", "compat-password-" + uuid.uuid4().hex)

    def post(path: str, body: dict, auth: tuple[str, str] = admin) -> dict:
        answer = httpx.post(url + path, json=body, auth=auth, timeout=30)
        assert answer.status_code == 200, answer.text
        return answer.json()

    post("/api/2.0/mlflow/users/create", {"username": user[0], "password": user[1]})
    # A user logs to the Default experiment as in MLflow: once an admin let them.
    post("/api/2.0/mlflow/experiments/permissions/create", {"experiment_id": "0", "username": user[0], "permission": "MANAGE"})
    token = post("/api/2.0/eventflow/tokens/create", {"scopes": ["read", "write", "promote"]}, auth=user)["token"]
    return AuthedServer(url, home, admin, user, token)


@pytest.fixture(scope="session")
def authed_server(tmp_path_factory) -> Iterator[Callable[[str], AuthedServer]]:
    """``authed_server(name)``: the session's server of that name, started on first use.
    The compatibility tests take one per way of signing in (their names, such as
    "compat-search", must be new on each server); the auth client's tests share "password"."""
    started: dict[str, AuthedServer] = {}
    with contextlib.ExitStack() as stack:

        def get(name: str) -> AuthedServer:
            if name not in started:
                started[name] = _start(stack, tmp_path_factory.mktemp(f"mlflow-compat-auth-{name}"))
            return started[name]

        yield get
