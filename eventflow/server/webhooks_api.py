"""``/api/2.0/eventflow/webhooks``: subscriptions, their secrets, deliveries and attempts.

Subscription changes are events (``webhook.created|updated|deleted``); a change returns
once the dispatcher has applied it, so every event after the call is matched by the new
state (read your writes, like the tracking API with the projector). Secrets are not
events: they are written to the server's secret table, and shown only on create and on
rotation.

With auth on, a webhook belongs to who created it (the actor of its ``webhook.created``):
creating one scoped to an experiment or a registered model needs MANAGE there (it will
carry that entity's events to a URL of the creator's choosing), an unscoped one is for
administrators; only its creator and administrators list, see, change, test, rotate or
redeliver it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlalchemy import insert, or_, update
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from eventflow import commands
from eventflow.auth import context as access
from eventflow.auth import policy
from eventflow.auth.permissions import EDIT, LEVELS, MANAGE
from eventflow.events import Event, now_ms
from eventflow.server import fieldtypes
from eventflow.server.errors import ApiError, not_found
from eventflow.server.requests import as_int, fields, required, text
from eventflow.server.runtime import Runtime
from eventflow.views import queries as views
from eventflow.views.positions import wait_for
from eventflow.webhooks import queries, signing
from eventflow.webhooks.tables import deliveries, secrets

BASE = "/api/2.0/eventflow/webhooks"

Handler = Callable[[Runtime, dict[str, Any]], dict[str, Any]]


def _write(runtime: Runtime, events: Sequence[Event]) -> None:
    positions = runtime.write(events)
    group = runtime.webhook_settings.group
    if not wait_for(runtime.engine, positions, runtime.write_timeout, consumer=group):
        raise ApiError(
            f"the change was appended to the log but the webhook dispatcher did not apply it within {runtime.write_timeout:.0f} s: "
            "is it running (eventflow consume webhooks, or eventflow server with its consumers)?",
            "TEMPORARILY_UNAVAILABLE",
        )


def _subscription(runtime: Runtime, subscription_id: Any) -> dict[str, Any]:
    if not isinstance(subscription_id, str) or not subscription_id:
        raise ApiError("Missing value for required parameter 'subscription_id'.")
    found = runtime.read(queries.get_subscription, subscription_id)
    if found is None:
        raise not_found(f"No webhook subscription with id={subscription_id}")
    return found


def may_subscribe(runtime: Runtime, state: dict[str, Any]) -> None:
    """A webhook's scope is governed: MANAGE on its experiment and its model, admin if
    it has neither (it would receive every event). Auth off: anyone."""
    principal = access.current()
    if principal is None:
        return
    if state.get("experiment_id") is None and state.get("model_name") is None:
        if not principal.admin:
            raise policy.denied(
                "Permission denied: a webhook for every experiment and model is for administrators; "
                "scope it with experiment_id or model_name (MANAGE there is needed)"
            )
        return
    if state.get("experiment_id") is not None:
        runtime.read(policy.require, principal, policy.Need(policy.experiment(), MANAGE), {"experiment_id": state["experiment_id"]})
    if state.get("model_name") is not None:
        runtime.read(policy.require, principal, policy.Need(policy.model, MANAGE), {"name": state["model_name"]})


def _yours(subscription: dict[str, Any]) -> bool:
    principal = access.current()
    return principal is None or principal.admin or (subscription.get("created_by") or None) == principal.username


def owned(subscription: dict[str, Any], *, change: bool = True) -> dict[str, Any]:
    """The subscription, if the caller may see it (``change``: and act on it)."""
    principal = access.current()
    if not _yours(subscription):
        raise policy.denied(f"Permission denied: webhook {subscription['subscription_id']} is its creator's (or an administrator's)")
    if change and principal is not None and principal.cap < LEVELS[EDIT]:
        raise policy.denied("Permission denied: changing a webhook needs the write scope")
    return subscription


def mine(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The subscriptions the caller may list: their own (all, for an administrator)."""
    return [s for s in found if _yours(s)]


def _events(data: dict[str, Any], default: list[str] | None = None) -> list[str]:
    value = data.get("events", default)
    if isinstance(value, str):  # "run.failed,model_version.*" from a query string or a shell
        value = [part.strip() for part in value.split(",") if part.strip()]
    if value is None:
        raise ApiError("Missing value for required parameter 'events': e.g. [\"run.failed\", \"model_version.*\"] or [\"*\"]")
    return value


