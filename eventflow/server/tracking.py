"""MLflow's tracking API 2.0: experiments, runs, metrics — writes become events.

Each handler reads the request, checks what needs state against the views, builds the
events through ``eventflow.commands`` (which checks the rest), writes them and answers
in MLflow's proto-JSON shape.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from eventflow import commands, idempotency, proto_json, rules
from eventflow.auth import context as access
from eventflow.auth import policy
from eventflow.audit import asof
from eventflow import validation as v
from eventflow.events import ACTOR
from eventflow.registry import api as registry
from eventflow.registry.sources import check_artifact_location, resolve_relative_location
from eventflow.server import fieldtypes, ui_artifacts
from eventflow.server.errors import ApiError, not_found
from eventflow.server.requests import actor, as_int, fields, objects, pairs, required, text
from eventflow.server.responses import ProtoJSONResponse
from eventflow.server.runtime import Runtime
from eventflow.views import queries, tables

Handler = Callable[[Runtime, dict[str, Any]], dict[str, Any]]


def _experiment(runtime: Runtime, experiment_id: Any) -> dict[str, Any]:
    experiment = runtime.read(queries.get_experiment, str(experiment_id))
    if experiment is None:
        raise not_found(f"No Experiment with id={experiment_id} exists")
    return experiment


def _run(runtime: Runtime, data: dict[str, Any], *, active: bool = True, full: bool = False) -> dict[str, Any]:
    """The run a request names, as ``{"info": ...}`` (with ``"data"`` and the rest when
    ``full``: most writes only need to know it exists and is active)."""
    run_id = data.get("run_id") or data.get("run_uuid")
    if not run_id:
        raise ApiError("Missing value for required parameter 'run_id'.")
    if full:
        run = runtime.read(queries.get_run, str(run_id))
    else:
        info = runtime.read(queries.get_run_info, str(run_id))
        run = {"info": info} if info is not None else None
    rules.run_usable(str(run_id), run and run["info"]["lifecycle_stage"], active=active)
    return run  # type: ignore[return-value]


# -- experiments --------------------------------------------------------------------------


def create_experiment(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    name = v.check_experiment_name(required(data, "name"))
    experiment_id = commands.new_experiment_id()
    holder = runtime.read(queries.get_experiment_by_name, name)
    if holder is not None and holder["experiment_id"] == experiment_id and holder["lifecycle_stage"] == "active":
        return {"experiment_id": experiment_id}  # a retry of a creation that took effect
    rules.experiment_name_free(name, holder and holder["experiment_id"], claimant="")  # held: even by a deleted one
    given = text(data, "artifact_location")
    if given:  # a relative one as MLflow's server resolves it, then held to the store
        location = check_artifact_location(resolve_relative_location(given), runtime.artifacts, given=given)
    else:
        location = runtime.experiment_artifact_location(experiment_id)
    runtime.write([commands.create_experiment(experiment_id, name, location, pairs(data, "tags"))])
    return {"experiment_id": experiment_id}


def get_experiment(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    runtime = asof.backend(runtime, data, asof.EXPERIMENT)
    return {"experiment": _experiment(runtime, required(data, "experiment_id"))}


def get_experiment_by_name(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    name = required(data, "experiment_name")
    experiment = runtime.read(queries.get_experiment_by_name, name)
    if experiment is None:
        raise not_found(f"Could not find experiment with name '{name}'")
    return {"experiment": experiment}


def search_experiments(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    experiments, token = runtime.read(
        queries.search_experiments,
        view_type=data.get("view_type") or "ACTIVE_ONLY",
        max_results=as_int(data, "max_results", 1000, 1, 50000),
        page_token=data.get("page_token"),
        filter_string=data.get("filter"),
        order_by=data.get("order_by") or [],
        visible=access.visible("experiment", tables.experiments.c.experiment_id),
    )
    return {"experiments": experiments, **({"next_page_token": token} if token else {})}


def update_experiment(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    experiment = _experiment(runtime, required(data, "experiment_id"))
    new_name = v.check_experiment_name(required(data, "new_name"))
    if new_name != experiment["name"] and runtime.read(queries.get_experiment_by_name, new_name) is not None:
        raise ApiError(f"Experiment '{new_name}' already exists.", "RESOURCE_ALREADY_EXISTS")
    runtime.write([commands.rename_experiment(experiment["experiment_id"], new_name)])
    return {}


def delete_experiment(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    experiment = _experiment(runtime, required(data, "experiment_id"))
    runtime.write([commands.delete_experiment(experiment["experiment_id"])])
    return {}


def restore_experiment(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    experiment = _experiment(runtime, required(data, "experiment_id"))
    runtime.write([commands.restore_experiment(experiment["experiment_id"])])
    return {}


def set_experiment_tag(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    experiment = _experiment(runtime, required(data, "experiment_id"))
    runtime.write([commands.set_experiment_tag(experiment["experiment_id"], data.get("key"), data.get("value"))])
    return {}


def delete_experiment_tag(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    experiment = _experiment(runtime, required(data, "experiment_id"))
    runtime.write([commands.delete_experiment_tag(experiment["experiment_id"], data.get("key"))])
    return {}


# -- runs -----------------------------------------------------------------------------------


def create_run(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    experiment = _experiment(runtime, data.get("experiment_id") or "0")
    if experiment["lifecycle_stage"] != "active":
        raise ApiError(f"The experiment {experiment['experiment_id']} must be in the 'active' state. Current state is deleted.")
    tags = dict(pairs(data, "tags"))
    run_id = commands.new_run_id()
    run_name = data.get("run_name") or tags.get("mlflow.runName") or f"run-{run_id[:8]}"
    tags["mlflow.runName"] = run_name
    user_id = data.get("user_id") or tags.get("mlflow.user") or "unknown"
    location = experiment["artifact_location"].rstrip("/")
    event = commands.create_run(
        run_id,
        experiment["experiment_id"],
        run_name=run_name,
        user_id=user_id,
        artifact_uri=f"{location}/{run_id}/artifacts",
        start_time=as_int(data, "start_time"),
        tags=tags,
        parent_run_id=tags.get("mlflow.parentRunId"),
    )
    runtime.write([event])
    return {"run": runtime.read(queries.get_run, run_id)}


def get_run(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    runtime = asof.backend(runtime, data, asof.RUN, entity_field="run_id")
    return {"run": _run(runtime, data, active=False, full=True)}


def update_run(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    run = _run(runtime, data, active=False)
    run_id = run["info"]["run_id"]
    events = []
    if data.get("run_name") and data["run_name"] != run["info"]["run_name"]:
        events.append(commands.rename_run(run_id, data["run_name"]))
    status = data.get("status")
    if status in commands.END_EVENTS:
        events.append(commands.end_run(run_id, status, as_int(data, "end_time")))
    elif status not in (None, "", "RUNNING", "SCHEDULED"):
        raise ApiError(f"Invalid run status {status!r}")
    if events:
        runtime.write(events)
    return {"run_info": runtime.read(queries.get_run_info, run_id)}


def delete_run(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    run = _run(runtime, data, active=False)
    runtime.write([commands.delete_run(run["info"]["run_id"])])
    return {}


def restore_run(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    run = _run(runtime, data, active=False)
    runtime.write([commands.restore_run(run["info"]["run_id"])])
    return {}


def _check_params_unchanged(runtime: Runtime, run: dict[str, Any], params: list[tuple[str, Any]]) -> None:
    if not params:
        return
    logged = runtime.read(queries.get_params, run["info"]["run_id"], [str(key) for key, _ in params])
    for key, value in params:
        rules.param_unchanged(run["info"]["run_id"], key, logged.get(key), str(value))


_LINK = ("model_id", "dataset_name", "dataset_digest")


def _metric(m: dict[str, Any], index: int) -> tuple[Any, ...]:
    """A request's metric as the tuple ``commands.log_batch`` takes; MLflow 3's link
    fields (logged model, dataset) only when the request has any. The timestamp is
    required, as MLflow requires it: the server's clock is not when the point was measured."""
    required(m, "timestamp", f"metrics[{index}].timestamp")
    point = (m.get("key"), proto_json.double(m.get("value")), as_int(m, "timestamp"), as_int(m, "step", 0))
    if any(name in m for name in _LINK):
        point += tuple(m.get(name) for name in _LINK)
    return point


def _check_models_exist(runtime: Runtime, events: list[Any]) -> None:
    """The logged models that metrics name must exist: a typo would otherwise link points
    to nothing, for ever (the log is not edited)."""
    wanted = {p["model_id"] for e in events if e.type == "run.metrics_logged" for p in e.payload["points"] if p["model_id"]}
    if not wanted:
        return
    missing = sorted(wanted - runtime.read(queries.existing_logged_models, sorted(wanted)))
    if missing:
        raise not_found(f"Logged model with ID '{missing[0]}' not found.")


def log_batch(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    run = _run(runtime, data)
    metrics = [_metric(m, i) for i, m in enumerate(objects(data, "metrics"))]
    params = pairs(data, "params")
    tags = pairs(data, "tags")
    events = commands.log_batch(run["info"]["run_id"], metrics, params, tags)
    _check_params_unchanged(runtime, run, params)
    _check_models_exist(runtime, events)
    if events:
        runtime.write(events)
    return {}


def log_metric(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    required(data, "timestamp")
    return log_batch(runtime, {"run_id": data.get("run_id") or data.get("run_uuid"), "metrics": [data]})


def log_param(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    return log_batch(runtime, {"run_id": data.get("run_id") or data.get("run_uuid"), "params": [data]})


def set_tag(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    run = _run(runtime, data)
    event = commands.set_tags(run["info"]["run_id"], [(data.get("key"), data.get("value"))])
    if data.get("key") == "mlflow.runName":
        runtime.write([event, commands.rename_run(run["info"]["run_id"], data.get("value"))])
    else:
        runtime.write([event])
    return {}


def delete_tag(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    run = _run(runtime, data, full=True)
    if data.get("key") not in {t["key"] for t in run["data"].get("tags", [])}:
        raise not_found(f"No tag with name: {data.get('key')} in run with id {run['info']['run_id']}")
    runtime.write([commands.delete_tag(run["info"]["run_id"], data.get("key"))])
    return {}


def search_runs(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    experiment_ids = data.get("experiment_ids") or []
    if isinstance(experiment_ids, str):
        experiment_ids = [experiment_ids]
    max_results = as_int(data, "max_results", 1000, 1, 50000)
    runs, token = runtime.read(
        queries.search_runs,
        [str(e) for e in experiment_ids],
        run_view_type=data.get("run_view_type") or "ACTIVE_ONLY",
        max_results=max_results,
        order_by=data.get("order_by") or [],
        page_token=data.get("page_token"),
        filter_string=data.get("filter"),
    )
    return {"runs": runs, **({"next_page_token": token} if token else {})}


def get_metric_history(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    run = _run(runtime, data, active=False)
    metrics, token = runtime.read(
        queries.metric_history,
        run["info"]["run_id"],
        required(data, "metric_key"),
        max_results=as_int(data, "max_results", None, 1, 1_000_000),
        page_token=data.get("page_token"),
    )
    return {"metrics": metrics, **({"next_page_token": token} if token else {})}


def log_inputs(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    run = _run(runtime, data)
    datasets, models = objects(data, "datasets"), objects(data, "models")
    for model in models:  # as for outputs: a typo would link the run to nothing, for ever
        _logged_model(runtime, model.get("model_id"))
    if datasets or models:
        runtime.write([commands.log_inputs(run["info"]["run_id"], datasets, models)])
    return {}


MAX_BULK_RUNS = 100
MAX_BULK_POINTS = 2500  # per run, MLflow's MAX_RESULTS_PER_RUN
MAX_BULK_HISTORY = 25000  # in all, for get-history-bulk


def _run_ids(data: dict[str, Any], name: str) -> list[str]:
    run_ids = data.get(name) or []
    return [run_ids] if isinstance(run_ids, str) else list(run_ids)


def get_metric_history_bulk_interval(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    run_ids = _run_ids(data, "run_ids")
    if not run_ids:
        raise ApiError("Missing value for required parameter 'run_ids'.")
    if len(run_ids) > MAX_BULK_RUNS:
        raise ApiError(f"GetMetricHistoryBulkInterval request must specify at most {MAX_BULK_RUNS} run_ids. Received {len(run_ids)} run_ids.")
    key = required(data, "metric_key")
    try:
        max_results = as_int(data, "max_results", MAX_BULK_POINTS, 1, MAX_BULK_POINTS)
    except ApiError:
        raise ApiError(f"max_results must be between 1 and {MAX_BULK_POINTS}. See the API docs for more information about request parameters.") from None
    start, end = as_int(data, "start_step"), as_int(data, "end_step")
    if (start is None) != (end is None):
        raise ApiError("If either start step or end step are specified, both must be specified.")
    if start is not None and end is not None and start > end:
        raise ApiError(f"end_step must be greater than start_step. Found start_step={start} and end_step={end}.")
    for run_id in run_ids:
        _run(runtime, {"run_id": run_id}, active=False)
    points = runtime.read(queries.metric_history_interval, run_ids, key, start, end, max_results)
    return {"metrics": points}


def get_metric_history_bulk(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    """The history of one metric in several runs (MLflow's UI asks for it on the ajax API)."""
    run_ids = _run_ids(data, "run_id")
    if not run_ids:
        raise ApiError("GetMetricHistoryBulk request must specify at least one run_id.")
    if len(run_ids) > MAX_BULK_RUNS:
        raise ApiError(f"GetMetricHistoryBulk request cannot specify more than {MAX_BULK_RUNS} run_ids. Received {len(run_ids)} run_ids.")
    key = data.get("metric_key")
    if key is None:
        raise ApiError("GetMetricHistoryBulk request must specify a metric_key.")
    max_results = min(as_int(data, "max_results", MAX_BULK_HISTORY, 1), MAX_BULK_HISTORY)
    return {"metrics": runtime.read(queries.metric_history_bulk, run_ids, key, max_results)}


MAX_DATASET_EXPERIMENTS = 20


def search_datasets(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    experiment_ids = [str(e) for e in data.get("experiment_ids") or []]
    if not experiment_ids:
        raise ApiError("SearchDatasets request must specify at least one experiment_id.")
    if len(experiment_ids) > MAX_DATASET_EXPERIMENTS:
        raise ApiError(
            f"SearchDatasets request cannot specify more than {MAX_DATASET_EXPERIMENTS} experiment_ids. Received {len(experiment_ids)} experiment_ids."
        )
    return {"dataset_summaries": runtime.read(queries.search_datasets, experiment_ids)}


# -- logged models (MLflow 3) ----------------------------------------------------------------

_STATUS_NUMBERS = {1: "LOGGED_MODEL_PENDING", 2: "LOGGED_MODEL_READY", 3: "LOGGED_MODEL_UPLOAD_FAILED"}


def _logged_model(runtime: Runtime, model_id: Any) -> dict[str, Any]:
    model = runtime.read(queries.get_logged_model, str(model_id))
    if model is None:
        raise not_found(f"Logged model with ID '{model_id}' not found.")
    return model


def create_logged_model(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    experiment = _experiment(runtime, required(data, "experiment_id"))
    model_id = commands.new_model_id()
    name = data.get("name") or f"model-{model_id[2:10]}"
    location = f"{experiment['artifact_location'].rstrip('/')}/models/{model_id}/artifacts"
    source_run_id = data.get("source_run_id") or None  # named, not required to exist (as in MLflow)
    event = commands.create_logged_model(
        model_id, experiment["experiment_id"], name, location, model_type=data.get("model_type") or None,
        source_run_id=source_run_id, params=pairs(data, "params"), tags=pairs(data, "tags"),
    )
    runtime.write([event])
    return {"model": _logged_model(runtime, model_id)}


def get_logged_model(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    return {"model": _logged_model(runtime, required(data, "model_id"))}


def finalize_logged_model(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    model = _logged_model(runtime, required(data, "model_id"))
    status = data.get("status")
    status = _STATUS_NUMBERS.get(status, status) if isinstance(status, int) else status
    runtime.write([commands.finalize_logged_model(model["info"]["model_id"], status, data.get("status_message"))])
    return {"model": _logged_model(runtime, model["info"]["model_id"])}


def delete_logged_model(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    model = _logged_model(runtime, required(data, "model_id"))
    runtime.write([commands.delete_logged_model(model["info"]["model_id"])])
    return {}


def set_logged_model_tags(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    model = _logged_model(runtime, required(data, "model_id"))
    runtime.write([commands.set_logged_model_tags(model["info"]["model_id"], pairs(data, "tags"))])
    return {}


def delete_logged_model_tag(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    model = _logged_model(runtime, required(data, "model_id"))
    key = required(data, "tag_key")
    if key not in {t["key"] for t in model["info"].get("tags", [])}:
        raise not_found(f"No tag with key {key!r} found for model with ID {model['info']['model_id']!r}.")
    runtime.write([commands.delete_logged_model_tag(model["info"]["model_id"], required(data, "tag_key"))])
    return {}


def log_logged_model_params(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    model = _logged_model(runtime, required(data, "model_id"))
    runtime.write([commands.log_logged_model_params(model["info"]["model_id"], pairs(data, "params"))])
    return {}


def search_logged_models(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    experiment_ids = data.get("experiment_ids") or []
    for experiment_id in experiment_ids:
        _experiment(runtime, experiment_id)
    models, token = runtime.read(
        queries.search_logged_models, experiment_ids, data.get("filter"), as_int(data, "max_results", 100, 1, 50000), data.get("page_token"),
        objects(data, "datasets"),
    )
    return {"models": models, **({"next_page_token": token} if token else {})}


def log_outputs(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    run = _run(runtime, data)
    models = objects(data, "models")
    for model in models:
        _logged_model(runtime, model.get("model_id"))
    if models:
        runtime.write([commands.log_outputs(run["info"]["run_id"], models)])
    return {}


ENDPOINTS: dict[str, tuple[Handler, tuple[str, ...]]] = {
    "experiments/create": (create_experiment, ("POST",)),
    "experiments/get": (get_experiment, ("GET",)),
    "experiments/get-by-name": (get_experiment_by_name, ("GET",)),
    "experiments/search": (search_experiments, ("GET", "POST")),
    "experiments/update": (update_experiment, ("POST",)),
    "experiments/delete": (delete_experiment, ("POST",)),
    "experiments/restore": (restore_experiment, ("POST",)),
    "experiments/set-experiment-tag": (set_experiment_tag, ("POST",)),
    "experiments/delete-experiment-tag": (delete_experiment_tag, ("POST",)),
    "experiments/search-datasets": (search_datasets, ("POST",)),
    "runs/create": (create_run, ("POST",)),
    "runs/get": (get_run, ("GET",)),
    "runs/update": (update_run, ("POST",)),
    "runs/delete": (delete_run, ("POST",)),
    "runs/restore": (restore_run, ("POST",)),
    "runs/log-metric": (log_metric, ("POST",)),
    "runs/log-parameter": (log_param, ("POST",)),
    "runs/set-tag": (set_tag, ("POST",)),
    "runs/delete-tag": (delete_tag, ("POST",)),
    "runs/log-batch": (log_batch, ("POST",)),
    "runs/search": (search_runs, ("POST", "GET")),
    "metrics/get-history": (get_metric_history, ("GET",)),
    "runs/log-inputs": (log_inputs, ("POST",)),
    "metrics/get-history-bulk-interval": (get_metric_history_bulk_interval, ("GET",)),
    "metrics/get-history-bulk": (get_metric_history_bulk, ("GET",)),
    "runs/outputs": (log_outputs, ("POST",)),
    "logged-models/search": (search_logged_models, ("POST",)),
    "logged-models": (create_logged_model, ("POST",)),
    "logged-models/{model_id}": (get_logged_model, ("GET",)),
    "logged-models/{model_id}#finalize": (finalize_logged_model, ("PATCH",)),
    "logged-models/{model_id}#delete": (delete_logged_model, ("DELETE",)),
    "logged-models/{model_id}/tags": (set_logged_model_tags, ("PATCH",)),
    "logged-models/{model_id}/tags/{tag_key}": (delete_logged_model_tag, ("DELETE",)),
    "logged-models/{model_id}/params": (log_logged_model_params, ("POST",)),
    "logged-models/{model_id}/artifacts/directories": (ui_artifacts.list_logged_model_artifacts, ("GET",)),
    **registry.ENDPOINTS,
}


def _endpoint(runtime: Runtime, name: str, handler: Handler) -> Callable[[Request], Awaitable[JSONResponse]]:
    route = name.partition("#")[0]  # "#…" tells apart handlers of one path by method

    async def endpoint(request: Request) -> JSONResponse:
        data = {**await fields(request, fieldtypes.repeated(request.method, route)), **request.path_params}
        fieldtypes.check(request.method, route, data)  # a mistyped field is refused, never looked up
        principal = access.current()
        if principal is None:
            user = actor(request)
            ACTOR.set(user)  # the events this request makes carry its (unchecked) user
        else:
            user = principal.username  # the middleware set ACTOR
            await run_in_threadpool(runtime.read, policy.authorize, principal, name, data)
        # A retry makes the same ids as the first try (eventflow/idempotency.py).
        idempotency.begin(idempotency.key_for(route, user, data, request.headers.get(idempotency.HEADER)))
        result = await run_in_threadpool(handler, runtime, data)
        if principal is not None and name in policy.CREATIONS:  # a thread hop only where there is a grant to write
            await run_in_threadpool(policy.after, runtime, principal, name, data, result)
        return ProtoJSONResponse(result)

    return endpoint


def routes(runtime: Runtime) -> list[Route]:
    out = []
    for prefix in ("/api/2.0/mlflow/", "/ajax-api/2.0/mlflow/"):
        for name, (handler, methods) in ENDPOINTS.items():
            out.append(Route(prefix + name.partition("#")[0], _endpoint(runtime, name, handler), methods=list(methods)))
    return out
