"""Stopping a run from outside the process (the dashboard's Stop button; MLflow issue 4391).

A daemon thread asks the store, every ``EVENTFLOW_STOP_POLL_SECONDS``, whether someone asked
one of this process's active runs to stop (``run.stop_requested``: over the server's
``GET /api/2.0/eventflow/runs/stop``, or the views on the embedded default). The first
request it finds is delivered as Ctrl-C is: SIGINT to the main thread, so the
``KeyboardInterrupt`` ends the runs KILLED by the same code as a Ctrl-C at the keyboard
(``ActiveRun.__exit__`` or the uncaught-exception hook) and the process exits as it would.
"""

from __future__ import annotations

import ctypes
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from eventflow.environment_variables import STOP_POLL_SECONDS
from eventflow.sdk.stores import Store


def interrupt_main() -> None:
    """Ctrl-C for the main thread, even while it sleeps or waits on I/O."""
    main = threading.main_thread()
    if callable(signal.getsignal(signal.SIGINT)) and hasattr(signal, "pthread_kill"):
        signal.pthread_kill(main.ident, signal.SIGINT)  # type: ignore[arg-type]
        return
    # SIGINT ignored (a job a script started with &, which ignores it): the stop was asked
    # for all the same, so raise what Ctrl-C would have raised, at the main thread's next step.
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(main.ident), ctypes.py_object(KeyboardInterrupt))


class StopWatcher:
    """Polls for stop requests of ``run_ids()`` while there are any; delivers each run's once."""

    def __init__(self, store: Callable[[], Store | None], run_ids: Callable[[], list[str]],
                 deliver: Callable[[], None] = interrupt_main):
        self.store, self.run_ids, self.deliver = store, run_ids, deliver
        self.interval = 0.0
        self.delivered: set[str] = set()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Watch (again) if not watching: the thread ends when the process has no active run."""
        self.interval = float(STOP_POLL_SECONDS.get() or 0)  # read at each run: a test or a script may change it
        if self.interval <= 0:
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._watch, name="eventflow-stop-watcher", daemon=True)
                self._thread.start()

    def _watch(self) -> None:
        pause = threading.Event()
        while self.run_ids():
            pause.wait(self.interval)
            request = self.check()
            if request is not None:
                why = f" ({request['reason']})" if request.get("reason") else ""
                print(f"eventflow: run {request['run_id']} was asked to stop by {request['actor']}{why}; "
                      "stopping as Ctrl-C does", file=sys.stderr, flush=True)
                self.deliver()

    def check(self) -> dict[str, Any] | None:
        """The first stop request of an active run not delivered yet, or None."""
        store = self.store()
        if store is None:
            return None
        for run_id in self.run_ids():
            if run_id in self.delivered:
                continue
            try:
                found = store.stop_request(run_id)
            except Exception:  # noqa: BLE001 - unreachable now; the next poll asks again
                return None
            if found is not None:
                self.delivered.add(run_id)
                return {**found, "run_id": run_id}
        return None
