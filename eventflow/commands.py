"""Commands: validated user intent turned into events.

Every write — from the SDK, the REST API or the CLI — goes through one of these
functions, so the rules that need no state are checked once, here, before anything can
reach the log. Rules that need state (does the run exist, was this param logged with
another value) are checked by the caller against the views, and again by the projector.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from eventflow import idempotency
from eventflow import validation as v
from eventflow.events import Event, metric_points, now_ms

RUN_STATUSES = ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED")
END_EVENTS = {"FINISHED": "run.finished", "FAILED": "run.failed", "KILLED": "run.killed"}


def new_run_id() -> str:
    return idempotency.new_run_id()


def new_experiment_id() -> str:
    return idempotency.new_experiment_id()


def _tags(tags: dict[str, Any] | Iterable[tuple[str, Any]] | None, check=v.check_tag) -> list[dict[str, str]]:
    items = tags.items() if isinstance(tags, dict) else (tags or [])
    checked = [check(key, value) for key, value in items]
    return [{"key": key, "value": value} for key, value in checked]


def create_experiment(experiment_id: str, name: str, artifact_location: str, tags: dict[str, Any] | None = None) -> Event:
    return Event(
        "experiment.created",
        {
            "experiment_id": v.check_experiment_id(experiment_id),
            "name": v.check_experiment_name(name),
            "artifact_location": artifact_location,
            "tags": _tags(tags, v.check_experiment_tag),
            "creation_time": now_ms(),
        },
    )


def rename_experiment(experiment_id: str, new_name: str) -> Event:
    return Event("experiment.renamed", {"experiment_id": v.check_experiment_id(experiment_id), "new_name": v.check_experiment_name(new_name)})


def delete_experiment(experiment_id: str) -> Event:
    return Event("experiment.deleted", {"experiment_id": v.check_experiment_id(experiment_id)})


def restore_experiment(experiment_id: str) -> Event:
    return Event("experiment.restored", {"experiment_id": v.check_experiment_id(experiment_id)})


def set_experiment_tag(experiment_id: str, key: str, value: Any) -> Event:
    key, value = v.check_experiment_tag(key, value)
    return Event("experiment.tag_set", {"experiment_id": v.check_experiment_id(experiment_id), "key": key, "value": value})


def delete_experiment_tag(experiment_id: str, key: str) -> Event:
    return Event("experiment.tag_deleted", {"experiment_id": v.check_experiment_id(experiment_id), "key": v.check_key(key)})


def create_run(
    run_id: str,
    experiment_id: str,
    *,
    run_name: str,
    user_id: str,
    artifact_uri: str,
    start_time: int | None = None,
    tags: dict[str, Any] | None = None,
    parent_run_id: str | None = None,
) -> Event:
    return Event(
        "run.created",
        {
            "run_id": v.check_run_id(run_id),
            "experiment_id": v.check_experiment_id(experiment_id),
            "run_name": v.check_run_name(run_name),
            "user_id": user_id,
            "start_time": now_ms() if start_time is None else int(start_time),
            "parent_run_id": None if parent_run_id is None else v.check_run_id(parent_run_id, "parent_run_id"),
            "tags": _tags(tags),
            "artifact_uri": artifact_uri,
        },
    )


def end_run(run_id: str, status: str = "FINISHED", end_time: int | None = None, error_message: str | None = None) -> Event:
    if status not in END_EVENTS:
        raise v.InvalidInput(f"Invalid run status {status!r}: a run ends as one of {', '.join(END_EVENTS)}")
    payload: dict[str, Any] = {"run_id": v.check_run_id(run_id), "end_time": now_ms() if end_time is None else int(end_time)}
    if status == "FAILED":
        payload["error_message"] = error_message
    return Event(END_EVENTS[status], payload)


def run_alive(run_id: str, every_ms: int) -> Event:
    """A sign of life of a running run's process, sent every ``every_ms`` (consumers/watchdog.py)."""
    if not isinstance(every_ms, int) or isinstance(every_ms, bool) or not 0 < every_ms <= 3_600_000:
        raise v.invalid_value("every_ms", every_ms, "it must be a whole number of milliseconds from 1 to 3600000")
    return Event("run.alive", {"run_id": v.check_run_id(run_id), "every_ms": every_ms})


