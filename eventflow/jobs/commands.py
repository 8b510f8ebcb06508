"""Job events, checked at the edge: what the REST API, the CLI and the SDK append.

A job is a project (URI, entry point, parameters, environment manager) plus when it runs:
a cron schedule in a time zone and/or events that trigger it, with the webhook filters
(event type patterns, model, alias, condition). A parameter value may name a field of the
triggering event, ``{event.FIELD}``, filled in when it fires (``resolve_parameters``).
"""

from __future__ import annotations

import math
import re
import uuid
from typing import Any

from eventflow import validation as v
from eventflow.events import Event
from eventflow.jobs import schedule
from eventflow.projects import sources
from eventflow.webhooks import filters

OVERLAP = ("skip", "queue")
MAX_NAME, MAX_URI, MAX_VALUE = 500, 2000, 6000
# A placeholder names a field of the triggering event: {event.model_uri}, {event.tags.team}
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_FIELD = re.compile(r"event\.[A-Za-z_][\w\-]*(?:\.[A-Za-z_][\w\-]*)*")
_ENTRY_POINT = re.compile(r"[A-Za-z0-9_][\w.\-]*(?:/[\w.\-]+)*")
_QUEUE = re.compile(r"[\w.\-]{1,100}")

DEFINITION_FIELDS = (
    "name", "project_uri", "entry_point", "parameters", "env_manager", "experiment_name", "cron", "timezone", "on_events",
    "model_name", "alias", "condition", "experiment_id", "retries", "retry_delay", "timeout", "max_concurrent", "on_overlap", "queue", "catch_up",
)


def _text(value: Any, field: str, limit: int, required: bool = False) -> str | None:
    if value is None or value == "":
        if required:
            raise v.InvalidInput(f"Missing value for required parameter '{field}'.")
        return None
    if not isinstance(value, str):
        raise v.invalid_value(field, value, "it must be a string")
    if len(value) > limit:
        raise v.InvalidInput(f"Invalid value for parameter '{field}': at most {limit:,} characters (got {len(value):,})")
    return value


def check_number(value: Any, field: str, low: float, high: float, default: float | None, whole: bool = False) -> Any:
    if value is None or value == "":
        return default
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or not low <= number <= high or (whole and number != int(number)):
        kind = "a whole number" if whole else "a number"
        raise v.invalid_value(field, value, f"it must be {kind} from {low:g} to {high:g}")
    return int(number) if whole else number


def _flag(value: Any, field: str) -> bool:
    if value in (None, ""):
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    raise v.invalid_value(field, value, "it must be true or false")


def check_project_uri(uri: Any) -> str:
    """A git URL or an absolute local directory: an agent on another machine runs it, so a
    relative path (relative to what?) is refused."""
    text = _text(uri, "project_uri", MAX_URI, required=True)
    assert text is not None
    try:
        base, _ = sources.split_uri(text)
    except sources.SourceError as error:
        raise v.InvalidInput(f"Invalid value for parameter 'project_uri': {error}") from None
    if not (sources.is_git_url(base) or base.startswith("/")):
        raise v.InvalidInput(f"Invalid value {text!r} for parameter 'project_uri': give a git URL (https://, ssh://, git@host:path, "
                             "file://) or an absolute path to a project directory, e.g. /srv/projects/train or "
                             "https://github.com/org/repo#train")
    return text


def check_entry_point(name: Any) -> str:
    if name is None or name == "":
        return "main"
    if not isinstance(name, str) or len(name) > 500 or not _ENTRY_POINT.fullmatch(name) or ".." in name.split("/"):
        raise v.invalid_value("entry_point", name, "give the name of an entry point of the project's MLproject (e.g. main) "
                              "or a .py or .sh file inside the project (e.g. train.py)")
    return name


def check_parameters(parameters: Any, triggered_by_events: bool) -> dict[str, str]:
    if parameters in (None, ""):
        return {}
    if not isinstance(parameters, dict):
        raise v.invalid_value("parameters", parameters, "it must be an object of names to values")
    checked = {}
    for key, value in parameters.items():
        v.check_key(key, "parameters", "parameter")
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise v.invalid_value(f"parameters.{key}", value, "a parameter value is a string (or a number)")
        text = str(value)
        if len(text) > MAX_VALUE:
            raise v.InvalidInput(f"Invalid value for parameter 'parameters.{key}': at most {MAX_VALUE:,} characters")
        for placeholder in _PLACEHOLDER.findall(text):
            if not _FIELD.fullmatch(placeholder):
                raise v.InvalidInput(f"Invalid value {text!r} for parameter 'parameters.{key}': {{{placeholder}}} is not a placeholder; "
                                     "write {event.FIELD} to take a field of the triggering event, e.g. {event.model_uri}")
            if not triggered_by_events:
                raise v.InvalidInput(f"Invalid value {text!r} for parameter 'parameters.{key}': {{{placeholder}}} is filled from the "
                                     "triggering event, and this job has no event trigger (give --on EVENT_PATTERN)")
        checked[key] = text
    return checked


