"""The webhook dispatcher: events in, signed deliveries out, none lost.

Two halves, both in every dispatcher instance:

1. ``WebhookRecorder``, a ``Subscriber``: per batch, in ONE transaction, it applies the
   ``webhook.*`` events to its subscriptions table, matches the other events against
   the subscriptions, inserts a pending delivery row per match, and moves its stored
   offsets (``keeps_offsets``, fenced like the projector's). So a delivery is recorded
   before it is attempted, exactly once: a kill -9 before the commit replays the batch,
   after it the rows are there. One (subscription, event) pair is unique, so a replay or
   an event appended twice never makes two deliveries.
2. ``Sender`` (eventflow/webhooks/sender.py): claims due rows with a lease, POSTs,
   records each attempt, schedules retries.

Subscription changes and events race: a run can fail in one partition just as a
subscription is created in another. The rules: a subscription receives the events whose
time is at or after its creation (so a dispatcher replaying old events does not flood a
new endpoint), subscription events are applied first within a batch, and the REST API
answers a create only once the dispatcher has applied it (read your writes, like the
projector): every event that happens after the create call returned is matched.

Several instances in one group split the partitions of the log (each records the rows
of its partitions, in order, so the rows of one entity are in delivery_id order) and
share the sending through leases on rows.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine, select, update

from eventflow.consumers.base import ConsumerLoop, Delivery, Subscriber
from eventflow.events import Event, now_ms
from eventflow.log import Log, TopicPartition
from eventflow.views.db import insert_new, upsert
from eventflow.views.positions import advance, stored_offsets
from eventflow.webhooks import filters
from eventflow.webhooks.payload import render
from eventflow.webhooks.settings import Settings
from eventflow.webhooks.tables import create_tables, deliveries, entity_experiments, subscriptions

logger = logging.getLogger(__name__)

_EXPERIMENT_OWNED = {"run": "run_id", "logged_model": "model_id"}


def apply_subscription_event(c: Connection, event: Event) -> None:
    """A webhook.* event onto the subscriptions table (idempotent: replays are harmless)."""
    p = event.payload
    sid = p["subscription_id"]
    if event.type in ("webhook.created", "webhook.updated"):
        before = c.execute(
            select(subscriptions.c.created_time, subscriptions.c.status, subscriptions.c.created_by).where(subscriptions.c.subscription_id == sid)
        ).first()
        updated = before is not None and event.type == "webhook.updated"
        row = {
            "subscription_id": sid, "url": p["url"], "events": json.dumps(p["events"]), "experiment_id": p.get("experiment_id"),
            "model_name": p.get("model_name"), "condition": p.get("condition"), "status": p["status"],
            "flavor": p.get("flavor"), "name": p.get("name"), "description": p.get("description"),
            "disabled_reason": None, "deleted": False, "updated_time": event.time,
            "created_time": before.created_time if updated else event.time,
            # Who made it (the server stamps the actor): they, and administrators, manage it.
            "created_by": before.created_by if updated else event.actor,
        }
        if before is None or before.status != p["status"] or p["status"] == "ACTIVE":
            row["consecutive_failures"] = 0
        upsert(c, subscriptions, [row], ["subscription_id"])
    elif event.type == "webhook.deleted":
        c.execute(update(subscriptions).where(subscriptions.c.subscription_id == sid).values(deleted=True, updated_time=event.time))
    elif event.type == "webhook.disabled":
        c.execute(
            update(subscriptions)
            .where(subscriptions.c.subscription_id == sid)
            .values(status="DISABLED", disabled_reason=p["reason"], updated_time=event.time)
        )


class _Subscription:
    """A subscription's filters, parsed once per batch."""

    def __init__(self, row: Any):
        self.id = row.subscription_id
        self.experiment_id = row.experiment_id
        self.created_time = row.created_time
        self.flavor = row.flavor
        try:
            condition = filters.parse_condition(row.condition)
        except filters.InvalidFilter:  # checked at the edge; an old row never stops the dispatcher
            self.filter = None
        else:
            self.filter = filters.EventFilter(tuple(json.loads(row.events)), row.experiment_id, row.model_name, condition)

    def wants(self, event: Event, experiment_id: str | None) -> bool:
        if event.time < self.created_time or self.filter is None:
            return False
        return self.filter.matches(event.type, event.payload, experiment_id)


