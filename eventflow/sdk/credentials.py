"""Who this client authenticates as to an eventflow server, as MLflow's client does.

HTTP Basic from ``EVENTFLOW_TRACKING_USERNAME``/``_PASSWORD`` (else MLflow's
``MLFLOW_TRACKING_USERNAME``/``_PASSWORD``); when no user name and password are set,
``Authorization: Bearer`` from ``EVENTFLOW_TRACKING_TOKEN`` (else ``MLFLOW_TRACKING_TOKEN``).
Every HTTP client of eventflow (the SDK's store, the registry and model clients, the
CLI) takes its credentials from here.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from eventflow import environment_variables as env


@dataclass(frozen=True)
class Credentials:
    username: str | None = None
    password: str | None = None
    token: str | None = None

    @classmethod
    def from_env(cls) -> "Credentials":
        username = env.TRACKING_USERNAME.get() or env.MLFLOW_TRACKING_USERNAME.get()
        password = env.TRACKING_PASSWORD.get() or env.MLFLOW_TRACKING_PASSWORD.get()
        token = env.TRACKING_TOKEN.get() or env.MLFLOW_TRACKING_TOKEN.get()
        return cls(username, password, token)

    @property
    def basic(self) -> bool:
        return bool(self.username and self.password)

    @property
    def present(self) -> bool:
        return self.basic or bool(self.token)

    def auth(self) -> httpx.Auth | None:
        """What httpx sends: Basic when a user name and a password are set, else the
        bearer token, else nothing (a server without authentication)."""
        if self.basic:
            return httpx.BasicAuth(self.username or "", self.password or "")
        if self.token:
            return _Bearer(self.token)
        return None


class _Bearer(httpx.Auth):
    def __init__(self, token: str):
        self._header = f"Bearer {token}"

    def auth_flow(self, request: httpx.Request):  # type: ignore[no-untyped-def]
        request.headers["Authorization"] = self._header
        yield request
