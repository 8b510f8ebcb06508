"""Consumers that keep their own offsets: fence and store them, and wait for them.

Read your writes: wait until the projector (or another such consumer) has applied
given log positions.

The database's ``log_positions`` table is the truth, and the only thing a process can
see of a projector running elsewhere. When the projector runs in this process, it also
tells a ``Progress`` the moment it commits, so a waiting request wakes at once instead
of polling the database (polling from many request threads costs the projector the very
CPU and GIL time it needs to get there).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence

from sqlalchemy import Connection, Engine, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from eventflow.log import Position, TopicPartition
from eventflow.views.db import reading
from eventflow.views.tables import log_positions, refused_events

PROJECTOR = "projector"

# How long a waiter trusts this process's projector before it asks the database: the
# partition may have moved to another instance in a rebalance.
_LOCAL_SLICE = 0.05

Needed = dict[tuple[str, int], int]

# A refusal: MLflow's error code and the message.
Refusal = tuple[str, str]

# How many recent refusals this process's projector keeps in memory for its waiters
# (they look right after waking; the database keeps them all).
_KEPT_REFUSALS = 10_000


class Progress:
    """The next offset per partition that this process's projector has committed."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._next: dict[tuple[str, int], int] = {}
        self._refused: OrderedDict[str, Refusal] = OrderedDict()

    def advance(self, ends: Mapping[TopicPartition, int], refused: Mapping[str, Refusal] | None = None) -> None:
        """Called by the projector after its transaction committed, with the events it
        refused in it."""
        with self._changed:
            for tp, end in ends.items():
                key = (tp.topic, tp.partition)
                if end > self._next.get(key, -1):
                    self._next[key] = end
            if refused:
                self._refused.update(refused)
                while len(self._refused) > _KEPT_REFUSALS:
                    self._refused.popitem(last=False)
            self._changed.notify_all()

    def applied_here(self, needed: Needed) -> bool:
        """True when this process's projector applied every needed offset: then it knows
        every refusal among them."""
        with self._changed:
            return all(self._next.get(tp, 0) > offset for tp, offset in needed.items())

    def refusal(self, event_ids: Iterable[str]) -> Refusal | None:
        with self._changed:
            return next((self._refused[i] for i in event_ids if i in self._refused), None)

    def follows(self, needed: Needed) -> bool:
        """True when this process's projector has applied each of these partitions before,
        so it is the one to wake the waiter."""
        return all(tp in self._next for tp in needed)

    def wait(self, needed: Needed, timeout: float) -> bool:
        """True once every needed offset is applied here, False after ``timeout``."""
        with self._changed:
            return self._changed.wait_for(lambda: all(self._next.get(tp, 0) > offset for tp, offset in needed.items()), timeout)


def wait_for(
    engine: Engine,
    positions: Sequence[Position],
    timeout: float,
    consumer: str = PROJECTOR,
    progress: Progress | None = None,
) -> bool:
    """True once every position is applied (next_offset beyond it), False at the timeout."""
    return wait_applied(engine, needed_for(positions), timeout, consumer, progress)


def wait_applied(engine: Engine, needed: Needed, timeout: float, consumer: str = PROJECTOR, progress: Progress | None = None) -> bool:
    """True once every needed offset is applied, False at the timeout."""
    if not needed:
        return True
    deadline = time.monotonic() + timeout
    pause = 0.001
    while True:
        local = progress is not None and progress.follows(needed)
        if local and progress.wait(needed, min(_LOCAL_SLICE, max(0.0, deadline - time.monotonic()))):
            return True
        if _applied(engine, needed, consumer):
            return True
        if time.monotonic() >= deadline:
            return False
        if not local:
            time.sleep(pause)
            pause = min(pause * 2, 0.02)


def needed_for(positions: Sequence[Position]) -> Needed:
    """The offset each partition must pass for all these positions to be applied."""
    needed: Needed = {}
    for p in positions:
        needed[(p.topic, p.partition)] = max(needed.get((p.topic, p.partition), -1), p.offset)
    return needed


