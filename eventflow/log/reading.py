"""Read a log through to the ends it had when reading started: what export, import, seal
and verify share (each reads whole partitions, in offset order, while others may append)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from eventflow.log.base import Log, Record, TopicPartition


def snapshot_ends(log: Log, topics: Sequence[str]) -> dict[TopicPartition, int]:
    """Every partition of ``topics`` with the offset its next record will get, now."""
    return {TopicPartition(topic, p): end for topic in topics for p, end in log.end_offsets(topic).items()}


def read_through(
    log: Log,
    topics: Sequence[str],
    *,
    ends: dict[TopicPartition, int] | None = None,
    starts: dict[TopicPartition, int] | None = None,
    since_ms: int | None = None,
    on_step: Callable[[int], None] | None = None,
    batch: int = 10_000,
) -> Iterator[Record]:
    """Every record of ``topics`` below ``ends`` (default: the ends now), each partition in
    offset order (partitions interleaved). ``starts`` gives a partition's first offset,
    ``since_ms`` skips to the first record appended at or after that time. Records appended
    meanwhile are left for the next reader, so the result is one consistent cut."""
    topics = [t for t in topics if t in set(log.topics())]
    if not topics:
        return
    ends = snapshot_ends(log, topics) if ends is None else ends
    with log.consumer(list(topics)) as consumer:
        if since_ms is not None:
            consumer.seek_to_time(since_ms)
        for tp, offset in (starts or {}).items():
            if tp in consumer.assignment():
                consumer.seek(tp, max(offset, consumer.position(tp) if since_ms is not None else offset))

        def pending() -> bool:
            return any(consumer.position(tp) < end for tp, end in ends.items() if tp in consumer.assignment())

        while pending():
            records = consumer.poll(timeout=0.5, max_records=batch)
            kept = [r for r in records if r.offset < ends.get(r.tp, 0)]
            yield from kept
            if on_step is not None and records:
                on_step(len(kept))
