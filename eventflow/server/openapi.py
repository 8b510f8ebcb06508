"""The OpenAPI document of the whole REST surface, served at ``/api/2.0/eventflow/openapi.json``.

Built from one table of each endpoint's fields, so that notebooks, other UIs and API
fuzzers (the test suite runs schemathesis against it) see exactly what the server takes.
A test checks that every route has an entry here and every entry a route.
"""

from __future__ import annotations

from typing import Any

from eventflow import __version__
from eventflow.registry.api import OPENAPI as REGISTRY

MLFLOW = "/api/2.0/mlflow/"
WEBHOOKS = "/api/2.0/eventflow/webhooks"
ALERTS = "/api/2.0/eventflow/alerts"
JOBS = "/api/2.0/eventflow/jobs"
_JOB = {"name": "string", "project_uri": "string", "entry_point": "string", "parameters": "string_map", "env_manager": "string",
        "experiment_name": "string", "cron": "string", "timezone": "string", "on_events": "strings", "model_name": "string",
        "alias": "string", "condition": "string", "experiment_id": "string", "retries": "integer", "retry_delay": "number", "timeout": "number",
        "max_concurrent": "integer", "on_overlap": "string", "queue": "string", "catch_up": "boolean"}

_KEY_VALUE = {"type": "object", "properties": {"key": {"type": "string"}, "value": {"type": "string"}}}
# MLflow 3: a metric may be about a logged model (m-<32 hex>) and a dataset (name and digest together).
_METRIC_LINK = {"model_id": {"type": "string"}, "dataset_name": {"type": "string"}, "dataset_digest": {"type": "string"}}
# A double in proto3 JSON: NaN and ±inf are strings (eventflow.proto_json).
_DOUBLE = {"anyOf": [{"type": "number"}, {"type": "string", "enum": ["NaN", "Infinity", "-Infinity"]}]}
_METRIC = {
    "type": "object",
    "properties": {
        "key": {"type": "string"}, "value": _DOUBLE, "timestamp": {"type": "integer"}, "step": {"type": "integer"}, **_METRIC_LINK,
    },
}
_DATASET_FILTER = {"type": "object", "properties": {"dataset_name": {"type": "string"}, "dataset_digest": {"type": "string"}}}
_DATASET_INPUT = {
    "type": "object",
    "properties": {
        "tags": {"type": "array", "items": _KEY_VALUE},
        "dataset": {
            "type": "object",
            "properties": {k: {"type": "string"} for k in ("name", "digest", "source_type", "source", "schema", "profile")},
        },
    },
}
_MODEL_OUTPUT = {"type": "object", "properties": {"model_id": {"type": "string"}, "step": {"type": "integer"}}}
_MLFLOW_WEBHOOK_EVENT = {"type": "object", "properties": {"entity": {"type": "string"}, "action": {"type": "string"}}}

TYPES: dict[str, dict[str, Any]] = {
    "string": {"type": "string"},
    "integer": {"type": "integer"},
    "double": _DOUBLE,
    "boolean": {"type": "boolean"},
    "strings": {"type": "array", "items": {"type": "string"}},
    "pairs": {"type": "array", "items": _KEY_VALUE},
    "metrics": {"type": "array", "items": _METRIC},
    "datasets": {"type": "array", "items": _DATASET_INPUT},
    "models": {"type": "array", "items": _MODEL_OUTPUT},
    "model_inputs": {"type": "array", "items": {"type": "object", "properties": {"model_id": {"type": "string"}}}},
    "dataset_filters": {"type": "array", "items": _DATASET_FILTER},
    "webhook_event": _MLFLOW_WEBHOOK_EVENT,
    "webhook_events": {"type": "array", "items": _MLFLOW_WEBHOOK_EVENT},
    "number": {"type": "number"},
    "string_map": {"type": "object", "additionalProperties": {"type": "string"}},
}

