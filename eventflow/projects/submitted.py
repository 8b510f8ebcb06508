"""A project run in progress: the child process, its output, and the run's end.

The launcher owns the run's end (the child only logs into it): the exit code decides the
status — 0 FINISHED, anything else FAILED with the code and the output's last lines —
and ``cancel()`` (or SIGTERM / Ctrl-C on a synchronous run) terminates the child's whole
process group and ends the run KILLED. The output is streamed to the terminal as it
comes and kept, to be stored as the run's ``project/stdout.txt``.
"""

from __future__ import annotations

import codecs
import collections
import fcntl
import os
import select
import signal
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path
from typing import IO, Callable

from eventflow import commands
from eventflow.projects.records import STDOUT_ARTIFACT
from eventflow.sdk.stores import Store

TAIL_LINES = 20
TERMINATE_WAIT = 10.0  # seconds between SIGTERM and SIGKILL of the child's group
UPLOAD_EVERY = 2.0  # the output so far is stored this often while the child runs (while small)
UPLOAD_STEADY = 256 * 1024  # bytes of output beyond which the interval grows with it


class SubmittedRun:
    """MLflow's ``SubmittedRun``: ``run_id``, ``wait()``, ``get_status()``, ``cancel()``."""

    def __init__(
        self,
        run_id: str,
        process: subprocess.Popen[bytes],
        store: Store,
        artifact_uri: str,
        *,
        echo: IO[str] | None = None,
        on_end: Callable[[], None] | None = None,
        output: OutputRelay | None = None,
    ):
        self.run_id = run_id
        self._process = process
        self._store = store
        self._artifact_uri = artifact_uri
        self._on_end = on_end
        self._output = output or OutputRelay(process, echo)
        self._cancelled = threading.Event()
        self._ended = threading.Event()
        self._status = "RUNNING"
        self._store_lock = threading.Lock()
        self.returncode: int | None = None
        self.error: str | None = None
        self._monitor = threading.Thread(target=self._follow, name=f"eventflow-run-{run_id[:8]}", daemon=True)
        self._monitor.start()

    @property
    def pid(self) -> int:
        return self._process.pid

    def get_status(self) -> str:
        """RUNNING until the run has ended, then FINISHED, FAILED or KILLED."""
        return self._status

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the run to end (and its end to be on the log); True if it FINISHED."""
        # An Event, not Thread.join: a join interrupted by a signal handler's exception (SIGTERM
        # while waiting) can return at once the next time, as if the thread had ended.
        if not self._ended.wait(timeout):
            raise TimeoutError(f"run {self.run_id} is still running after {timeout} s")
        return self._status == "FINISHED"

    def cancel(self) -> None:
        """Terminate the child's process group (SIGTERM, then SIGKILL) and end the run KILLED."""
        if self._ended.is_set():
            return
        self._cancelled.set()
        _signal_group(self._process, signal.SIGTERM)
        deadline = time.monotonic() + TERMINATE_WAIT
        while self._process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if self._process.poll() is None:
            _signal_group(self._process, signal.SIGKILL)
        self.wait()

    def store_output(self) -> None:
        """Store the output so far as ``project/stdout.txt`` now (before the child ends the
        run itself, which freezes its files)."""
        if self._still_open():
            self._output.drain()
            self._store_output(quiet=True)

    # -- the monitor thread ------------------------------------------------------------

    def _follow(self) -> None:
        try:
            # Stored as it grows: a child that ends the run itself (MLflow's end_run)
            # freezes its files, and the output up to then is kept.
            self._output.store_with(lambda: self._store_output(quiet=True))
            self._output.join()
            self.returncode = self._process.wait()
            self._finish()
        finally:
            self._output.close()
            if self._on_end is not None:
                self._on_end()
            self._ended.set()

    def _store_output(self, quiet: bool) -> None:
        with self._store_lock:
            try:
                size, sha256 = self._store.upload_artifact(self._artifact_uri, self._output.path, STDOUT_ARTIFACT)
                if not self._store.records_uploads:
                    self._store.append([commands.log_artifact(self.run_id, STDOUT_ARTIFACT, size, sha256)])
            except Exception as error:  # the run may have been ended (and frozen) by the child
                if not quiet:
                    print(f"eventflow: the output of run {self.run_id} could not be stored as {STDOUT_ARTIFACT}: {error}",
                          file=sys.stderr, flush=True)

    def _still_open(self) -> bool:
        """Whether the run still takes files: a child may have ended it itself, and an upload
        to a frozen run is refused (and must not replace what was stored)."""
        with self._store_lock:
            try:
                return _open(self._store, self.run_id)
            except Exception:
                return True  # let the upload itself say what is wrong

    def _finish(self) -> None:
        code = self.returncode
        if self._cancelled.is_set():
            status, message = "KILLED", None
        elif code == 0:
            status, message = "FINISHED", None
        else:
            why = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"
            tail = "\n".join(self._output.tail)
            status, message = "FAILED", f"the entry point {why}; its last output:\n{tail}" if tail else f"the entry point {why}"
            self.error = message
        if self._still_open():
            self._store_output(quiet=False)
        else:
            print(f"eventflow: the entry point ended run {self.run_id} itself (MLflow's end_run), which froze its files: "
                  f"{STDOUT_ARTIFACT} holds its output up to then", file=sys.stderr, flush=True)
        with self._store_lock:
            self._store.append([commands.end_run(self.run_id, status, error_message=message)])
        self._status = status