def check_definition(data: dict[str, Any]) -> dict[str, Any]:
    """A job's whole definition, every field checked, or InvalidInput naming the first bad one."""
    on_events = data.get("on_events") or []
    if isinstance(on_events, str):
        on_events = [on_events]
    try:
        patterns = filters.check_patterns(on_events) if on_events else []
        filters.parse_condition(data.get("condition"))
    except filters.InvalidFilter as error:
        raise v.InvalidInput(f"Invalid trigger: {error}") from None
    if not patterns and any(data.get(k) for k in ("model_name", "alias", "condition", "experiment_id")):
        raise v.InvalidInput("A trigger filter (model_name, alias, condition, experiment_id) needs an event trigger: "
                             "give on_events (--on EVENT_PATTERN)")
    cron = schedule.check_cron(data["cron"]) if data.get("cron") not in (None, "") else None
    timezone = schedule.check_timezone(data.get("timezone"))
    if cron is None and data.get("timezone") not in (None, "", "UTC"):
        raise v.InvalidInput("A time zone needs a cron schedule: give cron (--cron) or leave timezone out")
    overlap = data.get("on_overlap") or "skip"
    if overlap not in OVERLAP:
        raise v.invalid_value("on_overlap", overlap, "it must be skip or queue")
    queue = data.get("queue") or "default"
    if not isinstance(queue, str) or not _QUEUE.fullmatch(queue):
        raise v.invalid_value("queue", queue, "a queue name is up to 100 letters, digits, '_', '-' or '.'")
    env_manager = _text(data.get("env_manager"), "env_manager", 20)
    if env_manager is not None:
        from eventflow.projects import environments

        try:
            environments.check_manager(env_manager)
        except environments.EnvironmentBuildError as error:
            raise v.InvalidInput(f"Invalid value for parameter 'env_manager': {error}") from None
    return {
        "name": _text(data.get("name"), "name", MAX_NAME, required=True),
        "project_uri": check_project_uri(data.get("project_uri")),
        "entry_point": check_entry_point(data.get("entry_point")),
        "parameters": check_parameters(data.get("parameters"), bool(patterns)),
        "env_manager": env_manager,
        "experiment_name": v.check_experiment_name(data["experiment_name"]) if data.get("experiment_name") else None,
        "cron": cron,
        "timezone": timezone,
        "on_events": patterns,
        "model_name": _text(data.get("model_name"), "model_name", 500),
        "alias": _text(data.get("alias"), "alias", 256),
        "condition": _text(data.get("condition"), "condition", 1000),
        "experiment_id": v.check_experiment_id(data["experiment_id"]) if data.get("experiment_id") not in (None, "") else None,
        "retries": check_number(data.get("retries"), "retries", 0, 100, 0, whole=True),
        "retry_delay": check_number(data.get("retry_delay"), "retry_delay", 0, 86_400, 0.0),
        "timeout": check_number(data.get("timeout"), "timeout", 1, 7 * 86_400, None),
        "max_concurrent": check_number(data.get("max_concurrent"), "max_concurrent", 1, 100, 1, whole=True),
        "on_overlap": overlap,
        "queue": queue,
        "catch_up": _flag(data.get("catch_up"), "catch_up"),
    }


def check_job_id(job_id: Any) -> str:
    text = _text(job_id, "job_id", 64, required=True)
    assert text is not None
    if not re.fullmatch(r"[0-9a-f]{32}", text):
        raise v.invalid_value("job_id", job_id, "a job id is 32 hexadecimal digits (see eventflow jobs list)")
    return text


def create_job(data: dict[str, Any]) -> Event:
    unknown = sorted(set(data) - set(DEFINITION_FIELDS))
    if unknown:
        raise v.InvalidInput(f"Unknown job field(s): {', '.join(unknown)}; a job has {', '.join(DEFINITION_FIELDS)}")
    return Event("job.created", {"job_id": uuid.uuid4().hex, **check_definition(data)})


def update_job(current: dict[str, Any], changes: dict[str, Any], paused: bool | None = None) -> Event:
    """The job after ``changes`` (fields of its definition), whole, re-checked."""
    unknown = sorted(set(changes) - set(DEFINITION_FIELDS))
    if unknown:
        raise v.InvalidInput(f"Unknown job field(s): {', '.join(unknown)}; a job has {', '.join(DEFINITION_FIELDS)}")
    merged = {k: current.get(k) for k in DEFINITION_FIELDS} | changes
    return Event("job.updated", {"job_id": current["job_id"], **check_definition(merged),
                                 "paused": bool(current.get("paused")) if paused is None else paused})


def delete_job(job_id: Any) -> Event:
    return Event("job.deleted", {"job_id": check_job_id(job_id)})


# -- firing ---------------------------------------------------------------------------

_IDS = uuid.UUID("3a7c5e1b-9d2f-4b6a-8e0c-1f17a0b5c917")  # the namespace of trigger ids


def trigger_id(job_id: str, cause: str) -> str:
    """The id of one run of a job, from what caused it (``cron/<tick>``, ``event/<id>``,
    ``manual/<id>``): whoever fires it again (a restart, a replay) names the same run."""
    return str(uuid.uuid5(_IDS, f"{job_id}/{cause}"))


def event_context(event: Event) -> dict[str, Any]:
    """What ``{event.FIELD}`` may name: the payload, the envelope's id, type, time and
    actor, and ``model_uri`` (models:/NAME/VERSION) for an event about a model version."""
    context = dict(event.payload)
    context.update(id=event.event_id, type=event.type, time=event.time, actor=event.actor)
    if event.type.startswith("model_version.") and event.payload.get("name") and event.payload.get("version") is not None:
        context.setdefault("model_uri", f"models:/{event.payload['name']}/{event.payload['version']}")
    return context


class Unfilled(ValueError):
    """A placeholder naming a field the event does not carry."""


def resolve_parameters(parameters: dict[str, str], context: dict[str, Any] | None) -> dict[str, str]:
    def fill(match: re.Match[str]) -> str:
        node: Any = context or {}
        for part in match[1].split(".")[1:]:
            if not isinstance(node, dict) or part not in node or node[part] is None:
                raise Unfilled(f"the triggering event carries no {match[1]!r}")
            node = node[part]
        return str(node)

    return {key: _PLACEHOLDER.sub(fill, value) for key, value in parameters.items()}
