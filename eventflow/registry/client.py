"""The registry's part of ``eventflow.Client``: the same operations as MLflow's REST paths.

Through a server, each call is the REST request; on a local store (the embedded log, or
Kafka without a server) the same handlers run in this process, over the store's log and
views, so the rules (names, sources inside the store, version numbers) are the same.
Results are MLflow-shaped dicts (``{"name": ..., "version": "1", ...}``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eventflow.events import Event, default_actor
from eventflow.sdk.stores import LocalStore, Store
from eventflow.validation import InvalidInput

MLFLOW = "/api/2.0/mlflow/"


class _LocalBackend:
    """A local store as the handlers' backend: writes return once this process's
    projector has applied them, like the server's."""

    def __init__(self, store: LocalStore):
        self.store = store
        self.artifacts: Path = store.artifacts

    def read(self, query, *args: Any, **kwargs: Any):  # type: ignore[no-untyped-def]
        return self.store._read(query, *args, **kwargs)

    def write(self, events: list[Event]) -> None:
        """Append, apply, and answer with the projector's decision, as the server does."""
        from eventflow.rules import Refused
        from eventflow.views.positions import refusal_of

        self.store.append(events)
        self.store.catch_up()
        refusal = refusal_of(self.store.engine, [e.event_id for e in events], [])
        if refusal is not None:
            raise Refused(refusal[1], refusal[0])


def call(store: Store, endpoint: str, data: dict[str, Any]) -> dict[str, Any]:
    """One registry operation (a key of ``api.ENDPOINTS``) with MLflow's request fields."""
    from eventflow.registry.api import ENDPOINTS  # not at import: `import eventflow` stays light

    handler, methods = ENDPOINTS[endpoint]
    fields = {key: value for key, value in data.items() if value is not None}
    if isinstance(store, LocalStore):
        return handler(_LocalBackend(store), fields)
    http = store.http  # type: ignore[attr-defined]
    method = methods[0]
    where = {"params": fields} if method == "GET" else {"json": fields}
    if not store.credentials.present:  # type: ignore[attr-defined]
        # No credentials (a server without authentication): name the user as the MLflow
        # client does, unchecked, so that the server's events name who acted.
        where["auth"] = (default_actor(), "")
    from eventflow.sdk.unreachable import reaching

    with reaching(store.url):  # type: ignore[attr-defined]
        response = http.request(method, MLFLOW + endpoint.partition("#")[0], **where)
    body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
    if response.status_code >= 400:
        raise InvalidInput(body.get("message") or response.text, body.get("error_code", "INTERNAL_ERROR"))
    return body


def _or_none(store: Store, endpoint: str, data: dict[str, Any], field: str) -> dict[str, Any] | None:
    try:
        return call(store, endpoint, data)[field]
    except InvalidInput as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise


def _tags(tags: dict[str, Any] | None) -> list[dict[str, str]]:
    return [{"key": key, "value": str(value)} for key, value in (tags or {}).items()]