class WebhookRecorder(Subscriber):
    """Records a pending delivery per (subscription, matching event), with its offsets."""

    keeps_offsets = True

    offsets_may_go_back = True  # they commit with its effects, in the views

    def __init__(self, engine: Engine, group: str = "webhooks", on_recorded: Callable[[], object] | None = None):
        """``on_recorded`` hears of each batch that recorded deliveries (the sender of the
        same instance wakes at once instead of at its next poll)."""
        self.engine = engine
        self.group = group
        self.on_recorded = on_recorded
        create_tables(engine)

    def stored_offsets(self, tps: set[TopicPartition]) -> dict[TopicPartition, int]:
        return stored_offsets(self.engine, self.group, tps)

    def apply(self, batch: list[Delivery], spans: dict[TopicPartition, tuple[int, int]]) -> list[tuple[Delivery, str]]:
        now = now_ms()
        rejected: list[tuple[Delivery, str]] = []
        with self.engine.begin() as c:
            advance(c, self.group, spans)
            for d in batch:
                if d.event.type.startswith("webhook."):
                    apply_subscription_event(c, d.event)
            live = [
                _Subscription(row)
                for row in c.execute(select(subscriptions).where(subscriptions.c.status == "ACTIVE", subscriptions.c.deleted.is_(False)))
            ]
            experiments = experiments_of(c, batch, need=any(s.experiment_id is not None for s in live))
            rows = []
            for d in batch:
                event = d.event
                try:
                    wanting = [s for s in live if s.wants(event, experiment_of(event, experiments))]
                    bodies = {s.flavor: render(s.flavor, event) for s in wanting}
                except Exception as error:  # an event we cannot render is the event's fault: dead-letter it, go on
                    logger.warning("webhooks: cannot deliver %s %s: %s", event.type, event.event_id, error)
                    rejected.append((d, f"webhooks: cannot render the event: {error}"))
                    continue
                for s in wanting:
                    rows.append({
                        "subscription_id": s.id, "event_id": event.event_id, "event_type": event.type, "entity_key": event.key,
                        "event_time": event.time, "body": bodies[s.flavor], "status": "PENDING", "attempts": 0,
                        "next_attempt_time": now, "created_time": now,
                    })
            if rows:
                insert_new(c, deliveries, rows)  # a (subscription, event) pair already recorded is skipped
        if rows and self.on_recorded is not None:
            self.on_recorded()
        return rejected

def experiments_of(c: Connection, batch: list[Delivery], need: bool) -> dict[str, str]:
    """Remember which experiment new runs and models belong to; look up the others
    (for a filter by experiment: the webhooks', the jobs' triggers)."""
    new = {}
    for d in batch:
        family, _, verb = d.event.type.partition(".")
        if family in _EXPERIMENT_OWNED and verb == "created" and d.event.payload.get("experiment_id"):
            new[_owner(d.event)] = d.event.payload["experiment_id"]
    if new:
        upsert(c, entity_experiments, [{"entity": k, "experiment_id": v} for k, v in new.items()], ["entity"])
    if not need:
        return new
    wanted = sorted({o for d in batch if (o := _owner(d.event)) is not None and o not in new})
    known = dict(new)
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        rows = c.execute(select(entity_experiments.c.entity, entity_experiments.c.experiment_id).where(entity_experiments.c.entity.in_(chunk)))
        known.update({row.entity: row.experiment_id for row in rows})
    return known


def experiment_of(event: Event, experiments: dict[str, str]) -> str | None:
    """The experiment an event is about, from ``experiments_of``'s answer or its payload."""
    return experiments.get(_owner(event)) or event.payload.get("experiment_id")


def _owner(event: Event) -> str | None:
    family = event.type.partition(".")[0]
    field = _EXPERIMENT_OWNED.get(family)
    return f"{family}:{event.payload[field]}" if field and event.payload.get(field) else None


class Dispatcher:
    """One dispatcher instance: the recorder's consumer loop and the sender, until stopped."""

    def __init__(self, log: Log, engine: Engine, settings: Settings | None = None):
        from eventflow.webhooks.sender import Sender

        self.settings = settings or Settings.from_env()
        self.sender = Sender(engine, log, self.settings)
        self.recorder = WebhookRecorder(engine, self.settings.group, on_recorded=self.sender.wake)
        # A batch is a transaction: under a stream of single-event appends, gathering
        # 50 ms of them costs a delivery that much latency and saves most of the commits.
        self.loop = ConsumerLoop(log, self.recorder, linger=0.05)

    def run(self, stop: threading.Event) -> None:
        """Record in this thread, send in another; both stop with ``stop`` (or when the
        loop fails, so a supervisor restarting this never runs two senders)."""
        done = threading.Event()
        sending = threading.Thread(target=self.sender.run, args=(done,), name="eventflow-webhook-sender", daemon=True)
        sending.start()
        try:
            self.loop.run(stop)
        finally:
            done.set()
            sending.join(timeout=self.settings.connect_timeout + self.settings.response_timeout + 5)
