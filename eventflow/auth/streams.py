"""What a principal may read of the log: the event stream, the live feed, the dashboards.

An event is about an entity, and a reader sees it only if they may READ that entity:
``experiment.*`` by its experiment, ``run.*`` and ``logged_model.*`` by the experiment
their run or model belongs to, ``registered_model.*``, ``model_version.*`` and
``deployment.*`` by the registered model. ``user.*`` and ``token.*`` events are shown to
the user they are about; ``permission.*`` and ``webhook.*`` events, and anything whose
entity cannot be found, only to administrators (a reader is never shown what it cannot
be sure it may see).

Readers decide per event, with a short memory (:data:`RECHECK_SECONDS`): a permission
granted or taken away while a websocket is open applies to what is pushed within that
time, without a query per event.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from eventflow.auth.permissions import LEVELS, Principal, level, readable

Resource = tuple[str, str]  # ("experiment", id) | ("registered_model", name) | ("user", name)
Read = Callable[..., Any]  # Runtime.read: runs a query function on a connection

# How long a reader trusts a decision before asking the views again.
RECHECK_SECONDS = float(os.environ.get("EVENTFLOW_AUTH_RECHECK_SECONDS", "5"))
_OWNED = {"run": "run_id", "logged_model": "model_id", "token": "token_id"}
_MODEL_FAMILIES = ("registered_model", "model_version", "deployment")


def _owners_query(c: Connection, kind: str, ids: list[str]) -> dict[str, str]:
    from eventflow.auth.tables import tokens
    from eventflow.views.tables import logged_models, runs

    table, key, owner = {
        "run": (runs, runs.c.run_id, runs.c.experiment_id),
        "logged_model": (logged_models, logged_models.c.model_id, logged_models.c.experiment_id),
        "token": (tokens, tokens.c.token_id, tokens.c.username),
    }[kind]
    found: dict[str, str] = {}
    for start in range(0, len(ids), 500):
        found.update(dict(c.execute(select(key, owner).where(key.in_(ids[start : start + 500]))).all()))
    return found


class Owners:
    """Whose a run, a logged model or a token is: their later events name only their own
    id. An owner never changes, so it is remembered (up to ``size`` entries); it is
    learnt from the creating event when that passes by, else asked of the views."""

    def __init__(self, read: Read, size: int = 200_000):
        self._read = read
        self._size = size
        self._known: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def learn(self, event_type: str, payload: dict[str, Any]) -> None:
        owner = {"run.created": "experiment_id", "logged_model.created": "experiment_id", "token.issued": "username"}.get(event_type)
        if owner is not None:
            kind = event_type.partition(".")[0]
            self._put({(kind, str(payload[_OWNED[kind]])): str(payload[owner])})

    def _put(self, found: dict[tuple[str, str], str]) -> None:
        with self._lock:
            if len(self._known) + len(found) > self._size:
                self._known.clear()  # rare; what is forgotten is asked again
            self._known.update(found)

    def resolve(self, wanted: Iterable[tuple[str, str]]) -> None:
        """Ask the views, in one query per kind, for the owners not known yet."""
        by_kind: dict[str, list[str]] = {}
        for kind, entity in set(wanted):
            if (kind, entity) not in self._known:
                by_kind.setdefault(kind, []).append(entity)
        for kind, ids in by_kind.items():
            found = self._read(_owners_query, kind, ids)
            self._put({(kind, entity): owner for entity, owner in found.items()})

    def get(self, kind: str, entity: str) -> str | None:
        return self._known.get((kind, entity))

    def about(self, event_type: str, payload: dict[str, Any]) -> tuple[Resource, ...]:
        """What an event is about (none found: only an administrator sees it)."""
        family = event_type.partition(".")[0]
        if family == "experiment":
            return (("experiment", str(payload["experiment_id"])),)
        if family in ("run", "logged_model"):
            experiment_id = payload.get("experiment_id") or self._owner(family, payload)
            return (("experiment", str(experiment_id)),) if experiment_id is not None else ()
        if family in _MODEL_FAMILIES:
            names = {payload.get("name"), payload.get("new_name")} - {None, ""}
            return tuple(("registered_model", str(name)) for name in sorted(names))
        if family == "user":
            return (("user", str(payload["username"])),)
        if family == "token":
            username = payload.get("username") or self._owner("token", payload)
            return (("user", str(username)),) if username is not None else ()
        return ()  # permission.*, webhook.*: administrators

    def _owner(self, kind: str, payload: dict[str, Any]) -> str | None:
        entity = str(payload[_OWNED[kind]])
        found = self.get(kind, entity)
        if found is None:
            self.resolve([(kind, entity)])
            found = self.get(kind, entity)
        return found

    def needed(self, event_type: str, payload: dict[str, Any]) -> tuple[str, str] | None:
        """The owner an event's ``about`` will look up (to resolve a batch in one query)."""
        kind = event_type.partition(".")[0]
        if kind in _OWNED and event_type not in ("run.created", "logged_model.created", "token.issued"):
            return kind, str(payload[_OWNED[kind]])
        return None

    def about_all(self, events: list[tuple[str, dict[str, Any]]]) -> list[tuple[Resource, ...]]:
        """``about`` of a batch in order, learning from its creations, one query per kind."""
        for event_type, payload in events:
            self.learn(event_type, payload)
        self.resolve(n for n in (self.needed(t, p) for t, p in events) if n is not None and self.get(*n) is None)
        return [self.about(t, p) for t, p in events]


def sees_everything(principal: Principal) -> bool:
    """An administrator reads all of the log (a read-scoped token of one too)."""
    return principal.is_admin and principal.cap >= LEVELS["READ"]


class Sight:
    """What one principal may read, decided per resource and remembered ``ttl`` seconds."""

    def __init__(self, principal: Principal, read: Read, owners: Owners, ttl: float | None = None):
        self.principal = principal
        self.all = sees_everything(principal)
        self._read = read
        self.owners = owners
        self.ttl = RECHECK_SECONDS if ttl is None else ttl
        self._decided: dict[Resource, tuple[bool, float]] = {}

    def prefetch(self, resources: Iterable[Resource]) -> None:
        """Decide many resources at once (one query per type), e.g. for a page of events."""
        if self.all:
            return
        now = time.monotonic()
        by_type: dict[str, set[str]] = {}
        for kind, name in resources:
            hit = self._decided.get((kind, name))
            if kind != "user" and (hit is None or hit[1] < now):
                by_type.setdefault(kind, set()).add(name)
        for kind, names in by_type.items():
            allowed = self._read(readable, self.principal, kind, sorted(names))
            self._decided.update({(kind, name): (name in allowed, now + self.ttl) for name in names})

    def may_read(self, resource: Resource) -> bool:
        if self.all:
            return True
        kind, name = resource
        if kind == "user":
            return name == self.principal.username and self.principal.cap >= LEVELS["READ"]
        now = time.monotonic()
        hit = self._decided.get(resource)
        if hit is None or hit[1] < now:
            hit = (self._read(level, self.principal, kind, name) >= LEVELS["READ"], now + self.ttl)
            self._decided[resource] = hit
        return hit[0]

    def sees(self, about: tuple[Resource, ...]) -> bool:
        """Whether the principal may see an event about ``about`` (any one of them)."""
        return self.all or any(self.may_read(resource) for resource in about)
