"""The slow hash is paid once per credential and process, and never for a wrong one twice
in a way that lets it in: the authenticator over a real runtime (embedded log, SQLite)."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from eventflow.auth import authenticator as module
from eventflow.auth.accounts import Accounts
from eventflow.auth.authenticator import Authenticator
from eventflow.server.runtime import open_runtime


@pytest.fixture
def runtime(tmp_path) -> Iterator:
    runtime = open_runtime(home=str(tmp_path / "home"))
    runtime.start()
    try:
        yield runtime
    finally:
        runtime.stop()


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


@pytest.fixture
def hashes(monkeypatch) -> list[str]:
    """Every scrypt verification the authenticator pays for."""
    paid: list[str] = []
    real = module.verify_secret

    def counting(secret: str, stored: str) -> bool:
        paid.append(secret)
        return real(secret, stored)

    monkeypatch.setattr(module, "verify_secret", counting)
    return paid


def test_a_verified_password_is_hashed_once_then_remembered(runtime, hashes):
    Accounts(runtime).create_user("ada", "pw-ada")
    auth = Authenticator(runtime, ttl=60)
    header = basic("ada", "pw-ada")
    assert auth.cached(header) is None
    assert auth.verify(header).username == "ada"
    for _ in range(100):
        assert auth.cached(header).username == "ada"
    assert len(hashes) == 1


def test_a_wrong_password_is_never_remembered(runtime, hashes):
    Accounts(runtime).create_user("bea", "pw-bea")
    auth = Authenticator(runtime, ttl=60)
    assert auth.verify(basic("bea", "wrong")) is None
    assert auth.cached(basic("bea", "wrong")) is None
    assert auth.verify(basic("bea", "wrong")) is None
    assert len(hashes) == 2


def test_forgetting_a_user_drops_every_remembered_credential_of_theirs(runtime):
    accounts = Accounts(runtime)
    accounts.create_user("cy", "pw-cy")
    token, _ = accounts.issue_token("cy", ["read"])
    auth = Authenticator(runtime, ttl=60)
    assert auth.verify(basic("cy", "pw-cy")) and auth.verify(f"Bearer {token}")
    auth.forget("cy")
    assert auth.cached(basic("cy", "pw-cy")) is None and auth.cached(f"Bearer {token}") is None


def test_a_token_is_remembered_no_longer_than_it_lives(runtime):
    import time

    accounts = Accounts(runtime)
    accounts.create_user("dee", "pw-dee")
    token, _ = accounts.issue_token("dee", ["read"], expires_time=int(time.time() * 1000) + 1500)
    auth = Authenticator(runtime, ttl=3600)
    assert auth.verify(f"Bearer {token}").scopes == frozenset({"read"})
    deadline = time.monotonic() + 30
    while auth.cached(f"Bearer {token}") is not None:  # the cache lets it go when it expires
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert auth.verify(f"Bearer {token}") is None