# method, path (after /api/2.0/mlflow/ unless absolute), fields ("!" = required), summary
ENDPOINTS: list[tuple[str, str, dict[str, str], str]] = [
    ("POST", "experiments/create", {"name": "string!", "artifact_location": "string", "tags": "pairs"}, "Create an experiment"),
    ("GET", "experiments/get", {"experiment_id": "string!"}, "Get an experiment"),
    ("GET", "experiments/get-by-name", {"experiment_name": "string!"}, "Get an experiment by name"),
    ("GET", "experiments/search", {"max_results": "integer", "page_token": "string", "filter": "string", "view_type": "string"}, "Search experiments"),
    ("POST", "experiments/search", {"max_results": "integer", "page_token": "string", "filter": "string", "order_by": "strings", "view_type": "string"}, "Search experiments"),
    ("POST", "experiments/update", {"experiment_id": "string!", "new_name": "string!"}, "Rename an experiment"),
    ("POST", "experiments/delete", {"experiment_id": "string!"}, "Delete an experiment"),
    ("POST", "experiments/restore", {"experiment_id": "string!"}, "Restore an experiment"),
    ("POST", "experiments/set-experiment-tag", {"experiment_id": "string!", "key": "string!", "value": "string!"}, "Set an experiment tag"),
    ("POST", "experiments/delete-experiment-tag", {"experiment_id": "string!", "key": "string!"}, "Delete an experiment tag"),
    ("POST", "runs/create", {"experiment_id": "string", "user_id": "string", "run_name": "string", "start_time": "integer", "tags": "pairs"}, "Create a run"),
    ("GET", "runs/get", {"run_id": "string!"}, "Get a run"),
    ("POST", "runs/update", {"run_id": "string!", "status": "string", "end_time": "integer", "run_name": "string"}, "Update a run"),
    ("POST", "runs/delete", {"run_id": "string!"}, "Delete a run"),
    ("POST", "runs/restore", {"run_id": "string!"}, "Restore a run"),
    ("POST", "runs/log-metric", {"run_id": "string!", "key": "string!", "value": "double!", "timestamp": "integer!", "step": "integer", "model_id": "string", "dataset_name": "string", "dataset_digest": "string"}, "Log a metric"),
    ("POST", "runs/log-parameter", {"run_id": "string!", "key": "string!", "value": "string!"}, "Log a param"),
    ("POST", "runs/set-tag", {"run_id": "string!", "key": "string!", "value": "string!"}, "Set a run tag"),
    ("POST", "runs/delete-tag", {"run_id": "string!", "key": "string!"}, "Delete a run tag"),
    ("POST", "runs/log-batch", {"run_id": "string!", "metrics": "metrics", "params": "pairs", "tags": "pairs"}, "Log metrics, params and tags"),
    ("POST", "runs/log-inputs", {"run_id": "string!", "datasets": "datasets", "models": "model_inputs"}, "Log a run's input datasets and logged models"),
    ("POST", "runs/outputs", {"run_id": "string!", "models": "models"}, "Log the models a run produced"),
    ("POST", "runs/search", {"experiment_ids": "strings", "filter": "string", "run_view_type": "string", "max_results": "integer", "order_by": "strings", "page_token": "string"}, "Search runs"),
    ("GET", "runs/search", {"experiment_ids": "strings", "filter": "string", "run_view_type": "string", "max_results": "integer", "page_token": "string"}, "Search runs"),
    ("GET", "metrics/get-history", {"run_id": "string!", "metric_key": "string!", "max_results": "integer", "page_token": "string"}, "A metric's history"),
    ("GET", "metrics/get-history-bulk", {"run_id": "strings!", "metric_key": "string!", "max_results": "integer"}, "Histories of one metric in several runs"),
    ("GET", "metrics/get-history-bulk-interval", {"run_ids": "strings!", "metric_key": "string!", "start_step": "integer", "end_step": "integer", "max_results": "integer"}, "Sampled histories of several runs"),
    ("POST", "experiments/search-datasets", {"experiment_ids": "strings!"}, "The datasets an experiment's runs used"),
    ("POST", "logged-models/search", {"experiment_ids": "strings", "filter": "string", "datasets": "dataset_filters", "max_results": "integer", "page_token": "string"}, "Search logged models"),
    ("POST", "logged-models", {"experiment_id": "string!", "name": "string", "model_type": "string", "source_run_id": "string", "params": "pairs", "tags": "pairs"}, "Create a logged model"),
    ("GET", "logged-models/{model_id}", {}, "Get a logged model"),
    ("PATCH", "logged-models/{model_id}", {"status": "string!"}, "Finalize a logged model"),
    ("DELETE", "logged-models/{model_id}", {}, "Delete a logged model"),
    ("PATCH", "logged-models/{model_id}/tags", {"tags": "pairs"}, "Set logged model tags"),
    ("DELETE", "logged-models/{model_id}/tags/{tag_key}", {}, "Delete a logged model tag"),
    ("POST", "logged-models/{model_id}/params", {"params": "pairs"}, "Log logged model params"),
    ("GET", "logged-models/{model_id}/artifacts/directories", {"artifact_directory_path": "string"}, "List a logged model's artifacts"),
    *REGISTRY,
    ("POST", "webhooks", {"name": "string!", "url": "string!", "events": "webhook_events!", "description": "string", "secret": "string", "status": "string"}, "Create an MLflow webhook (an eventflow subscription with MLflow's payloads and headers)"),
    ("GET", "webhooks", {"max_results": "integer", "page_token": "string"}, "List MLflow webhooks"),
    ("GET", "webhooks/{webhook_id}", {}, "Get an MLflow webhook"),
    ("PATCH", "webhooks/{webhook_id}", {"name": "string", "url": "string", "events": "webhook_events", "description": "string", "secret": "string", "status": "string"}, "Update an MLflow webhook"),
    ("DELETE", "webhooks/{webhook_id}", {}, "Delete an MLflow webhook"),
    ("POST", "webhooks/{webhook_id}/test", {"event": "webhook_event"}, "Send MLflow's test payload to an MLflow webhook now"),
    ("GET", "artifacts/list", {"run_id": "string!", "path": "string"}, "List a run's artifacts"),
    ("GET", "/api/2.0/mlflow-artifacts/artifacts", {"path": "string"}, "List artifacts in the store"),
    ("GET", "/get-artifact", {"run_id": "string", "run_uuid": "string", "path": "string!"}, "Download a run's file (MLflow's UI), checked against the log"),
    ("GET", "/model-versions/get-artifact", {"name": "string!", "version": "string!", "path": "string!"}, "Download a model version's file (MLflow's UI), checked against the version's pins"),
    ("GET", "/api/2.0/eventflow/artifacts/digests", {"run_id": "string", "model_id": "string", "path": "string"}, "Sizes and sha256 the log recorded for a run's or a logged model's files"),
    ("GET", "/api/2.0/eventflow/model-versions/files", {"name": "string!", "version": "string!"}, "The files (path, size, sha256) a model version pinned when it was created"),
    ("GET", "/api/2.0/eventflow/events", {"type": "strings", "topic": "strings", "from_time": "integer", "from_offset": "integer", "max_results": "integer", "page_token": "string"}, "Read the event log"),
    ("GET", "/api/2.0/eventflow/events/actor", {}, "The actor the events this caller posts must name (its authenticated user name, or null with authentication off)"),
    ("POST", "/api/2.0/eventflow/runs/stop", {"run_id": "string!", "reason": "string"}, "Ask a RUNNING run's training process to stop (it ends the run KILLED)"),
    ("GET", "/api/2.0/eventflow/runs/stop", {"run_id": "string!"}, "The stop asked for a run, if any (what the SDK polls)"),
    ("GET", "/api/2.0/eventflow/deployments", {"target": "string", "max_results": "integer"}, "Deployment targets: what each serves, and the deployment history"),
    ("POST", WEBHOOKS, {"url": "string!", "events": "strings!", "experiment_id": "string", "experiment_name": "string", "model_name": "string", "condition": "string", "secret": "string", "format": "string"}, "Create a webhook subscription"),
    ("GET", WEBHOOKS, {}, "List webhook subscriptions"),
    ("GET", WEBHOOKS + "/{subscription_id}", {}, "Get a webhook subscription"),
    ("PATCH", WEBHOOKS + "/{subscription_id}", {"url": "string", "events": "strings", "experiment_id": "string", "model_name": "string", "condition": "string", "status": "string", "format": "string"}, "Update a webhook subscription"),
    ("DELETE", WEBHOOKS + "/{subscription_id}", {}, "Delete a webhook subscription"),
    ("POST", WEBHOOKS + "/{subscription_id}/test", {}, "Send a test message now"),
    ("POST", WEBHOOKS + "/{subscription_id}/rotate-secret", {"secret": "string", "expire_in_seconds": "integer"}, "Rotate the signing secret"),
    ("GET", WEBHOOKS + "/{subscription_id}/deliveries", {"status": "string", "max_results": "integer", "before": "integer"}, "List deliveries and their attempts"),
    ("POST", WEBHOOKS + "/{subscription_id}/deliveries/{delivery_id}/redeliver", {}, "Redeliver a finished delivery"),
    ("GET", ALERTS, {"run_id": "string", "all": "boolean"}, "The alerts firing now (all: every series a rule judged)"),
    ("POST", ALERTS + "/raise", {"run_id": "string!", "title": "string!", "text": "string", "level": "string"}, "Raise an alert about a run"),
    ("GET", ALERTS + "/rules", {}, "List metric alert rules"),
    ("POST", ALERTS + "/rules", {"name": "string!", "condition": "string!", "experiment_id": "string", "level": "string", "description": "string"}, "Create a metric alert rule"),
    ("DELETE", ALERTS + "/rules/{rule_id}", {}, "Delete a metric alert rule"),
    ("GET", JOBS, {}, "List jobs, with each one's next cron run"),
    ("POST", JOBS, {**_JOB, "name": "string!", "project_uri": "string!"}, "Create a job: a project, and a cron schedule and/or events that trigger it"),
    ("GET", JOBS + "/{job_id}", {}, "Get a job"),
    ("PATCH", JOBS + "/{job_id}", _JOB, "Change a job (the fields given)"),
    ("DELETE", JOBS + "/{job_id}", {}, "Delete a job (its history stays on the log)"),
    ("POST", JOBS + "/{job_id}/pause", {}, "Pause a job: no tick or event triggers it"),
    ("POST", JOBS + "/{job_id}/resume", {}, "Resume a paused job (from its next tick; the paused ones are skipped)"),
    ("POST", JOBS + "/{job_id}/run", {"parameters": "string_map"}, "Trigger a run of the job now"),
    ("GET", JOBS + "/{job_id}/runs", {"max_results": "integer"}, "A job's runs, newest first"),
    ("POST", JOBS + "/{job_id}/runs/{trigger_id}/cancel", {}, "Cancel a run of a job (a pending one never starts, a running one is killed)"),
]

