"""Time travel: the state as of a moment, folded from the log by the projector itself.

``as_of`` (ms since the epoch, or ISO 8601) on a read makes the handler answer from a
scratch in-memory database into which the projector's own apply functions (through
``Projector.apply``) have folded the events that read depends on, up to that moment.
So the answer is what the live views said then, by the same rules, not a second
implementation of them.

What is folded is a prefix of each partition: its events in log order up to the first
one stamped later than the moment (a state the views really passed through, even if two
servers' clocks disagree a little). Which events a read depends on:

- the registry (``registry``): every ``registered_model.*`` and ``model_version.*``
  event (they share one partition, so renames and reused names resolve as live);
- a run (``run``): that run's events, found through the entity index;
- experiments (``experiment``): the experiments' partition;
- who may read what is as it is *now*: the live views' users and permissions are copied
  into the fold (rights are checked today, for a past state).

A fold is cached by the events it holds; a later moment of the same events continues a
copy of the latest earlier fold, so moving a time control forward folds only the events
in between.

Each handler calls :func:`backend` once; without ``as_of`` it gets its own backend back.
"""

from __future__ import annotations

import datetime
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from eventflow.audit import index
from eventflow.audit.reading import Located, read_positions, read_range, read_prefix
from eventflow.events import FAMILIES, now_ms
from eventflow.log import Log, TopicPartition
from eventflow.log.base import Record
from eventflow.validation import InvalidInput

REGISTRY, RUN, EXPERIMENT = "registry", "run", "experiment"
FIELD = "as_of"
# A moment this recent may still gain events (an append stamped just before it, not yet
# indexed): its fold is not cached.
FUTURE_MARGIN = 60_000


def parse_time(value: Any, field: str = FIELD) -> int:
    """Milliseconds since the epoch from an integer (or its text) or an ISO 8601 time
    (without a zone: UTC). A clear error otherwise."""
    if isinstance(value, bool):
        raise InvalidInput(f"Invalid value {value!r} for parameter '{field}': give milliseconds since the epoch or an ISO 8601 time")
    if isinstance(value, int):
        ms = value
    else:
        text = str(value).strip()
        if text.lstrip("-").isdigit():
            ms = int(text)
        else:
            try:
                moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                raise InvalidInput(
                    f"Invalid value {text[:100]!r} for parameter '{field}': give milliseconds since the epoch "
                    "(1767225600000) or an ISO 8601 time (2026-01-01T00:00:00Z)") from None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=datetime.timezone.utc)
            ms = int(moment.timestamp() * 1000)
    if not 0 <= ms < 2**63:
        raise InvalidInput(f"Invalid value {value!r} for parameter '{field}': it must be a time after 1970")
    return ms


def partition_of(log: Log, family: str, key: str | None = None) -> TopicPartition | None:
    """The partition of a family's key (a shared-key family: its one partition)."""
    from eventflow.log.partitioner import partition_for

    f = FAMILIES[family]
    if f.topic not in log.topics():
        return None
    return TopicPartition(f.topic, partition_for((f.shared_key or key or "").encode(), len(log.partitions(f.topic))))


def _registry_cut(engine: Engine, tp: TopicPartition, until: int) -> int:
    """The first offset of the registry partition stamped later than ``until`` (every
    registry event is indexed under its model): the prefix ends before it."""
    from sqlalchemy import func

    from eventflow.views.tables import entity_events as ix

    with engine.connect() as c:
        found = c.execute(
            select(func.min(ix.c.offset)).where(ix.c.topic == tp.topic, ix.c.partition == tp.partition,
                                                ix.c.entity_type == index.MODEL, ix.c.time > until)
        ).scalar()
    return 2**62 if found is None else int(found)


def _names_joined_by_renames(engine: Engine, log: Log, name: str) -> set[str]:
    """The name and every name a rename joins to it, either way: the fold of these names'
    events decides their state exactly as the whole registry does (each registry rule
    looks at the names an event carries, and a rename carries both)."""
    from eventflow.views.tables import entity_events as ix

    names, todo = {name}, [name]
    while todo:
        current = todo.pop()
        with engine.connect() as c:
            rows = c.execute(
                select(ix.c.topic, ix.c.partition, ix.c.offset)
                .where(ix.c.entity_type == index.MODEL, ix.c.entity == current, ix.c.event_type == "registered_model.renamed")
            ).all()
        for item in read_positions(log, [tuple(r) for r in rows]):
            for other in (item.event.payload["name"], item.event.payload["new_name"]):
                if other not in names:
                    names.add(other)
                    todo.append(other)
    return names