def _experiment_id(runtime: Runtime, data: dict[str, Any], default: str | None = None) -> str | None:
    name = text(data, "experiment_name")
    if name:
        experiment = runtime.read(views.get_experiment_by_name, name)
        if experiment is None:
            raise not_found(f"Could not find experiment with name '{name}'")
        return experiment["experiment_id"]
    if "experiment_id" not in data:
        return default
    experiment_id = data["experiment_id"]
    if experiment_id in (None, ""):
        return None
    if runtime.read(views.get_experiment, str(experiment_id)) is None:
        raise not_found(f"No Experiment with id={experiment_id} exists")
    return str(experiment_id)


def _state(runtime: Runtime, subscription_id: str, data: dict[str, Any], current: dict[str, Any] | None = None) -> dict[str, Any]:
    now = current or {}
    keep = lambda name: data[name] if name in data else now.get(name)  # noqa: E731
    for name in ("url", "model_name", "condition", "status"):
        if name in data and data[name] is not None and not isinstance(data[name], str):
            raise ApiError(f"Invalid value {json.dumps(data[name])[:100]} for parameter '{name}' supplied: it must be a string.")
    return commands.webhook_state(
        subscription_id,
        keep("url") if current else required(data, "url"),
        _events(data, now.get("events")),
        experiment_id=_experiment_id(runtime, data, now.get("experiment_id")),
        model_name=keep("model_name") or None,
        condition=keep("condition") or None,
        status=keep("status") or "ACTIVE",
        allowed_networks=runtime.webhook_settings.allow_networks,
        flavor=_flavor(data, now.get("flavor")), name=now.get("name"), description=now.get("description"),
    )


def _flavor(data: dict[str, Any], current: str | None) -> str | None:
    """The body's format: ``format`` eventflow (its JSON), slack or teams (chat messages)."""
    from eventflow.webhooks.chat import FORMATS

    given = data.get("format")
    if given in (None, ""):
        return current
    if current == "mlflow":
        raise ApiError("This webhook was made through MLflow's webhook API: its format is MLflow's and cannot change")
    if given not in FORMATS:
        raise ApiError(f"Invalid value {json.dumps(given)[:100]} for parameter 'format' supplied: it must be one of {', '.join(FORMATS)}.")
    return FORMATS[given]


def _secret(data: dict[str, Any]) -> str:
    given = data.get("secret")
    if given in (None, ""):
        return signing.new_secret()
    try:
        return signing.check_secret(given)
    except ValueError as bad:
        raise ApiError(f"Invalid secret: {bad}") from None


