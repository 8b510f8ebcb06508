"""The base of the SDK's clients for an eventflow server's own APIs (webhooks, alerts):
features the server runs, reached over HTTP, with its errors as ``InvalidInput``."""

from __future__ import annotations

from typing import Any

import httpx

from eventflow.sdk.credentials import Credentials
from eventflow.sdk.unreachable import reaching
from eventflow.validation import InvalidInput


class ServerApi:
    path = ""  # under the server's URL, e.g. /api/2.0/eventflow/webhooks
    what = ""  # the feature, for the error a non-server tracking URI gets

    def __init__(self, tracking_uri: str, timeout: float = 60.0):
        if not tracking_uri.startswith(("http://", "https://")):
            raise InvalidInput(f"{self.what} are managed through an eventflow server; the tracking URI {tracking_uri!r} is not http(s)://HOST:PORT")
        self.url = tracking_uri.rstrip("/")
        self.base = self.url + self.path
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

    def close(self) -> None:
        self.http.close()
