"""MLflow's webhook flavor: its event names, delivery body and ``X-MLflow-*`` headers.

A subscription made through ``/api/2.0/mlflow/webhooks`` is an ordinary subscription
whose ``flavor`` is ``"mlflow"``; its patterns are our event types (mapped from MLflow's
``entity.action`` names one to one, so they map back), and the dispatcher renders and
signs its deliveries the way an MLflow server would, so receivers written for MLflow work
unchanged. MLflow signs ``"<delivery id>.<unix seconds>.<body>"`` with HMAC-SHA256 keyed
by the secret's UTF-8 bytes (no ``whsec_`` encoding), as ``v1,<base64>``. The delivery id
is the event id: stable across retries, so a receiver can dedupe.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
from typing import Any

from eventflow.events import Event
from eventflow.proto_json import replace_non_finite, spelled

FLAVOR = "mlflow"

# MLflow "entity.action" -> our event type. One to one, so a subscription's patterns map back.
EVENTS: dict[str, str] = {
    "registered_model.created": "registered_model.created",
    "model_version.created": "model_version.created",
    "model_version_tag.set": "model_version.tag_set",
    "model_version_tag.deleted": "model_version.tag_deleted",
    "model_version_alias.created": "model_version.alias_set",
    "model_version_alias.deleted": "model_version.alias_deleted",
}
MLFLOW_NAMES: dict[str, str] = {ours: theirs for theirs, ours in EVENTS.items()}


def _tags(tags: Any) -> dict[str, str]:
    return {t["key"]: t["value"] for t in tags or []}


def data_of(event: Event) -> dict[str, Any]:
    """The ``data`` of MLflow's payload classes (mlflow.webhooks.types) for this event."""
    p = event.payload
    if event.type == "registered_model.created":
        return {"name": p["name"], "tags": _tags(p.get("tags")), "description": p.get("description")}
    if event.type == "model_version.created":
        return {
            "name": p["name"], "version": str(p["version"]), "source": p.get("source"), "run_id": p.get("run_id"),
            "tags": _tags(p.get("tags")), "description": p.get("description"),
        }
    if event.type in ("model_version.tag_set", "model_version.tag_deleted"):
        data = {"name": p["name"], "version": str(p["version"]), "key": p["key"]}
        return {**data, "value": p["value"]} if event.type == "model_version.tag_set" else data
    if event.type in ("model_version.alias_set", "model_version.alias_deleted"):
        data = {"name": p["name"], "alias": p["alias"]}
        return {**data, "version": str(p["version"])} if "version" in p else data
    return replace_non_finite(dict(p), spelled)


def envelope(mlflow_event: str, time_ms: int, data: dict[str, Any]) -> str:
    entity, _, action = mlflow_event.partition(".")
    stamp = datetime.datetime.fromtimestamp(time_ms / 1000, tz=datetime.timezone.utc).isoformat()
    return json.dumps({"entity": entity, "action": action, "timestamp": stamp, "data": data}, allow_nan=False, default=str)


def body_of(event: Event) -> str:
    return envelope(MLFLOW_NAMES.get(event.type, event.type), event.time, data_of(event))


# MLflow's example payloads for test_webhook (the receiver sees the shape of the real thing).
EXAMPLES: dict[str, dict[str, Any]] = {
    "registered_model.created": {"name": "example_model", "tags": {"example_key": "example_value"}, "description": "An example registered model"},
    "model_version.created": {
        "name": "example_model", "version": "1", "source": "models:/123", "run_id": "abcd1234abcd5678",
        "tags": {"example_key": "example_value"}, "description": "An example model version",
    },
    "model_version_tag.set": {"name": "example_model", "version": "1", "key": "example_key", "value": "example_value"},
    "model_version_tag.deleted": {"name": "example_model", "version": "1", "key": "example_key"},
    "model_version_alias.created": {"name": "example_model", "alias": "example_alias", "version": "1"},
    "model_version_alias.deleted": {"name": "example_model", "alias": "example_alias"},
}


def signature(secret: str, delivery_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{delivery_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(secret.encode(), signed, hashlib.sha256).digest()).decode()


def headers(keys: list[str], delivery_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """MLflow's headers; signed with the current secret when there is one (MLflow's secret is optional)."""
    found = {"X-MLflow-Delivery-Id": delivery_id, "X-MLflow-Timestamp": str(timestamp)}
    if keys:
        found["X-MLflow-Signature"] = signature(keys[0], delivery_id, timestamp, body)
    return found
