"""``GET /api/2.0/eventflow/runs/project``: what a project run ran, for anyone who may read the run.

The rerun of a run, and any client that wants to know how a run can be rebuilt, reads
here what ``eventflow run`` recorded: URI, commit, patch, entry point, parameters, the
expanded command and the environment (manager, digest, Python, resolved packages).
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from eventflow.auth import context as access
from eventflow.auth import policy
from eventflow.server.errors import ApiError, not_found
from eventflow.server.runtime import Runtime
from eventflow.views import queries

ROUTE = "eventflow/runs/project"


async def run_project(request: Request, runtime: Runtime) -> JSONResponse:
    """``{"project": {...}}`` for a project run, ``{}`` for a run without a record
    (MLflow's proto-JSON leaves an absent message out); 404 when the run does not exist."""
    run_id = request.query_params.get("run_id") or request.query_params.get("run_uuid")
    if not run_id:
        raise ApiError("Missing value for required parameter 'run_id'.")
    principal = access.current()
    if principal is not None:
        await run_in_threadpool(runtime.read, policy.authorize, principal, ROUTE, {"run_id": run_id})
    if await run_in_threadpool(runtime.read, queries.get_run_info, run_id) is None:
        raise not_found(f"Run with id={run_id} not found")
    found = await run_in_threadpool(runtime.read, queries.get_run_project, run_id)
    return JSONResponse({} if found is None else {"project": found})


def routes(runtime: Runtime) -> list[Route]:
    async def endpoint(request: Request) -> JSONResponse:
        return await run_project(request, runtime)

    return [Route("/api/2.0/eventflow/runs/project", endpoint, methods=["GET"])]
