"""``/api/2.0/eventflow/alerts``: metric alert rules, the alerts firing now, and alerts
raised by training code.

A rule's creation and deletion are events (``alert_rule.*``) answered only once the
alert watcher (consumers/alerts.py) has applied them, so every point logged after the
answer is judged by the rule. With auth on, a rule about one experiment needs EDIT on
it, a rule about every run is for administrators, and reading shows what the reader may
READ.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from eventflow.alerts import commands
from eventflow.alerts.tables import rules, series
from eventflow.auth import context as access
from eventflow.auth import policy
from eventflow.auth.permissions import EDIT
from eventflow.consumers.alerts import GROUP
from eventflow.events import Event
from eventflow.proto_json import replace_non_finite, spelled
from eventflow.server.errors import ApiError, not_found
from eventflow.server.runtime import Runtime
from eventflow.server.webhooks_api import method_routes
from eventflow.validation import InvalidInput
from eventflow.views import queries as views
from eventflow.views.positions import wait_for

BASE = "/api/2.0/eventflow/alerts"


def _write_applied(runtime: Runtime, events: Sequence[Event]) -> None:
    positions = runtime.write(events)
    if not wait_for(runtime.engine, positions, runtime.write_timeout, consumer=GROUP):
        raise ApiError(
            f"the change was appended to the log but the alert watcher did not apply it within {runtime.write_timeout:.0f} s: "
            "is it running (eventflow consume alerts, or eventflow server with its consumers)?",
            "TEMPORARILY_UNAVAILABLE",
        )


def _rule(row: Any) -> dict[str, Any]:
    return {"rule_id": row.rule_id, "name": row.name, "condition": row.condition, "experiment_id": row.experiment_id,
            "level": row.level, "description": row.description, "created_time": row.created_time, "created_by": row.created_by}


def _may(runtime: Runtime, experiment_id: str | None, level: str) -> bool:
    principal = access.current()
    if principal is None or principal.admin:
        return True
    if experiment_id is None:
        return level != EDIT  # a rule about every run is read by all, changed by administrators
    with runtime.engine.connect() as c:
        try:
            policy.require(c, principal, policy.Need(about=policy.experiment(), level=level), {"experiment_id": experiment_id})
        except ApiError:
            return False
    return True


def create_rule(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    event = commands.create_rule(data.get("name"), data.get("condition"), experiment_id=data.get("experiment_id"),
                                 level=data.get("level"), description=data.get("description"))
    experiment_id = event.payload["experiment_id"]
    if experiment_id is not None and runtime.read(views.get_experiment, experiment_id) is None:
        raise not_found(f"No experiment with id={experiment_id} exists")
    if not _may(runtime, experiment_id, EDIT):
        raise policy.denied("Permission denied: a rule about every run is for administrators" if experiment_id is None
                            else f"Permission denied: EDIT on experiment {experiment_id!r} is needed")
    _write_applied(runtime, [event])
    return {"rule": _get(runtime, event.payload["rule_id"])}


def _get(runtime: Runtime, rule_id: Any) -> dict[str, Any]:
    if not isinstance(rule_id, str) or not rule_id:
        raise InvalidInput("Missing value for required parameter 'rule_id'.")
    with runtime.engine.connect() as c:
        row = c.execute(select(rules).where(rules.c.rule_id == rule_id, rules.c.deleted.is_(False))).first()
    if row is None:
        raise not_found(f"No alert rule with id {rule_id!r}")
    return _rule(row)


def list_rules(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    with runtime.engine.connect() as c:
        rows = c.execute(select(rules).where(rules.c.deleted.is_(False)).order_by(rules.c.created_time)).all()
    return {"rules": [_rule(r) for r in rows if _may(runtime, r.experiment_id, "READ")]}


def delete_rule(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    rule = _get(runtime, data.get("rule_id"))
    if not _may(runtime, rule["experiment_id"], EDIT):
        raise policy.denied("Permission denied: only who may EDIT its experiment (or an administrator) deletes this rule")
    _write_applied(runtime, [commands.delete_rule(rule["rule_id"])])
    return {}


def list_alerts(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    """The alerts firing now (``?all=true``: every series a rule has judged), newest first."""
    everything = str(data.get("all", "")).lower() in ("true", "1")
    query = select(series, rules.c.name, rules.c.condition, rules.c.level, rules.c.experiment_id).join(rules, rules.c.rule_id == series.c.rule_id)
    if not everything:
        query = query.where(series.c.firing.is_(True))
    if data.get("run_id"):
        query = query.where(series.c.run_id == str(data["run_id"]))
    with runtime.engine.connect() as c:
        rows = c.execute(query.order_by(series.c.changed_time.desc()).limit(1000)).mappings().all()
    readable = [r for r in rows if _run_readable(runtime, r["run_id"])]
    return replace_non_finite({"alerts": [{"rule_id": r["rule_id"], "rule": r["name"], "condition": r["condition"], "level": r["level"],
                        "run_id": r["run_id"], "metric": r["metric"], "firing": bool(r["firing"]), "value": r["value"],
                        "step": r["step"], "since": r["changed_time"]} for r in readable]}, spelled)  # a NaN loss, as "NaN"


def _run_readable(runtime: Runtime, run_id: str) -> bool:
    with runtime.engine.connect() as c:
        return all(policy.may_read(c, kind, key) for kind, key in policy.run(c, {"run_id": run_id}))


def raise_alert(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    """An alert about a run from its training code (what ``eventflow.alert`` sends)."""
    event = commands.raise_alert(data.get("run_id"), data.get("title"), data.get("text"), data.get("level"))
    info = runtime.read(views.get_run_info, event.payload["run_id"])
    if info is None:
        raise not_found(f"Run '{event.payload['run_id']}' not found")
    principal = access.current()
    if principal is not None:
        with runtime.engine.connect() as c:
            policy.require(c, principal, policy.Need(about=policy.run, level=EDIT), {"run_id": event.payload["run_id"]})
    runtime.write([event])
    return {"alert": {**event.payload, "event_id": event.event_id}}


ENDPOINTS = [
    ("GET", "", list_alerts),
    ("POST", "/raise", raise_alert),
    ("GET", "/rules", list_rules),
    ("POST", "/rules", create_rule),
    ("DELETE", "/rules/{rule_id}", delete_rule),
]


def routes(runtime: Runtime) -> list:
    return method_routes(runtime, ENDPOINTS, (BASE,))