def run_crashed(run_id: str, last_seen_time: int, timeout_ms: int) -> Event:
    return Event("run.crashed", {"run_id": v.check_run_id(run_id), "last_seen_time": int(last_seen_time), "timeout_ms": int(timeout_ms)})


def run_stalled(run_id: str, last_step_time: int, timeout_ms: int) -> Event:
    return Event("run.stalled", {"run_id": v.check_run_id(run_id), "last_step_time": int(last_step_time), "timeout_ms": int(timeout_ms)})


def run_stall_ended(run_id: str, stalled_since: int, step_time: int) -> Event:
    return Event("run.stall_ended", {"run_id": v.check_run_id(run_id), "stalled_since": int(stalled_since), "step_time": int(step_time)})


def rename_run(run_id: str, run_name: str) -> Event:
    return Event("run.renamed", {"run_id": v.check_run_id(run_id), "run_name": v.check_run_name(run_name)})


def delete_run(run_id: str) -> Event:
    return Event("run.deleted", {"run_id": v.check_run_id(run_id)})


def restore_run(run_id: str) -> Event:
    return Event("run.restored", {"run_id": v.check_run_id(run_id)})


MAX_STOP_REASON = 500


def request_stop(run_id: str, reason: str | None = None) -> Event:
    """Ask a run's training process to stop (it ends the run KILLED, as Ctrl-C does)."""
    if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_STOP_REASON):
        raise v.InvalidInput(f"Invalid reason {str(reason)[:80]!r}: a text of at most {MAX_STOP_REASON} characters")
    return Event("run.stop_requested", {"run_id": v.check_run_id(run_id), "reason": reason or None})


def empty_columns() -> dict[str, list[Any]]:
    return {"names": [], "key_index": [], "values": [], "steps": [], "timestamps": []}


class Columns:
    """Builds the columns of a ``run.metrics_logged`` event, one checked point at a time."""

    __slots__ = ("index", "columns")

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.columns = empty_columns()

    def add(self, key: str, value: float, timestamp: int, step: int) -> int:
        """Add a point; returns how many points the columns hold."""
        at = self.index.get(key)
        columns = self.columns
        if at is None:
            at = self.index[key] = len(columns["names"])
            columns["names"].append(key)
        columns["key_index"].append(at)
        columns["values"].append(value)
        columns["steps"].append(step)
        columns["timestamps"].append(timestamp)
        return len(columns["values"])


def metric_columns(points: Iterable[tuple[str, Any, Any, Any]]) -> dict[str, list[Any]]:
    """Checked points from (key, value, timestamp, step) tuples, column by column."""
    columns = Columns()
    for i, (key, value, timestamp, step) in enumerate(points):
        columns.add(*v.check_metric(key, value, timestamp, step, f"metrics[{i}]"))
    return columns.columns


def split_metrics(points: Iterable[Sequence[Any]]) -> tuple[dict[str, list[Any]], list[dict[str, Any]]]:
    """Checked points from (key, value, timestamp, step, model_id, dataset_name, dataset_digest)
    tuples (the last three may be None): plain points column by column, and the points linked
    to a logged model or a dataset (MLflow 3) as one record each, where the v3 schema keeps
    their links."""
    columns = Columns()
    linked: list[dict[str, Any]] = []
    for i, (key, value, timestamp, step, *link) in enumerate(points):
        path = f"metrics[{i}]"
        key, number, timestamp, step = v.check_metric(key, value, timestamp, step, path)
        about = v.check_metric_link(*link, path=path) if link else None
        if about is None:
            columns.add(key, number, timestamp, step)
        else:
            linked.append({"key": key, "value": number, "step": step, "timestamp": timestamp, **about})
    return columns.columns, linked


