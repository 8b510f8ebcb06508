"""While ``views rebuild`` holds the views, a server or consumer does not start on them:
it says who holds them instead."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from eventflow.config import Home
from eventflow.views.lock import hold_views


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("command", [["server", "--port", str(free_port())], ["consume", "projector"]])
def test_nothing_starts_on_views_a_rebuild_holds(tmp_path, command):
    home = Home.resolve(str(tmp_path / "home"))
    rebuilding = hold_views(home.views_url, exclusive=True)  # as `eventflow views rebuild` does
    try:
        done = subprocess.run([sys.executable, "-m", "eventflow", *command, "--home", str(home.path)],
                              capture_output=True, text=True, timeout=120, env=os.environ.copy())
    finally:
        rebuilding.release()
    assert done.returncode != 0
    assert f"in use by pid {os.getpid()} on {socket.gethostname()}" in done.stderr, done.stderr
    assert "rebuild" in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_a_second_rebuild_is_refused_and_leaves_the_first_ones_file_alone(tmp_path):
    home = Home.resolve(str(tmp_path / "home"))
    in_progress = home.path / "views.rebuild.db"
    in_progress.write_bytes(b"the first rebuild's views, half written")
    rebuilding = hold_views(home.views_url, exclusive=True)
    try:
        done = subprocess.run([sys.executable, "-m", "eventflow", "views", "rebuild", "--home", str(home.path)],
                              capture_output=True, text=True, timeout=120, env=os.environ.copy())
    finally:
        rebuilding.release()
    assert done.returncode != 0 and "--force" in done.stderr, done.stderr
    assert in_progress.read_bytes() == b"the first rebuild's views, half written"
