"""``Client(...).webhooks``: manage webhook subscriptions of an ``eventflow server``.

Webhooks are a server feature (its dispatcher sends them, its store keeps the secrets),
so this talks to ``/api/2.0/eventflow/webhooks`` over HTTP. Errors come back as
``InvalidInput`` with the server's message and MLflow error code.

    hooks = eventflow.Client("http://localhost:5000").webhooks
    created = hooks.create("https://example.com/hooks", ["run.failed", "model_version.*"])
    created["secret"]  # whsec_…: verify the signatures with it
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from eventflow.sdk.credentials import Credentials
from eventflow.sdk.unreachable import reaching
from eventflow.validation import InvalidInput


class Webhooks:
    def __init__(self, tracking_uri: str, timeout: float = 60.0):
        if not tracking_uri.startswith(("http://", "https://")):
            raise InvalidInput(
                f"webhooks are managed through an eventflow server; the tracking URI {tracking_uri!r} is not http(s)://HOST:PORT"
            )
        self.url = tracking_uri.rstrip("/")
        self.base = self.url + "/api/2.0/eventflow/webhooks"
        self.http = httpx.Client(timeout=timeout, auth=Credentials.from_env().auth())

    def _call(self, method: str, path: str = "", **kwargs: Any) -> dict[str, Any]:
        with reaching(self.url):
            response = self.http.request(method, self.base + path, **kwargs)
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {}
            raise InvalidInput(body.get("message") or f"{response.status_code}: {response.text[:300]}", body.get("error_code", "INTERNAL_ERROR"))
        return response.json()

    def create(
        self,
        url: str,
        events: Sequence[str] = ("*",),
        *,
        experiment_id: str | None = None,
        experiment_name: str | None = None,
        model_name: str | None = None,
        condition: str | None = None,
        secret: str | None = None,
    ) -> dict[str, Any]:
        """A new subscription; returns ``{"webhook": {...}, "secret": "whsec_…"}``."""
        body = {"url": url, "events": list(events), "experiment_id": experiment_id, "experiment_name": experiment_name,
                "model_name": model_name, "condition": condition, "secret": secret}
        return self._call("POST", json={k: v for k, v in body.items() if v is not None})

    def list(self) -> list[dict[str, Any]]:
        return self._call("GET")["webhooks"]

    def get(self, subscription_id: str) -> dict[str, Any]:
        return self._call("GET", f"/{subscription_id}")["webhook"]

    def update(self, subscription_id: str, **changes: Any) -> dict[str, Any]:
        """Change any of url, events, experiment_id, model_name, condition, status (ACTIVE|DISABLED)."""
        return self._call("PATCH", f"/{subscription_id}", json=changes)["webhook"]

    def delete(self, subscription_id: str) -> None:
        self._call("DELETE", f"/{subscription_id}")

    def test(self, subscription_id: str) -> dict[str, Any]:
        """Send a ``webhook.test`` message now; returns the delivery with its attempt."""
        return self._call("POST", f"/{subscription_id}/test", json={})["delivery"]  # JSON: the server refuses other POSTs

    def rotate_secret(self, subscription_id: str, expire_in_seconds: int | None = None) -> dict[str, Any]:
        """A new secret; the old one keeps signing alongside for ``expire_in_seconds``."""
        body = {} if expire_in_seconds is None else {"expire_in_seconds": expire_in_seconds}
        return self._call("POST", f"/{subscription_id}/rotate-secret", json=body)

    def deliveries(self, subscription_id: str, status: str | None = None, max_results: int = 100) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"max_results": max_results, **({"status": status} if status else {})}
        return self._call("GET", f"/{subscription_id}/deliveries", params=params)["deliveries"]

    def redeliver(self, subscription_id: str, delivery_id: int) -> dict[str, Any]:
        return self._call("POST", f"/{subscription_id}/deliveries/{delivery_id}/redeliver", json={})["delivery"]

    def close(self) -> None:
        self.http.close()
