"""Servers the benchmarks start side by side: ``mlflow server`` (SQLite) and ``eventflow server``."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serving(command: list[str], port: int, what: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """Run a server process until its /health answers; stop it afterwards."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=60)


ADMIN = ("admin", "bench-admin-password")


def mlflow_server(directory: str, *, auth_cache_seconds: int | None = None) -> contextlib.AbstractContextManager[str]:
    """``mlflow server`` on SQLite; with ``auth_cache_seconds`` given, ``--app-name basic-auth``
    (admin ``ADMIN``) caching verified credentials that long (0: MLflow's default, none)."""
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
               "--backend-store-uri", f"sqlite:///{directory}/mlflow.db", "--artifacts-destination", f"{directory}/artifacts",
               "--workers", "1"]
    env = None
    if auth_cache_seconds is not None:
        config = os.path.join(directory, "basic_auth.ini")
        with open(config, "w") as out:
            out.write(f"[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{directory}/basic_auth.db\n"
                      f"admin_username = {ADMIN[0]}\nadmin_password = {ADMIN[1]}\n"
                      "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
                      f"auth_cache_ttl_seconds = {auth_cache_seconds}\n")
        command += ["--app-name", "basic-auth"]
        env = {"MLFLOW_AUTH_CONFIG_PATH": config, "MLFLOW_FLASK_SERVER_SECRET_KEY": "benchmark-only-secret"}
    return serving(command, port, "mlflow server", env)


def eventflow_server(home: str, *options: str, auth: bool = False) -> contextlib.AbstractContextManager[str]:
    """``eventflow server``; with ``auth``, authentication on and ``ADMIN`` its first admin."""
    port = free_port()
    env = {"EVENTFLOW_AUTH": "true", "EVENTFLOW_ADMIN_USERNAME": ADMIN[0], "EVENTFLOW_ADMIN_PASSWORD": ADMIN[1]} if auth else None
    return serving([sys.executable, "-m", "eventflow", "server", "--port", str(port), "--home", home, *options], port, "eventflow server", env)


def new_user(url: str, username: str, password: str) -> None:
    """A non-admin user, made by the admin through MLflow's auth API (both servers serve it)."""
    answer = httpx.post(url + "/api/2.0/mlflow/users/create", json={"username": username, "password": password}, auth=ADMIN, timeout=60)
    answer.raise_for_status()


def new_token(url: str, username: str, password: str) -> str:
    """An eventflow token of that user (scopes read and write)."""
    answer = httpx.post(url + "/api/2.0/eventflow/tokens/create", json={"scopes": ["read", "write"]}, auth=(username, password), timeout=60)
    answer.raise_for_status()
    return answer.json()["token"]
