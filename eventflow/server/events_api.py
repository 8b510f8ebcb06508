"""``/api/2.0/eventflow/events``: read the log as JSON, and append SDK events.

Reading is the audit view: events from an offset or a time, filtered by type (``run.*``
wildcards) and topic, paged with a token that holds the position in every partition.
Appending takes Avro single-object events from the SDK, each re-checked by the rules
of its command before any is appended, and stamped by the server (``stamping.py``): an
authenticated caller may only post events that name it; the envelope's time becomes the
server's (the client's is kept as ``source.client_time``).

With auth on, a reader who is not an administrator sees only the events about what they
may READ (eventflow/auth/streams.py), the rest neither shown nor counted; a page then
reads at most ``SCAN_LIMIT`` records, so it answers in bounded time even when little of
the log is theirs (fewer events, even none, with a ``next_page_token``: follow it until
there is none). Appending needs, for each event, what its route needs (EDIT on the
experiment, for most: eventflow.auth.policy.EVENT_ROUTES).
"""

from __future__ import annotations

import base64
import fnmatch
import json
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from eventflow import commands
from eventflow.auth import context as access
from eventflow.auth import policy
from eventflow.auth.streams import Owners, Sight
from eventflow.codec import decode, decode_untrusted
from eventflow.codec.framing import CONTENT_TYPE, unpack  # noqa: F401 (CONTENT_TYPE: this route's body)
from eventflow.events import Event, LIFECYCLE_TOPICS
from eventflow.log import TopicPartition
from eventflow.registry.sources import check_artifact_location
from eventflow.server.browsers import EVENTS_MAX_BODY
from eventflow.server.errors import ApiError
from eventflow.server.prechecks import check_events
from eventflow.server.requests import as_int
from eventflow.server.responses import ProtoJSONResponse
from eventflow.server.runtime import Runtime
from eventflow.server.stamping import Origin, check_actors

MAX_BODY = EVENTS_MAX_BODY  # enforced while the body is read (browsers.BrowserGuard); checked again here
# Records in arrays (tags, params, linked points…) one batch may decode to: a few per
# eight bytes of body — real batches hold far fewer — and never more than the SDK's
# largest batch could, so a body of tiny records cannot decode to gigabytes.
MAX_RECORDS = 500_000


# Records one page reads at most for a reader who may not see everything.
SCAN_LIMIT = 20_000


def record_budget(size: int) -> int:
    return min(MAX_RECORDS, 1024 + size // 8)


def event_json(event: Event) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "type": event.type,
        "time": event.time,
        "actor": event.actor,
        "source": event.source,
        "correlation_id": event.correlation_id,
        "causation_id": event.causation_id,
        "payload": event.payload,
    }


def _token(positions: dict[TopicPartition, int]) -> str:
    raw = json.dumps([[tp.topic, tp.partition, offset] for tp, offset in sorted(positions.items())])
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _positions(token: str) -> dict[TopicPartition, int]:
    try:
        positions = {TopicPartition(str(t), int(p)): int(o) for t, p, o in json.loads(base64.urlsafe_b64decode(token.encode()))}
    except Exception:
        raise ApiError(f"Invalid page_token {token!r}") from None
    if any(not 0 <= offset < 2**63 for offset in positions.values()):
        raise ApiError(f"Invalid page_token {token!r}")
    return positions


def _not_negative(query: dict[str, Any], name: str) -> int | None:
    return as_int(query, name, None, 0)


def read_events(runtime: Runtime, query: dict[str, Any]) -> dict[str, Any]:
    topics = query.get("topic") or list(LIFECYCLE_TOPICS)
    types = query.get("type") or []
    max_results = as_int(query, "max_results", 1000, 1, 10000)
    from_time, from_offset = _not_negative(query, "from_time"), _not_negative(query, "from_offset")
    positions = _positions(query["page_token"]) if query.get("page_token") else None
    unknown = [t for t in topics if t not in runtime.log.topics()]
    if unknown:
        raise ApiError(f"unknown topic(s): {', '.join(unknown)}")
    events: list[dict[str, Any]] = []
    principal = access.current()
    sight = Sight(principal, runtime.read, Owners(runtime.read), ttl=float("inf")) if principal is not None else None
    if sight is not None and sight.all:
        sight = None
    scanned = 0
    with runtime.log.consumer(topics) as consumer:
        if positions is not None:
            for tp, offset in positions.items():
                if tp in consumer.assignment():
                    consumer.seek(tp, offset)
        elif from_time is not None:
            consumer.seek_to_time(from_time)
        elif from_offset is not None:
            for tp in consumer.assignment():
                consumer.seek(tp, from_offset)
        else:
            consumer.seek_to_beginning()
        ends = {tp: runtime.log.end_offsets(tp.topic)[tp.partition] for tp in consumer.assignment()}
        while len(events) < max_results and scanned < (SCAN_LIMIT if sight is not None else float("inf")) \
                and any(consumer.position(tp) < end for tp, end in ends.items()):
            records = consumer.poll(timeout=0.5, max_records=max_results - len(events))
            if not records:
                break
            scanned += len(records)
            decoded: list[tuple[Any, Event | None, str | None]] = []
            for record in records:
                try:
                    decoded.append((record, decode(record.value), None))
                except Exception as error:  # poison stays visible in the audit view (to administrators)
                    decoded.append((record, None, str(error)))
            visible = _visible(sight, [event for _, event, _ in decoded])
            for (record, event, error), shown in zip(decoded, visible):
                if not shown:
                    continue
                if event is None:
                    events.append({"topic": record.topic, "partition": record.partition, "offset": record.offset, "error": error})
                    continue
                if types and not any(fnmatch.fnmatchcase(event.type, pattern) for pattern in types):
                    continue
                events.append({"topic": record.topic, "partition": record.partition, "offset": record.offset, "event": event_json(event)})
        positions = {tp: consumer.position(tp) for tp in consumer.assignment()}
    more = any(positions[tp] < end for tp, end in ends.items())
    return {"events": events, **({"next_page_token": _token(positions)} if more else {})}


def _visible(sight: Sight | None, events: list[Event | None]) -> list[bool]:
    """Which of a poll's events the reader may see (all, with auth off or for an admin);
    what they are about is looked up for the whole poll at once."""
    if sight is None:
        return [True] * len(events)
    known = [e for e in events if e is not None]
    abouts = iter(sight.owners.about_all([(e.type, e.payload) for e in known]))
    about = [next(abouts) if e is not None else () for e in events]
    sight.prefetch(r for resources in about for r in resources)
    return [e is not None and sight.sees(a) for e, a in zip(events, about)]


async def get_events(request: Request, runtime: Runtime) -> JSONResponse:
    query: dict[str, Any] = {key: request.query_params.get(key) for key in request.query_params.keys()}
    query["type"] = request.query_params.getlist("type")
    query["topic"] = request.query_params.getlist("topic")
    return ProtoJSONResponse(await run_in_threadpool(read_events, runtime, query))


def append_events(runtime: Runtime, body: bytes, origin: Origin | None = None) -> dict[str, Any]:
    """Append a client's batch: all of it, stamped by the server, or nothing (the first
    event that is refused — bad, or naming another actor than the caller — says why)."""
    events, budget = [], record_budget(len(body))
    for item in unpack(body):
        event, records = decode_untrusted(item, budget)
        budget -= records
        events.append(event)
    check_actors(events, origin)
    for event in events:
        commands.recheck(event)
        if event.type == "experiment.created":  # the same rule as experiments/create
            check_artifact_location(event.payload["artifact_location"], runtime.artifacts)
    principal = access.current()
    created = runtime.read(policy.authorize_events, principal, events) if principal is not None else []
    check_events(runtime.read, events)
    positions = runtime.write(events, origin=origin, from_client=True) if events else []
    for experiment_id in created:  # its creator manages it, as after experiments/create
        policy.after(runtime, principal, "experiments/create", {}, {"experiment_id": experiment_id})
    return {"positions": [{"topic": p.topic, "partition": p.partition, "offset": p.offset} for p in positions]}


async def post_events(request: Request, runtime: Runtime) -> JSONResponse:
    body = await request.body()
    if len(body) > MAX_BODY:
        raise ApiError(f"an event batch may have at most {MAX_BODY} bytes, this one has {len(body)}")
    return ProtoJSONResponse(await run_in_threadpool(append_events, runtime, body, Origin.of(request.scope)))


async def get_actor(request: Request) -> JSONResponse:
    """The actor this caller's events must name: the authenticated user (a client holding
    only a token learns its user name here), or, with authentication off, null."""
    origin = Origin.of(request.scope)
    return ProtoJSONResponse({"actor": origin.principal, "authenticated": origin.principal is not None})


def routes(runtime: Runtime) -> list[Route]:
    async def events(request: Request) -> JSONResponse:
        if request.method == "POST":
            return await post_events(request, runtime)
        return await get_events(request, runtime)

    return [
        Route("/api/2.0/eventflow/events", events, methods=["GET", "POST"]),
        Route("/api/2.0/eventflow/events/actor", get_actor, methods=["GET"]),
    ]
