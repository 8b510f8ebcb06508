"""Process plumbing shared by the local services: ports, log tails, stopping, watchdogs.

A service runs as a child process in a session of its own (``start_new_session=True``),
so a Ctrl-C meant for the test runner or the CLI does not reach it; the owner stops it.
Three things make sure it never outlives its owner:

- ``stop()`` (explicit, or through the context manager);
- an ``atexit`` hook that stops every service still running when Python exits normally;
- a *watchdog*: a tiny ``sh`` process that blocks reading a pipe only this Python process
  holds open. When this process dies in any way (even ``kill -9``) the pipe closes, the
  read returns, and the watchdog stops the service (a polite signal, then SIGKILL).
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path


class ServiceUnavailable(RuntimeError):
    """The service cannot be started on this machine: a prerequisite is missing.

    Examples: java, Maven or PostgreSQL is not installed, or the broker's jars cannot be
    downloaded. The message says what to install or do. Tests skip on this (or fail
    when ``CI=true``); any other error starting a service is a real failure.
    """


class ServiceError(RuntimeError):
    """The service was started but did not come up, or died; the message has its log tail."""


def progress(message: str) -> None:
    """A progress line for the slow steps, on stderr so stdout stays clean."""
    print(f"eventflow: {message}", file=sys.stderr, flush=True)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def port_answers(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def tail(path: Path | str, lines: int = 40) -> str:
    """The last ``lines`` lines of a text file, or a note that it is missing or empty."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return f"({path} does not exist)"
    chunk = text.splitlines()[-lines:]
    if not chunk:
        return f"({path} is empty)"
    return "\n".join(chunk)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive for our purposes
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return True


def pid_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def stop_stale(pid_file: Path, marker: str, sig: int, grace: float = 30.0) -> None:
    """Stop a service left running by an earlier owner of the same data directory.

    ``pid_file`` holds the pid of the earlier process; it is only touched when its command
    line still contains ``marker`` (a path unique to that data directory), so a recycled
    pid is never signalled.
    """
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    if pid <= 0 or pid == os.getpid() or not pid_alive(pid) or marker not in pid_cmdline(pid):
        return
    progress(f"stopping a service left running from an earlier start (pid {pid}) ...")
    _signal_group(pid, sig)
    deadline = time.monotonic() + grace
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if pid_alive(pid):
        _signal_group(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)


def _signal_group(pid: int, sig: int) -> None:
    """Signal the process group led by ``pid`` (the service and any child), else just pid."""
    try:
        os.killpg(pid, sig)
        return
    except (ProcessLookupError, PermissionError):
        pass
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# The watchdog: blocks on a read from a pipe whose only writer is this Python process.
# $1 = pid of the service (a process-group leader), $2 = polite signal, $3 = grace seconds,
# $4 = a temporary directory to remove once the service is gone (optional, may be empty).
_WATCHDOG = r"""
trap '' INT HUP TERM
read -r _ignored
kill -s "$2" -- "-$1" 2>/dev/null || kill -s "$2" "$1" 2>/dev/null
n=0
limit=$(( $3 * 5 ))
while kill -0 "$1" 2>/dev/null && [ "$n" -lt "$limit" ]; do
  n=$((n + 1))
  sleep 0.2
done
kill -s KILL -- "-$1" 2>/dev/null || kill -s KILL "$1" 2>/dev/null
if [ -n "$4" ]; then sleep 0.5; rm -rf -- "$4"; fi
exit 0
"""


def start_watchdog(
    pid: int, sig: int, grace: float, remove: Path | None = None
) -> subprocess.Popen | None:
    """Start a watchdog that stops ``pid`` when this Python process dies (see module doc).

    ``remove`` is a temporary directory of the service's, deleted after it stopped.
    """
    try:
        return subprocess.Popen(
            ["/bin/sh", "-c", _WATCHDOG, "eventflow-watchdog", str(pid), signal.Signals(sig).name[3:], str(int(grace)),
             str(remove) if remove else ""],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )
    except OSError:  # no /bin/sh: the atexit hook still stops the service on a normal exit
        return None


def dismiss_watchdog(watchdog: subprocess.Popen | None) -> None:
    """Stop a watchdog without letting it act (the service is being stopped by us)."""
    if watchdog is None:
        return
    try:
        watchdog.kill()
    except OSError:
        pass
    try:
        watchdog.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    if watchdog.stdin is not None:
        try:
            watchdog.stdin.close()
        except OSError:
            pass


def stop_process(proc: subprocess.Popen, sig: int, grace: float) -> int | None:
    """Stop ``proc`` (a session leader): ``sig``, wait up to ``grace`` s, then SIGKILL.

    Works whatever state the process is in, including already dead or killed with -9
    (the exit status is collected and any leftover children in its group are killed).
    Returns the exit status.
    """
    if proc.poll() is None:
        _signal_group(proc.pid, sig)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    # SIGKILL the whole group: the process if still running, and any orphaned children
    # (e.g. PostgreSQL backends after the postmaster was killed with -9).
    _signal_group(proc.pid, signal.SIGKILL)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    return proc.returncode


# -- stop every service when Python exits ----------------------------------------------

_running: dict[int, Callable[[], None]] = {}
_running_lock = threading.Lock()


def register(owner: object, stop: Callable[[], None]) -> None:
    with _running_lock:
        _running[id(owner)] = stop


def unregister(owner: object) -> None:
    with _running_lock:
        _running.pop(id(owner), None)


@atexit.register
def _stop_all_at_exit() -> None:
    with _running_lock:
        stops = list(_running.values())
        _running.clear()
    for stop in stops:
        try:
            stop()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


class ChildService:
    """What a service run as a child process shares: its process, a watchdog that
    stops it if we die, waiting for it, and ``with`` support. Subclasses set
    ``stop_signal`` and ``pid_file_name`` and implement ``start``/``stop``."""

    stop_signal: int = signal.SIGTERM
    pid_file_name = "service.pid"
    stop_timeout: float = 30.0
    data_dir: Path | None
    _proc: subprocess.Popen | None
    _watchdog: subprocess.Popen | None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the process to exit (``None`` on timeout); for foreground use."""
        if self._proc is None:
            return None
        try:
            return self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def start(self):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def stop(self) -> int | None:
        raise NotImplementedError

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _remove_temporary_data_dir(self) -> None:
        """A data directory the service made for itself goes with it."""
        if getattr(self, "_temporary", False) and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None

    def _cleanup_process(self) -> int | None:
        """Stop the child (signal, then SIGKILL after ``stop_timeout``) and its watchdog."""
        unregister(self)
        dismiss_watchdog(self._watchdog)
        self._watchdog = None
        status = None
        if self._proc is not None:
            status = stop_process(self._proc, self.stop_signal, self.stop_timeout)
            self._proc = None
        if self.data_dir is not None:
            try:
                (self.data_dir / self.pid_file_name).unlink()
            except OSError:
                pass
        return status