class OutputRelay:
    """The child's output, copied as it comes to the terminal and a kept file from the
    moment it starts — before the run is on the log, which on the embedded log takes a
    while (the entry point must not wait on that to be seen). ``store_with`` adds the
    periodic upload once there is a run to store it in."""

    def __init__(self, process: subprocess.Popen[bytes], echo: IO[str] | None):
        self._process = process
        self._echo = echo
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._scratch = tempfile.TemporaryDirectory(prefix="eventflow-run-")
        self.path = Path(self._scratch.name) / "stdout.txt"
        self._store: Callable[[], None] | None = None
        self._lock = threading.Lock()
        self._copying = threading.Lock()  # held while a chunk goes from the pipe to the file
        self._stored_at = float("-inf")  # the first output is stored at once, then see upload_interval
        self._stored_size = 0
        self._size = 0
        self._thread = threading.Thread(target=self._pump, name=f"eventflow-output-{process.pid}", daemon=True)
        self._thread.start()

    def store_with(self, store: Callable[[], None]) -> None:
        with self._lock:
            self._store = store
        self._maybe_store()

    def join(self) -> None:
        """Until the child's output has ended (it exited, or closed it)."""
        self._thread.join()

    def close(self) -> None:
        self._thread.join()
        self._scratch.cleanup()

    def drain(self, timeout: float = 5.0) -> None:
        """Until what the child has written so far is in the kept file (or ``timeout``): the
        pipe is empty and no chunk is being copied. Called before storing the output when
        the child is about to end its run, having printed its last lines just before."""
        deadline = time.monotonic() + timeout
        while True:
            with self._copying:
                if _unread(self._process) == 0:
                    return
            if time.monotonic() > deadline:
                return
            time.sleep(0.005)

    def _pump(self) -> None:
        assert self._process.stdout is not None
        fd = self._process.stdout.fileno()
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        partial = ""
        with open(self.path, "wb") as kept:
            while True:
                select.select([fd], [], [])  # wait outside the lock, copy inside it (see drain)
                with self._copying:
                    chunk = os.read(fd, 1 << 16)
                    if not chunk:
                        break
                    kept.write(chunk)
                    kept.flush()
                    self._size = kept.tell()
                    text = decoder.decode(chunk)
                    *lines, partial = (partial + text).split("\n")
                    self.tail.extend(lines)
                    if self._echo is not None:
                        try:
                            self._echo.write(text)
                            self._echo.flush()
                        except (OSError, ValueError):
                            self._echo = None  # the terminal went away: keep the file going
                self._maybe_store()
        if partial:
            self.tail.append(partial)

    def _maybe_store(self) -> None:
        with self._lock:
            due = self._stored_at + upload_interval(self._stored_size)
            if self._store is None or time.monotonic() < due or self._size == self._stored_size:
                return
            self._stored_at, self._stored_size = time.monotonic(), self._size
            store = self._store
        store()


def upload_interval(size: int) -> float:
    """Seconds until the output is stored again, after storing ``size`` bytes of it.

    Each upload copies the whole file, so a fixed interval would copy a long run's output
    quadratically often; waiting in proportion to its size (beyond UPLOAD_STEADY bytes)
    makes the stored sizes grow geometrically and the copying linear in the output."""
    return UPLOAD_EVERY * max(1.0, size / UPLOAD_STEADY)


def _unread(process: subprocess.Popen[bytes]) -> int:
    """Bytes waiting in the child's output pipe."""
    try:
        answer = fcntl.ioctl(process.stdout.fileno(), termios.FIONREAD, b"\0\0\0\0")  # type: ignore[union-attr]
    except (OSError, ValueError):
        return 0
    return int.from_bytes(answer, sys.byteorder)


def _open(store: Store, run_id: str) -> bool:
    found = store.get_run(run_id)
    return found is not None and found["info"]["status"] in ("RUNNING", "SCHEDULED")


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass
