"""The background sender: log calls enqueue, one thread turns them into events.

Why a thread: a training loop should pay microseconds per ``log_metric``, not a round
trip. Calls append a tuple to a deque (thread-safe, no lock on the hot path); the
sender drains it, packs consecutive metric points of a run into ``run.metrics_logged``
events of up to ``points_per_event`` points, and appends each drained chunk as one
batch. Order is kept per run: any other event of a run first sends that run's pending
points.

Nothing is dropped: while the log is unreachable the sender retries with backoff and
keeps the items; when ``max_pending`` items wait, log calls block until there is room.
``flush()`` returns once everything submitted before it is durable (with no timeout it
waits as long as that takes). A process that must stop first calls ``take_unsent()``:
the sender stops retrying and hands back, as events, everything not yet durable, for
the spool (see ``spool.py``). Before its own items the sender runs ``before`` (sending
an earlier process's spool), so a run's spooled events go before its later ones.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable, Sequence
from itertools import islice
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
    __slots__ = ("done", "taken")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.taken = False  # set when the items before it were handed to the spool instead


class _Points:
    """A run's points not yet in an event: four parallel lists."""

    __slots__ = ("keys", "values", "timestamps", "steps")

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.values: list[float] = []
        self.timestamps: list[int] = []
        self.steps: list[int] = []

    def extend(self, items: Sequence[tuple[str, str, float, int, int]]) -> None:
        """Add queued points, (run_id, key, value, timestamp, step) each, column by column."""
        self.keys += [x[1] for x in items]
        self.values += [x[2] for x in items]
        self.timestamps += [x[3] for x in items]
        self.steps += [x[4] for x in items]

    def events(self, run_id: str, per_event: int, final: bool) -> list[Event]:
        """Events of ``per_event`` points taken from the front; with ``final`` the rest too."""
        total = len(self.keys)
        taken = total if final else total - total % per_event
        out = []
        for start in range(0, taken, per_event):
            end = min(start + per_event, taken)
            keys = self.keys[start:end]
            names = list(dict.fromkeys(keys))
            index = {name: i for i, name in enumerate(names)}
            columns = {"names": names, "key_index": list(map(index.__getitem__, keys)), "values": self.values[start:end],
                       "steps": self.steps[start:end], "timestamps": self.timestamps[start:end]}
            out.append(commands.log_metrics(run_id, columns))
        if taken:
            del self.keys[:taken], self.values[:taken], self.timestamps[:taken], self.steps[:taken]
        return out


