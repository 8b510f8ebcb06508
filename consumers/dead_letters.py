"""Dead letters once: one dead-letter record per poison record, naming every consumer
that skipped it.

Every consumer group meets the same poison record, and so does every rebuild; each used
to write its own copy. A log cannot change a record once written, and Kafka cannot
append "only if absent", so the writers keep the rule between them, the same way on both
logs and with nothing outside the log:

- the dead-letter topic holds one record per poison position (topic, partition, offset),
  written by the first consumer that meets it. Before writing, a consumer brings its
  index of what the topic holds up to date (the whole topic once, on its first poison
  record, then only what was appended since: dead letters are few) and writes only
  what is missing;
- each consumer that skips a poison record says so once, in a small topic beside it
  (``eventflow.dead-letter.skips``: a few bytes per poison record and consumer), so
  "who skipped it" grows without another copy of the record;
- the look and the append happen under ``Log.guard``: a file lock on the embedded log,
  so exactly once across threads and processes; on Kafka, which has no lock a client
  can take, a lock within the process. Two processes meeting one record within the same
  few milliseconds could then both write it: ``read_dead_letters`` folds such copies (and
  the copies older versions wrote) into one, the first in log order.

The index is not kept in a views database because not every consumer has one (the
deployer), and the dead-letter topics are replayed, exported and verified with the log.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from eventflow.events import DEAD_LETTER_TOPIC
from eventflow.log.base import Consumer, Log, LogError, Message, Position, Record, TopicPartition

SKIPS_TOPIC = DEAD_LETTER_TOPIC + ".skips"
GUARD = "dead-letters"

Where = tuple[str, int, int]  # the poison record's topic, partition and offset


def dead_letter(record: Record, reason: str, group: str) -> Message:
    """A dead-letter record: the original bytes, with why and where they failed, and the
    consumer that wrote it (the first to meet it)."""
    return Message(DEAD_LETTER_TOPIC, record.key, record.value, tuple(record.headers) + _about(record, reason) + (
        ("dead_letter.group", group.encode()),
    ))


def skip_note(record: Record, reason: str, consumer: str) -> Message:
    """A consumer's note that it skipped a poison record (keyed by its position)."""
    key = f"{record.topic}/{record.partition}/{record.offset}".encode()
    return Message(SKIPS_TOPIC, key, consumer.encode(), _about(record, reason) + (("dead_letter.consumer", consumer.encode()),))


def _about(record: Record, reason: str) -> tuple[tuple[str, bytes], ...]:
    return (
        ("dead_letter.reason", reason.encode()),
        ("dead_letter.topic", record.topic.encode()),
        ("dead_letter.partition", str(record.partition).encode()),
        ("dead_letter.offset", str(record.offset).encode()),
    )


@dataclass(frozen=True)
class DeadLetter:
    """A poison record as the dead-letter topics tell it."""

    topic: str
    partition: int
    offset: int
    reason: str
    group: str  # the consumer that wrote the dead letter
    consumers: tuple[str, ...]  # every consumer that skipped it, sorted
    at: Position  # where the dead letter itself is


class _Index:
    """What the dead-letter topics hold, read incrementally with one group-less consumer."""

    def __init__(self, log: Log):
        self.log = log
        self.letters: dict[Where, tuple[Record, str, str]] = {}  # first copy: record, reason, writer
        self.skips: dict[Where, set[str]] = {}
        self._consumer: Consumer | None = None

    def refresh(self, timeout: float = 60.0) -> None:
        """Read whatever was appended to both topics since the last refresh."""
        if self._consumer is None:
            self._consumer = self.log.consumer([DEAD_LETTER_TOPIC, SKIPS_TOPIC])
        ends = {
            TopicPartition(topic, partition): end
            for topic in (DEAD_LETTER_TOPIC, SKIPS_TOPIC)
            for partition, end in self.log.end_offsets(topic).items()
        }
        deadline = time.monotonic() + timeout
        while any(self._consumer.position(tp) < end for tp, end in ends.items()):
            if time.monotonic() > deadline:
                raise LogError(f"the dead-letter topics were not read to their end within {timeout:.0f} s")
            for record in self._consumer.poll(timeout=0.5, max_records=10_000):
                self._add(record)

    def _add(self, record: Record) -> None:
        try:
            where = (
                record.header("dead_letter.topic").decode(),  # type: ignore[union-attr]
                int(record.header("dead_letter.partition")),  # type: ignore[arg-type]
                int(record.header("dead_letter.offset")),  # type: ignore[arg-type]
            )
            reason = (record.header("dead_letter.reason") or b"").decode(errors="replace")
            if record.topic == DEAD_LETTER_TOPIC:
                writer = (record.header("dead_letter.group") or b"?").decode(errors="replace")
                self.letters.setdefault(where, (record, reason, writer))
                self.skips.setdefault(where, set()).add(writer)
            else:
                self.skips.setdefault(where, set()).add(record.header("dead_letter.consumer").decode())  # type: ignore[union-attr]
        except (AttributeError, TypeError, ValueError):
            return  # not one of ours, or itself damaged: nothing to index

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


class DeadLetterBox:
    """Where a consumer sends the records it skips: each is dead-lettered once, and the
    consumer noted once among those that skipped it."""

    def __init__(self, log: Log, consumer: str):
        self.log = log
        self.consumer = consumer
        self._index = _Index(log)

    def send(self, poison: Sequence[tuple[Record, str]]) -> None:
        """Dead-letter what is not yet, note this consumer where it is not yet; returns
        once all of it is durable (before the caller moves its offsets past them)."""
        if not poison:
            return
        with self.log.guard(GUARD):
            self._index.refresh()
            messages: list[Message] = []
            lettered: set[Where] = set()
            for record, reason in poison:
                where = (record.topic, record.partition, record.offset)
                if where not in self._index.letters and where not in lettered:
                    messages.append(dead_letter(record, reason, self.consumer))
                    lettered.add(where)
                skipped = self._index.skips.setdefault(where, set())
                if self.consumer not in skipped:
                    messages.append(skip_note(record, reason, self.consumer))
                    skipped.add(self.consumer)
            try:
                self.log.append_batch(messages)
            except BaseException:
                for record, _ in poison:  # not written: look again next time
                    self._index.skips.get((record.topic, record.partition, record.offset), set()).discard(self.consumer)
                raise

    def close(self) -> None:
        self._index.close()


def read_dead_letters(log: Log) -> list[DeadLetter]:
    """Every poison record once, in the order of the dead-letter topic's partitions."""
    if DEAD_LETTER_TOPIC not in log.topics():
        return []
    index = _Index(log)
    try:
        index.refresh()
    finally:
        index.close()
    return [
        DeadLetter(*where, reason, writer, tuple(sorted(index.skips[where])), Position(record.topic, record.partition, record.offset))
        for where, (record, reason, writer) in sorted(index.letters.items(), key=lambda item: (item[1][0].partition, item[1][0].offset))
    ]