def log_metrics(run_id: str, columns: dict[str, list[Any]], linked: Sequence[dict[str, Any]] = ()) -> Event:
    """Already-checked points (see ``metric_columns`` and ``split_metrics``) as one event."""
    return Event("run.metrics_logged", {"run_id": v.check_run_id(run_id), "points": list(linked), "columns": columns})


def _recheck_metrics(payload: dict[str, Any]) -> None:
    columns = payload.get("columns") or empty_columns()
    lengths = {len(columns[name]) for name in ("key_index", "values", "steps", "timestamps")}
    if len(lengths) > 1:
        raise v.InvalidInput("metric columns must all have one entry per point")
    if any(not 0 <= i < len(columns["names"]) for i in columns["key_index"]):
        raise v.InvalidInput("a metric point names a key index outside the batch's names")
    metric_columns((p.key, p.value, p.timestamp, p.step) for p in metric_points(payload))
    for i, point in enumerate(payload.get("points") or ()):
        v.check_metric_link(point.get("model_id"), point.get("dataset_name"), point.get("dataset_digest"), f"points[{i}]")


def log_params(run_id: str, params: dict[str, Any] | Sequence[tuple[str, Any]]) -> Event:
    items = list(params.items()) if isinstance(params, dict) else list(params)
    checked = [v.check_param(key, value, f"params[{i}]") for i, (key, value) in enumerate(items)]
    v.check_unique_param_keys([key for key, _ in checked])
    return Event("run.params_logged", {"run_id": v.check_run_id(run_id), "params": [{"key": k, "value": val} for k, val in checked]})


def set_tags(run_id: str, tags: dict[str, Any] | Sequence[tuple[str, Any]]) -> Event:
    return Event("run.tags_set", {"run_id": v.check_run_id(run_id), "tags": _tags(tags)})


def delete_tag(run_id: str, key: str) -> Event:
    return Event("run.tag_deleted", {"run_id": v.check_run_id(run_id), "key": v.check_key(key)})


def artifact_path(path: str, owner: str) -> str:
    normal = path.replace("\\", "/")
    if not normal or normal.startswith("/") or ".." in normal.split("/"):
        raise v.InvalidInput(f"Invalid artifact path {path!r}: it must be relative and stay inside the {owner}'s artifacts")
    return normal