class Sender:
    _TAKEN = "eventflow: the sender was stopped; what it had not sent was handed over for the spool"

    def __init__(
        self,
        append: Append,
        *,
        max_pending: int = 1_000_000,
        points_per_event: int = 1000,
        max_events_per_batch: int = 500,
        linger: float = 0.005,
        retry_max: float = 5.0,
        before: Callable[["Sender"], object] | None = None,
    ):
        self._append = append
        self._before = before
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
        self._stopping = threading.Event()  # set by take_unsent: stop retrying, stop sending
        self._handover = threading.Lock()  # guards moving items from the queue to _inflight
        self._inflight: tuple[list[Event], list[_Flush]] = ([], [])  # drained, not yet durable
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
        if self._stopping.is_set():
            raise SendError(self._TAKEN)
        marker = _Flush()
        self._queue.append((marker, None))
        self._wake.set()
        if not marker.done.wait(timeout):
            raise TimeoutError(f"eventflow: {len(self._queue)} items still unsent after {timeout} s (is the log reachable?)")
        if marker.taken:
            raise SendError(self._TAKEN)
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

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def take_unsent(self, grace: float = 1.0) -> list[Event]:
        """Stop retrying and sending; return every event not yet durable, in order.

        The sender thread gets ``grace`` seconds to leave an append in progress; one that
        does not return (a hung connection) still has its events handed back: if it
        succeeds later they are appended twice, and the projector applies them once (it
        skips event ids it has applied). The sender is of no further use.
        """
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout=grace)
        with self._handover:
            events, markers = self._inflight
            self._inflight = ([], [])
            while self._queue:
                more, found = self._drain()
                events += more
                markers += found
        for marker in markers:
            marker.taken = True
            marker.done.set()
        with self._room:
            self._room.notify_all()
        return events

    # -- the sender thread -------------------------------------------------------------

    def _run(self) -> None:
        if self._before is not None:
            try:
                self._retrying(lambda: self._before(self))
            except (CodecError, InvalidInput) as error:  # refused for good: say so, go on with our own
                logger.error("eventflow refused spooled events: %s (see `eventflow sync`)", error)
                self._errors.append(f"spooled events: {error}")
        while not (self._closed and not self._queue) and not self._stopping.is_set():
            if not self._queue:
                self._wake.wait(self.linger)
                self._wake.clear()
                continue
            with self._handover:
                if self._stopping.is_set():
                    return
                events, markers = self._drain()
                self._inflight = (events, markers)
            if events and not self._send(events):
                return  # stopped: take_unsent has the events
            with self._handover:
                self._inflight = ([], [])
            for marker in markers:
                marker.done.set()
            with self._room:
                self._room.notify_all()

    def _drain(self) -> tuple[list[Event], list[_Flush]]:
        """Take queued items into events, up to one batch; flush markers end a batch.

        Runs of points are taken a block at a time and turned into columns by ``zip`` and
        ``map``, not one Python step per point: the sender holds the GIL the training loop
        needs, so its cost per point is paid by every ``log_metric`` call too."""
        events: list[Event] = []
        markers: list[_Flush] = []
        points: dict[str, _Points] = {}
        queue = self._queue
        per_event = self.points_per_event

        def emit_points(run_id: str) -> None:
            pending = points.pop(run_id, None)
            if pending is not None:
                events.extend(pending.events(run_id, per_event, final=True))

        while queue and len(events) < self.max_events_per_batch:
            if len(queue[0]) == 5:
                block = list(islice(iter(queue.popleft, None), min(len(queue), per_event * 64)))
                lengths = list(map(len, block))
                if lengths.count(5) != len(block):  # an event or a marker: it goes back, its turn comes next
                    first = min(lengths.index(n) if n in lengths else len(block) for n in (1, 2))
                    queue.extendleft(reversed(block[first:]))
                    del block[first:]
                run_ids = [x[0] for x in block]
                if run_ids.count(run_ids[0]) == len(run_ids):
                    groups = {run_ids[0]: block}
                else:  # several runs logging at once: each run's points in their order
                    groups = {r: [x for x in block if x[0] == r] for r in dict.fromkeys(run_ids)}
                for run_id, items in groups.items():
                    pending = points.get(run_id)
                    if pending is None:
                        pending = points[run_id] = _Points()
                    pending.extend(items)
                    events.extend(pending.events(run_id, per_event, final=False))
                continue
            item = queue.popleft()
            if len(item) == 2:
                markers.append(item[0])
                break
            event = item[0]
            if event.payload.get("run_id") in points:
                emit_points(event.payload["run_id"])
            events.append(event)
        for run_id in list(points):
            emit_points(run_id)
        return events, markers

    def _send(self, events: list[Event]) -> bool:
        """Append one batch, retrying while the log is unreachable; False if stopped first.
        Events the target refuses are left out, each alone, with the reason kept."""
        refused: list[tuple[Event, Exception]] = []
        done = self._retrying(lambda: refused.extend(append_all_but_refused(self._append, events)), len(events))
        for event, error in refused:
            # The event itself is wrong: retrying cannot help. Keep the reason.
            logger.error("eventflow refused %s %s: %s", event.type, event.event_id, error)
            self._errors.append(str(error))
        return done

    def _retrying(self, call: Callable[[], object], size: int = 0) -> bool:
        """Run ``call`` until it succeeds (True) or the sender is stopping (False)."""
        delay = 0.05
        while not self._stopping.is_set():
            try:
                call()
                return True
            except (CodecError, InvalidInput):
                raise
            except Exception as error:  # unreachable log, server restarting: keep trying
                self.retries += 1
                logger.warning("eventflow: cannot append %d events (%s); retrying in %.1f s", size, error, delay)
                self._stopping.wait(delay)
                delay = min(delay * 2, self.retry_max)
        return False


def append_all_but_refused(append: Callable[[Sequence[Event]], object], events: Sequence[Event]) -> list[tuple[Event, Exception]]:
    """Append a batch; where the target refuses it (the server refuses a whole batch for
    one event that breaks a rule, and appends nothing of it), append the halves apart,
    down to the refused events alone, so that no good event goes with a bad one.
    Returns the refused events with the reason; errors of the log itself propagate."""
    try:
        append(events)
        return []
    except (CodecError, InvalidInput) as error:
        if len(events) == 1:
            return [(events[0], error)]
    middle = len(events) // 2
    return append_all_but_refused(append, events[:middle]) + append_all_but_refused(append, events[middle:])
