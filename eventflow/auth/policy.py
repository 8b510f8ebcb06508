"""What each route needs: the one table of who may call what, and the checks that read it.

Every tracking and registry route of the REST surface has an entry (a test proves none is
missing); a route without one is refused to all but admins, so a new route is closed
until someone says who may use it. A rule names the resource a request is about (an
experiment, found from a run or a logged model when the request names those, or a
registered model) and the level it needs there; searches instead narrow what they return
(:func:`eventflow.auth.context.visible`), so that a user never sees, or counts, what they may not READ.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.engine import Connection

from eventflow.auth import context
from eventflow.auth.permissions import EDIT, LEVELS, MANAGE, READ, Principal, level
from eventflow.server.errors import ApiError
from eventflow.views import queries

EXPERIMENT, MODEL = "experiment", "registered_model"


def denied(message: str = "Permission denied") -> ApiError:
    return ApiError(message, "PERMISSION_DENIED")


# -- what a request is about ------------------------------------------------------------

Resolve = Callable[[Connection, dict[str, Any]], list[tuple[str, str]]]


def experiment(field: str = "experiment_id") -> Resolve:
    def resolve(c: Connection, data: dict[str, Any]) -> list[tuple[str, str]]:
        value = data.get(field)
        return [(EXPERIMENT, str(value))] if value not in (None, "") else []
    return resolve


def experiments(field: str = "experiment_ids") -> Resolve:
    def resolve(c: Connection, data: dict[str, Any]) -> list[tuple[str, str]]:
        values = data.get(field) or []
        return [(EXPERIMENT, str(v)) for v in ([values] if isinstance(values, str) else values)]
    return resolve


def experiment_by_name(c: Connection, data: dict[str, Any]) -> list[tuple[str, str]]:
    found = queries.get_experiment_by_name(c, str(data.get("experiment_name") or ""))
    return [(EXPERIMENT, found["experiment_id"])] if found else []


# A run never moves to another experiment: which one holds it is looked up once per process.
_RUN_EXPERIMENTS: dict[str, str] = {}
_RUN_CACHE_SIZE = 100_000


def run(c: Connection, data: dict[str, Any]) -> list[tuple[str, str]]:
    run_id = data.get("run_id") or data.get("run_uuid")
    if not run_id:
        return []
    experiment_id = _RUN_EXPERIMENTS.get(str(run_id))
    if experiment_id is None:
        info = queries.get_run_info(c, str(run_id))
        if info is None:
            return []
        if len(_RUN_EXPERIMENTS) >= _RUN_CACHE_SIZE:
            _RUN_EXPERIMENTS.clear()
        experiment_id = _RUN_EXPERIMENTS[str(run_id)] = info["experiment_id"]
    return [(EXPERIMENT, experiment_id)]


def logged_model(c: Connection, data: dict[str, Any]) -> list[tuple[str, str]]:
    model_id = data.get("model_id")
    found = queries.get_logged_model(c, str(model_id)) if model_id else None
    return [(EXPERIMENT, found["info"]["experiment_id"])] if found else []


def model(c: Connection, data: dict[str, Any]) -> list[tuple[str, str]]:
    name = data.get("name")
    return [(MODEL, str(name))] if name not in (None, "") else []


def nothing(c: Connection, data: dict[str, Any]) -> list[tuple[str, str]]:
    return []


@dataclass(frozen=True)
class Need:
    """A route's rule: ``level`` on everything ``about`` finds (nothing found: the
    handler answers its own 404). ``create`` is a creation, open to any principal who
    may write; ``promote`` moves an alias or a stage; ``also`` adds a second need."""

    about: Resolve = nothing
    level: str = READ
    create: bool = False
    promote: bool = False
    also: "Need | None" = None


LOGIN = Need()  # any authenticated principal: searches narrow their answer themselves

ROUTES: dict[str, Need] = {
    "experiments/create": Need(create=True),
    "experiments/get": Need(experiment()),
    "experiments/get-by-name": Need(experiment_by_name),
    "experiments/search": LOGIN,
    "experiments/update": Need(experiment(), EDIT),
    "experiments/delete": Need(experiment(), MANAGE),
    "experiments/restore": Need(experiment(), MANAGE),
    "experiments/set-experiment-tag": Need(experiment(), EDIT),
    "experiments/delete-experiment-tag": Need(experiment(), EDIT),
    "experiments/search-datasets": Need(experiments()),
    "runs/create": Need(experiment(), EDIT),
    "runs/get": Need(run),
    "runs/update": Need(run, EDIT),
    "runs/delete": Need(run, MANAGE),
    "runs/restore": Need(run, MANAGE),
    "runs/log-metric": Need(run, EDIT),
    "runs/log-parameter": Need(run, EDIT),
    "runs/set-tag": Need(run, EDIT),
    "runs/delete-tag": Need(run, EDIT),
    "runs/log-batch": Need(run, EDIT),
    "runs/search": Need(experiments()),
    "metrics/get-history": Need(run),
    "runs/log-inputs": Need(run, EDIT),
    "metrics/get-history-bulk-interval": Need(lambda c, d: [p for r in _run_ids(d) for p in run(c, {"run_id": r})]),
    "metrics/get-history-bulk": Need(lambda c, d: [p for r in _run_ids(d) for p in run(c, {"run_id": r})]),
    "runs/outputs": Need(run, EDIT),
    "logged-models/search": Need(experiments()),
    "logged-models": Need(experiment(), EDIT),
    "logged-models/{model_id}": Need(logged_model),
    "logged-models/{model_id}#finalize": Need(logged_model, EDIT),
    "logged-models/{model_id}#delete": Need(logged_model, MANAGE),
    "logged-models/{model_id}/tags": Need(logged_model, EDIT),
    "logged-models/{model_id}/tags/{tag_key}": Need(logged_model, EDIT),
    "logged-models/{model_id}/params": Need(logged_model, EDIT),
    "logged-models/{model_id}/artifacts/directories": Need(logged_model),
    # MLflow UI's artifact routes (eventflow/server/ui_artifacts.py): files are read as their run's,
    # version's or logged model's, and written as their run's.
    "get-artifact": Need(run),
    "model-versions/get-artifact": Need(model),
    "upload-artifact": Need(run, EDIT),
    "logged-models/{model_id}/artifacts/files": Need(logged_model),
    "registered-models/create": Need(create=True),
    "registered-models/get": Need(model),
    "registered-models/rename": Need(model, MANAGE),
    "registered-models/update": Need(model, EDIT),
    "registered-models/delete": Need(model, MANAGE),
    "registered-models/search": LOGIN,
    "registered-models/get-latest-versions": Need(model),
    "registered-models/set-tag": Need(model, EDIT),
    "registered-models/delete-tag": Need(model, EDIT),
    "registered-models/alias": Need(model, promote=True),
    "registered-models/alias#delete": Need(model, promote=True),
    "registered-models/alias#get": Need(model),
    "model-versions/create": Need(model, EDIT, also=Need(run)),
    "model-versions/get": Need(model),
    "model-versions/update": Need(model, EDIT),
    "model-versions/delete": Need(model, MANAGE),
    "model-versions/search": LOGIN,
    "model-versions/transition-stage": Need(model, promote=True),
    "model-versions/get-download-uri": Need(model),
    "model-versions/set-tag": Need(model, EDIT),
    "model-versions/delete-tag": Need(model, EDIT),
    # eventflow's own routes with a rule here (not MLflow's ENDPOINTS): the audit of one thing.
    "eventflow/audit": Need(lambda c, d: _audit_resources(c, d)),
    "eventflow/lineage": Need(lambda c, d: _lineage_resources(c, d)),  # READ on the root's resource
    "eventflow/runs/project": Need(run),  # what a project run ran (eventflow/server/projects_api.py)
    # Stopping a run, and whether that was asked (eventflow/server/runs_api.py): as ending it.
    "eventflow/runs/stop": Need(run, EDIT),
    "eventflow/runs/stop#get": Need(run),
}

EVENTFLOW_ROUTES = {"eventflow/audit", "eventflow/lineage", "eventflow/runs/project", "eventflow/runs/stop", "eventflow/runs/stop#get"}


def _lineage_resources(c: Connection, data: dict[str, Any]) -> list[tuple[str, str]]:
    from eventflow.audit.lineage import resources

    return resources(c, data)


def _audit_resources(c: Connection, data: dict[str, Any]) -> list[tuple[str, str]]:
    from eventflow.audit.targets import resources

    return resources(c, data)


def _run_ids(data: dict[str, Any]) -> list[str]:
    values = data.get("run_ids") or []
    return [values] if isinstance(values, str) else [str(v) for v in values]


def require(c: Connection, principal: Principal, need: Need, data: dict[str, Any]) -> None:
    """Raise 403 unless the principal may do what ``need`` says with what ``data`` names."""
    if need.create and principal.cap < LEVELS[EDIT]:
        raise denied(f"Permission denied: a token with scopes {sorted(principal.scopes or ())} cannot create; it needs the write scope")
    for resource_type, resource_id in need.about(c, data):
        have = level(c, principal, resource_type, resource_id)
        if need.promote:
            # A deployment: MANAGE with a password, or a token with the promote scope and EDIT rights.
            own = level(c, Principal(principal.username, principal.is_admin), resource_type, resource_id)
            allowed = own >= LEVELS[MANAGE] if principal.scopes is None else (principal.may_promote and own >= LEVELS[EDIT])
            if not allowed:
                raise denied(f"Permission denied: moving an alias or a stage of {resource_type} {resource_id!r} deploys it; it needs MANAGE, or a token with the promote scope and EDIT")
        elif have < LEVELS[need.level]:
            raise denied(f"Permission denied: {need.level} on {resource_type} {resource_id!r} is needed")
    if need.also is not None:
        require(c, principal, need.also, data)


def authorize(c: Connection, principal: Principal, route: str, data: dict[str, Any]) -> None:
    need = ROUTES.get(route)
    if need is None:
        if not principal.admin:
            raise denied(f"Permission denied: {route} is for administrators")
        return
    require(c, principal, need, data)


def may_read(c: Connection, resource_type: str, resource_id: str) -> bool:
    principal = context.current()
    return principal is None or level(c, principal, resource_type, resource_id) >= 1



# What a creation gives its creator: MANAGE on the new experiment or model, as in MLflow.
CREATIONS: dict[str, tuple[str, Callable[[dict[str, Any], dict[str, Any]], str]]] = {
    "experiments/create": (EXPERIMENT, lambda data, result: result["experiment_id"]),
    "registered-models/create": (MODEL, lambda data, result: result["registered_model"]["name"]),
}


def after(runtime: Any, principal: Principal, route: str, data: dict[str, Any], result: dict[str, Any]) -> None:
    creation = CREATIONS.get(route)
    if creation is None:
        return
    from eventflow.auth.accounts import Accounts

    resource_type, resource_id = creation[0], creation[1](data, result)
    Accounts(runtime).set_permission(resource_type, resource_id, principal.username, MANAGE)


def authorize_artifact(c: Connection, principal: Principal, method: str, store_path: str | None, query: dict[str, Any]) -> None:
    """Artifacts: a store path ``<experiment_id>/…`` needs READ on that experiment to read
    and EDIT to change; the run-listing and digest routes name a run or a logged model.
    Listing the store's root (every experiment's folder) is for admins."""
    needed = READ if method in ("GET", "HEAD") else EDIT
    if store_path is not None:
        experiment_id = store_path.strip("/").split("/")[0]
        if not experiment_id:
            if not principal.admin:
                raise denied("Permission denied: listing the artifact store's root is for administrators; name an experiment's path")
            return
        require(c, principal, Need(experiment(), needed), {"experiment_id": experiment_id})
    elif query.get("model_id"):
        require(c, principal, Need(logged_model, needed), {"model_id": query["model_id"]})
    else:
        require(c, principal, Need(run, needed), query)


# -- events the SDK appends (POST /api/2.0/eventflow/events) ---------------------------------

# Each event type is governed as the route that makes it; types not here are for admins.
EVENT_ROUTES: dict[str, str | Need] = {
    "experiment.created": "experiments/create",
    "experiment.renamed": "experiments/update",
    "experiment.deleted": "experiments/delete",
    "experiment.restored": "experiments/restore",
    "experiment.tag_set": "experiments/set-experiment-tag",
    "experiment.tag_deleted": "experiments/delete-experiment-tag",
    "run.created": "runs/create",
    **dict.fromkeys(("run.finished", "run.failed", "run.killed", "run.renamed"), "runs/update"),
    "run.deleted": "runs/delete",
    "run.restored": "runs/restore",
    "run.params_logged": "runs/log-parameter",
    "run.tags_set": "runs/set-tag",
    "run.tag_deleted": "runs/delete-tag",
    "run.metrics_logged": "runs/log-metric",
    "run.inputs_logged": "runs/log-inputs",
    "run.outputs_logged": "runs/outputs",
    "run.artifact_logged": Need(run, EDIT),
    "run.project_recorded": Need(run, EDIT),
    "run.alive": Need(run, EDIT),  # the SDK's sign of life (run.crashed is the watchdog's own)
    "alert.raised": Need(run, EDIT),  # training code's own alert about its run
}


def _except(need: Need, created: set[tuple[str, str]]) -> Need:
    """``need`` without what the batch itself creates (its creator gets MANAGE on it)."""
    about = need.about
    return replace(need, about=lambda c, d: [r for r in about(c, d) if r not in created],
                   also=_except(need.also, created) if need.also is not None else None)


def authorize_events(c: Connection, principal: Principal, events: list[Any]) -> list[str]:
    """Raise 403 unless the principal may append every event (EDIT on what each is
    about, as its route needs); returns the experiments the batch creates, whose
    creator gets MANAGE once they are appended (:func:`after`)."""
    created: set[tuple[str, str]] = set()
    for event in events:
        rule = EVENT_ROUTES.get(event.type)
        if rule is None:
            if not principal.admin:
                raise denied(f"Permission denied: {event.type} events are for administrators")
            continue
        require(c, principal, _except(ROUTES[rule] if isinstance(rule, str) else rule, created), event.payload)
        if event.type == "experiment.created" and queries.get_experiment(c, str(event.payload["experiment_id"])) is None:
            created.add((EXPERIMENT, str(event.payload["experiment_id"])))
    return [experiment_id for _, experiment_id in sorted(created)]
