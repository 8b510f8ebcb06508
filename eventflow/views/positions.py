"""Consumers that keep their own offsets: fence and store them, and wait for them.

Read your writes: wait until the projector (or another such consumer) has applied
given log positions."""

from __future__ import annotations

import time
from collections.abc import Sequence

from sqlalchemy import Connection, Engine, insert, select, update

from eventflow.log import Position, TopicPartition
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


def stored_offsets(engine: Engine, consumer: str, tps: set[TopicPartition]) -> dict[TopicPartition, int]:
    """Where a consumer resumes these partitions (absent: from the beginning)."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(log_positions.c.topic, log_positions.c.partition, log_positions.c.next_offset).where(log_positions.c.consumer == consumer)
        )
        stored = {TopicPartition(t, p): n for t, p, n in rows}
    return {tp: stored[tp] for tp in tps if tp in stored}


def advance(connection: Connection, consumer: str, spans: dict[TopicPartition, tuple[int, int]]) -> None:
    """Move each partition's stored offset from the batch's start to its end, or refuse
    with StalePosition when another instance got there first (a fence)."""
    from eventflow.consumers.base import StalePosition

    for tp, (start, end) in spans.items():
        where = (log_positions.c.consumer == consumer, log_positions.c.topic == tp.topic, log_positions.c.partition == tp.partition)
        moved = connection.execute(update(log_positions).where(*where, log_positions.c.next_offset == start).values(next_offset=end))
        if moved.rowcount == 1:
            continue
        stored = connection.execute(select(log_positions.c.next_offset).where(*where)).first()
        if stored is not None:
            raise StalePosition(f"{tp.topic}[{tp.partition}] is at {stored.next_offset}, this batch starts at {start}")
        connection.execute(insert(log_positions).values(consumer=consumer, topic=tp.topic, partition=tp.partition, next_offset=end))