@dataclass(frozen=True)
class Prefix:
    """The events a read depends on, as a prefix of one partition ending before ``cut``:
    ``key`` names which events (a scope, and the model names when only those are folded),
    ``load(start)`` reads those at offsets from ``start`` up to the cut. A fold of the same
    key up to an earlier cut can be continued rather than folded again."""

    key: tuple[Any, ...]
    cut: int
    load: Callable[[int], list[Located]]


def _registry_events(engine: Engine, log: Log, until: int, name: str | None) -> Prefix | None:
    """The registry's events up to ``until`` (only those of ``name`` and the names renames
    join to it, when given)."""
    tp = partition_of(log, "registered_model")
    if tp is None:
        return None
    cut = _registry_cut(engine, tp, until)
    is_registry = ("registered_model", "model_version")
    if name is None:
        def load_all(start: int) -> list[Located]:
            found = read_prefix(log, tp, until) if start == 0 else list(read_range(log, tp, start, cut - 1, None, until))
            return [x for x in found if start <= x.offset < cut and x.event.type.partition(".")[0] in is_registry]

        return Prefix((REGISTRY,), cut, load_all)
    names = _names_joined_by_renames(engine, log, name)

    def load(start: int) -> list[Located]:
        from eventflow.views.tables import entity_events as ix

        with engine.connect() as c:
            rows = c.execute(
                select(ix.c.topic, ix.c.partition, ix.c.offset).where(
                    ix.c.entity_type == index.MODEL, ix.c.entity.in_(sorted(names)), ix.c.topic == tp.topic,
                    ix.c.partition == tp.partition, ix.c.offset >= start, ix.c.offset < cut)
            ).all()
        found = read_positions(log, sorted({tuple(r) for r in rows}))
        return [x for x in found if x.event.type.partition(".")[0] in is_registry]

    return Prefix((REGISTRY, tuple(sorted(names))), cut, load)


def _run_events(engine: Engine, log: Log, run_id: str, until: int) -> list[Located]:
    from eventflow.views.tables import entity_events as ix

    with engine.connect() as c:
        rows = c.execute(
            select(ix.c.topic, ix.c.partition, ix.c.offset, ix.c.time)
            .where(ix.c.entity_type == index.RUN, ix.c.entity == run_id).order_by(ix.c.topic, ix.c.partition, ix.c.offset)
        ).all()
    kept = []
    for r in rows:
        if r.time > until:
            break  # a prefix: the run's events up to the first later one
        kept.append((r.topic, r.partition, r.offset))
    return read_positions(log, kept)


def _experiment_events(log: Log, until: int) -> list[Located]:
    tp = partition_of(log, "experiment")
    return read_prefix(log, tp, until) if tp is not None else []


@dataclass
class Fold:
    """A scratch in-memory database holding what the projector made of ``count`` events."""

    engine: Engine
    count: int


def _scratch() -> Engine:
    from eventflow.views.db import open_views

    # A named in-memory database shared by the pool's connections: the fold, and reads from
    # any thread (a cached fold serves later requests), see one database. It lives as long
    # as the engine holds a connection (the pool keeps them).
    return open_views(f"sqlite:///file:asof-{uuid.uuid4().hex}?mode=memory&cache=shared&uri=true")


def copy(engine: Engine) -> Engine:
    """A new scratch database with everything in ``engine`` (SQLite's backup: a page copy,
    milliseconds for a fold of thousands of events)."""
    target = _scratch()
    with engine.connect() as source, target.connect() as into:
        source.connection.driver_connection.backup(into.connection.driver_connection)
    return target


def fold(located: list[Located], onto: Fold | None = None) -> Fold:
    """What the projector makes of these events: in a new scratch database, or continuing
    a copy of the fold ``onto`` (whose events must come before these on the log)."""
    from eventflow.consumers.base import Delivery
    from eventflow.consumers.projector import Projector

    engine = _scratch() if onto is None else copy(onto.engine)
    first = 0 if onto is None else onto.count
    if not located:
        return Fold(engine, first)
    deliveries = []
    for n, item in enumerate(located, start=first):
        # The fold's own positions (one partition, in the given order): its fence starts at
        # zero and goes on from where a continued fold stopped.
        record = Record("eventflow.asof", 0, n, None, b"", item.event.time)
        deliveries.append(Delivery(item.event, record))
    Projector(engine, name="asof").apply(deliveries, {TopicPartition("eventflow.asof", 0): (first, first + len(located))})
    return Fold(engine, first + len(located))


