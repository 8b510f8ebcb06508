"""A tracking URI is a server, a broker or a directory — and nothing else is guessed.

``htp://127.0.0.1:5000`` or ``127.0.0.1:5000`` used to become directories named
``./htp:/…`` with a fresh log each: the runs went nowhere anyone would look.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import eventflow
from eventflow.config import InvalidTrackingUri, check_tracking_uri

WRONG = ["htp://127.0.0.1:5000", "127.0.0.1:5000", "localhost:5000", "ftp://host/x", "sqlite:///tmp/x.db"]


@pytest.mark.parametrize("uri", WRONG)
def test_a_wrong_tracking_uri_is_refused_naming_the_accepted_forms(uri, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidTrackingUri) as refused:
        eventflow.set_tracking_uri(uri)
    message = str(refused.value)
    assert uri in message and "http://HOST:PORT" in message and "kafka://" in message
    assert list(tmp_path.iterdir()) == []  # no directory made of it


def test_host_port_without_a_scheme_suggests_http(tmp_path):
    with pytest.raises(InvalidTrackingUri, match=r"did you mean http://127\.0\.0\.1:5000"):
        check_tracking_uri("127.0.0.1:5000")


@pytest.mark.parametrize("uri", ["./runs", "runs", "/tmp/eventflow-x", "~/eventflow-x", "file:///tmp/x", "http://h:5000", "https://h", "kafka://h:9092"])
def test_servers_brokers_and_paths_are_accepted(uri):
    assert check_tracking_uri(uri) == uri


def test_a_wrong_uri_from_the_environment_is_refused_at_the_first_call(tmp_path):
    code = "import eventflow\ntry:\n    eventflow.log_param('a', 1)\nexcept Exception as e:\n    print(type(e).__name__, e)\n"
    env = {**os.environ, "EVENTFLOW_TRACKING_URI": "htp://127.0.0.1:5000"}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert "InvalidTrackingUri" in done.stdout and "htp://127.0.0.1:5000" in done.stdout, done.stdout + done.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [["registry", "models", "list"], ["registry", "versions", "m"]])
def test_the_cli_refuses_a_wrong_uri_in_one_line(command, tmp_path):
    done = subprocess.run([sys.executable, "-m", "eventflow", "registry", "--tracking-uri", "127.0.0.1:5000", *command[1:]],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "did you mean http://127.0.0.1:5000" in done.stderr and "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []
