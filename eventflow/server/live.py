"""``/api/2.0/eventflow/live``: the websocket a page subscribes through (protocol in the README).

A subscription starts with a snapshot read from the views in one transaction together
with the projector's ``log_positions`` — the positions the snapshot reflects — and goes on
with every event from those positions on (the hub's ring, or the log itself when the ring
no longer reaches back that far). A client that reconnects sends the positions of its
last frame as ``resume`` and gets what it missed, without a snapshot.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from sqlalchemy import Connection, select
from starlette.concurrency import run_in_threadpool
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from eventflow.auth.permissions import LEVELS, Principal, level, visibility
from eventflow.auth.streams import Owners, Sight
from eventflow.codec import decode
from eventflow.consumers.base import Delivery
from eventflow.events import LIFECYCLE_TOPICS
from eventflow.log import TopicPartition
from eventflow.server.hub import (
    Hub,
    Pending,
    Positions,
    Subscription,
    floats_json,
    dumps,
    parse_positions,
    positions_json,
    prepare,
)
from eventflow.server.runtime import Runtime
from eventflow.views import queries
from eventflow.views.positions import PROJECTOR
from eventflow.views.tables import experiments, log_positions

logger = logging.getLogger(__name__)

PATH = "/api/2.0/eventflow/live"
# Frames per subscription are at least this far apart: what arrives meanwhile is coalesced.
FRAME_INTERVAL = 0.02
# A resume further behind than this many records gets a fresh snapshot instead.
MAX_CATCH_UP = 100_000
RECENT_EVENTS = 200
# Subscriptions one connection may hold: each costs a snapshot and a queue on the hub.
MAX_SUBSCRIPTIONS = 64


# -- snapshots (in a worker thread) ------------------------------------------------------


def _consistent(connection: Connection) -> Connection:
    """One snapshot of the database for every read that follows (SQLite's deferred
    transaction gives that from the first read; PostgreSQL needs REPEATABLE READ)."""
    if connection.dialect.name == "postgresql":
        return connection.execution_options(isolation_level="REPEATABLE READ")
    return connection


def projector_positions(connection: Connection) -> Positions:
    rows = connection.execute(
        select(log_positions.c.topic, log_positions.c.partition, log_positions.c.next_offset).where(log_positions.c.consumer == PROJECTOR)
    )
    return {TopicPartition(t, p): n for t, p, n in rows}


def _history(connection: Connection, run_id: str, key: str) -> str:
    points, _ = queries.metric_history(connection, run_id, key)
    steps = json.dumps([p["step"] for p in points])
    times = json.dumps([p["timestamp"] for p in points])
    return f'{json.dumps(key)}:{{"step":{steps},"time":{times},"value":{floats_json([p["value"] for p in points])}}}'


def _visible_experiments(connection: Connection, sight: Sight | None) -> list[dict[str, Any]]:
    """Every experiment the subscription's user may read (auth off: every experiment)."""
    visible = None if sight is None else visibility(sight.principal, "experiment", experiments.c.experiment_id)
    if sight is not None and sight.principal.cap < LEVELS["READ"]:
        return []
    found, _ = queries.search_experiments(connection, "ALL", 1000, visible=visible)
    return found


def _may_read(connection: Connection, sight: Sight | None, resource_type: str, resource_id: str) -> bool:
    return sight is None or sight.all or level(connection, sight.principal, resource_type, resource_id) >= LEVELS["READ"]


def view_snapshot(runtime: Runtime, subscription: Subscription) -> tuple[str, Positions]:
    """The subscription's data as JSON, and the log positions it reflects: only what its
    user may read (an experiment or run they may not read is neither shown nor counted)."""
    spec = subscription.spec
    sight = subscription.sight
    with runtime.engine.connect() as connection:
        connection = _consistent(connection)
        positions = projector_positions(connection)  # first read: fixes the snapshot
        if subscription.kind == "experiments":
            return dumps({"experiments": _visible_experiments(connection, sight)}), positions
        if subscription.kind == "experiment":
            if not _may_read(connection, sight, "experiment", subscription.experiment_id or ""):
                raise PermissionError(f"Permission denied: READ on experiment {subscription.experiment_id!r} is needed")
            experiment = queries.get_experiment(connection, subscription.experiment_id or "")
            found, _ = queries.search_runs(
                connection, [subscription.experiment_id or ""], spec.get("view_type") or "ACTIVE_ONLY",
                int(spec.get("max_results") or 1000), spec.get("order_by") or (), None, spec.get("filter") or None,
            )
            subscription.run_ids = {run["info"]["run_id"] for run in found}
            return dumps({"experiment": experiment, "runs": found}), positions
        if subscription.kind == "runs":
            parts = []
            for run_id in sorted(subscription.run_ids):
                run = queries.get_run(connection, run_id)
                if run is None or not _may_read(connection, sight, "experiment", run["info"]["experiment_id"]):
                    continue
                keys = sorted({m["key"] for m in run["data"]["metrics"]})
                histories = ",".join(_history(connection, run_id, key) for key in keys)
                parts.append(f'{{"run":{dumps(run)},"history":{{{histories}}}}}')
            return f'{{"runs":[{",".join(parts)}]}}', positions
        # models: what exists of the registry, and the recent model and deployment events
        found, _ = queries.search_logged_models(connection, [e["experiment_id"] for e in _visible_experiments(connection, sight)])
    events, _ = recent_events(runtime, subscription)
    return dumps({"logged_models": found, "registered_models": [], "events": events}), positions


def recent_events(runtime: Runtime, subscription: Subscription, count: int = RECENT_EVENTS) -> tuple[list[dict[str, Any]], Positions]:
    """The last ``count`` events the subscription wants, and the log's ends they reach
    (the activity feed's snapshot: its view is the log itself)."""
    log = runtime.log
    ends = {TopicPartition(topic, p): end for topic in LIFECYCLE_TOPICS for p, end in log.end_offsets(topic).items()}
    # Read back far enough that filtering leaves `count` (metric batches are most events).
    span = count * (10 if subscription.types or subscription.entity else 1)
    starts = {tp: max(0, end - span) for tp, end in ends.items()}
    batch = read_range(runtime, starts, ends, subscription.sight.owners if subscription.sight is not None else None)
    found = Pending()
    subscription.take(batch, found)
    entries = [json.loads(entry) for entry in found.entries]
    entries.sort(key=lambda e: (e["event"]["time"], e["topic"], e["partition"], e["offset"]))
    return entries[-count:], ends


def read_range(runtime: Runtime, starts: Positions, ends: Positions, owners: Owners | None = None):  # type: ignore[no-untyped-def]
    """Every event from ``starts`` up to ``ends``, read from the log, prepared as a batch
    (with what each event is about when ``owners`` is given: auth is on)."""
    todo = {tp: (s, ends[tp]) for tp, s in starts.items() if tp in ends and s < ends[tp]}
    deliveries: list[Delivery] = []
    spans: dict[TopicPartition, tuple[int, int]] = {}
    if todo:
        topics = sorted({tp.topic for tp in todo})
        with runtime.log.consumer(topics) as consumer:
            for tp in consumer.assignment():
                consumer.seek(tp, todo[tp][0] if tp in todo else ends.get(tp, 0))
            deadline = time.monotonic() + 60
            while any(consumer.position(tp) < end for tp, (_, end) in todo.items()):
                if time.monotonic() > deadline:
                    raise TimeoutError("the log did not deliver the records it holds within 60 s")
                for record in consumer.poll(timeout=0.5, max_records=5000):
                    if record.tp not in todo or record.offset >= todo[record.tp][1]:
                        continue
                    try:
                        deliveries.append(Delivery(decode(record.value), record))
                    except Exception:  # poison: the dead-letter topic has it
                        continue
                spans = {tp: (todo[tp][0], min(consumer.position(tp), todo[tp][1])) for tp in todo}
    return prepare(deliveries, spans, owners)


# -- one websocket connection ------------------------------------------------------------------


