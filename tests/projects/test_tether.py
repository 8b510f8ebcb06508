"""The tether (eventflow/projects/tether.py) with real processes: a tethered command
exits as the command did, and the whole process group — a child that shrugs off SIGTERM
included — ends when the process that started it is killed with SIGKILL."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from eventflow.projects.tether import GRACE_SECONDS, tethered


def run_tethered(argv: list[str]) -> int:
    command, read, write = tethered(argv)
    process = subprocess.Popen(command, pass_fds=(read,), start_new_session=True)
    os.close(read)
    try:
        return process.wait(60)
    finally:
        os.close(write)


@pytest.mark.parametrize("script, code", [("exit 0", 0), ("exit 3", 3), ("kill -TERM $$", -signal.SIGTERM), ("kill -KILL $$", -signal.SIGKILL)])
def test_a_tethered_command_exits_as_the_command_did(script, code):
    assert run_tethered(["bash", "-c", script]) == code


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_the_run_ends_with_its_starter_even_a_child_ignoring_sigterm(tmp_path):
    marker = tmp_path / "pid"
    stubborn = f"import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); open({str(marker)!r}, 'w').write(str(os.getpid())); time.sleep(600)"
    inner = f"{shlex.quote(sys.executable)} -c {shlex.quote(stubborn)}; true"  # `; true`: bash forks it, a grandchild
    starter = textwrap.dedent(f"""
        import os, subprocess, sys, time
        from eventflow.projects.tether import tethered
        command, read, write = tethered(["bash", "-c", {inner!r}])
        subprocess.Popen(command, pass_fds=(read,), start_new_session=True)
        time.sleep(600)
    """)
    process = subprocess.Popen([sys.executable, "-c", starter])
    try:
        deadline = time.monotonic() + 60
        while not (marker.exists() and marker.read_text()):
            assert time.monotonic() < deadline, "the tethered command did not start"
            time.sleep(0.05)
        pid = int(marker.read_text())
        assert running(pid)
        process.send_signal(signal.SIGKILL)
        process.wait()
        deadline = time.monotonic() + GRACE_SECONDS + 60
        while running(pid):
            assert time.monotonic() < deadline, "the run outlived its starter"
            time.sleep(0.1)
    finally:
        if process.poll() is None:
            process.kill()
