"""MLflow's webhook API (``/api/2.0/mlflow/webhooks``), served by eventflow's dispatcher.

``MlflowClient.create_webhook`` and friends land here. A webhook is an eventflow
subscription with ``flavor="mlflow"``: its MLflow event names are mapped to our event
types (eventflow/webhooks/mlflow.py), its name and description ride on the
``webhook.*`` events, its secret lives in the secret table like any other, and the
sender renders MLflow's body and ``X-MLflow-*`` headers for it. So retries, the delivery
log and the SSRF guard are the dispatcher's, not a second implementation's. Answers use
MLflow's JSON shapes (``{"webhook": {...}}``, ``{"result": {...}}`` for a test).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, insert
from starlette.routing import Route

from eventflow import commands
from eventflow.events import now_ms
from eventflow.server.errors import ApiError, not_found
from eventflow.server.requests import as_int, required, text
from eventflow.server.runtime import Runtime
from eventflow.server.webhooks_api import _write, may_subscribe, method_routes, mine, owned
from eventflow.webhooks import mlflow, queries
from eventflow.webhooks.tables import deliveries, secrets

PREFIXES = ("/api/2.0/mlflow/webhooks", "/ajax-api/2.0/mlflow/webhooks")

Handler = Callable[[Runtime, dict[str, Any]], dict[str, Any]]


def _event_name(event: Any) -> str:
    """``{"entity": "MODEL_VERSION", "action": "CREATED"}`` -> ``model_version.created``."""
    if not isinstance(event, dict) or not isinstance(event.get("entity"), str) or not isinstance(event.get("action"), str):
        raise ApiError(f"Invalid webhook event {event!r}: expected {{\"entity\": \"MODEL_VERSION\", \"action\": \"CREATED\"}}")
    name = f"{event['entity'].lower()}.{event['action'].lower()}"
    if name not in mlflow.EVENTS:
        raise ApiError(f"Unsupported webhook event '{name}': eventflow delivers {', '.join(sorted(mlflow.EVENTS))}")
    return name


def _patterns(data: dict[str, Any]) -> list[str]:
    events = data.get("events")
    if not isinstance(events, list) or not events:
        raise ApiError("Missing value for required parameter 'events': a non-empty list of {\"entity\", \"action\"}.")
    return sorted({mlflow.EVENTS[_event_name(e)] for e in events})


def _webhook(sub: dict[str, Any]) -> dict[str, Any]:
    events = []
    for ours in sub["events"]:
        entity, _, action = mlflow.MLFLOW_NAMES.get(ours, ours).partition(".")
        events.append({"entity": entity.upper(), "action": action.upper()})
    shown = {
        "webhook_id": sub["subscription_id"], "name": sub["name"], "url": sub["url"], "events": events,
        "status": sub["status"], "creation_timestamp": sub["created_time"], "last_updated_timestamp": sub["updated_time"],
    }
    return {**shown, "description": sub["description"]} if sub["description"] else shown


def _find(runtime: Runtime, webhook_id: Any, *, change: bool = True) -> dict[str, Any]:
    """The MLflow-made webhook, if the caller may see it (``change``: and act on it)."""
    found = runtime.read(queries.get_subscription, webhook_id) if isinstance(webhook_id, str) and webhook_id else None
    if found is None or found["flavor"] != mlflow.FLAVOR:
        raise not_found(f"Webhook with ID {webhook_id} not found")
    return owned(found, change=change)


def _state(runtime: Runtime, sid: str, url: str, patterns: list[str], status: str, name: str, description: str | None) -> dict[str, Any]:
    return commands.webhook_state(
        sid, url, patterns, status=status, allowed_networks=runtime.webhook_settings.allow_networks,
        flavor=mlflow.FLAVOR, name=name, description=description,
    )


def _set_secret(runtime: Runtime, sid: str, secret: str | None) -> None:
    """MLflow's secret is any string, used as the HMAC key as is; none = unsigned deliveries."""
    with runtime.engine.begin() as c:
        c.execute(delete(secrets).where(secrets.c.subscription_id == sid))
        if secret:
            c.execute(insert(secrets).values(subscription_id=sid, secret=secret, created_time=now_ms(), expires_time=None))