def file_facts(size: Any, sha256: Any) -> tuple[int, str]:
    """An artifact's size and digest, as the log vouches for them: what loading and
    serving verify a file against, so they must be well-formed."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise v.InvalidInput(f"Invalid artifact size {size!r}: a file's size in bytes, 0 or more")
    if not isinstance(sha256, str) or len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise v.InvalidInput(f"Invalid artifact sha256 {sha256!r}: 64 lower-case hexadecimal digits")
    return size, sha256


def log_artifact(run_id: str, path: str, size: int, sha256: str) -> Event:
    normal = artifact_path(path, "run")
    size, sha256 = file_facts(size, sha256)
    return Event("run.artifact_logged", {"run_id": v.check_run_id(run_id), "path": normal, "size": size, "sha256": sha256})


def log_inputs(run_id: str, datasets: Sequence[dict[str, Any]], models: Sequence[dict[str, Any]] = ()) -> Event:
    """MLflow's log-inputs: the datasets a run used, each with its input tags, and (MLflow 3)
    the logged models it used."""
    checked = [v.check_dataset_input(item, f"datasets[{i}]") for i, item in enumerate(datasets)]
    used = [{"model_id": _model_input(item, f"models[{i}]")} for i, item in enumerate(models)]
    return Event("run.inputs_logged", {"run_id": v.check_run_id(run_id), "datasets": checked, "models": used})


def _model_input(item: Any, path: str) -> str:
    if not isinstance(item, dict) or not item.get("model_id"):
        raise v.InvalidInput(f"Missing value for required parameter '{path}.model_id'.")
    return v.check_model_id(item["model_id"], f"{path}.model_id")


LOGGED_MODEL_STATUSES = ("LOGGED_MODEL_PENDING", "LOGGED_MODEL_READY", "LOGGED_MODEL_UPLOAD_FAILED")


def new_model_id() -> str:
    return "m-" + uuid.uuid4().hex


def _model_id(model_id: Any) -> str:
    try:
        return v.check_model_id(model_id)
    except v.InvalidInput:
        raise v.InvalidInput(f"Invalid model id {model_id!r}: logged model ids look like m-<32 hex digits>") from None


def create_logged_model(
    model_id: str,
    experiment_id: str,
    name: str,
    artifact_location: str,
    *,
    model_type: str | None = None,
    source_run_id: str | None = None,
    params: Sequence[tuple[str, Any]] = (),
    tags: Sequence[tuple[str, Any]] = (),
) -> Event:
    checked_params = [v.check_param(key, value, f"params[{i}]") for i, (key, value) in enumerate(params)]
    return Event(
        "logged_model.created",
        {
            "model_id": _model_id(model_id),
            "experiment_id": v.check_experiment_id(experiment_id),
            "name": v.check_run_name(name),
            "artifact_location": artifact_location,
            "model_type": model_type,
            "source_run_id": None if source_run_id is None else v.check_run_id(source_run_id, "source_run_id"),
            "creation_time": now_ms(),
            "params": [{"key": key, "value": value} for key, value in checked_params],
            "tags": _tags(tags),
        },
    )


def finalize_logged_model(model_id: str, status: str, status_message: str | None = None) -> Event:
    if status not in LOGGED_MODEL_STATUSES[1:]:
        raise v.InvalidInput(f"Invalid status {status!r}: a logged model is finalized as LOGGED_MODEL_READY or LOGGED_MODEL_UPLOAD_FAILED")
    return Event("logged_model.finalized", {"model_id": _model_id(model_id), "status": status, "status_message": status_message})


def set_logged_model_tags(model_id: str, tags: Sequence[tuple[str, Any]]) -> Event:
    return Event("logged_model.tags_set", {"model_id": _model_id(model_id), "tags": _tags(tags)})


def delete_logged_model_tag(model_id: str, key: str) -> Event:
    return Event("logged_model.tag_deleted", {"model_id": _model_id(model_id), "key": v.check_key(key)})


def log_logged_model_params(model_id: str, params: Sequence[tuple[str, Any]]) -> Event:
    checked = [v.check_param(key, value, f"params[{i}]") for i, (key, value) in enumerate(params)]
    return Event("logged_model.params_logged", {"model_id": _model_id(model_id), "params": [{"key": k, "value": val} for k, val in checked]})


def log_logged_model_artifact(model_id: str, path: str, size: int, sha256: str) -> Event:
    """A file stored under a logged model's artifacts, with what loading checks it against."""
    normal = artifact_path(path, "logged model")
    size, sha256 = file_facts(size, sha256)
    return Event("logged_model.artifact_logged", {"model_id": _model_id(model_id), "path": normal, "size": size, "sha256": sha256})


def delete_logged_model(model_id: str) -> Event:
    return Event("logged_model.deleted", {"model_id": _model_id(model_id)})


def log_outputs(run_id: str, models: Sequence[dict[str, Any]]) -> Event:
    outputs = []
    for i, model in enumerate(models):
        step = model.get("step", 0)
        if isinstance(step, bool) or not isinstance(step, int):
            raise v.invalid_value(f"models[{i}].step", step, "it must be an integer")
        outputs.append({"model_id": _model_id(model.get("model_id")), "step": step})
    return Event("run.outputs_logged", {"run_id": v.check_run_id(run_id), "models": outputs})


def log_batch(
    run_id: str,
    metrics: Sequence[Sequence[Any]] = (),
    params: dict[str, Any] | Sequence[tuple[str, Any]] = (),
    tags: dict[str, Any] | Sequence[tuple[str, Any]] = (),
) -> list[Event]:
    """MLflow's log-batch: limits checked on the whole batch, then one event per kind.

    A metric is (key, value, timestamp, step), optionally followed by MLflow 3's
    (model_id, dataset_name, dataset_digest); see ``split_metrics``."""
    param_items = list(params.items()) if isinstance(params, dict) else list(params)
    tag_items = list(tags.items()) if isinstance(tags, dict) else list(tags)
    v.check_batch_sizes(metrics, param_items, tag_items)
    events = []
    if param_items:
        events.append(log_params(run_id, param_items))
    if tag_items:
        events.append(set_tags(run_id, tag_items))
    if metrics:
        events.append(log_metrics(run_id, *split_metrics(metrics)))
    return events


