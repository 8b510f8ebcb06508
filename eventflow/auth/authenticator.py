"""Turning an ``Authorization`` header into a principal, paying the slow hash once.

scrypt costs tens of milliseconds by design; an MLflow client sends its credentials with
every request. A header that verified is remembered (by its SHA-256, never in clear)
for ``ttl`` seconds, so a training loop pays the hash once per credential and process.
A password change, a deletion or a revocation made through this process forgets that
user's entries at once; other processes see it within ``ttl`` (30 s by default,
``EVENTFLOW_AUTH_CACHE_SECONDS``). A wrong credential is never remembered.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
import time
from typing import Any

from eventflow import environment_variables as env
from eventflow.auth.accounts import get_token, get_user, split_token, stored_hash
from eventflow.auth.passwords import verify_secret
from eventflow.auth.permissions import Principal
from eventflow.events import now_ms


class Authenticator:
    def __init__(self, runtime: Any, ttl: float | None = None):
        self.runtime = runtime
        self.ttl = float(env.AUTH_CACHE_SECONDS.get() or 0) if ttl is None else ttl
        self._cache: dict[bytes, tuple[Principal, float]] = {}
        self._lock = threading.Lock()

    def cached(self, header: str) -> Principal | None:
        """The principal a header verified as recently, or None (then call ``verify``)."""
        hit = self._cache.get(hashlib.sha256(header.encode("utf-8", "surrogateescape")).digest())
        if hit is None or hit[1] < time.monotonic():
            return None
        return hit[0]

    def verify(self, header: str) -> Principal | None:
        """The principal of a Basic or Bearer header, or None if it does not verify (slow)."""
        scheme, _, value = header.strip().partition(" ")
        value = value.strip()
        if scheme.lower() == "basic":
            found, lifetime = self._basic(value), self.ttl
        elif scheme.lower() == "bearer":
            found, lifetime = self._bearer(value)
        else:
            return None
        if found is not None and lifetime > 0:
            key = hashlib.sha256(header.encode("utf-8", "surrogateescape")).digest()
            with self._lock:
                self._cache[key] = (found, time.monotonic() + lifetime)
        return found

    def _basic(self, value: str) -> Principal | None:
        try:
            username, colon, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        if not colon:
            return None
        stored = self.runtime.read(stored_hash, "password", username)
        user = self.runtime.read(get_user, username) if stored else None
        if user is None or not verify_secret(password, stored):
            return None
        return Principal(username, bool(user["is_admin"]))

    def _bearer(self, value: str) -> tuple[Principal | None, float]:
        parts = split_token(value)
        if parts is None:
            return None, 0
        token_id, secret = parts
        token = self.runtime.read(get_token, token_id)
        if token is None or token["revoked"]:
            return None, 0
        left = float("inf") if token["expires_time"] is None else (token["expires_time"] - now_ms()) / 1000
        stored = self.runtime.read(stored_hash, "token", token_id)
        user = self.runtime.read(get_user, token["username"])
        if left <= 0 or stored is None or user is None or not verify_secret(secret, stored):
            return None, 0
        return Principal(user["username"], bool(user["is_admin"]), frozenset(token["scopes"]), token_id), min(self.ttl, left)

    def forget(self, username: str) -> None:
        """Drop a user's remembered credentials (their password changed, they were deleted, …)."""
        with self._lock:
            for key in [k for k, (p, _) in self._cache.items() if p.username == username]:
                del self._cache[key]