def create_webhook(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    name = text(data, "name")
    if not name:
        raise ApiError("Missing value for required parameter 'name'.")
    url = text(data, "url") or required(data, "url")
    sid = uuid.uuid4().hex
    state = _state(runtime, sid, url, _patterns(data), text(data, "status") or "ACTIVE", name, text(data, "description") or None)
    may_subscribe(runtime, state)  # MLflow's webhooks are unscoped: administrators
    _set_secret(runtime, sid, text(data, "secret"))  # before the event, like eventflow's own API
    _write(runtime, [commands.create_webhook(state)])
    return {"webhook": _webhook(_find(runtime, sid, change=False))}


def list_webhooks(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    max_results = as_int(data, "max_results", 100, 1, 1000)
    start = as_int(data, "page_token", 0, 0) if data.get("page_token") else 0
    found = [s for s in mine(runtime.read(queries.list_subscriptions)) if s["flavor"] == mlflow.FLAVOR]
    page = found[start : start + max_results]
    more = start + max_results < len(found)
    return {"webhooks": [_webhook(s) for s in page], **({"next_page_token": str(start + max_results)} if more else {})}


def get_webhook(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    return {"webhook": _webhook(_find(runtime, data.get("webhook_id"), change=False))}


def update_webhook(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    current = _find(runtime, data.get("webhook_id"))
    sid = current["subscription_id"]
    state = _state(
        runtime, sid, text(data, "url") or current["url"], _patterns(data) if data.get("events") else current["events"],
        text(data, "status") or current["status"], text(data, "name") or current["name"],
        text(data, "description") if "description" in data else current["description"],
    )
    if "secret" in data:
        _set_secret(runtime, sid, text(data, "secret"))
    _write(runtime, [commands.update_webhook(state)])
    return {"webhook": _webhook(_find(runtime, sid, change=False))}


def delete_webhook(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    current = _find(runtime, data.get("webhook_id"))
    _write(runtime, [commands.delete_webhook(current["subscription_id"])])
    return {}


def test_webhook(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    """Send MLflow's example payload for the event (default: the webhook's first) now,
    recorded like any delivery; answer with MLflow's test result."""
    current = _find(runtime, data.get("webhook_id"))
    sid = current["subscription_id"]
    if data.get("event"):
        name = _event_name(data["event"])
    else:
        name = mlflow.MLFLOW_NAMES.get(current["events"][0], current["events"][0])
    sender = runtime.webhook_sender()
    now = now_ms()
    event_id = str(uuid.uuid4())
    with runtime.engine.begin() as c:
        delivery_id = c.execute(
            insert(deliveries).values(
                subscription_id=sid, event_id=event_id, event_type="webhook.test", entity_key=sid, event_time=now,
                body=mlflow.envelope(name, now, mlflow.EXAMPLES[name]), status="PENDING", attempts=0, next_attempt_time=now,
                created_time=now, lease_owner=sender.name, lease_until=now + int(runtime.webhook_settings.lease * 1000),
            )
        ).inserted_primary_key[0]
    row = runtime.read(lambda c: c.execute(deliveries.select().where(deliveries.c.delivery_id == delivery_id)).first())
    outcome = sender.deliver(row, current["url"], mlflow.FLAVOR)
    result: dict[str, Any] = {"success": outcome.status_code is not None and outcome.status_code < 400}
    if outcome.status_code is not None:
        result.update(response_status=outcome.status_code, response_body=outcome.response)
    if outcome.error and not result["success"]:
        result["error_message"] = f"Failed to test webhook: {outcome.error}"
    return {"result": result}


ENDPOINTS: list[tuple[str, str, Handler]] = [
    ("POST", "", create_webhook),
    ("GET", "", list_webhooks),
    ("GET", "/{webhook_id}", get_webhook),
    ("PATCH", "/{webhook_id}", update_webhook),
    ("DELETE", "/{webhook_id}", delete_webhook),
    ("POST", "/{webhook_id}/test", test_webhook),
]


def routes(runtime: Runtime) -> list[Route]:
    return method_routes(runtime, ENDPOINTS, PREFIXES)