def create_webhook(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    subscription_id = uuid.uuid4().hex
    state = _state(runtime, subscription_id, data)
    may_subscribe(runtime, state)
    secret = _secret(data)
    with runtime.engine.begin() as c:  # before the event: the dispatcher never sees a subscription without one
        c.execute(insert(secrets).values(subscription_id=subscription_id, secret=secret, created_time=now_ms(), expires_time=None))
    _write(runtime, [commands.create_webhook(state)])
    return {"webhook": _subscription(runtime, subscription_id), "secret": secret}


def list_webhooks(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    return {"webhooks": mine(runtime.read(queries.list_subscriptions))}


def get_webhook(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    return {"webhook": owned(_subscription(runtime, data.get("subscription_id")), change=False)}


def update_webhook(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    current = owned(_subscription(runtime, data.get("subscription_id")))
    state = _state(runtime, current["subscription_id"], data, current)
    may_subscribe(runtime, state)
    _write(runtime, [commands.update_webhook(state)])
    return {"webhook": _subscription(runtime, current["subscription_id"])}


def delete_webhook(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    current = owned(_subscription(runtime, data.get("subscription_id")))
    _write(runtime, [commands.delete_webhook(current["subscription_id"])])
    return {}


def rotate_secret(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    """A new current secret; the old one keeps signing (both signatures are sent) for
    ``expire_in_seconds`` (default the operator's rotation grace, 0 = stop at once)."""
    current = owned(_subscription(runtime, data.get("subscription_id")))
    grace = as_int(data, "expire_in_seconds", int(runtime.webhook_settings.rotation_grace), 0, 30 * 86400)
    secret = _secret(data)
    now = now_ms()
    sid = current["subscription_id"]
    with runtime.engine.begin() as c:
        # Every older secret stops by then (an earlier rotation's may have had longer).
        ends = now + grace * 1000
        c.execute(
            update(secrets)
            .where(secrets.c.subscription_id == sid, or_(secrets.c.expires_time.is_(None), secrets.c.expires_time > ends))
            .values(expires_time=ends)
        )
        c.execute(insert(secrets).values(subscription_id=sid, secret=secret, created_time=now, expires_time=None))
    _write(runtime, [commands.rotate_webhook_secret(sid, ends)])
    return {"secret": secret, "previous_expires_time": ends}


def test_webhook(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    """Send a ``webhook.test`` message now and answer with what the endpoint said. It is
    recorded like any delivery (and retried like one if it failed)."""
    from eventflow.webhooks.payload import body_of

    current = owned(_subscription(runtime, data.get("subscription_id")))
    sid = current["subscription_id"]
    event = Event("webhook.test", {"subscription_id": sid, "url": current["url"]})
    sender = runtime.webhook_sender()
    now = now_ms()
    with runtime.engine.begin() as c:
        delivery_id = c.execute(
            insert(deliveries).values(
                subscription_id=sid, event_id=event.event_id, event_type=event.type, entity_key=sid, event_time=event.time,
                body=body_of(event), status="PENDING", attempts=0, next_attempt_time=now, created_time=now,
                lease_owner=sender.name, lease_until=now + int(runtime.webhook_settings.lease * 1000),
            )
        ).inserted_primary_key[0]
    row = runtime.read(lambda c: c.execute(deliveries.select().where(deliveries.c.delivery_id == delivery_id)).first())
    sender.deliver(row, current["url"], current["flavor"])  # an MLflow-made subscription is tested with its headers
    return {"delivery": runtime.read(queries.get_delivery, sid, delivery_id)}


def list_deliveries(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    current = owned(_subscription(runtime, data.get("subscription_id")), change=False)
    status = text(data, "status")
    if status and status not in queries.DELIVERY_STATUSES:
        raise ApiError(f"Invalid status {status!r}: one of {', '.join(queries.DELIVERY_STATUSES)}")
    max_results = as_int(data, "max_results", 100, 1, 1000)
    before = as_int(data, "before", None, 1)
    found = runtime.read(queries.list_deliveries, current["subscription_id"], status, max_results, before)
    more = len(found) == max_results
    return {"deliveries": found, **({"next_before": found[-1]["delivery_id"]} if more and found else {})}


def redeliver(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    """Send a finished delivery again (same body, same webhook-id), with a fresh retry window."""
    current = owned(_subscription(runtime, data.get("subscription_id")))
    sid = current["subscription_id"]
    delivery_id = as_int(data, "delivery_id", None, 1, 2**62)
    found = runtime.read(queries.get_delivery, sid, delivery_id)
    if found is None:
        raise not_found(f"No delivery {delivery_id} of webhook subscription {sid}")
    if found["status"] == "PENDING":
        raise ApiError(f"Delivery {delivery_id} is still pending (next attempt at {found['next_attempt_time']}); nothing to redeliver", "INVALID_STATE")
    now = now_ms()
    with runtime.engine.begin() as c:
        c.execute(
            update(deliveries)
            .where(deliveries.c.delivery_id == delivery_id, deliveries.c.status != "PENDING")
            .values(status="PENDING", next_attempt_time=now, created_time=now, completed_time=None, lease_owner=None, lease_until=None)
        )
    return {"delivery": runtime.read(queries.get_delivery, sid, delivery_id)}


ENDPOINTS: list[tuple[str, str, Handler]] = [
    ("POST", "", create_webhook),
    ("GET", "", list_webhooks),
    ("GET", "/{subscription_id}", get_webhook),
    ("PATCH", "/{subscription_id}", update_webhook),
    ("DELETE", "/{subscription_id}", delete_webhook),
    ("POST", "/{subscription_id}/test", test_webhook),
    ("POST", "/{subscription_id}/rotate-secret", rotate_secret),
    ("GET", "/{subscription_id}/deliveries", list_deliveries),
    ("POST", "/{subscription_id}/deliveries/{delivery_id}/redeliver", redeliver),
]


def _endpoint(runtime: Runtime, by_method: dict[str, Handler], path: str) -> Callable[[Request], Awaitable[JSONResponse]]:
    async def endpoint(request: Request) -> JSONResponse:
        data = {**await fields(request), **request.path_params}
        fieldtypes.check(request.method, path, data)  # the OpenAPI table's types, as for tracking
        return JSONResponse(await run_in_threadpool(by_method[request.method], runtime, data))

    return endpoint


def method_routes(runtime: Runtime, endpoints: list[tuple[str, str, Handler]], prefixes: tuple[str, ...]) -> list[Route]:
    """One Route per path under each prefix, dispatching to the handler of the method."""
    paths: dict[str, dict[str, Handler]] = {}
    for prefix in prefixes:
        for method, path, handler in endpoints:
            paths.setdefault(prefix + path, {})[method] = handler
    return [Route(path, _endpoint(runtime, handlers, path), methods=list(handlers)) for path, handlers in paths.items()]


def routes(runtime: Runtime) -> list[Route]:
    return method_routes(runtime, ENDPOINTS, (BASE,))
