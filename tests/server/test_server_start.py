"""``eventflow server`` at start: it prints the dashboard's full URL, a busy port is one
clear error naming it (and --port), and --access-log logs each request (issue 16)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx

from serving import running_server


def _output(home) -> str:
    return open(os.path.join(home, "server.out")).read()


def _wait_for(condition, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_the_dashboard_url_is_printed_in_full(tmp_path):
    home = tmp_path / "home"
    with running_server(home) as url:
        assert f"{url}/" in _output(home).split()  # http://127.0.0.1:PORT/, to click on
        httpx.get(url + "/api/2.0/mlflow/experiments/search?max_results=1", timeout=30)
    assert "GET /api/2.0/mlflow/experiments/search" not in _output(home)  # no access log by default


def test_a_busy_port_is_one_error_naming_it_and_the_option(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "eventflow", "server", "--port", str(port), "--home", str(tmp_path / "home")],
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"port {port}" in lines[0] and "--port" in lines[0] and "already in use" in lines[0]
    assert "serving" not in done.stderr and "Traceback" not in done.stderr


def test_access_log_logs_each_request(tmp_path):
    home = tmp_path / "home"
    with running_server(home, "--access-log") as url:
        httpx.get(url + "/api/2.0/mlflow/experiments/search?max_results=1", timeout=30)
        _wait_for(lambda: "GET /api/2.0/mlflow/experiments/search" in _output(home), "the request in the access log")