PROJECT_ENV_MANAGERS = ("local", "virtualenv", "uv", "conda", "docker")


def record_project(run_id: str, record: dict[str, Any]) -> Event:
    """What a project run ran (``eventflow run``): code, entry point, command, environment.

    ``record`` holds the payload's fields (see schemas/run.project_recorded.v1.avsc);
    ``parameters`` may be a dict or a list of {key, value}."""
    def text(name: str, required: bool = False) -> str | None:
        value = record.get(name)
        if value is None or value == "":
            if required:
                raise v.InvalidInput(f"Missing value for required parameter '{name}' of a project record.")
            return None
        if not isinstance(value, str):
            raise v.InvalidInput(f"Invalid value {value!r} for '{name}' of a project record: it must be a string")
        return value

    parameters = record.get("parameters") or []
    items = list(parameters.items()) if isinstance(parameters, dict) else [(p.get("key"), p.get("value")) for p in parameters]
    manager = text("env_manager", True)
    if manager not in PROJECT_ENV_MANAGERS:
        raise v.InvalidInput(f"Invalid env_manager {manager!r}: one of {', '.join(PROJECT_ENV_MANAGERS)}")
    sha = text("patch_sha256")
    if sha is not None and (len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha)):
        raise v.InvalidInput(f"Invalid patch_sha256 {sha!r}: 64 lower-case hexadecimal digits")
    patch_path = text("patch_path")
    if patch_path is not None:
        artifact_path(patch_path, "run")
    return Event(
        "run.project_recorded",
        {
            "run_id": v.check_run_id(run_id), "name": text("name"), "uri": text("uri", True),
            "subdirectory": text("subdirectory") or "", "version": text("version"), "commit": text("commit"),
            "repo_url": text("repo_url"), "entry_point": text("entry_point", True),
            "parameters": [{"key": str(k), "value": str(val)} for k, val in items],
            "command": text("command", True), "env_manager": manager, "env_digest": text("env_digest"),
            "python_version": text("python_version"), "packages": text("packages") or "",
            "patch_path": patch_path, "patch_sha256": sha,
        },
    )


