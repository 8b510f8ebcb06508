"""The background sender: log calls enqueue, one thread turns them into events.

Why a thread: a training loop should pay microseconds per ``log_metric``, not a round
trip. Calls append a tuple to a deque (thread-safe, no lock on the hot path); the
sender drains it, packs consecutive metric points of a run into ``run.metrics_logged``
events of up to ``points_per_event`` points, and appends each drained chunk as one
batch. Order is kept per run: any other event of a run first sends that run's pending
points.

Nothing is dropped: while the log is unreachable the sender retries with backoff and
keeps the items; when ``max_pending`` items wait, log calls block until there is room.
``flush()`` returns once everything submitted before it is durable.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from eventflow import commands
from eventflow.codec import CodecError
from eventflow.events import Event
from eventflow.validation import InvalidInput

logger = logging.getLogger(__name__)

Append = Callable[[Sequence[Event]], object]


class SendError(RuntimeError):
    """Events were refused for good (not a transient failure); raised by ``flush``."""


class _Flush:
    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


class Sender:
    def __init__(
        self,
        append: Append,
        *,
        max_pending: int = 1_000_000,
        points_per_event: int = 1000,
        max_events_per_batch: int = 500,
        linger: float = 0.005,
        retry_max: float = 5.0,
    ):
        self._append = append
        self.max_pending = max_pending
        self.points_per_event = points_per_event
        self.max_events_per_batch = max_events_per_batch
        self.linger = linger
        self.retry_max = retry_max
        self._queue: collections.deque[tuple[Any, ...]] = collections.deque()
        self._wake = threading.Event()
        self._room = threading.Condition()
        self._errors: list[str] = []
        self._closed = False
        self.retries = 0
        self._thread = threading.Thread(target=self._run, name="eventflow-sender", daemon=True)
        self._thread.start()

    # -- producers (any thread) -------------------------------------------------------

    def metric(self, run_id: str, key: str, value: float, timestamp: int, step: int) -> None:
        """Enqueue one checked metric point: the hot path."""
        self._queue.append((run_id, key, value, timestamp, step))
        if len(self._queue) >= self.max_pending:
            self._wait_for_room()

    def event(self, event: Event) -> None:
        """Enqueue any other event; it is sent after everything submitted before it."""
        self._queue.append((event,))
        if len(self._queue) >= self.max_pending:
            self._wait_for_room()

    def _wait_for_room(self) -> None:
        self._wake.set()
        with self._room:
            while len(self._queue) >= self.max_pending and self._thread.is_alive():
                self._room.wait(0.1)

    def flush(self, timeout: float | None = None) -> None:
        """Block until everything submitted so far is durable; raise ``SendError`` on refusals."""
        marker = _Flush()
        self._queue.append((marker, None))
        self._wake.set()
        if not marker.done.wait(timeout):
            raise TimeoutError(f"eventflow: {len(self._queue)} items still unsent after {timeout} s (is the log reachable?)")
        if self._errors:
            errors, self._errors = self._errors, []
            raise SendError("eventflow refused some events: " + "; ".join(errors))

    def close(self, timeout: float | None = None) -> None:
        self.flush(timeout)
        self._closed = True
        self._wake.set()
        self._thread.join(timeout=5)

    @property
    def pending(self) -> int:
        return len(self._queue)

    # -- the sender thread -------------------------------------------------------------

    def _run(self) -> None:
        while not (self._closed and not self._queue):
            if not self._queue:
                self._wake.wait(self.linger)
                self._wake.clear()
                continue
            events, markers = self._drain()
            if events:
                self._send(events)
            for marker in markers:
                marker.done.set()
            with self._room:
                self._room.notify_all()

    def _drain(self) -> tuple[list[Event], list[_Flush]]:
        """Take queued items into events, up to one batch; flush markers end a batch."""
        events: list[Event] = []
        markers: list[_Flush] = []
        points: dict[str, commands.Columns] = {}
        queue = self._queue

        def emit_points(run_id: str) -> None:
            pending = points.pop(run_id, None)
            if pending:
                events.append(commands.log_metrics(run_id, pending.columns))

        while queue and len(events) < self.max_events_per_batch:
            item = queue.popleft()
            if len(item) == 5:
                run_id, key, value, timestamp, step = item
                pending = points.get(run_id)
                if pending is None:
                    pending = points[run_id] = commands.Columns()
                if pending.add(key, value, timestamp, step) >= self.points_per_event:
                    emit_points(run_id)
            elif len(item) == 2:
                markers.append(item[0])
                break
            else:
                event = item[0]
                if event.payload.get("run_id") in points:
                    emit_points(event.payload["run_id"])
                events.append(event)
        for run_id in list(points):
            emit_points(run_id)
        return events, markers

    def _send(self, events: list[Event]) -> None:
        delay = 0.05
        while True:
            try:
                self._append(events)
                return
            except (CodecError, InvalidInput) as error:
                # The events themselves are wrong: retrying cannot help. Keep the reason.
                logger.error("eventflow refused %d events: %s", len(events), error)
                self._errors.append(str(error))
                return
            except Exception as error:  # unreachable log, server restarting: keep trying
                self.retries += 1
                logger.warning("eventflow: cannot append %d events (%s); retrying in %.1f s", len(events), error, delay)
                time.sleep(delay)
                delay = min(delay * 2, self.retry_max)
