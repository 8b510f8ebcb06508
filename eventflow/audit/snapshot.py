"""``eventflow views rebuild --until TIME|topic:partition:offset --into URL``: a full
database of the views as they were at one moment, built beside the live ones.

Every lifecycle partition is replayed from offset zero through the projector (the same
code as the live views and ``views rebuild``) up to the moment: for a TIME, each
partition's events up to the first one stamped later; for a position, that partition
up to and including the event there, and the others up to that event's time. Nothing
is appended to the log (refusals stay in the snapshot's ``refused_events``) and the
live views are not opened.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine, inspect

from eventflow.audit.asof import parse_time
from eventflow.audit.reading import POLL, READ_TIMEOUT
from eventflow.codec import CodecError, decode
from eventflow.events import LIFECYCLE_TOPICS
from eventflow.log import Log, LogError, TopicPartition
from eventflow.validation import InvalidInput


@dataclass(frozen=True)
class Moment:
    """Where a snapshot stops: a time, and optionally an exact last position."""

    time: int
    last: tuple[TopicPartition, int] | None = None


def parse_until(log: Log, text: str) -> Moment:
    """``TIME`` (ms or ISO 8601) or ``topic:partition:offset`` (the event there is the last)."""
    parts = text.rsplit(":", 2)
    if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit() and parts[0] in log.topics():
        tp, offset = TopicPartition(parts[0], int(parts[1])), int(parts[2])
        if offset >= log.end_offsets(tp.topic).get(tp.partition, 0):
            raise InvalidInput(f"--until {text}: {tp.topic}[{tp.partition}] has no record at offset {offset}")
        from eventflow.audit.reading import read_positions

        found = read_positions(log, [(tp.topic, tp.partition, offset)])
        if not found:
            raise InvalidInput(f"--until {text}: the record there cannot be read (see eventflow log verify / the dead-letter topic)")
        return Moment(found[0].event.time, (tp, offset))
    try:
        return Moment(parse_time(text, "--until"))
    except InvalidInput:
        raise InvalidInput(f"--until {text!r}: give a time (ms since the epoch or ISO 8601) or TOPIC:PARTITION:OFFSET of an existing topic") from None


def rebuild_until(log: Log, engine: Engine, moment: Moment, on_step: Callable[[int], None] | None = None) -> int:
    """Replay every lifecycle partition into ``engine`` up to ``moment``; the events applied."""
    from eventflow.consumers.base import Delivery
    from eventflow.consumers.projector import Projector

    if inspect(engine).has_table("log_positions"):
        from sqlalchemy import func, select

        from eventflow.views.tables import log_positions

        with engine.connect() as c:
            if c.execute(select(func.count()).select_from(log_positions)).scalar():
                raise InvalidInput("--into must be an empty database: this one already holds views")
    projector = Projector(engine)
    applied = 0
    for topic in [t for t in LIFECYCLE_TOPICS if t in log.topics()]:
        ends = log.end_offsets(topic)
        for partition in sorted(ends):
            tp = TopicPartition(topic, partition)
            last = ends[partition] - 1
            if moment.last is not None and moment.last[0] == tp:
                last = moment.last[1]
            applied += _replay_partition(log, projector, tp, last, moment, Delivery, on_step)
    return applied


def _replay_partition(log: Log, projector, tp: TopicPartition, last: int, moment: Moment, delivery, on_step) -> int:  # type: ignore[no-untyped-def]
    exact = moment.last is not None and moment.last[0] == tp
    applied, start = 0, 0
    with log.consumer([tp.topic]) as consumer:
        ends = log.end_offsets(tp.topic)
        for other in consumer.assignment():
            consumer.seek(other, 0 if other == tp else ends[other.partition])
        done = False
        last = min(last, ends[tp.partition] - 1)
        deadline = time.monotonic() + READ_TIMEOUT
        while not done and consumer.position(tp) <= last:
            records = [r for r in consumer.poll(timeout=1.0, max_records=POLL) if r.partition == tp.partition]
            if not records:
                if time.monotonic() > deadline:  # the records are there (below the end offset): say so, not a short snapshot
                    raise LogError(f"{tp.topic}[{tp.partition}]: offsets up to {last} were not readable within {READ_TIMEOUT:.0f} s")
                continue
            deadline = time.monotonic() + READ_TIMEOUT
            batch, end = [], start
            for record in records:
                if record.offset > last:
                    done = True
                    break
                event = None
                if not record.error:
                    try:
                        event = decode(record.value)
                    except CodecError:
                        event = None
                if event is not None and not exact and event.time > moment.time:
                    done = True
                    break
                if event is not None:
                    batch.append(delivery(event, record))
                end = record.offset + 1
            if end > start:
                projector.apply(batch, {tp: (start, end)})
                applied += len(batch)
                if on_step is not None:
                    on_step(end - start)
                start = end
    return applied