def refusal_of(
    engine: Engine, event_ids: Sequence[str], positions: Sequence[Position], progress: Progress | None = None
) -> Refusal | None:
    """Whether the projector refused any of these (applied) events, and why: this
    process's projector knows at once when it applied them; otherwise the database does."""
    if progress is not None and progress.applied_here(needed_for(positions)):
        return progress.refusal(event_ids)
    with reading(engine).connect() as connection:
        row = connection.execute(
            select(refused_events.c.error_code, refused_events.c.message).where(refused_events.c.event_id.in_(list(event_ids))).limit(1)
        ).first()
    return None if row is None else (row.error_code, row.message)


def _applied(engine: Engine, needed: Needed, consumer: str) -> bool:
    topics = sorted({topic for topic, _ in needed})
    query = select(log_positions.c.topic, log_positions.c.partition, log_positions.c.next_offset).where(
        log_positions.c.consumer == consumer, log_positions.c.topic.in_(topics)
    )
    with reading(engine).connect() as connection:
        applied = {(t, p): n for t, p, n in connection.execute(query)}
    return all(applied.get(tp, 0) > offset for tp, offset in needed.items())


def stored_offsets(engine: Engine, consumer: str, tps: set[TopicPartition]) -> dict[TopicPartition, int]:
    """Where a consumer resumes these partitions (absent: from the beginning)."""
    with reading(engine).connect() as connection:
        rows = connection.execute(
            select(log_positions.c.topic, log_positions.c.partition, log_positions.c.next_offset).where(log_positions.c.consumer == consumer)
        )
        stored = {TopicPartition(t, p): n for t, p, n in rows}
    return {tp: stored[tp] for tp in tps if tp in stored}


# Prebuilt: every batch runs it, and building it anew cost more than the round trip.
_MOVE = (
    update(log_positions)
    .where(
        log_positions.c.consumer == bindparam("tp_consumer"),
        log_positions.c.topic == bindparam("tp_topic"),
        log_positions.c.partition == bindparam("tp_partition"),
        log_positions.c.next_offset == bindparam("start"),
    )
    .values(next_offset=bindparam("end"))
)


def advance(connection: Connection, consumer: str, spans: dict[TopicPartition, tuple[int, int]]) -> None:
    """Move each partition's stored offset from the batch's start to its end, or refuse
    with StalePosition when another instance got there first (a fence).

    One UPDATE for all the partitions (an executemany: one round trip); only when it
    moved fewer rows than there are partitions does a SELECT tell a partition seen for
    the first time (inserted now) from one another instance moved (stale)."""
    from eventflow.consumers.base import StalePosition

    if not spans:
        return
    # In one order everywhere, so two instances racing for the same rows cannot deadlock.
    moves = [
        {"tp_consumer": consumer, "tp_topic": tp.topic, "tp_partition": tp.partition, "start": start, "end": end}
        for tp, (start, end) in sorted(spans.items())
    ]
    moved = connection.execute(_MOVE, moves).rowcount
    if moved == len(spans):
        return
    mine = log_positions.c.consumer == consumer
    topics = sorted({tp.topic for tp in spans})
    stored = {
        TopicPartition(t, p)
        for t, p in connection.execute(select(log_positions.c.topic, log_positions.c.partition).where(mine, log_positions.c.topic.in_(topics)))
    }
    present = [tp for tp in spans if tp in stored]
    if moved < len(present):
        raise StalePosition(f"of {sorted(present)}, only {moved} were where this batch starts: another instance moved them")
    for tp in spans:
        if tp in stored:
            continue
        try:
            connection.execute(insert(log_positions).values(consumer=consumer, topic=tp.topic, partition=tp.partition, next_offset=spans[tp][1]))
        except IntegrityError as error:
            # Two instances both found no row and both inserted: the other one won the
            # race; this transaction is rolled back by the caller, like any stale batch.
            raise StalePosition(f"{tp.topic}[{tp.partition}] was first stored by another instance") from error
