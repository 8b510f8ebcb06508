"""Deployment state and history, folded from the deployment.* events on the log.

The log is the record: no table is kept for deployments, so the API shows exactly
what the deployer emitted, and a rebuilt database loses nothing. The topic holds a few
events per promotion, so reading it whole per request stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eventflow.codec import CodecError, decode
from eventflow.events import FAMILIES, Event
from eventflow.log import Log

TOPIC = FAMILIES["deployment"].topic

STATUS = {
    "deployment.started": "DEPLOYING",
    "deployment.succeeded": "SUCCEEDED",
    "deployment.failed": "FAILED",
    "deployment.rolled_back": "ROLLED_BACK",
}


def read_deployment_events(log: Log) -> list[Event]:
    """Every deployment event, oldest first (by time: targets are on several partitions)."""
    if TOPIC not in log.topics():
        return []
    events: list[Event] = []
    with log.consumer([TOPIC]) as consumer:
        consumer.seek_to_beginning()
        ends = {tp: log.end_offsets(tp.topic)[tp.partition] for tp in consumer.assignment()}
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            records = consumer.poll(timeout=0.5, max_records=10_000)
            if not records:
                break
            for record in records:
                try:
                    events.append(decode(record.value))
                except CodecError:
                    continue  # poison is the audit view's business (/api/2.0/eventflow/events)
    return sorted(events, key=lambda e: e.time)


def fold(events: list[Event]) -> list[dict[str, Any]]:
    """The state of each target: what it serves now, and how its last deployment went."""
    targets: dict[str, dict[str, Any]] = {}
    for event in events:
        p = event.payload
        state = targets.setdefault(p["target"], {"target": p["target"], "name": p["name"], "serving_version": None})
        state.update({
            "endpoint": p.get("endpoint"), "status": STATUS.get(event.type, event.type), "last_version": p["version"],
            "updated_time": event.time, "error": p.get("error") or p.get("reason"),
        })
        if event.type == "deployment.succeeded":
            state["serving_version"] = p["version"]
        elif event.type == "deployment.rolled_back":
            state["serving_version"] = p.get("previous_version")
    return sorted(targets.values(), key=lambda s: s["target"])


def as_json(event: Event) -> dict[str, Any]:
    return {"event_id": event.event_id, "type": event.type, "time": event.time, "actor": event.actor,
            "correlation_id": event.correlation_id, "causation_id": event.causation_id, **event.payload}


def deployments(
    log: Log, target: str | None = None, max_results: int = 100, visible: Callable[[str], bool] | None = None,
    until: int | None = None,
) -> dict[str, Any]:
    """``{"deployments": [state per target], "history": [events, newest first]}``; with
    ``visible``, only of the models it accepts (by name: what the reader may READ); with
    ``until`` (ms), as they were then (the events up to that moment)."""
    events = [
        e for e in read_deployment_events(log)
        if (target is None or e.payload["target"] == target) and (visible is None or visible(e.payload["name"]))
        and (until is None or e.time <= until)
    ]
    return {"deployments": fold(events), "history": [as_json(e) for e in reversed(events)][:max_results]}
