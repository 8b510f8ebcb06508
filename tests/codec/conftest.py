"""Shared helpers for the codec tests: the registry and sample events built from schemas."""

from __future__ import annotations

import random
import uuid

import pytest
from fastavro.utils import generate_many

from eventflow.codec import Schema, registry
from eventflow.events import Event


def _samples(schema: Schema, count: int, seed: int) -> list[dict]:
    """``count`` random records fitting ``schema`` (deterministic for a seed)."""
    state = random.getstate()
    try:
        random.seed(seed)
        return list(generate_many(schema.wire, count))
    finally:
        random.setstate(state)


def _events(schema: Schema, count: int = 6, seed: int = 1) -> list[Event]:
    """Valid events of ``schema``'s type whose payloads are generated from the schema."""
    events = []
    rng = random.Random(seed)
    for i, rec in enumerate(_samples(schema, count, seed)):
        events.append(
            Event(
                schema.event_type,
                rec["payload"],
                event_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                time=rec["time"],
                actor=rec["actor"],
                source=rec["source"],
                correlation_id=rec["correlation_id"],
                causation_id=rec["causation_id"] if i % 2 else None,
            )
        )
    return events


@pytest.fixture(scope="session")
def reg():
    return registry()


@pytest.fixture(scope="session")
def sample_records():
    return _samples


@pytest.fixture(scope="session")
def sample_events():
    return _events
