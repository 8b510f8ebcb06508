"""Idempotent requests: a retried request makes the same ids, so it takes effect once.

A client that got no answer (a 503 while the event was in fact appended, a connection
cut) retries, and MLflow's client does so by itself, up to seven times. Were every try
a new event with new ids, a retried ``runs/create`` would make two runs. So within a
request that has an idempotency key, every id it makes — event ids, a new run's or
experiment's id — is derived from the key, in the order the request makes them: the
retry appends the same events, the projector skips an event id it has applied, and the
retry is answered with what became of the first copy.

The key is the ``Idempotency-Key`` header when the client sends one. For the creations
the MLflow client retries by itself, it is derived from the request (who, which
endpoint, the body) where the body tells one intent from another: a run's creation
carries its client-side start time; an experiment or a registered model is named by a
name that is unique anyway. Other writes need no key: logging a param again with its
value, setting a tag to the value it has and a metric point already stored (its
identity is run, key, step, timestamp and value) change nothing.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import Counter
from contextvars import ContextVar
from typing import Any

HEADER = "Idempotency-Key"
MAX_KEY = 255

# The MLflow endpoints whose retries are recognised without a header (see above).
_DERIVED = {"experiments/create", "registered-models/create", "runs/create"}


class _Request:
    def __init__(self, key: str):
        self.key = key
        self.made: Counter[str] = Counter()

    def derive(self, kind: str) -> str:
        n = self.made[kind]
        self.made[kind] += 1
        return hashlib.sha256(f"{self.key}\0{kind}\0{n}".encode()).hexdigest()


_CURRENT: ContextVar[_Request | None] = ContextVar("eventflow_idempotency", default=None)


def begin(key: str | None) -> None:
    """Make the rest of this context (one request) derive its ids from ``key`` (None: random)."""
    _CURRENT.set(_Request(key) if key else None)


def active() -> bool:
    return _CURRENT.get() is not None


def key_for(route: str, actor: str, data: dict[str, Any], header: str | None) -> str | None:
    """The request's idempotency key: the client's header, or one derived from the request
    for the creations listed above, or None."""
    if header is not None:
        if not header or len(header) > MAX_KEY:
            from eventflow.validation import InvalidInput

            raise InvalidInput(f"Invalid {HEADER} header: 1 to {MAX_KEY} characters that name one request")
        return f"client\0{actor}\0{header}"
    if route not in _DERIVED or (route == "runs/create" and data.get("start_time") in (None, "")):
        return None
    return f"derived\0{actor}\0{route}\0{json.dumps(data, sort_keys=True, default=str)}"


def _derived(kind: str) -> str | None:
    request = _CURRENT.get()
    return None if request is None else request.derive(kind)


def new_event_id() -> str:
    derived = _derived("event")
    return str(uuid.UUID(derived[:32])) if derived else str(uuid.uuid4())


def new_run_id() -> str:
    return _derived("run")[:32] if active() else uuid.uuid4().hex  # type: ignore[index]


def new_experiment_id() -> str:
    """MLflow's experiment ids are decimal numbers (up to 2**53, safe in JavaScript)."""
    derived = _derived("experiment")
    number = int(derived[:16], 16) if derived else int.from_bytes(uuid.uuid4().bytes[:8], "big")
    return str(number % (2**53 - 1) + 1)
