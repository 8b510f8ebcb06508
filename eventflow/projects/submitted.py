"""A project run in progress: the child process, its output, and the run's end.

The launcher owns the run's end (the child only logs into it): the exit code decides the
status — 0 FINISHED, anything else FAILED with the code and the output's last lines —
and ``cancel()`` (or SIGTERM / Ctrl-C on a synchronous run) terminates the child's whole
process group and ends the run KILLED. The output is streamed to the terminal as it
comes and kept, to be stored as the run's ``project/stdout.txt``.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Callable

from eventflow import commands
from eventflow.projects.records import STDOUT_ARTIFACT
from eventflow.sdk.stores import Store

TAIL_LINES = 20
TERMINATE_WAIT = 10.0  # seconds between SIGTERM and SIGKILL of the child's group
UPLOAD_EVERY = 2.0  # the output so far is stored this often while the child runs


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
    ):
        self.run_id = run_id
        self._process = process
        self._store = store
        self._artifact_uri = artifact_uri
        self._echo = echo
        self._on_end = on_end
        self._tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._scratch = tempfile.TemporaryDirectory(prefix="eventflow-run-")
        self._output = Path(self._scratch.name) / "stdout.txt"
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
        self._monitor.join(timeout)
        if self._monitor.is_alive():
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

    # -- the monitor thread ------------------------------------------------------------

    def _follow(self) -> None:
        try:
            self._pump()
            self.returncode = self._process.wait()
            self._finish()
        finally:
            self._ended.set()
            self._scratch.cleanup()
            if self._on_end is not None:
                self._on_end()

    def _pump(self) -> None:
        """Copy the child's output to the terminal and the kept file, line by line."""
        assert self._process.stdout is not None
        stored_at = float("-inf")  # the first line is stored at once, then every UPLOAD_EVERY s
        stored_size = 0
        with open(self._output, "wb") as kept:
            for line in iter(self._process.stdout.readline, b""):
                kept.write(line)
                kept.flush()
                text = line.decode("utf-8", errors="replace")
                self._tail.append(text.rstrip("\n"))
                if self._echo is not None:
                    try:
                        self._echo.write(text)
                        self._echo.flush()
                    except (OSError, ValueError):
                        self._echo = None  # the terminal went away: keep the file going
                if time.monotonic() - stored_at >= UPLOAD_EVERY and kept.tell() != stored_size:
                    # Stored as it grows: a child that ends the run itself (MLflow's
                    # end_run) freezes its files, and the output up to then is kept.
                    self._store_output(quiet=True)
                    stored_at, stored_size = time.monotonic(), kept.tell()

    def _store_output(self, quiet: bool) -> None:
        with self._store_lock:
            try:
                size, sha256 = self._store.upload_artifact(self._artifact_uri, self._output, STDOUT_ARTIFACT)
                if not self._store.records_uploads:
                    self._store.append([commands.log_artifact(self.run_id, STDOUT_ARTIFACT, size, sha256)])
            except Exception as error:  # the run may have been ended (and frozen) by the child
                if not quiet:
                    print(f"eventflow: the output of run {self.run_id} could not be stored as {STDOUT_ARTIFACT}: {error}",
                          file=sys.stderr, flush=True)

    def _finish(self) -> None:
        code = self.returncode
        if self._cancelled.is_set():
            status, message = "KILLED", None
        elif code == 0:
            status, message = "FINISHED", None
        else:
            why = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"
            tail = "\n".join(self._tail)
            status, message = "FAILED", f"the entry point {why}; its last output:\n{tail}" if tail else f"the entry point {why}"
            self.error = message
        self._store_output(quiet=False)
        with self._store_lock:
            self._store.append([commands.end_run(self.run_id, status, error_message=message)])
        self._status = status


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass
