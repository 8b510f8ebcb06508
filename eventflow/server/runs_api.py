"""``/api/2.0/eventflow/runs/stop``: ask a running run to stop (MLflow issue 4391).

``POST {"run_id", "reason"?}`` appends ``run.stop_requested`` once the run is known to be
going (``rules.run_stoppable``: an unknown run 404, an ended or deleted one 400); nothing
else changes. The training process's SDK hears of it (``GET`` here, or the views on the
embedded default) and ends the run KILLED through its Ctrl-C path. ``GET ?run_id=``
answers ``{"stop_request": {...}}`` when a stop was asked, ``{}`` otherwise.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from eventflow import commands, rules
from eventflow.auth import context as access
from eventflow.auth import policy
from eventflow.events import ACTOR
from eventflow.server.errors import ApiError
from eventflow.server.requests import actor, fields, text
from eventflow.server.runtime import Runtime
from eventflow.views import queries

PATH = "/api/2.0/eventflow/runs/stop"
ROUTE = "eventflow/runs/stop"  # asking (EDIT on the run's experiment)
READ_ROUTE = "eventflow/runs/stop#get"  # whether one was asked (READ)


def _run_id(data: dict[str, Any]) -> str:
    run_id = text(data, "run_id") or text(data, "run_uuid")
    if not run_id:
        raise ApiError("Missing value for required parameter 'run_id'.")
    return run_id


def request_stop(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    run_id = _run_id(data)
    event = commands.request_stop(run_id, text(data, "reason"))  # a malformed one is refused before any lookup
    info = runtime.read(queries.get_run_info, run_id)
    rules.run_stoppable(run_id, info and info["lifecycle_stage"], info and info["status"])
    runtime.write([event])
    return {"stop_request": runtime.read(queries.get_stop_request, run_id)}


def stop_request(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    run_id = _run_id(data)
    if runtime.read(queries.get_run_info, run_id) is None:
        raise ApiError(f"Run with id={run_id} not found", "RESOURCE_DOES_NOT_EXIST")
    found = runtime.read(queries.get_stop_request, run_id)
    return {} if found is None else {"stop_request": found}


def routes(runtime: Runtime) -> list[Route]:
    async def endpoint(request: Request) -> JSONResponse:
        data = await fields(request, ())
        handler, route = (stop_request, READ_ROUTE) if request.method == "GET" else (request_stop, ROUTE)
        principal = access.current()
        if principal is None:
            ACTOR.set(actor(request))  # the (unchecked) user the client names, as MLflow's routes take it
        else:
            await run_in_threadpool(runtime.read, policy.authorize, principal, route, data)
        return JSONResponse(await run_in_threadpool(handler, runtime, data))

    return [Route(PATH, endpoint, methods=["GET", "POST"])]