_ERROR = {
    "description": "An error in MLflow's shape",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["error_code", "message"],
                "properties": {"error_code": {"type": "string"}, "message": {"type": "string"}},
            }
        }
    },
}


def _path(path: str) -> str:
    return path if path.startswith("/") else MLFLOW + path


def document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for method, path, fields, summary in ENDPOINTS:
        full = _path(path)
        operation: dict[str, Any] = {
            "summary": summary,
            "operationId": f"{method.lower()} {full}",
            "responses": {"200": {"description": "Success", "content": {"application/json": {"schema": {"type": "object"}}}}, "default": _ERROR},
        }
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in (part[1:-1] for part in full.split("/") if part.startswith("{"))
        ]
        if method in ("GET", "DELETE"):
            parameters += [
                {"name": name.rstrip("!"), "in": "query", "required": kind.endswith("!"), "schema": TYPES[kind.rstrip("!")],
                 **({"style": "form", "explode": True} if kind.startswith("strings") else {})}
                for name, kind in fields.items()
            ]
        elif fields:
            required = [name for name, kind in fields.items() if kind.endswith("!")]
            schema: dict[str, Any] = {"type": "object", "properties": {name: TYPES[kind.rstrip("!")] for name, kind in fields.items()}}
            if required:
                schema["required"] = required
            operation["requestBody"] = {"required": bool(required), "content": {"application/json": {"schema": schema}}}
        if parameters:
            operation["parameters"] = parameters
        paths.setdefault(full, {})[method.lower()] = operation
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "eventflow",
            "version": __version__,
            "description": "MLflow's REST API 2.0 over an event log, plus eventflow's extensions. Every write is an event.",
        },
        "paths": paths,
    }
