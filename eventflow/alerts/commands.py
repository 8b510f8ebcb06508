"""Alert events, checked at the edge: what the REST API, the CLI and the SDK append."""

from __future__ import annotations

import uuid
from typing import Any

from eventflow import validation as v
from eventflow.alerts import conditions
from eventflow.events import Event

LEVELS = ("info", "warning", "error")
MAX_TITLE, MAX_TEXT, MAX_NAME = 500, 10_000, 500


def check_level(level: Any) -> str:
    if level is None or level == "":
        return "warning"
    if not isinstance(level, str) or level.lower() not in LEVELS:
        raise v.invalid_value("level", level, f"it must be one of {', '.join(LEVELS)}")
    return level.lower()


def _text(value: Any, field: str, limit: int, required: bool) -> str:
    if value is None or value == "":
        if required:
            raise v.InvalidInput(f"Missing value for required parameter '{field}'.")
        return ""
    if not isinstance(value, str):
        raise v.invalid_value(field, value, "it must be a string")
    if len(value) > limit:
        raise v.InvalidInput(f"Invalid value for parameter '{field}': at most {limit:,} characters (got {len(value):,})")
    return value


def create_rule(name: Any, condition: Any, *, experiment_id: Any = None, level: Any = None, description: Any = None) -> Event:
    parsed = conditions.parse(condition)
    return Event("alert_rule.created", {
        "rule_id": uuid.uuid4().hex,
        "name": _text(name, "name", MAX_NAME, True),
        "condition": parsed.text,
        "experiment_id": None if experiment_id in (None, "") else v.check_experiment_id(experiment_id),
        "level": check_level(level),
        "description": _text(description, "description", MAX_TEXT, False) or None,
    })


def delete_rule(rule_id: Any) -> Event:
    return Event("alert_rule.deleted", {"rule_id": _text(rule_id, "rule_id", 64, True)})


def raise_alert(run_id: Any, title: Any, text: Any = "", level: Any = None) -> Event:
    """An alert raised by training code about its run (W&B's ``run.alert``)."""
    return Event("alert.raised", {
        "run_id": v.check_run_id(run_id), "title": _text(title, "title", MAX_TITLE, True),
        "text": _text(text, "text", MAX_TEXT, False), "level": check_level(level),
    })
