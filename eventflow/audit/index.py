"""The index of entity → log positions, kept by the projector (table ``entity_events``).

Each event is indexed under every entity whose history it belongs to: a run's events
under the run (its creation under the experiment too), a model's and its versions'
under the model's name (a rename under both names), a deployment under its target and
its model, a webhook's under its subscription. The projector writes these rows in the
transaction that applies the batch, so the index is exactly as far as the views, and
``views rebuild`` rebuilds it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection

from eventflow.events import Event
from eventflow.views.db import insert_new
from eventflow.views.tables import entity_events

RUN, EXPERIMENT, MODEL, LOGGED_MODEL, DEPLOYMENT, WEBHOOK, USER = (
    "run", "experiment", "registered_model", "logged_model", "deployment", "webhook", "user",
)
ENTITY_TYPES = (RUN, EXPERIMENT, MODEL, LOGGED_MODEL, DEPLOYMENT, WEBHOOK, USER)


def entities_of(event: Event) -> list[tuple[str, str]]:
    """The (entity type, entity) pairs an event belongs to."""
    family, p = event.type.partition(".")[0], event.payload
    if family == "run":
        out = [(RUN, p["run_id"])]
        if event.type == "run.created":
            out.append((EXPERIMENT, p["experiment_id"]))
        return out
    if family == "experiment":
        return [(EXPERIMENT, p["experiment_id"])]
    if family in ("registered_model", "model_version"):
        out = [(MODEL, p["name"])]
        if event.type == "registered_model.renamed":
            out.append((MODEL, p["new_name"]))
        return out
    if family == "logged_model":
        return [(LOGGED_MODEL, p["model_id"])]
    if family == "deployment":
        return [(DEPLOYMENT, p["target"]), (MODEL, p["name"])]
    if family == "alert":
        return [(RUN, p["run_id"])]
    if family == "webhook":
        return [(WEBHOOK, p["subscription_id"])]
    if family in ("user", "permission") and p.get("username"):
        return [(USER, p["username"])]
    return []


def rows(deliveries: Iterable[Any]) -> list[dict[str, Any]]:
    """The index rows for a batch of ``consumers.base.Delivery``."""
    out = []
    for delivery in deliveries:
        event, record = delivery.event, delivery.record
        for entity_type, entity in entities_of(event):
            out.append({
                "entity_type": entity_type, "entity": str(entity), "topic": record.topic, "partition": record.partition,
                "offset": record.offset, "time": event.time, "event_type": event.type,
            })
    return out


def record(connection: Connection, deliveries: Sequence[Any]) -> None:
    """Index a batch, in the projector's transaction (a replayed position adds nothing)."""
    insert_new(connection, entity_events, rows(deliveries))