class RegistryMethods:
    """Registered models, versions, tags, stages and aliases (mixed into ``Client``)."""

    store: Store

    # -- registered models
    def create_registered_model(self, name: str, description: str | None = None, tags: dict[str, Any] | None = None) -> dict[str, Any]:
        return call(self.store, "registered-models/create", {"name": name, "description": description, "tags": _tags(tags)})["registered_model"]

    def get_registered_model(self, name: str) -> dict[str, Any] | None:
        return _or_none(self.store, "registered-models/get", {"name": name}, "registered_model")

    def rename_registered_model(self, name: str, new_name: str) -> dict[str, Any]:
        return call(self.store, "registered-models/rename", {"name": name, "new_name": new_name})["registered_model"]

    def update_registered_model(self, name: str, description: str) -> dict[str, Any]:
        return call(self.store, "registered-models/update", {"name": name, "description": description})["registered_model"]

    def delete_registered_model(self, name: str) -> None:
        call(self.store, "registered-models/delete", {"name": name})

    def search_registered_models(self, filter_string: str | None = None, max_results: int = 1000, order_by: Sequence[str] = ()) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        token = None
        while len(found) < max_results:
            page = call(self.store, "registered-models/search", {
                "filter": filter_string, "max_results": min(1000, max_results - len(found)), "order_by": list(order_by), "page_token": token,
            })
            found += page.get("registered_models", [])
            token = page.get("next_page_token")
            if not token:
                break
        return found

    def set_registered_model_tag(self, name: str, key: str, value: Any) -> None:
        call(self.store, "registered-models/set-tag", {"name": name, "key": key, "value": str(value)})

    def delete_registered_model_tag(self, name: str, key: str) -> None:
        call(self.store, "registered-models/delete-tag", {"name": name, "key": key})

    # -- versions
    def create_model_version(
        self, name: str, source: str, run_id: str | None = None, description: str | None = None, tags: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        data = {"name": name, "source": source, "run_id": run_id, "description": description, "tags": _tags(tags)}
        return call(self.store, "model-versions/create", data)["model_version"]

    def register_model(self, source: str, name: str, tags: dict[str, Any] | None = None, description: str | None = None) -> dict[str, Any]:
        """Like ``mlflow.register_model``: create the model if it is new, then a version of it."""
        try:
            self.create_registered_model(name)
        except InvalidInput as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        return self.create_model_version(name, source, tags=tags, description=description)

    def get_model_version(self, name: str, version: str | int) -> dict[str, Any] | None:
        return _or_none(self.store, "model-versions/get", {"name": name, "version": str(version)}, "model_version")

    def update_model_version(self, name: str, version: str | int, description: str) -> dict[str, Any]:
        return call(self.store, "model-versions/update", {"name": name, "version": str(version), "description": description})["model_version"]

    def delete_model_version(self, name: str, version: str | int) -> None:
        call(self.store, "model-versions/delete", {"name": name, "version": str(version)})

    def search_model_versions(self, filter_string: str | None = None, max_results: int = 10_000, order_by: Sequence[str] = ()) -> list[dict[str, Any]]:
        page = call(self.store, "model-versions/search", {"filter": filter_string, "max_results": max_results, "order_by": list(order_by)})
        return page.get("model_versions", [])

    def set_model_version_tag(self, name: str, version: str | int, key: str, value: Any) -> None:
        call(self.store, "model-versions/set-tag", {"name": name, "version": str(version), "key": key, "value": str(value)})

    def delete_model_version_tag(self, name: str, version: str | int, key: str) -> None:
        call(self.store, "model-versions/delete-tag", {"name": name, "version": str(version), "key": key})

    def transition_model_version_stage(self, name: str, version: str | int, stage: str, archive_existing_versions: bool = False) -> dict[str, Any]:
        data = {"name": name, "version": str(version), "stage": stage, "archive_existing_versions": archive_existing_versions}
        return call(self.store, "model-versions/transition-stage", data)["model_version"]

    def get_latest_versions(self, name: str, stages: Sequence[str] = ()) -> list[dict[str, Any]]:
        return call(self.store, "registered-models/get-latest-versions", {"name": name, "stages": list(stages)})["model_versions"]

    def get_model_version_download_uri(self, name: str, version: str | int) -> str:
        return call(self.store, "model-versions/get-download-uri", {"name": name, "version": str(version)})["artifact_uri"]

    # -- aliases
    def set_registered_model_alias(self, name: str, alias: str, version: str | int) -> None:
        """Point ``alias`` at a version: the promotion the deployer acts on."""
        call(self.store, "registered-models/alias", {"name": name, "alias": alias, "version": str(version)})

    def delete_registered_model_alias(self, name: str, alias: str) -> None:
        call(self.store, "registered-models/alias#delete", {"name": name, "alias": alias})

    def get_model_version_by_alias(self, name: str, alias: str) -> dict[str, Any] | None:
        return _or_none(self.store, "registered-models/alias#get", {"name": name, "alias": alias}, "model_version")
