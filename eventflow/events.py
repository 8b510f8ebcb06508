"""Lifecycle events: what an event is, and where on the log each kind belongs.

An event type is a dotted name, ``<family>.<verb>`` (``run.failed``,
``model_version.alias_set``). The family decides the topic and which payload field is
the partition key, so that all events of one entity share a key and stay in order.
This module is the one place that knows that routing.
"""

from __future__ import annotations

import getpass
import os
import socket
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from eventflow import __version__
from eventflow.idempotency import new_event_id

TOPIC_PREFIX = "eventflow."
DEAD_LETTER_TOPIC = TOPIC_PREFIX + "dead-letter"


@dataclass(frozen=True)
class Family:
    """A group of event types about one kind of entity: one topic, one key field — or,
    with ``shared_key``, one key for the whole family."""

    topic: str
    key_field: str
    # Set for a family whose entities compete for something unique across them (an
    # experiment name, which a rename moves from one experiment to another): all its
    # events then share one partition, so the first claim in log order wins, live and on
    # replay alike. Only for families with few events.
    shared_key: str | None = None


FAMILIES: dict[str, Family] = {
    "experiment": Family(TOPIC_PREFIX + "experiments", "experiment_id", shared_key="experiments"),
    "run": Family(TOPIC_PREFIX + "runs", "run_id"),
    # Model names are unique and a rename moves one: as for experiments, one key for all.
    "registered_model": Family(TOPIC_PREFIX + "models", "name", shared_key="registered-models"),
    "model_version": Family(TOPIC_PREFIX + "models", "name", shared_key="registered-models"),
    "logged_model": Family(TOPIC_PREFIX + "models", "model_id"),
    "deployment": Family(TOPIC_PREFIX + "deployments", "target"),
    "webhook": Family(TOPIC_PREFIX + "webhooks", "subscription_id"),
    # Metric alert rules, and the alerts about a run (fired, resolved, raised by its code):
    # a run's alerts share its key, so they stay in the order they happened.
    "alert_rule": Family(TOPIC_PREFIX + "alerts", "rule_id"),
    "alert": Family(TOPIC_PREFIX + "alerts", "run_id"),
    # Jobs (eventflow/jobs): a job's definition and every run of it share the job's key, so
    # agents' claims on one trigger are ordered and the first in log order wins.
    "job": Family(TOPIC_PREFIX + "jobs", "job_id"),
    # Who may do what (eventflow/auth): few events, and a grant must follow the creation
    # of its user in log order, so the three families share one partition.
    "user": Family(TOPIC_PREFIX + "access", "username", shared_key="access"),
    "token": Family(TOPIC_PREFIX + "access", "token_id", shared_key="access"),
    "permission": Family(TOPIC_PREFIX + "access", "resource_id", shared_key="access"),
}

LIFECYCLE_TOPICS: tuple[str, ...] = tuple(sorted({f.topic for f in FAMILIES.values()}))


def family_of(event_type: str) -> Family:
    """The family of an event type, or a ValueError naming the unknown prefix."""
    prefix, _, verb = event_type.partition(".")
    if not verb or prefix not in FAMILIES:
        known = ", ".join(sorted(FAMILIES))
        raise ValueError(f"unknown event type {event_type!r}: it must be <family>.<verb> with a family among {known}")
    return FAMILIES[prefix]


# Who acts in the current context: the server sets it per request (the user the client
# authenticated as), so that the events a request makes name that user, not the server.
ACTOR: ContextVar[str | None] = ContextVar("eventflow_actor", default=None)


def default_actor() -> str:
    """Who an event names: the request's user, else EVENTFLOW_ACTOR, else the login name."""
    try:
        return ACTOR.get() or os.environ.get("EVENTFLOW_ACTOR") or getpass.getuser()
    except Exception:  # no login name in some containers
        return "unknown"


def default_source() -> dict[str, Any]:
    """Where an event was produced: host, process and the SDK version — as its producer
    says (``stamped_by="client"``); a server that appends it stamps the rest
    (eventflow/server/stamping.py)."""
    return {"host": socket.gethostname(), "process": str(os.getpid()), "sdk_version": __version__, "stamped_by": "client"}


def server_source() -> dict[str, Any]:
    """The source of an event the platform makes on its own (a consumer's alert, crash,
    trigger): stamped by the server, no client asked for it, so no one authenticated."""
    return {**default_source(), "stamped_by": "server", "authenticated": False, "client_address": None, "client_time": None}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class Event:
    """One lifecycle event: the common envelope and its type's payload."""

    type: str
    payload: dict[str, Any]
    event_id: str = field(default_factory=new_event_id)  # derived from the request's key, if any
    time: int = field(default_factory=now_ms)
    actor: str = field(default_factory=default_actor)
    # host, process, sdk_version; stamped_by, authenticated, client_address, client_time
    source: dict[str, Any] = field(default_factory=default_source)
    correlation_id: str | None = None
    causation_id: str | None = None

    @property
    def topic(self) -> str:
        return family_of(self.type).topic

    @property
    def key(self) -> str:
        """The partition key: the id (or name) of the entity the event is about, or the
        family's shared key."""
        family = family_of(self.type)
        return family.shared_key or str(self.payload[family.key_field])


class Point(NamedTuple):
    key: str
    value: float
    step: int
    timestamp: int


def metric_points(payload: dict[str, Any]) -> list[Point]:
    """The points of a ``run.metrics_logged`` payload, whichever way they were written:
    one record each (``points``, versions 1-2) or column by column (``columns``, v3)."""
    points = [Point(p["key"], p["value"], p["step"], p["timestamp"]) for p in payload.get("points") or ()]
    columns = payload.get("columns")
    if columns and columns["values"]:
        names = columns["names"]
        points += [
            Point(names[i], value, step, timestamp)
            for i, value, step, timestamp in zip(columns["key_index"], columns["values"], columns["steps"], columns["timestamps"])
        ]
    return points


def linked_points(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The points of a ``run.metrics_logged`` payload that are about a logged model (MLflow 3):
    those records of ``points`` with a ``model_id``. (A point linked to a dataset alone is a
    plain run metric to MLflow, which keeps model metrics only.)"""
    return [p for p in payload.get("points") or () if p.get("model_id")]
