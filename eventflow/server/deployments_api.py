"""``/api/2.0/eventflow/deployments``: what each deployment target serves, and its history
(from the deployer's deployment.* events). With auth on, a reader sees the deployments of
the registered models they may READ (all, for an administrator)."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from eventflow.audit import asof
from eventflow.auth import context as access
from eventflow.auth.streams import Owners, Sight
from eventflow.deploy.history import deployments
from eventflow.server.requests import as_int
from eventflow.server.runtime import Runtime

PATH = "/api/2.0/eventflow/deployments"


def configured_targets() -> list[Any]:
    """EVENTFLOW_DEPLOY_TARGETS of this server (none when the deployer runs apart, or a bad value:
    the deployer itself refuses that one at start)."""
    from eventflow.consumers.deployer import targets_from_env

    try:
        return targets_from_env()
    except ValueError:
        return []


def routes(runtime: Runtime) -> list[Route]:
    async def list_deployments(request: Request) -> JSONResponse:
        query = dict(request.query_params)
        max_results = as_int(query, "max_results", 100, 1, 10_000)
        principal = access.current()
        sight = Sight(principal, runtime.read, Owners(runtime.read), ttl=float("inf")) if principal is not None else None
        visible = None if sight is None or sight.all else (lambda name: sight.may_read(("registered_model", name)))
        until = asof.moment(query)  # as_of: the deployments as they were then
        found = await run_in_threadpool(deployments, runtime.log, query.get("target") or None, max_results, visible, until)
        # The targets this server's deployer is set up with, deployed yet or not: what moving
        # an alias will deploy (the dashboard names them before it moves one).
        found["targets"] = [
            {"target": t.key, "name": t.name, "alias": t.alias, "endpoint": t.endpoint}
            for t in configured_targets()
            if (visible is None or visible(t.name)) and query.get("target") in (None, "", t.key)
        ]
        return JSONResponse(found)

    return [Route(PATH, list_deployments, methods=["GET"])]
