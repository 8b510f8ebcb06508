"""Reading chosen events back from the log: by position (from the index), or a
partition's prefix up to a moment (for the folds of ``asof``)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from eventflow.codec import CodecError, decode
from eventflow.events import Event
from eventflow.log import Log, LogError, TopicPartition

# Positions closer than this are read through in one stretch (the records between are
# skipped unread by the caller) rather than with a seek each: a seek on Kafka is a fetch.
GAP = 256
POLL = 2000
READ_TIMEOUT = 120.0  # for the records a read knows are there (below the end offset)


@dataclass(frozen=True)
class Located:
    """An event and where it is on the log."""

    event: Event
    topic: str
    partition: int
    offset: int

    @property
    def position(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


def _stretches(offsets: list[int]) -> Iterator[tuple[int, int]]:
    """(first, last) of runs of sorted offsets no more than GAP apart."""
    start = previous = offsets[0]
    for offset in offsets[1:]:
        if offset - previous > GAP:
            yield start, previous
            start = offset
        previous = offset
    yield start, previous


def read_range(log: Log, tp: TopicPartition, first: int, last: int, wanted: set[int] | None,
                until_time: int | None = None) -> Iterator[Located]:
    """The records of one partition from ``first`` to ``last`` (those in ``wanted``), or
    until the first event later than ``until_time``."""
    with log.consumer([tp.topic]) as consumer:
        ends = log.end_offsets(tp.topic)
        for other in consumer.assignment():
            consumer.seek(other, ends[other.partition] if other != tp else first)
        last = min(last, ends[tp.partition] - 1)
        deadline = time.monotonic() + READ_TIMEOUT
        while consumer.position(tp) <= last:
            records = consumer.poll(timeout=1.0, max_records=POLL)
            if not records:
                # an empty poll is not the end (a loaded machine, a Kafka fetch): the end offset is
                if time.monotonic() > deadline:
                    raise LogError(f"{tp.topic}[{tp.partition}]: offsets up to {last} were not readable within {READ_TIMEOUT:.0f} s")
                continue
            deadline = time.monotonic() + READ_TIMEOUT
            for record in records:
                if record.partition != tp.partition or record.offset > last:
                    continue
                if wanted is not None and record.offset not in wanted:
                    continue
                if record.error:
                    continue  # unreadable: the dead-letter topic and /events say so
                try:
                    event = decode(record.value)
                except CodecError:
                    continue
                if until_time is not None and event.time > until_time:
                    return
                yield Located(event, record.topic, record.partition, record.offset)


def read_positions(log: Log, positions: Iterable[tuple[str, int, int]]) -> list[Located]:
    """The events at these (topic, partition, offset) positions, each partition in order."""
    by_partition: dict[TopicPartition, set[int]] = {}
    for topic, partition, offset in positions:
        by_partition.setdefault(TopicPartition(topic, partition), set()).add(offset)
    out: list[Located] = []
    for tp, offsets in sorted(by_partition.items()):
        for first, last in _stretches(sorted(offsets)):
            out.extend(read_range(log, tp, first, last, offsets))
    return out


def read_prefix(log: Log, tp: TopicPartition, until_time: int) -> list[Located]:
    """A partition's events from its start up to (not past) the first one later than
    ``until_time``: a prefix of the log, so a state it really passed through."""
    if tp.topic not in log.topics():
        return []
    return list(read_range(log, tp, 0, 2**62, None, until_time))
