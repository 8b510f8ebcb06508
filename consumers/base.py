"""The shape every consumer shares: decode → apply → record the offset.

A consumer is a ``Subscriber`` (what it does with events) driven by a ``ConsumerLoop``
(reading, decoding, dead-lettering, recording offsets). The loop is the same for the
projector, the webhook dispatcher and the deployer; only ``apply`` differs.

Where the offset is recorded decides the guarantee: a subscriber that writes its
effects and its offsets in one transaction (the projector) is exactly-once in effect and
resumes from its own store; the others commit to the log's consumer group after
applying, which is at-least-once.
"""

from __future__ import annotations

import abc
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from eventflow.codec import CodecError, decode
from eventflow.events import DEAD_LETTER_TOPIC, LIFECYCLE_TOPICS, Event
from eventflow.log.base import Consumer, Log, Message, Record, TopicPartition

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivery:
    """A decoded event and the record it came from (its partition and offset)."""

    event: Event
    record: Record


class Subscriber(abc.ABC):
    """What a consumer does with events. Subclasses set ``group`` and implement ``apply``."""

    group: str
    topics: Sequence[str] = LIFECYCLE_TOPICS
    # True when apply() stores the offsets with its effects (then stored_offsets says
    # where to resume); False when the loop commits to the log's consumer group.
    keeps_offsets: bool = False

    @abc.abstractmethod
    def apply(self, deliveries: list[Delivery], offsets: dict[TopicPartition, int]) -> list[tuple[Delivery, str]] | None:
        """Apply a batch. ``offsets`` are the next offsets once this batch is done
        (poison records skipped included), for subscribers that store their own.

        Returns the deliveries it could not apply, each with the reason: the loop sends
        them to the dead-letter topic. Raise instead for a failure that is not the
        event's fault (a database down): the batch is then not recorded and is retried.
        """

    def stored_offsets(self, tps: set[TopicPartition]) -> dict[TopicPartition, int]:
        """Where to resume these partitions (absent: from the beginning); only called
        when ``keeps_offsets`` is true."""
        return {}


def dead_letter(record: Record, reason: str, group: str) -> Message:
    """A dead-letter record: the original bytes, with why and where they failed."""
    headers = tuple(record.headers) + (
        ("dead_letter.reason", reason.encode()),
        ("dead_letter.topic", record.topic.encode()),
        ("dead_letter.partition", str(record.partition).encode()),
        ("dead_letter.offset", str(record.offset).encode()),
        ("dead_letter.group", group.encode()),
    )
    return Message(DEAD_LETTER_TOPIC, record.key, record.value, headers)


class ConsumerLoop:
    """Runs a subscriber against a log until stopped."""

    def __init__(self, log: Log, subscriber: Subscriber, *, max_batch: int = 2000, poll_timeout: float = 0.5):
        self.log = log
        self.subscriber = subscriber
        self.max_batch = max_batch
        self.poll_timeout = poll_timeout
        self.dead_letters = 0
        self._consumer: Consumer | None = None

    @property
    def consumer(self) -> Consumer:
        if self._consumer is None:
            self._consumer = self.log.consumer(
                list(self.subscriber.topics), self.subscriber.group, on_assign=self._resume
            )
        return self._consumer

    def _resume(self, assigned: set[TopicPartition]) -> None:
        """On assignment, seek to the subscriber's own offsets, if it keeps them."""
        if not self.subscriber.keeps_offsets:
            return
        assert self._consumer is not None, "rebalance callbacks only run once the consumer exists"
        stored = self.subscriber.stored_offsets(assigned)
        for tp in assigned:
            self._consumer.seek(tp, stored.get(tp, 0))

    def step(self, timeout: float | None = None) -> int:
        """Read one batch, apply it and record its offsets. Returns the records handled."""
        records = self.consumer.poll(self.poll_timeout if timeout is None else timeout, self.max_batch)
        if not records:
            return 0
        deliveries: list[Delivery] = []
        poison: list[Message] = []
        offsets: dict[TopicPartition, int] = {}
        for record in records:
            offsets[record.tp] = record.offset + 1
            try:
                deliveries.append(Delivery(decode(record.value), record))
            except CodecError as error:
                logger.warning("dead-lettering %s[%d]@%d: %s", record.topic, record.partition, record.offset, error)
                poison.append(dead_letter(record, str(error), self.subscriber.group))
        if poison:
            # Before the offsets move past them, so a crash never loses a poison record.
            self.log.append_batch(poison)
            self.dead_letters += len(poison)
        rejected = self.subscriber.apply(deliveries, offsets) or []
        if rejected:
            self.log.append_batch([dead_letter(d.record, reason, self.subscriber.group) for d, reason in rejected])
            self.dead_letters += len(rejected)
        if not self.subscriber.keeps_offsets:
            self.consumer.commit(offsets)
        return len(records)

    def run(self, stop: threading.Event) -> None:
        """Step until ``stop`` is set, then leave the group cleanly."""
        try:
            while not stop.is_set():
                self.step()
        finally:
            self.close()

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
