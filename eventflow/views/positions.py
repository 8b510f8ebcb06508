"""Read your writes: wait until the projector has applied given log positions."""

from __future__ import annotations

import time
from collections.abc import Sequence

from sqlalchemy import Engine, select

from eventflow.log import Position
from eventflow.views.tables import log_positions

PROJECTOR = "projector"


def wait_for(engine: Engine, positions: Sequence[Position], timeout: float, consumer: str = PROJECTOR) -> bool:
    """True once every position is applied (next_offset beyond it), False at the timeout."""
    needed: dict[tuple[str, int], int] = {}
    for p in positions:
        needed[(p.topic, p.partition)] = max(needed.get((p.topic, p.partition), -1), p.offset)
    if not needed:
        return True
    topics = sorted({topic for topic, _ in needed})
    query = select(log_positions.c.topic, log_positions.c.partition, log_positions.c.next_offset).where(
        log_positions.c.consumer == consumer, log_positions.c.topic.in_(topics)
    )
    deadline = time.monotonic() + timeout
    pause = 0.001
    while True:
        with engine.connect() as connection:
            applied = {(t, p): n for t, p, n in connection.execute(query)}
        if all(applied.get(tp, 0) > offset for tp, offset in needed.items()):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, 0.02)
