"""The websocket hub: one tail of the log per server, fanned out to live subscriptions.

The feed (consumers/dashboard_feed.py) reads the log in its own thread; each batch is
prepared there once — every event encoded to JSON once, metric points laid out column by
column per series — and handed to the event loop, where ``dispatch`` only files the
prepared pieces into the queues of the subscriptions that want them. Nothing on the loop
waits for a client: a connection's sender task drains its own queues into frames, and a
subscription whose queue outgrows its bound is marked stale and starts again from a fresh
snapshot, so a slow client never stalls the others nor grows the server's memory.

A snapshot is stamped with the log positions it reflects (``P``). The hub keeps a ring of
recent batches, so attaching a subscription is one step on the loop: replay the ring from
``P`` up to the hub's position ``H``, then receive every later batch. Events below ``P``
are in the snapshot, events from ``P`` on are sent once: no gap, no duplicate.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from eventflow.codec import decode
from eventflow.consumers.base import Delivery
from eventflow.events import Event, metric_points
from eventflow.log import Record, TopicPartition
from eventflow.proto_json import replace_non_finite
from eventflow.webhooks.filters import ONLY_BY_NAME, type_matches

if TYPE_CHECKING:
    from eventflow.auth.streams import Owners, Sight

Positions = dict[TopicPartition, int]

# A subscription whose unsent frames pass this many bytes starts again from a snapshot.
MAX_QUEUED_BYTES = int(os.environ.get("EVENTFLOW_LIVE_MAX_QUEUED", 8 * 1024 * 1024))
# The ring of recent batches that attaching subscriptions replay from.
RING_BYTES = int(os.environ.get("EVENTFLOW_LIVE_RING_BYTES", 32 * 1024 * 1024))
# Batches handed to the loop and not yet dispatched, before the feed thread waits.
MAX_IN_FLIGHT = 16


def dumps(value: Any) -> str:
    """JSON for the browser: NaN and infinities as null (its charts skip them), bytes as hex."""
    finite = replace_non_finite(value, lambda _: None)
    return json.dumps(finite, separators=(",", ":"), default=lambda v: v.hex() if isinstance(v, bytes) else str(v))


def floats_json(values: list[float]) -> str:
    text = json.dumps(values, separators=(",", ":"))
    if "N" in text or "I" in text:  # NaN, Infinity: null in JSON
        text = text.replace("-Infinity", "null").replace("Infinity", "null").replace("NaN", "null")
    return text


def positions_json(positions: Positions) -> list[list[Any]]:
    return [[tp.topic, tp.partition, offset] for tp, offset in sorted(positions.items())]


def parse_positions(value: Any) -> Positions:
    """Positions as the protocol writes them: ``[[topic, partition, offset], ...]``."""
    if not isinstance(value, list):
        raise ValueError("positions must be a list of [topic, partition, offset]")
    out: Positions = {}
    for entry in value:
        if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], str)
                and isinstance(entry[1], int) and isinstance(entry[2], int) and entry[2] >= 0):
            raise ValueError(f"invalid position {entry!r}: expected [topic, partition, offset >= 0]")
        out[TopicPartition(entry[0], entry[1])] = entry[2]
    return out


def event_entry(event: Event, topic: str, partition: int, offset: int, points: int | None = None) -> dict[str, Any]:
    """An event as the protocol (and the activity feed) shows it; metric batches are
    summarised (their points travel as series)."""
    payload = event.payload
    if points is not None:
        names = sorted({p.key for p in metric_points(payload)})
        payload = {"run_id": payload.get("run_id"), "points": points, "keys": names}
    return {
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "event": {
            "event_id": event.event_id,
            "type": event.type,
            "time": event.time,
            "actor": event.actor,
            "source": event.source,
            "correlation_id": event.correlation_id,
            "causation_id": event.causation_id,
            "payload": payload,
        },
    }


@dataclass(slots=True)
class Item:
    """One event, prepared once for every subscription."""

    tp: TopicPartition
    offset: int
    type: str
    key: str  # the entity's key (run id, experiment id, model name, ...)
    run_id: str | None
    experiment_id: str | None
    entry: str  # the event as JSON (metric batches summarised)
    chunk: str | None  # metric points: {"run_id":..,"series":{key:{"step":[],"time":[],"value":[]}}}
    size: int
    # What the event is about, for readers who may not see everything (auth on); None
    # until resolved (eventflow/auth/streams.py).
    about: tuple[tuple[str, str], ...] | None = None


class Batch:
    """A batch of the feed, prepared for subscriptions; or, read while no page watched,
    still the log's records, prepared only if a page attaches from a position within it
    (most never are: the ring drops them unread)."""

    def __init__(self, items: list[Item] | None, starts: Positions, ends: Positions, size: int, records: list[Record] | None = None):
        self._items = items
        self._records = records
        self.starts = starts
        self.ends = ends  # the next offset of each partition read, poison records included
        # Bytes held: the prepared JSON, or the records' own while unprepared (the ring's
        # budget counts what it holds; a batch prepared later keeps the size it came with).
        self.size = size
        self.count = len(items) if items is not None else len(records or ())

    @classmethod
    def unprepared(cls, records: list[Record], spans: dict[TopicPartition, tuple[int, int]]) -> "Batch":
        return cls(None, {tp: s for tp, (s, _) in spans.items()}, {tp: e for tp, (_, e) in spans.items()},
                   sum(len(r.value) for r in records), records)

    @property
    def items(self) -> list[Item]:
        return self.prepared()

    def prepared(self, owners: "Owners | None" = None) -> list[Item]:
        """The items, prepared now if need be (see ``prepare_items`` for ``owners``). Safe
        from any thread: two that race both prepare the same items, and either stands."""
        items = self._items
        if items is None:
            items, _ = prepare_items([Delivery(decode(r.value), r) for r in self._records or ()], owners)
            self._items = items
        return items


def prepare(deliveries: Iterable[Delivery], spans: dict[TopicPartition, tuple[int, int]], owners: "Owners | None" = None) -> Batch:
    """Encode a batch once (in the feed's thread, off the event loop); with ``owners``
    (auth on), also say what each event is about, so that the loop only looks it up."""
    items, size = prepare_items(deliveries, owners)
    return Batch(items, {tp: s for tp, (s, _) in spans.items()}, {tp: e for tp, (_, e) in spans.items()}, size)


def prepare_items(deliveries: Iterable[Delivery], owners: "Owners | None" = None) -> tuple[list[Item], int]:
    """Every event encoded once: the items and their size in bytes. Without ``owners``
    an item's ``about`` is looked up when a subscription of a user who may not read
    everything first needs it."""
    deliveries = list(deliveries)
    abouts = owners.about_all([(d.event.type, d.event.payload) for d in deliveries]) if owners is not None else None
    items = []
    size = 0
    for index, delivery in enumerate(deliveries):
        event, record = delivery.event, delivery.record
        payload = event.payload
        chunk = None
        count = None
        if event.type == "run.metrics_logged":
            series: dict[str, tuple[list[int], list[int], list[float]]] = {}
            points = metric_points(payload)
            for key, value, step, timestamp in points:
                columns = series.get(key)
                if columns is None:
                    columns = series[key] = ([], [], [])
                columns[0].append(step)
                columns[1].append(timestamp)
                columns[2].append(value)
            count = len(points)
            body = ",".join(
                f'{json.dumps(key)}:{{"step":{json.dumps(s)},"time":{json.dumps(t)},"value":{floats_json(v)}}}'
                for key, (s, t, v) in series.items()
            )
            chunk = f'{{"run_id":{json.dumps(payload["run_id"])},"series":{{{body}}}}}'
        entry = dumps(event_entry(event, record.topic, record.partition, record.offset, count))
        item = Item(
            record.tp,
            record.offset,
            event.type,
            event.key,
            payload.get("run_id"),
            payload.get("experiment_id"),
            entry,
            chunk,
            len(entry) + (len(chunk) if chunk else 0),
            abouts[index] if abouts is not None else None,
        )
        size += item.size
        items.append(item)
    return items, size


MODEL_FAMILIES = ("registered_model.", "model_version.", "logged_model.", "deployment.")


@dataclass
class Pending:
    """What a subscription has to send: events, point chunks, and the positions after them."""

    entries: list[str] = field(default_factory=list)
    chunks: list[str] = field(default_factory=list)
    size: int = 0

    def __bool__(self) -> bool:
        return bool(self.entries or self.chunks)


class Subscription:
    """One subscription of one connection: what it wants, and what it has yet to send."""

    KINDS = ("experiments", "experiment", "runs", "models", "events")

    def __init__(self, sub_id: str, kind: str, spec: dict[str, Any], hub: "Hub", wake: asyncio.Event, sight: "Sight | None" = None):
        """``sight`` is what the connection's user may read (None: auth is off, all)."""
        if kind not in self.KINDS:
            raise ValueError(f"unknown subscription kind {kind!r}: use one of {', '.join(self.KINDS)}")
        self.id = sub_id
        self.kind = kind
        self.spec = spec
        self.hub = hub
        self.wake = wake
        self.sight = sight
        self.experiment_id: str | None = str(spec["experiment_id"]) if spec.get("experiment_id") is not None else None
        if kind == "experiment" and self.experiment_id is None:
            raise ValueError("an 'experiment' subscription needs experiment_id")
        self.run_ids: set[str] = {str(r) for r in spec.get("run_ids") or ()}
        if kind == "runs" and not self.run_ids:
            raise ValueError("a 'runs' subscription needs run_ids (a non-empty list)")
        self.types: list[str] = [str(t) for t in spec.get("types") or ()]
        self.entity: str | None = str(spec["entity"]) if spec.get("entity") else None
        self.pending = Pending()
        self.positions: Positions = {}  # everything up to these is in `pending` or sent
        self.floor: Positions = {}  # where the hub lags the snapshot: skip below these
        self.active = False  # attached to the hub
        self.stale = False  # overflowed: the sender starts it again from a snapshot

    # -- what it wants ------------------------------------------------------------------

    def matches(self, item: Item) -> bool:
        """Whether the subscription wants the item and its user may read it (an event
        about what they may not read is neither sent nor counted)."""
        if not self.wants(item):
            return False
        if self.sight is not None and not self.sight.sees(self._about(item)):
            return False
        if self.kind == "experiment" and item.type == "run.created":
            self.run_ids.add(item.run_id or "")  # the experiment's new run: its events follow
        return True

    def _about(self, item: Item) -> tuple[tuple[str, str], ...]:
        if item.about is None:  # prepared before auth was looked at: resolve it now
            assert self.sight is not None
            item.about = self.sight.owners.about_all([(item.type, json.loads(item.entry)["event"]["payload"])])[0]
        return item.about

    def wants(self, item: Item) -> bool:
        kind, type_ = self.kind, item.type
        if kind == "runs":
            return type_.startswith("run.") and item.run_id in self.run_ids
        if kind == "experiment":
            if type_.startswith("run."):
                return item.run_id in self.run_ids or (type_ == "run.created" and item.experiment_id == self.experiment_id)
            return type_.startswith("experiment.") and item.experiment_id == self.experiment_id
        if kind == "experiments":
            return type_.startswith("experiment.")
        if kind == "models":
            return type_.startswith(MODEL_FAMILIES)
        # events: the activity feed (the SDK's signs of life only when asked for by name)
        if (self.types and not type_matches(self.types, type_)) or (not self.types and type_ in ONLY_BY_NAME):
            return False
        return self.entity is None or self.entity in (item.key, item.run_id, item.experiment_id)

    def take(self, batch: Batch, into: Pending, floor: Positions | None = None) -> None:
        """File what this subscription wants of a batch; below ``floor`` is skipped
        (the snapshot has it already)."""
        as_events = self.kind == "events"
        for item in batch.items:
            if floor and item.offset < floor.get(item.tp, 0):
                continue
            if not self.matches(item):
                continue
            if item.chunk is not None and not as_events:
                into.chunks.append(item.chunk)
            else:
                into.entries.append(item.entry)
            into.size += item.size

    # -- on the loop -----------------------------------------------------------------------

    def receive(self, batch: Batch) -> None:
        if self.stale:
            return
        self.take(batch, self.pending, self.floor)
        self.positions.update(batch.ends)
        if self.floor:
            self.floor = {tp: o for tp, o in self.floor.items() if self.positions.get(tp, 0) < o}
        if self.pending.size > MAX_QUEUED_BYTES:
            # Too far behind: drop what is queued and start again from a fresh snapshot.
            self.stale = True
            self.pending = Pending()
            self.hub.detach(self)
        self.wake.set()

    def frame(self) -> str | None:
        """The next frame to send (and the queue emptied), or None if nothing is due."""
        pending = self.pending
        if not pending:
            return None
        self.pending = Pending()
        return (
            f'{{"type":"events","sub":{json.dumps(self.id)},"positions":{dumps(positions_json(self.positions))},'
            f'"events":[{",".join(pending.entries)}],"points":[{",".join(pending.chunks)}]}}'
        )


class Hub:
    """Fans the feed's batches out to the subscriptions of every connection."""

    def __init__(self, ring_bytes: int | None = None):
        self.loop: asyncio.AbstractEventLoop | None = None
        self.positions: Positions = {}
        self.ready = threading.Event()
        self.subscriptions: set[Subscription] = set()
        self.ring: deque[Batch] = deque()
        self.ring_bytes = RING_BYTES if ring_bytes is None else ring_bytes
        self._ring_size = 0
        self.ring_base: Positions = {}  # the positions before the oldest batch in the ring
        # Whose runs and models are whose, for subscriptions of users who may not read
        # everything: set by the first of them (auth on), then every batch says what its
        # events are about (eventflow/auth/streams.py).
        self.owners: "Owners | None" = None
        self._in_flight = threading.Semaphore(MAX_IN_FLIGHT)
        self.dispatched = 0  # events, for the benchmark and tests

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    # -- from the feed's thread -----------------------------------------------------------------

    def started(self, positions: Positions) -> None:
        """The feed's starting positions (the log's end when it started)."""
        self._call(self._start, dict(positions))

    def publish(self, deliveries: list[Delivery], spans: dict[TopicPartition, tuple[int, int]]) -> None:
        # Read from another thread: a page attaching meanwhile gets the batch prepared on
        # the loop instead (Batch.items), late but whole.
        if self.subscriptions:
            batch = prepare(deliveries, spans, self.owners)
        else:  # preparing a 1,000-point batch costs 1.8 ms, most of it for a ring nobody reads
            batch = Batch.unprepared([d.record for d in deliveries], spans)
        # Bounded hand-over: if the loop falls behind, the feed waits (the log keeps the rest).
        while not self._in_flight.acquire(timeout=1.0):
            if self.loop is None or self.loop.is_closed():
                return
        self._call(self._dispatch, batch)

    def _call(self, function: Any, argument: Any) -> None:
        if self.loop is None or self.loop.is_closed():
            raise RuntimeError("the hub is not bound to a running event loop")
        self.loop.call_soon_threadsafe(function, argument)

    # -- on the loop ------------------------------------------------------------------------------

    def _start(self, positions: Positions) -> None:
        for tp, offset in positions.items():
            self.positions.setdefault(tp, offset)
            self.ring_base.setdefault(tp, offset)
        self.ready.set()

    def _dispatch(self, batch: Batch) -> None:
        self._in_flight.release()
        self.positions.update(batch.ends)
        self.dispatched += batch.count
        self.ring.append(batch)
        self._ring_size += batch.size
        while self._ring_size > self.ring_bytes and len(self.ring) > 1:
            old = self.ring.popleft()
            self._ring_size -= old.size
            self.ring_base.update(old.ends)
        for subscription in list(self.subscriptions):
            subscription.receive(batch)

    def prepare_since(self, positions: Positions) -> None:
        """Prepare the ring's unprepared batches past ``positions`` (in a worker thread,
        before ``attach``), so that attaching leaves at most the few published meanwhile
        to prepare on the loop."""
        for batch in list(self.ring):  # a copy: the loop appends and drops meanwhile
            if any(batch.ends.get(tp, 0) > positions.get(tp, 0) for tp in batch.ends):
                batch.prepared(self.owners)

    def covers(self, positions: Positions) -> bool:
        """Whether the ring holds every event from ``positions`` up to now."""
        return all(positions.get(tp, 0) >= base for tp, base in self.ring_base.items() if positions.get(tp, 0) < self.positions.get(tp, 0))

    def attach(self, subscription: Subscription, since: Positions) -> Pending:
        """Attach (on the loop, atomically): returns the events from ``since`` up to the
        hub's position, and every later batch goes to the subscription's queue."""
        if not self.covers(since):
            raise LookupError("the hub's ring no longer holds those positions")
        backlog = Pending()
        floor = {tp: offset for tp, offset in since.items()}
        for batch in self.ring:
            if any(batch.ends.get(tp, 0) > floor.get(tp, 0) for tp in batch.ends):
                subscription.take(batch, backlog, floor)
        subscription.positions = {tp: max(since.get(tp, 0), self.positions.get(tp, 0)) for tp in {*since, *self.positions}}
        subscription.floor = {tp: o for tp, o in since.items() if o > self.positions.get(tp, 0)}
        subscription.pending = Pending()
        subscription.stale = False
        subscription.active = True
        self.subscriptions.add(subscription)
        return backlog

    def detach(self, subscription: Subscription) -> None:
        subscription.active = False
        self.subscriptions.discard(subscription)
