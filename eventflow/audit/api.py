"""``GET /api/2.0/eventflow/audit``: the history of one thing, as JSON entries.

``entity_type`` and ``entity`` (or ``target`` as the CLI writes it), ``since``/``until``
(ms or ISO 8601), ``reverse``, ``points`` (every metric event, not a summary),
``max_results`` and ``page_token``. With auth on it needs READ on what the entity
belongs to (eventflow.auth.policy.ROUTES["eventflow/audit"]); a webhook's history is for
administrators, as webhooks are.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from eventflow.audit import asof, history, index, lineage, targets
from eventflow.auth import context as access
from eventflow.auth import policy
from eventflow.server.requests import as_int
from eventflow.server.responses import ProtoJSONResponse
from eventflow.server.runtime import Runtime
from eventflow.validation import InvalidInput

PATH = "/api/2.0/eventflow/audit"
ROUTE = "eventflow/audit"  # its rule in eventflow.auth.policy.ROUTES
LINEAGE_PATH = "/api/2.0/eventflow/lineage"
LINEAGE_ROUTE = "eventflow/lineage"


def _flag(query: dict[str, Any], name: str) -> bool:
    value = str(query.get(name) or "false").lower()
    if value not in ("true", "false", "1", "0"):
        raise InvalidInput(f"Invalid value {value!r} for parameter '{name}': it must be true or false")
    return value in ("true", "1")


def audit(runtime: Runtime, query: dict[str, Any]) -> dict[str, Any]:
    since = asof.parse_time(query["since"], "since") if query.get("since") else None
    until = asof.parse_time(query["until"], "until") if query.get("until") else None
    max_results = as_int(query, "max_results", 1000, 1, 100_000)
    token = query.get("page_token")
    if token is not None and not str(token).isdigit():
        raise InvalidInput(f"Invalid page_token {token!r}")
    start = int(token or 0)
    target = targets.from_query(query.get("entity_type"), query.get("entity"), query.get("target"))
    principal = access.current()
    with runtime.engine.connect() as c:
        target = targets.resolve(c, target)
        if principal is not None:
            policy.authorize(c, principal, ROUTE, query)
            if target.kind == index.WEBHOOK and not principal.admin:
                raise policy.denied("Permission denied: a webhook's history is for administrators")
        entries = history.history(c, runtime.log, target, since=since, until=until,
                                  points=_flag(query, "points"), reverse=_flag(query, "reverse"))
    page = entries[start:start + max_results]
    more = start + max_results < len(entries)
    return {"target": target.describe(), "entity_type": target.kind, "entity": target.entity, "entries": page,
            "lines": history.lines(page), **({"next_page_token": str(start + max_results)} if more else {})}


def lineage_of(runtime: Runtime, query: dict[str, Any]) -> dict[str, Any]:
    """``GET /api/2.0/eventflow/lineage?uri=…&direction=…&depth=N``: the graph of
    eventflow.audit.lineage; with auth on it needs READ on the root's resource, and
    leaves out the nodes beyond it that the reader may not READ."""
    depth = as_int(query, "depth", 10, 1, 50)
    direction = str(query.get("direction") or "both")
    if direction not in lineage.DIRECTIONS:
        raise InvalidInput(f"Invalid value {direction!r} for parameter 'direction': it must be one of {', '.join(lineage.DIRECTIONS)}")
    principal = access.current()
    with runtime.engine.connect() as c:
        lineage.parse_uri(c, str(query.get("uri") or ""))
        if principal is not None:
            policy.authorize(c, principal, LINEAGE_ROUTE, query)
        may_read = None if principal is None else (lambda kind, key: policy.may_read(c, kind, key))
        graph = lineage.lineage(c, str(query.get("uri")), direction=direction, depth=depth, may_read=may_read)
    return {**graph, "lines": lineage.lines(graph)}


def routes(runtime: Runtime) -> list[Route]:
    async def get_audit(request: Request) -> JSONResponse:
        return ProtoJSONResponse(await run_in_threadpool(audit, runtime, dict(request.query_params)))

    async def get_lineage(request: Request) -> JSONResponse:
        return ProtoJSONResponse(await run_in_threadpool(lineage_of, runtime, dict(request.query_params)))

    return [Route(PATH, get_audit, methods=["GET"]), Route(LINEAGE_PATH, get_lineage, methods=["GET"])]