class LiveConnection:
    def __init__(self, websocket: WebSocket, runtime: Runtime, hub: Hub):
        self.websocket = websocket
        self.runtime = runtime
        self.hub = hub
        # Auth on: the middleware authenticated the handshake; every subscription of the
        # connection sees only what its user may read, decided per event (re-asked after
        # eventflow.auth.streams.RECHECK_SECONDS, so a permission change applies within that).
        principal: Principal | None = websocket.scope.get("eventflow.principal")
        self.sight: Sight | None = None
        if principal is not None:
            if hub.owners is None:
                hub.owners = Owners(runtime.read)
            self.sight = Sight(principal, runtime.read, hub.owners)
        self.subscriptions: dict[str, Subscription] = {}
        self.ready: set[str] = set()  # subscriptions whose snapshot is sent
        self.wake = asyncio.Event()
        self.send_lock = asyncio.Lock()
        self.tasks: set[asyncio.Task[None]] = set()

    async def serve(self) -> None:
        await self.websocket.accept()
        sender = asyncio.create_task(self._sender())
        try:
            while True:
                text = await self.websocket.receive_text()
                await self._handle(text)
        except WebSocketDisconnect:
            pass
        finally:
            sender.cancel()
            for task in self.tasks:
                task.cancel()
            for subscription in self.subscriptions.values():
                self.hub.detach(subscription)

    async def _send(self, message: str) -> None:
        async with self.send_lock:
            await self.websocket.send_text(message)

    async def _error(self, sub_id: Any, message: str) -> None:
        await self._send(dumps({"type": "error", "sub": sub_id, "message": message}))

    async def _handle(self, text: str) -> None:
        try:
            message = json.loads(text)
            if not isinstance(message, dict):
                raise ValueError("a message is a JSON object")
        except ValueError as error:
            await self._error(None, f"invalid message: {error}")
            return
        op, sub_id = message.get("op"), message.get("sub")
        if not isinstance(sub_id, str) or not sub_id:
            await self._error(sub_id, "every message needs 'sub': the subscription's id (a string)")
            return
        if op == "unsubscribe":
            subscription = self.subscriptions.pop(sub_id, None)
            if subscription is not None:
                self.hub.detach(subscription)
                self.ready.discard(sub_id)
            return
        if op != "subscribe":
            await self._error(sub_id, f"unknown op {op!r}: use 'subscribe' or 'unsubscribe'")
            return
        try:
            if sub_id in self.subscriptions:
                raise ValueError(f"subscription {sub_id!r} exists: unsubscribe it first")
            if len(self.subscriptions) >= MAX_SUBSCRIPTIONS:
                raise ValueError(f"a connection may hold at most {MAX_SUBSCRIPTIONS} subscriptions: unsubscribe one first")
            subscription = Subscription(sub_id, str(message.get("kind")), message, self.hub, self.wake, self.sight)
            resume = parse_positions(message["resume"]) if message.get("resume") is not None else None
        except ValueError as error:
            await self._error(sub_id, str(error))
            return
        self.subscriptions[sub_id] = subscription
        self._spawn(self._start(subscription, resume))

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _start(self, subscription: Subscription, resume: Positions | None) -> None:
        """Snapshot (or resume) → the events since → live. Retried from a fresh snapshot
        when the subscription falls too far behind."""
        try:
            await run_in_threadpool(self.hub.ready.wait, 30)
            data: str | None = None
            if resume is not None and self._behind(resume) > MAX_CATCH_UP:
                resume = None
            if resume is None:
                if subscription.kind == "events":
                    events, since = await run_in_threadpool(recent_events, self.runtime, subscription)
                    data = dumps({"events": events})
                else:
                    data, since = await run_in_threadpool(view_snapshot, self.runtime, subscription)
            else:
                since = resume
            backlog = Pending()
            if self.subscriptions.get(subscription.id) is not subscription:
                return  # unsubscribed meanwhile
            if self.hub.covers(since):
                await run_in_threadpool(self.hub.prepare_since, since)  # off the loop: read while no page watched
                more = self.hub.attach(subscription, since)  # atomic on the loop
                covered = positions_json(subscription.positions)
            else:
                # The ring does not reach back there. Attach at where the hub is now (on the
                # loop, nothing in between), then read the log from `since` up to there: the
                # batches published meanwhile wait in the subscription's queue, so there is
                # nothing to chase however fast the hub moves on.
                target = dict(self.hub.positions)
                more = self.hub.attach(subscription, {tp: max(since.get(tp, 0), target.get(tp, 0)) for tp in {*since, *target}})
                covered = positions_json(subscription.positions)  # what the backlog reaches; the queue goes on from there
                batch = await run_in_threadpool(read_range, self.runtime, since, target, self.hub.owners if self.sight is not None else None)
                subscription.take(batch, backlog, since)
                if self.subscriptions.get(subscription.id) is not subscription:
                    self.hub.detach(subscription)
                    return
            backlog.entries += more.entries
            backlog.chunks += more.chunks
            positions = dumps(covered)
            sub = json.dumps(subscription.id)
            if data is not None:
                head = f'{{"type":"snapshot","sub":{sub},"positions":{dumps(positions_json(since))},"data":{data}}}'
            else:
                head = f'{{"type":"resumed","sub":{sub},"positions":{dumps(positions_json(since))}}}'
            await self._send(head)
            if backlog:
                await self._send(
                    f'{{"type":"events","sub":{sub},"positions":{positions},'
                    f'"events":[{",".join(backlog.entries)}],"points":[{",".join(backlog.chunks)}]}}'
                )
            self.ready.add(subscription.id)
            self.wake.set()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a bad filter, an unknown id: tell the page
            logger.debug("subscription %s failed", subscription.id, exc_info=True)
            self.subscriptions.pop(subscription.id, None)
            self.hub.detach(subscription)
            message = getattr(error, "message", None) or str(error)
            await self._error(subscription.id, message)

    def _behind(self, since: Positions) -> int:
        return sum(max(0, offset - since.get(tp, 0)) for tp, offset in self.hub.positions.items())

    async def _sender(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            for sub_id, subscription in list(self.subscriptions.items()):
                if sub_id not in self.ready:
                    continue
                if subscription.stale:
                    # Fell too far behind: a fresh snapshot instead of the backlog.
                    self.ready.discard(sub_id)
                    await self._send(dumps({"type": "reset", "sub": sub_id, "reason": "the client fell too far behind"}))
                    self._spawn(self._start(subscription, None))
                    continue
                frame = subscription.frame()
                if frame is not None:
                    await self._send(frame)
            await asyncio.sleep(FRAME_INTERVAL)


def routes(runtime: Runtime) -> list[WebSocketRoute]:
    async def live(websocket: WebSocket) -> None:
        await LiveConnection(websocket, runtime, runtime.hub).serve()

    return [WebSocketRoute(PATH, live)]
