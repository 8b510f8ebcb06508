"""A running run's signs of life: ``run.alive`` every ``EVENTFLOW_HEARTBEAT_SECONDS``.

While a run is active the SDK says so, so that the server's watchdog
(consumers/watchdog.py) can tell a process that died (kill -9, out of memory, a lost
machine) from one that is only quiet, and record ``run.crashed``. One small event every
30 s by default, through the same sender as the run's metrics.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from eventflow import environment_variables as env_vars
from eventflow.validation import InvalidInput


def every() -> float:
    """``EVENTFLOW_HEARTBEAT_SECONDS``, checked (0: no heartbeat)."""
    try:
        seconds = env_vars.HEARTBEAT_SECONDS.get()
    except ValueError as error:
        raise InvalidInput(str(error)) from None
    if seconds is None or seconds < 0:
        raise InvalidInput(f"{env_vars.HEARTBEAT_SECONDS.name} must be 0 (off) or a positive number of seconds, not {seconds!r}")
    return float(seconds)


class Heartbeat:
    """Calls ``beat`` at once (in the caller's thread: the first sign of life follows the
    run's creation in the same flush, so a process killed in its first seconds is watched
    too), then every ``seconds`` until stopped."""

    def __init__(self, beat: Callable[[], None], seconds: float):
        self._beat = beat
        self._seconds = seconds
        self._stop = threading.Event()
        beat()
        self._thread = threading.Thread(target=self._run, name="eventflow-heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._seconds):
            try:
                self._beat()
            except Exception:  # the sender spools what it cannot send; a beat is never worth a crash
                pass

    def stop(self) -> None:
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)


def start(beat: Callable[[], None], seconds: float) -> Heartbeat | None:
    return Heartbeat(beat, seconds) if seconds > 0 else None
