"""The JSON body of a delivery: the event, as a receiver wants to read it.

``{"id", "type", "time", "timestamp", "entity": {"type", "id"}, "actor", "data"}``:
``id`` is the event id (also the ``webhook-id`` header, the receiver's idempotency key),
``time`` milliseconds since the epoch and ``timestamp`` the same in ISO 8601, ``entity``
the kind and id of what the event is about (its partition key), ``data`` the payload.
Metric points are given as a plain list whichever way they were logged (a point about a
logged model or a dataset with its ``model_id``, ``dataset_name``, ``dataset_digest``), and
non-finite numbers (NaN, ±inf), which JSON has no words for, as proto3 JSON spells them:
"NaN", "Infinity", "-Infinity" (eventflow.proto_json).
"""

from __future__ import annotations

import datetime
import json
from typing import Any

from eventflow.events import Event, metric_points
from eventflow.proto_json import replace_non_finite, spelled


_LINKS = ("model_id", "dataset_name", "dataset_digest")


def data_of(event: Event) -> dict[str, Any]:
    payload = dict(event.payload)
    if event.type == "run.metrics_logged":
        # Points about a logged model or a dataset (MLflow 3) keep their links.
        linked = [
            {"key": p["key"], "value": p["value"], "step": p["step"], "timestamp": p["timestamp"], **{k: p[k] for k in _LINKS if p.get(k)}}
            for p in payload.pop("points", None) or ()
        ]
        plain = metric_points({"columns": payload.pop("columns", None)})
        payload["metrics"] = linked + [{"key": p.key, "value": p.value, "step": p.step, "timestamp": p.timestamp} for p in plain]
    return replace_non_finite(payload, spelled)


def body_of(event: Event) -> str:
    stamp = datetime.datetime.fromtimestamp(event.time / 1000, tz=datetime.timezone.utc)
    body = {
        "id": event.event_id,
        "type": event.type,
        "time": event.time,
        "timestamp": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "entity": {"type": event.type.partition(".")[0], "id": event.key},
        "actor": event.actor,
        "data": data_of(event),
    }
    return json.dumps(body, separators=(",", ":"), allow_nan=False, default=str)


def render(flavor: str | None, event: Event) -> str:
    """The body for a subscription of this flavor (None: eventflow's own)."""
    if flavor == "mlflow":
        from eventflow.webhooks import mlflow

        return mlflow.body_of(event)
    if flavor in ("slack", "teams"):
        from eventflow.webhooks import chat

        return chat.slack_body(event) if flavor == "slack" else chat.teams_body(event)
    return body_of(event)
