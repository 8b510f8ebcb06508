"""Binding (issue 13): ``--host 0.0.0.0`` used to serve everything to the network without a
word. A non-loopback host now needs ``--auth``, or ``--insecure-no-auth`` (loudly)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from serving import free_port, running_server

NO_AUTH_ENV = {"EVENTFLOW_AUTH": ""}  # whatever the calling shell says


def _eventflow(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "eventflow", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **NO_AUTH_ENV})


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
        return True


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "eventflow.example.com"])
def test_a_non_loopback_host_without_auth_refuses_to_start_naming_auth(tmp_path, host):
    port = free_port()
    done = _eventflow("server", "--host", host, "--port", str(port), "--home", str(tmp_path / "home"))
    assert done.returncode != 0
    assert "--auth" in done.stderr and "--insecure-no-auth" in done.stderr, done.stderr
    assert f"refusing to listen on {host} without authentication" in done.stderr
    assert "serving" not in done.stderr  # refused before anything started
    assert _port_is_free(port)
    assert not (tmp_path / "home").exists()  # not even the home was created


def test_auth_and_insecure_no_auth_contradict_each_other(tmp_path):
    done = _eventflow("server", "--host", "0.0.0.0", "--auth", "--insecure-no-auth", "--home", str(tmp_path / "home"))
    assert done.returncode != 0 and "contradict" in done.stderr


def test_insecure_no_auth_starts_and_warns_loudly(tmp_path):
    home = tmp_path / "home"
    with running_server(home, "--host", "0.0.0.0", "--insecure-no-auth", env=NO_AUTH_ENV) as url:
        assert url.startswith("http://127.0.0.1:")
    out = (home / "server.out").read_text()
    assert "WARNING: --insecure-no-auth: serving 0.0.0.0 WITHOUT authentication" in out
    assert "Use --auth" in out


def test_loopback_needs_nothing_and_prints_no_warning(tmp_path):
    home = tmp_path / "home"
    with running_server(home, "--host", "127.0.0.1", env=NO_AUTH_ENV):
        pass
    assert "WARNING" not in (home / "server.out").read_text()


def test_with_auth_a_non_loopback_host_starts(tmp_path):
    home = tmp_path / "home"
    env = {"EVENTFLOW_ADMIN_USERNAME": "admin", "EVENTFLOW_ADMIN_PASSWORD": "a-test-only-password"}
    with running_server(home, "--host", "0.0.0.0", "--auth", env=env):
        pass
    assert "WARNING" not in (home / "server.out").read_text()


def test_help_teaches_both_options():
    done = _eventflow("server", "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    assert "--auth" in text and "EVENTFLOW_ADMIN_USERNAME" in text and "MLFLOW_TRACKING_USERNAME" in text
    assert "--insecure-no-auth" in text and "proxy" in text