class Snapshot:
    """A backend (``read``, ``write``, ``artifacts``) over a folded past: reads answer as the
    views did then; writes are refused (the past is not edited)."""

    def __init__(self, engine: Engine, artifacts: Path, as_of: int):
        self.engine = engine
        self.artifacts = artifacts
        self.as_of = as_of

    def read(self, query: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        with self.engine.connect() as connection:
            return query(connection, *args, **kwargs)

    def write(self, events: Any, **_: Any) -> Any:
        raise InvalidInput("as_of reads the state of a past moment; it cannot be given to a write")


# Folded pasts, by which events (a Prefix's key) and up to which cut: a dashboard's time
# control asks the same moment many times, and a later moment continues the latest fold
# before it. Small: each is an in-memory database.
_CACHE: "OrderedDict[tuple[Any, ...], Fold]" = OrderedDict()
_CACHE_SIZE = 8
_cache_lock = threading.Lock()


def _folded(prefix: Prefix, keep: bool) -> Fold:
    """The fold of ``prefix``: cached, or continued from the latest cached fold of the same
    events before its cut, or folded from the start. ``keep``: cache it (a moment too
    recent may still gain events, and is not kept)."""
    with _cache_lock:
        exact = _CACHE.get((prefix.key, prefix.cut))
        if exact is not None:
            _CACHE.move_to_end((prefix.key, prefix.cut))
            return exact
        earlier = [(cut, f) for (key, cut), f in _CACHE.items() if key == prefix.key and cut < prefix.cut]
    start, onto = max(earlier, key=lambda item: item[0]) if earlier else (0, None)
    folded = fold(prefix.load(start), onto)
    if keep:
        with _cache_lock:
            _CACHE[(prefix.key, prefix.cut)] = folded
            while len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)[1].engine.dispose()
    return folded


def _with_rights_of_now(engine: Engine, live: Engine) -> Engine:
    """The live views' users, tokens and permissions put into a scratch fold: searches
    show what the reader may READ now (rights are checked today, for a past state)."""
    from eventflow.auth.tables import permissions, tokens, users

    with live.connect() as source, engine.begin() as into:
        for table in (users, tokens, permissions):
            into.execute(table.delete())
            rows = [dict(r) for r in source.execute(select(table)).mappings()]
            if rows:
                into.execute(table.insert(), rows)
    return engine


def snapshot(backend: Any, scope: str, as_of: int, *, entity: str | None = None) -> Snapshot:
    """Fold what ``scope`` needs up to ``as_of`` from the backend's log."""
    from eventflow.auth import context as access

    log: Log = backend.log
    if scope == REGISTRY:
        prefix = _registry_events(backend.engine, log, as_of, entity)
        if prefix is None:
            prefix = Prefix((REGISTRY, None), 0, lambda start: [])
        folded = _folded(prefix, keep=as_of <= now_ms() - FUTURE_MARGIN)
        if access.current() is None:
            return Snapshot(folded.engine, backend.artifacts, as_of)
        # the cached fold stays as it was: the rights go into a copy
        return Snapshot(_with_rights_of_now(copy(folded.engine), backend.engine), backend.artifacts, as_of)
    if scope == RUN:
        located = _run_events(backend.engine, log, str(entity), as_of)
    elif scope == EXPERIMENT:
        located = _experiment_events(log, as_of)
    else:
        raise ValueError(f"unknown as_of scope {scope!r}")
    engine = fold(located).engine
    if access.current() is not None:
        _with_rights_of_now(engine, backend.engine)
    return Snapshot(engine, backend.artifacts, as_of)


def moment(data: dict[str, Any]) -> int | None:
    """The request's ``as_of`` in ms, or None (for reads that filter events themselves)."""
    value = data.get(FIELD)
    return None if value in (None, "") else parse_time(value)


def backend(backend: Any, data: dict[str, Any], scope: str, *, entity_field: str | None = None) -> Any:
    """The backend a read handler should use: its own, or — with ``as_of`` in the request —
    a snapshot of that moment. (A backend without a log, the SDK's local store, refuses.)"""
    value = data.get(FIELD)
    if value in (None, ""):
        return backend
    as_of = parse_time(value)
    if not hasattr(backend, "log"):
        raise InvalidInput("as_of needs a server (or a home directory) whose log can be read")
    entity = None
    if entity_field is not None:
        entity = data.get(entity_field) or data.get("run_uuid")
        if not entity:
            raise InvalidInput(f"Missing value for required parameter '{entity_field}'.")
    return snapshot(backend, scope, min(as_of, now_ms()), entity=entity)
