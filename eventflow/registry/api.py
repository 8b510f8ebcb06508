"""MLflow's model registry API 2.0 (``registered-models/*``, ``model-versions/*``) over the log.

Each handler takes a backend (the server's ``Runtime``, or the SDK's local store: anything
with ``read(query, ...)``, ``write(events)`` and the ``artifacts`` directory) and the
request's fields, checks what needs state against the views, and writes events.

Version numbers are given here, on the command side: under a per-model lock, the next
number is one past the highest the views know (deleted versions keep theirs), and the
write returns once the projector applied it. Within one server the lock makes
concurrent registrations take turns. Across several servers (or an SDK writing beside a
server) two writers may still pick the same number: the projector keeps the first
``model_version.created`` for a number and refuses the other (dead-lettered), and the
loser, seeing that the version's row holds another event, takes the next number.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from eventflow import commands as tc
from eventflow.audit import asof
from eventflow.auth.context import visible
from eventflow.events import Event
from eventflow.registry import commands as rc
from eventflow.registry import pins
from eventflow.registry import queries as rq
from eventflow.registry.sources import Source, check_source
from eventflow.rules import Refused
from eventflow.validation import InvalidInput
from eventflow.views import queries
from eventflow.views.tables import model_versions, registered_models

MAX_REGISTERED_MODELS_PAGE = 1000
MAX_MODEL_VERSIONS_PAGE = 200_000
ATTEMPTS = 20  # numbers tried before giving up under contention from other writers


class Backend(Protocol):
    artifacts: Path

    def read(self, query: Callable[..., Any], *args: Any, **kwargs: Any) -> Any: ...

    def write(self, events: list[Event]) -> Any: ...


Handler = Callable[[Backend, dict[str, Any]], dict[str, Any]]

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


@contextlib.contextmanager
def _locked(*names: str) -> Iterator[None]:
    """Hold the lock of each model named (in a fixed order, so two renames cannot deadlock)."""
    with _locks_guard:
        locks = [_locks.setdefault(name, threading.Lock()) for name in sorted(set(names))]
    for lock in locks:
        lock.acquire()
    try:
        yield
    finally:
        for lock in reversed(locks):
            lock.release()


def _not_found(message: str) -> InvalidInput:
    return InvalidInput(message, "RESOURCE_DOES_NOT_EXIST")


def _text(data: dict[str, Any], field: str) -> str | None:
    value = data.get(field)
    if value is None or isinstance(value, str):
        return value
    raise InvalidInput(f"Invalid value {value!r} for parameter '{field}' supplied: it must be a string.")


def _int(data: dict[str, Any], field: str, default: int, high: int) -> int:
    value = data.get(field)
    if value is None or value == "":
        return default
    try:
        number = int(value)
        if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise InvalidInput(f"Invalid value {str(value)[:100]!r} for parameter '{field}' supplied: it must be an integer.") from None
    if not 1 <= number <= high:
        raise InvalidInput(f"Invalid value {number} for parameter '{field}' supplied: it must be between 1 and {high}.")
    return number


def _pairs(data: dict[str, Any], field: str) -> list[tuple[Any, Any]]:
    items = data.get(field) or []
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise InvalidInput(f"Invalid value for parameter '{field}' supplied: it must be a list of {{key, value}} objects.")
    return [(item.get("key"), item.get("value")) for item in items]


def _strings(data: dict[str, Any], field: str) -> list[str]:
    value = data.get(field) or []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise InvalidInput(f"Invalid value for parameter '{field}' supplied: it must be a list of strings.")
    return items


def _model(backend: Backend, name: Any) -> dict[str, Any]:
    model = backend.read(rq.get_registered_model, rc.check_model_name(name))
    if model is None:
        raise _not_found(f"Registered Model with name={name} not found")
    return model


def _exists(backend: Backend, name: str) -> None:
    """Refuse a model that is not there (a cheap check, before a write about it)."""
    if backend.read(rq.model_event_id, name) is None:
        raise _not_found(f"Registered Model with name={name} not found")


def _version(backend: Backend, data: dict[str, Any]) -> dict[str, Any]:
    name, version = rc.check_model_name(data.get("name")), rc.check_version(data.get("version"))
    found = backend.read(rq.get_model_version, name, version)
    if found is None:
        raise _not_found(f"Model Version (name={name}, version={version}) not found")
    return found


# -- registered models ------------------------------------------------------------------------


def create_registered_model(backend: Backend, data: dict[str, Any]) -> dict[str, Any]:
    event = rc.create_registered_model(data.get("name"), _text(data, "description"), _pairs(data, "tags"))
    name = event.payload["name"]
    with _locked(name):
        if backend.read(rq.model_event_id, name) is None:
            backend.write([event])
        if backend.read(rq.model_event_id, name) != event.event_id:
            raise InvalidInput(f"Registered Model (name={name}) already exists.", "RESOURCE_ALREADY_EXISTS")
    return {"registered_model": _model(backend, name)}


def get_registered_model(backend: Backend, data: dict[str, Any]) -> dict[str, Any]:
    backend = asof.backend(backend, data, asof.REGISTRY, entity_field="name")  # as_of: the registry as it was then
    return {"registered_model": _model(backend, data.get("name"))}


def rename_registered_model(backend: Backend, data: dict[str, Any]) -> dict[str, Any]:
    name, new_name = rc.check_model_name(data.get("name")), rc.check_model_name(data.get("new_name"), "new_name")
    with _locked(name, new_name):
        _exists(backend, name)
        if new_name == name:
            return {"registered_model": _model(backend, name)}
        if backend.read(rq.model_event_id, new_name) is not None:
            raise InvalidInput(f"Registered Model (name={new_name}) already exists.", "RESOURCE_ALREADY_EXISTS")
        # Keyed by the old name, it must not overtake the new name's own history on a replay.
        event = rc.rename_registered_model(name, new_name, after=backend.read(rq.last_event_about, new_name))
        backend.write([event])
        if backend.read(rq.model_event_id, new_name) != event.event_id:
            raise InvalidInput(f"Registered Model (name={new_name}) already exists.", "RESOURCE_ALREADY_EXISTS")
    return {"registered_model": _model(backend, new_name)}


def _write_about(backend: Backend, name: str, events: list[Event]) -> None:
    """Write events about an existing model, holding its lock."""
    with _locked(name):
        _exists(backend, name)
        backend.write(events)


def update_registered_model(backend: Backend, data: dict[str, Any]) -> dict[str, Any]:
    event = rc.update_registered_model(data.get("name"), _text(data, "description"))
    _write_about(backend, event.payload["name"], [event])
    return {"registered_model": _model(backend, event.payload["name"])}


def delete_registered_model(backend: Backend, data: dict[str, Any]) -> dict[str, Any]:
    event = rc.delete_registered_model(data.get("name"))
    _write_about(backend, event.payload["name"], [event])
    return {}


def search_registered_models(backend: Backend, data: dict[str, Any]) -> dict[str, Any]:
    backend = asof.backend(backend, data, asof.REGISTRY)  # as_of: the registry as it was then
    models, token = backend.read(
        rq.search_registered_models,
        _text(data, "filter"),
        _int(data, "max_results", 100, MAX_REGISTERED_MODELS_PAGE),
        _strings(data, "order_by"),
        _text(data, "page_token"),
        visible=visible("registered_model", registered_models.c.name),
    )
    return {"registered_models": models, **({"next_page_token": token} if token else {})}


def get_latest_versions(backend: Backend, data: dict[str, Any]) -> dict[str, Any]:
    backend = asof.backend(backend, data, asof.REGISTRY, entity_field="name")  # as_of: the registry as it was then
    model = _model(backend, data.get("name"))
    stages = [rc.check_stage(stage) for stage in _strings(data, "stages")]
    return {"model_versions": backend.read(rq.latest_versions, model["name"], stages)}


def set_registered_model_tag(backend: Backend, data: dict[str, Any]) -> dict[str, Any]:
    event = rc.set_registered_model_tag(data.get("name"), data.get("key"), data.get("value"))
    _write_about(backend, event.payload["name"], [event])
    return {}


def delete_registered_model_tag(backend: Backend, data: dict[str, Any]) -> dict[str, Any]:
    _delete_if_there(backend, rc.delete_registered_model_tag(data.get("name"), data.get("key")), "tags", "key")
    return {}


def _delete_if_there(backend: Backend, event: Event, listed: str, field: str) -> None:
    """Write a deletion only when the model has what it deletes: else nothing happens, as in MLflow."""
    model = _model(backend, event.payload["name"])
    if event.payload[field] in {item[field] for item in model[listed]}:
        _write_about(backend, model["name"], [event])


# -- aliases ------------------------------------------------------------------------------------


def set_alias(backend: Backend, data: dict[str, Any]) -> dict[str, Any]:
    event = rc.set_alias(data.get("name"), data.get("alias"), data.get("version"))
    with _locked(event.payload["name"]):
        _version(backend, event.payload)
        backend.write([event])
    return {}


def delete_alias(backend: Backend, data: dict[str, Any]) -> dict[str, Any]:
    _delete_if_there(backend, rc.delete_alias(data.get("name"), data.get("alias")), "aliases", "alias")
    return {}


def get_version_by_alias(backend: Backend, data: dict[str, Any]) -> dict[str, Any]:
    backend = asof.backend(backend, data, asof.REGISTRY, entity_field="name")  # as_of: the registry as it was then
    name = rc.check_model_name(data.get("name"))
    alias = data.get("alias")
    if not isinstance(alias, str) or not alias:
        raise InvalidInput("Missing value for required parameter 'alias'.")
    found = backend.read(rq.version_by_alias, name, alias)
    if found is None:
        raise _not_found(f"Registered model alias {alias} not found.")
    return {"model_version": found}


# -- model versions -----------------------------------------------------------------------------


def _resolve_source(backend: Backend, source: Source, run_id: str | None, model_id: str | None) -> tuple[str | None, str | None]:
    """Check that what a source names exists; returns the (run_id, model_id) it implies."""
    if source.kind == "runs":
        if run_id and run_id != source.target:
            raise InvalidInput(f"The source {source.uri!r} names run {source.target}, but run_id is {run_id}")
        run_id = source.target
    if source.kind == "models":
        if model_id and model_id != source.target:
            raise InvalidInput(f"The source {source.uri!r} names logged model {source.target}, but model_id is {model_id}")
        model_id = source.target
    # A run is named, not required: MLflow registers versions of runs it does not hold (a
    # registry shared by several tracking servers); what is served is the source's files.
    if model_id:
        logged = backend.read(queries.get_logged_model, model_id)
        if logged is None:
            raise _not_found(f"Logged model with ID '{model_id}' not found.")
        run_id = run_id or logged["info"].get("source_run_id")
    return run_id, model_id


MODEL_VERSIONS_TAG = "mlflow.modelVersions"
_tag_lock = threading.Lock()


def _record_version_on_logged_model(backend: Backend, model_id: str, name: str, version: Any) -> None:
    """MLflow lists a logged model's registered versions in its ``mlflow.modelVersions`` tag
    (a JSON list of ``{"name", "version"}``); its UI links the two through it."""
    with _tag_lock:  # read, add, write: one at a time in this server
        logged = backend.read(queries.get_logged_model, model_id)
        if logged is None:
            return
        current = next((t["value"] for t in logged["info"].get("tags", []) if t["key"] == MODEL_VERSIONS_TAG), None)
        try:
            versions = json.loads(current) if current else []
        except ValueError:
            versions = []
        entry = {"name": name, "version": str(version)}
        if not isinstance(versions, list) or entry in versions:
            return
        backend.write([tc.set_logged_model_tags(model_id, [(MODEL_VERSIONS_TAG, json.dumps([*versions, entry]))])])


def create_model_version(backend: Backend, data: dict[str, Any]) -> dict[str, Any]:
    name = rc.check_model_name(data.get("name"))
    source = check_source(data.get("source"), backend.artifacts)
    run_id, model_id = _resolve_source(backend, source, _text(data, "run_id") or None, _text(data, "model_id") or None)
    tags = _pairs(data, "tags")
    files = pins.source_files(backend.read, source)  # what this version will always be checked against
    with _locked(name):
        _exists(backend, name)
        for _ in range(ATTEMPTS):
            version = backend.read(rq.next_version, name)
            event = rc.create_model_version(
                name, version, source.uri, run_id=run_id, run_link=_text(data, "run_link"),
                description=_text(data, "description"), tags=tags, model_id=model_id, files=files,
            )
            try:
                backend.write([event])
            except Refused as refusal:
                if refusal.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                continue  # another writer's version took the number first: take the next
            winner = backend.read(rq.version_event_id, name, version)
            if winner == event.event_id:
                if model_id:
                    _record_version_on_logged_model(backend, model_id, name, version)
                return {"model_version": backend.read(rq.get_model_version, name, version)}
            if winner is None:  # the model went away meanwhile
                raise _not_found(f"Registered Model with name={name} not found")
    raise InvalidInput(f"Could not give {name} a new version number: {ATTEMPTS} others were taken meanwhile; retry", "TEMPORARILY_UNAVAILABLE")


def get_model_version(backend: Backend, data: dict[str, Any]) -> dict[str, Any]:
    backend = asof.backend(backend, data, asof.REGISTRY, entity_field="name")  # as_of: the registry as it was then
    return {"model_version": _version(backend, data)}


def get_model_version_files(backend: Backend, data: dict[str, Any]) -> dict[str, Any]:
    """The files the version pinned when it was created (path inside the model, size,
    sha256): what loading it verifies each download against. Empty: nothing was pinned,
    so the version cannot be verified."""
    version = _version(backend, data)
    return {"files": backend.read(rq.version_files, version["name"], version["version"])}


def update_model_version(backend: Backend, data: dict[str, Any]) -> dict[str, Any]:
    event = rc.update_model_version(data.get("name"), data.get("version"), _text(data, "description"))
    with _locked(event.payload["name"]):
        _version(backend, event.payload)
        backend.write([event])
    return {"model_version": _version(backend, event.payload)}


def delete_model_version(backend: Backend, data: dict[str, Any]) -> dict[str, Any]:
    event = rc.delete_model_version(data.get("name"), data.get("version"))
    with _locked(event.payload["name"]):
        _version(backend, event.payload)
        backend.write([event])
    return {}


def _flag(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if value is None or value == "":
        return False
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise InvalidInput(f"Invalid value {value!r} for parameter '{field}' supplied: it must be true or false.")


def transition_stage(backend: Backend, data: dict[str, Any]) -> dict[str, Any]:
    """One event for the version; with archive_existing_versions, one more for each other
    version in the target stage, moving it to Archived (as MLflow does, for Staging and
    Production)."""
    archive = _flag(data.get("archive_existing_versions"), "archive_existing_versions")
    event = rc.transition_stage(data.get("name"), data.get("version"), data.get("stage"), archive)
    name, version, stage = event.payload["name"], event.payload["version"], event.payload["stage"]
    with _locked(name):
        _version(backend, event.payload)
        events = [event]
        if archive and stage in ("Staging", "Production"):
            others, _ = backend.read(rq.search_model_versions, f"name = '{quoted(name)}' AND current_stage = '{stage}'")
            events += [rc.transition_stage(name, other["version"], "Archived") for other in others if other["version"] != version]
        backend.write(events)
    return {"model_version": _version(backend, event.payload)}


def quoted(text: str) -> str:
    """A value to put between single quotes in a search filter."""
    return text.replace("\\", "\\\\").replace("'", "\\'")


def search_model_versions(backend: Backend, data: dict[str, Any]) -> dict[str, Any]:
    backend = asof.backend(backend, data, asof.REGISTRY)  # as_of: the registry as it was then
    versions, token = backend.read(
        rq.search_model_versions,
        _text(data, "filter"),
        _int(data, "max_results", 10_000, MAX_MODEL_VERSIONS_PAGE),
        _strings(data, "order_by"),
        _text(data, "page_token"),
        visible=visible("registered_model", model_versions.c.name),
    )
    return {"model_versions": versions, **({"next_page_token": token} if token else {})}


def download_uri(backend: Backend, version: dict[str, Any]) -> str:
    """Where a version's files are: a run's artifact URI, a logged model's, or the source;
    never a place outside the artifact store (an experiment created before locations were
    checked may name one), so a client is not sent to fetch from it."""
    uri = _download_uri(backend, version)
    try:
        check_source(uri, backend.artifacts)
    except InvalidInput:
        raise InvalidInput(
            f"The files of {version['name']} version {version['version']} are at {uri!r}, outside the artifact store: "
            "this server does not hand out that location. Register the model again from a run whose experiment keeps "
            "its artifacts in the store.",
            "INVALID_STATE",
        ) from None
    return uri


def _download_uri(backend: Backend, version: dict[str, Any]) -> str:
    source = check_source(version["source"], backend.artifacts)
    if source.kind == "runs":
        root = backend.read(rq.run_artifact_uri, source.target)
        if root is None:
            raise _not_found(f"Run with id={source.target} of {version['name']} version {version['version']} not found")
        return "/".join(part for part in (root.rstrip("/"), source.path) if part)
    if source.kind == "models":
        logged = backend.read(queries.get_logged_model, source.target)
        if logged is None:
            raise _not_found(f"Logged model with ID '{source.target}' not found.")
        return "/".join(part for part in (logged["info"]["artifact_uri"].rstrip("/"), source.path) if part)
    return source.uri


def get_download_uri(backend: Backend, data: dict[str, Any]) -> dict[str, Any]:
    return {"artifact_uri": download_uri(backend, _version(backend, data))}


def set_model_version_tag(backend: Backend, data: dict[str, Any]) -> dict[str, Any]:
    event = rc.set_model_version_tag(data.get("name"), data.get("version"), data.get("key"), data.get("value"))
    with _locked(event.payload["name"]):
        _version(backend, event.payload)
        backend.write([event])
    return {}


def delete_model_version_tag(backend: Backend, data: dict[str, Any]) -> dict[str, Any]:
    event = rc.delete_model_version_tag(data.get("name"), data.get("version"), data.get("key"))
    with _locked(event.payload["name"]):
        version = _version(backend, event.payload)
        if event.payload["key"] in {tag["key"] for tag in version["tags"]}:  # else nothing to do, as in MLflow
            backend.write([event])
    return {}


# MLflow's paths (after /api/2.0/mlflow/) → handler, methods; "#…" tells apart handlers of one path.
ENDPOINTS: dict[str, tuple[Handler, tuple[str, ...]]] = {
    "registered-models/create": (create_registered_model, ("POST",)),
    "registered-models/get": (get_registered_model, ("GET",)),
    "registered-models/rename": (rename_registered_model, ("POST",)),
    "registered-models/update": (update_registered_model, ("PATCH",)),
    "registered-models/delete": (delete_registered_model, ("DELETE",)),
    "registered-models/search": (search_registered_models, ("GET",)),
    "registered-models/get-latest-versions": (get_latest_versions, ("GET", "POST")),
    "registered-models/set-tag": (set_registered_model_tag, ("POST",)),
    "registered-models/delete-tag": (delete_registered_model_tag, ("DELETE",)),
    "registered-models/alias": (set_alias, ("POST",)),
    "registered-models/alias#delete": (delete_alias, ("DELETE",)),
    "registered-models/alias#get": (get_version_by_alias, ("GET",)),
    "model-versions/create": (create_model_version, ("POST",)),
    "model-versions/get": (get_model_version, ("GET",)),
    "model-versions/update": (update_model_version, ("PATCH",)),
    "model-versions/delete": (delete_model_version, ("DELETE",)),
    "model-versions/search": (search_model_versions, ("GET",)),
    "model-versions/transition-stage": (transition_stage, ("POST",)),
    "model-versions/get-download-uri": (get_download_uri, ("GET",)),
    "model-versions/set-tag": (set_model_version_tag, ("POST",)),
    "model-versions/delete-tag": (delete_model_version_tag, ("DELETE",)),
}

_NAME = {"name": "string!"}
_VERSION = {"name": "string!", "version": "string!"}
# The same endpoints for the OpenAPI document: method, path, fields ("!" = required), summary.
OPENAPI: list[tuple[str, str, dict[str, str], str]] = [
    ("POST", "registered-models/create", {"name": "string!", "description": "string", "tags": "pairs"}, "Create a registered model"),
    ("GET", "registered-models/get", _NAME, "Get a registered model"),
    ("POST", "registered-models/rename", {"name": "string!", "new_name": "string!"}, "Rename a registered model"),
    ("PATCH", "registered-models/update", {"name": "string!", "description": "string"}, "Update a registered model's description"),
    ("DELETE", "registered-models/delete", _NAME, "Delete a registered model and its versions"),
    ("GET", "registered-models/search", {"filter": "string", "max_results": "integer", "order_by": "strings", "page_token": "string"}, "Search registered models"),
    ("GET", "registered-models/get-latest-versions", {"name": "string!", "stages": "strings"}, "The latest version in each stage"),
    ("POST", "registered-models/get-latest-versions", {"name": "string!", "stages": "strings"}, "The latest version in each stage"),
    ("POST", "registered-models/set-tag", {"name": "string!", "key": "string!", "value": "string!"}, "Set a registered model tag"),
    ("DELETE", "registered-models/delete-tag", {"name": "string!", "key": "string!"}, "Delete a registered model tag"),
    ("POST", "registered-models/alias", {"name": "string!", "alias": "string!", "version": "string!"}, "Point an alias at a version (a promotion)"),
    ("DELETE", "registered-models/alias", {"name": "string!", "alias": "string!"}, "Delete an alias"),
    ("GET", "registered-models/alias", {"name": "string!", "alias": "string!"}, "Get the version an alias points at"),
    ("POST", "model-versions/create", {"name": "string!", "source": "string!", "run_id": "string", "run_link": "string", "description": "string", "tags": "pairs", "model_id": "string"}, "Create a model version"),
    ("GET", "model-versions/get", _VERSION, "Get a model version"),
    ("PATCH", "model-versions/update", {**_VERSION, "description": "string"}, "Update a model version's description"),
    ("DELETE", "model-versions/delete", _VERSION, "Delete a model version"),
    ("GET", "model-versions/search", {"filter": "string", "max_results": "integer", "order_by": "strings", "page_token": "string"}, "Search model versions"),
    ("POST", "model-versions/transition-stage", {**_VERSION, "stage": "string!", "archive_existing_versions": "boolean"}, "Move a version to a stage"),
    ("GET", "model-versions/get-download-uri", _VERSION, "Where a version's files are"),
    ("POST", "model-versions/set-tag", {**_VERSION, "key": "string!", "value": "string!"}, "Set a model version tag"),
    ("DELETE", "model-versions/delete-tag", {**_VERSION, "key": "string!"}, "Delete a model version tag"),
]