def _pairs(items: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    return [(item["key"], item["value"]) for item in items]


# How to re-check a ready-made event: rebuild it through its command (which checks).
_RECHECK = {
    "experiment.created": lambda p: create_experiment(p["experiment_id"], p["name"], p["artifact_location"], dict(_pairs(p["tags"]))),
    "experiment.renamed": lambda p: rename_experiment(p["experiment_id"], p["new_name"]),
    "experiment.deleted": lambda p: delete_experiment(p["experiment_id"]),
    "experiment.restored": lambda p: restore_experiment(p["experiment_id"]),
    "experiment.tag_set": lambda p: set_experiment_tag(p["experiment_id"], p["key"], p["value"]),
    "experiment.tag_deleted": lambda p: delete_experiment_tag(p["experiment_id"], p["key"]),
    "run.created": lambda p: create_run(
        p["run_id"], p["experiment_id"], run_name=p["run_name"], user_id=p["user_id"], artifact_uri=p["artifact_uri"],
        start_time=p["start_time"], tags=dict(_pairs(p["tags"])), parent_run_id=p["parent_run_id"],
    ),
    "run.finished": lambda p: end_run(p["run_id"], "FINISHED", p["end_time"]),
    "run.failed": lambda p: end_run(p["run_id"], "FAILED", p["end_time"], p.get("error_message")),
    "run.killed": lambda p: end_run(p["run_id"], "KILLED", p["end_time"]),
    "run.renamed": lambda p: rename_run(p["run_id"], p["run_name"]),
    "run.alive": lambda p: run_alive(p["run_id"], p["every_ms"]),
    "run.deleted": lambda p: delete_run(p["run_id"]),
    "run.restored": lambda p: restore_run(p["run_id"]),
    "run.params_logged": lambda p: log_params(p["run_id"], _pairs(p["params"])),
    "run.tags_set": lambda p: set_tags(p["run_id"], _pairs(p["tags"])),
    "run.tag_deleted": lambda p: delete_tag(p["run_id"], p["key"]),
    "run.metrics_logged": lambda p: (v.check_run_id(p["run_id"]), _recheck_metrics(p)),
    "run.artifact_logged": lambda p: log_artifact(p["run_id"], p["path"], p["size"], p["sha256"]),
    "run.inputs_logged": lambda p: log_inputs(p["run_id"], p["datasets"], p.get("models", [])),
    "run.project_recorded": lambda p: record_project(p["run_id"], p),
    "alert.raised": lambda p: _raise_alert(p["run_id"], p["title"], p["text"], p["level"]),
}


def _raise_alert(*args: Any) -> Event:
    from eventflow.alerts.commands import raise_alert

    return raise_alert(*args)


def recheck(event: Event) -> None:
    """Check an event a client built itself by the rules its command applies.

    Clients may send only the tracking events the SDK makes; anything else (registry,
    deployment, webhook events) has its own API and is refused here.
    """
    rebuild = _RECHECK.get(event.type)
    if rebuild is None:
        raise v.InvalidInput(f"events of type {event.type!r} cannot be sent directly; use their API")
    rebuild(event.payload)


# -- webhooks ---------------------------------------------------------------------------------

WEBHOOK_STATUSES = ("ACTIVE", "DISABLED")


def webhook_state(
    subscription_id: str,
    url: str,
    events: Sequence[str],
    *,
    experiment_id: str | None = None,
    model_name: str | None = None,
    condition: str | None = None,
    status: str = "ACTIVE",
    allowed_networks: Sequence[Any] = (),
    flavor: str | None = None,
    name: str | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    """A subscription's complete state, checked: the payload of webhook.created/updated."""
    from eventflow.webhooks import filters, guard

    try:
        guard.check_literal(url, allowed_networks)
    except guard.Refused as refused:
        raise v.InvalidInput(str(refused)) from None  # the guard's message names the URL
    try:
        patterns = filters.check_patterns(list(events) if isinstance(events, (list, tuple)) else events)
        filters.parse_condition(condition)
    except filters.InvalidFilter as bad:
        raise v.InvalidInput(f"Invalid webhook filter: {bad}") from None
    if status not in WEBHOOK_STATUSES:
        raise v.InvalidInput(f"Invalid webhook status {status!r}: it must be ACTIVE or DISABLED")
    if experiment_id is not None:
        experiment_id = v.check_experiment_id(experiment_id)
    if model_name is not None and (not isinstance(model_name, str) or not model_name or len(model_name) > 500):
        raise v.InvalidInput(f"Invalid model_name {model_name!r}: a registered model name of 1 to 500 characters")
    if condition is not None and not isinstance(condition, str):
        raise v.InvalidInput("Invalid condition: it must be a string such as \"metrics.accuracy > 0.9\"")
    return {
        "subscription_id": subscription_id, "url": url, "events": patterns, "experiment_id": experiment_id,
        "model_name": model_name, "condition": condition or None, "status": status,
        "flavor": flavor, "name": name, "description": description,
    }


def create_webhook(state: dict[str, Any]) -> Event:
    return Event("webhook.created", state)


def update_webhook(state: dict[str, Any]) -> Event:
    return Event("webhook.updated", state)


def delete_webhook(subscription_id: str) -> Event:
    return Event("webhook.deleted", {"subscription_id": subscription_id})


def rotate_webhook_secret(subscription_id: str, previous_expires_time: int) -> Event:
    """That a secret was rotated, and until when the old one signs; never the secret."""
    return Event("webhook.secret_rotated", {"subscription_id": subscription_id, "previous_expires_time": previous_expires_time})
