"""The SDK's store over an ``eventflow server``: events posted in Avro, reads over MLflow's API."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from eventflow import proto_json
from eventflow.codec import encode
from eventflow.events import Event
from eventflow.sdk.credentials import Credentials
from eventflow.sdk.stores import Store, sha256_of
from eventflow.sdk.unreachable import reaching
from eventflow.codec.framing import CONTENT_TYPE, pack
from eventflow.validation import InvalidInput


# Runs asked for per search request: the server's limit is 50,000, and smaller pages keep
# each answer (and the server's memory for it) modest.
SEARCH_PAGE = 1000


class HttpStore(Store):
    """Events go to ``POST /api/2.0/eventflow/events`` with the credentials of the
    environment (``credentials.py``). When it authenticates, every event it sends names
    the user it authenticates as — the server refuses events naming anyone else — and
    the server stamps them (its time, the address it saw)."""

    # The server appends the artifact event of each upload itself.
    records_uploads = True

    def __init__(self, url: str, timeout: float = 60.0, credentials: Credentials | None = None):
        self.url = url.rstrip("/")
        self.credentials = credentials or Credentials.from_env()
        self.http = httpx.Client(base_url=self.url, timeout=timeout, auth=self.credentials.auth())
        self._actor: str | None = self.credentials.username if self.credentials.basic else None
        self._asked = self.credentials.basic or not self.credentials.token  # whether the actor is settled

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any] | None:
        """An API call; None on RESOURCE_DOES_NOT_EXIST, InvalidInput on other 4xx."""
        with reaching(self.url):
            response = self.http.request(method, path, **kwargs)
        if response.status_code == 404 and response.headers.get("content-type", "").startswith("application/json"):
            if response.json().get("error_code") == "RESOURCE_DOES_NOT_EXIST":
                return None
        if 400 <= response.status_code < 500:
            body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
            raise InvalidInput(body.get("message") or response.text, body.get("error_code", "INVALID_PARAMETER_VALUE"))
        response.raise_for_status()  # 5xx: the sender retries
        return response.json()

    def actor(self) -> str | None:
        """The user name this store's events must name: the Basic user, or for a token the
        user the server says it belongs to (asked once); None without credentials."""
        if not self._asked:
            found = self._call("GET", "/api/2.0/eventflow/events/actor")
            self._actor = (found or {}).get("actor") or None  # None: the server does not authenticate
            self._asked = True
        return self._actor

    def append(self, events: Sequence[Event]) -> None:
        actor = self.actor()
        if actor is not None:
            events = [event if event.actor == actor else dataclasses.replace(event, actor=actor) for event in events]
        body = pack([encode(event) for event in events])
        self._call("POST", "/api/2.0/eventflow/events", content=body, headers={"content-type": CONTENT_TYPE})

    def experiment_artifact_location(self, experiment_id: str) -> str:
        return f"mlflow-artifacts:/{experiment_id}"

    def upload_artifact(self, artifact_uri: str, local_file: Path, artifact_path: str) -> tuple[int, str]:
        relative = artifact_uri.removeprefix("mlflow-artifacts:/").strip("/")
        with open(local_file, "rb") as handle:
            self._call("PUT", f"/api/2.0/mlflow-artifacts/artifacts/{relative}/{artifact_path}", content=handle)
        return local_file.stat().st_size, sha256_of(local_file)

    def download_artifact(self, artifact_uri: str, artifact_path: str, local_file: Path) -> None:
        relative = artifact_uri.removeprefix("mlflow-artifacts:/").strip("/")
        local_file.parent.mkdir(parents=True, exist_ok=True)
        with reaching(self.url), self.http.stream("GET", f"/api/2.0/mlflow-artifacts/artifacts/{relative}/{artifact_path}") as response:
            if response.status_code != 200:
                response.read()
                try:
                    body = response.json()
                except ValueError:
                    body = {}
                raise InvalidInput(
                    f"the server refused {artifact_path!r} (HTTP {response.status_code}): {body.get('message') or response.text}",
                    body.get("error_code", "INTERNAL_ERROR"),
                )
            with open(local_file, "wb") as handle:
                for chunk in response.iter_bytes():
                    handle.write(chunk)

    def artifact_digests(self, run_id: str, path: str = "") -> list[dict[str, Any]]:
        found = self._call("GET", "/api/2.0/eventflow/artifacts/digests", params={"run_id": run_id, "path": path})
        if found is None:
            raise InvalidInput(f"Run with id={run_id} not found", "RESOURCE_DOES_NOT_EXIST")
        return found["files"]

    def logged_model_digests(self, model_id: str, path: str = "") -> list[dict[str, Any]]:
        found = self._call("GET", "/api/2.0/eventflow/artifacts/digests", params={"model_id": model_id, "path": path})
        if found is None:
            raise InvalidInput(f"Logged model with ID '{model_id}' not found.", "RESOURCE_DOES_NOT_EXIST")
        return found["files"]

    def model_version_files(self, name: str, version: str) -> list[dict[str, Any]]:
        found = self._call("GET", "/api/2.0/eventflow/model-versions/files", params={"name": name, "version": version})
        if found is None:
            raise InvalidInput(f"Model Version (name={name}, version={version}) not found", "RESOURCE_DOES_NOT_EXIST")
        return found["files"]

    def get_logged_model(self, model_id: str) -> dict[str, Any] | None:
        found = self._call("GET", f"/api/2.0/mlflow/logged-models/{model_id}")
        return found and found["model"]

    def get_experiment(self, experiment_id: str) -> dict[str, Any] | None:
        found = self._call("GET", "/api/2.0/mlflow/experiments/get", params={"experiment_id": experiment_id})
        return found and found["experiment"]

    def get_experiment_by_name(self, name: str) -> dict[str, Any] | None:
        found = self._call("GET", "/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": name})
        return found and found["experiment"]

    def search_experiments(self, view_type: str = "ACTIVE_ONLY", max_results: int = 1000) -> list[dict[str, Any]]:
        found = self._call("POST", "/api/2.0/mlflow/experiments/search", json={"view_type": view_type, "max_results": max_results})
        return (found or {}).get("experiments", [])

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        found = self._call("GET", "/api/2.0/mlflow/runs/get", params={"run_id": run_id})
        return found and _with_doubles(found["run"])

    def search_runs(self, experiment_ids: Sequence[str], max_results: int = 1000, order_by: Sequence[str] = (),
                    filter_string: str | None = None, run_view_type: str = "ACTIVE_ONLY") -> list[dict[str, Any]]:
        runs: list[dict[str, Any]] = []
        token = None
        while len(runs) < max_results:
            body = {"experiment_ids": list(experiment_ids), "max_results": min(max_results - len(runs), SEARCH_PAGE),
                    "order_by": list(order_by), "filter": filter_string or "", "run_view_type": run_view_type,
                    **({"page_token": token} if token else {})}
            found = self._call("POST", "/api/2.0/mlflow/runs/search", json=body) or {}
            runs += [_with_doubles(run) for run in found.get("runs", [])]
            token = found.get("next_page_token")
            if not token:
                break
        return runs

    def metric_history(self, run_id: str, key: str) -> list[dict[str, Any]]:
        points: list[dict[str, Any]] = []
        token = None
        while True:
            params = {"run_id": run_id, "metric_key": key, **({"page_token": token} if token else {})}
            found = self._call("GET", "/api/2.0/mlflow/metrics/get-history", params=params) or {}
            points += [{**point, "value": proto_json.double(point["value"])} for point in found.get("metrics", [])]
            token = found.get("next_page_token")
            if not token:
                return points

    def stop_request(self, run_id: str) -> dict[str, Any] | None:
        found = self._call("GET", "/api/2.0/eventflow/runs/stop", params={"run_id": run_id})
        return (found or {}).get("stop_request")

    def run_project(self, run_id: str) -> dict[str, Any] | None:
        found = self._call("GET", "/api/2.0/eventflow/runs/project", params={"run_id": run_id})
        if found is None:
            raise InvalidInput(f"Run with id={run_id} not found", "RESOURCE_DOES_NOT_EXIST")
        return found.get("project")

    def close(self) -> None:
        self.http.close()


def _with_doubles(run: dict[str, Any]) -> dict[str, Any]:
    """A run from the REST API with its metric values as floats (NaN and ±inf come as strings)."""
    for metric in run.get("data", {}).get("metrics", []):
        metric["value"] = proto_json.double(metric["value"])
    return run
