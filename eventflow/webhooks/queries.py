"""Reading the dispatcher's tables for the API: subscriptions, deliveries, attempts."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, select

from eventflow.webhooks.tables import attempts, deliveries, subscriptions

DELIVERY_STATUSES = ("PENDING", "SUCCEEDED", "FAILED")


def _subscription(row: Any) -> dict[str, Any]:
    return {
        "subscription_id": row.subscription_id, "url": row.url, "events": json.loads(row.events),
        "experiment_id": row.experiment_id, "model_name": row.model_name, "condition": row.condition,
        "status": row.status, "disabled_reason": row.disabled_reason, "consecutive_failures": row.consecutive_failures,
        "created_time": row.created_time, "updated_time": row.updated_time,
        "flavor": row.flavor, "format": row.flavor or "eventflow", "name": row.name, "description": row.description, "created_by": row.created_by,
    }


def get_subscription(c: Connection, subscription_id: str) -> dict[str, Any] | None:
    row = c.execute(
        select(subscriptions).where(subscriptions.c.subscription_id == subscription_id, subscriptions.c.deleted.is_(False))
    ).first()
    return None if row is None else _subscription(row)


def list_subscriptions(c: Connection) -> list[dict[str, Any]]:
    rows = c.execute(select(subscriptions).where(subscriptions.c.deleted.is_(False)).order_by(subscriptions.c.created_time))
    return [_subscription(row) for row in rows]


def _attempt(row: Any) -> dict[str, Any]:
    return {
        "time": row.time, "status_code": row.status_code, "latency_ms": row.latency_ms,
        "error": row.error, "response": row.response, "dispatcher": row.dispatcher,
    }


def _delivery(row: Any, tried: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "delivery_id": row.delivery_id, "subscription_id": row.subscription_id, "event_id": row.event_id,
        "event_type": row.event_type, "entity": row.entity_key, "event_time": row.event_time, "status": row.status,
        "attempt_count": row.attempts, "next_attempt_time": row.next_attempt_time if row.status == "PENDING" else None,
        "created_time": row.created_time, "completed_time": row.completed_time,
        "last_status_code": row.last_status_code, "last_error": row.last_error, "attempts": tried,
    }


def list_deliveries(
    c: Connection, subscription_id: str, status: str | None = None, max_results: int = 100, before: int | None = None
) -> list[dict[str, Any]]:
    """Newest first, each with its attempts (oldest first); ``before`` pages by delivery id."""
    query = select(deliveries).where(deliveries.c.subscription_id == subscription_id)
    if status:
        query = query.where(deliveries.c.status == status)
    if before is not None:
        query = query.where(deliveries.c.delivery_id < before)
    rows = c.execute(query.order_by(deliveries.c.delivery_id.desc()).limit(max_results)).all()
    tried: dict[int, list[dict[str, Any]]] = {row.delivery_id: [] for row in rows}
    ids = list(tried)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        for a in c.execute(select(attempts).where(attempts.c.delivery_id.in_(chunk)).order_by(attempts.c.attempt_id)):
            tried[a.delivery_id].append(_attempt(a))
    return [_delivery(row, tried[row.delivery_id]) for row in rows]


def get_delivery(c: Connection, subscription_id: str, delivery_id: int) -> dict[str, Any] | None:
    row = c.execute(
        select(deliveries).where(deliveries.c.delivery_id == delivery_id, deliveries.c.subscription_id == subscription_id)
    ).first()
    if row is None:
        return None
    tried = [_attempt(a) for a in c.execute(select(attempts).where(attempts.c.delivery_id == delivery_id).order_by(attempts.c.attempt_id))]
    return _delivery(row, tried)
