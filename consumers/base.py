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
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from eventflow.codec import CodecError, decode
from eventflow.consumers.dead_letters import DeadLetterBox, dead_letter
from eventflow.events import LIFECYCLE_TOPICS, Event
from eventflow.log.base import Consumer, Log, Record, TopicPartition

logger = logging.getLogger(__name__)

# How often an idle loop whose subscriber keeps its offsets checks they did not go back
# (one small query per consumer each time).
STORED_RECHECK = 1.0


class StalePosition(Exception):
    """Another instance applied these offsets first: re-read from the stored offsets."""


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
    # True when stored_offsets reads a database that a crash can take back to an earlier
    # state (the views: see ConsumerLoop._check_stored); False for offsets held in memory.
    offsets_may_go_back: bool = False

    @abc.abstractmethod
    def apply(self, deliveries: list[Delivery], spans: dict[TopicPartition, tuple[int, int]]) -> list[tuple[Delivery, str]] | None:
        """Apply a batch. ``spans`` give, per partition, the first offset of the batch and
        the next offset after it (poison records included), for subscribers that store
        their own offsets and fence them (start must be what they stored).

        Returns the deliveries it could not apply, each with the reason: the loop sends
        them to the dead-letter topic. Raise instead for a failure that is not the
        event's fault (a database down): the batch is then not recorded and is retried.
        """

    def stored_offsets(self, tps: set[TopicPartition]) -> dict[TopicPartition, int]:
        """Where to resume these partitions (absent: from the beginning); only called
        when ``keeps_offsets`` is true."""
        return {}

    def patience(self, linger: float) -> float:
        """How long its records may wait now (``Log.consumer``'s patience), asked before
        every read: by default the loop's ``linger``."""
        return linger


__all__ = ["ConsumerLoop", "Delivery", "StalePosition", "Subscriber", "dead_letter"]


class ConsumerLoop:
    """Runs a subscriber against a log until stopped."""

    def __init__(
        self,
        log: Log,
        subscriber: Subscriber,
        *,
        join_group: bool = True,
        max_batch: int = 2000,
        poll_timeout: float = 0.5,
        linger: float = 0.0,
    ):
        """``join_group=False`` reads every partition alone: for a subscriber that keeps
        its own offsets and may run beside the group (a process catching up its views).

        ``linger``: the consumer's ``patience`` (``Log.consumer``): records are gathered
        for up to this long (up to ``max_batch``) before they are applied. Under a
        stream of small appends, a subscriber whose batch costs a transaction then writes
        a few large batches instead of one per append, and on Kafka it is not woken per
        append at all; it suits a subscriber nobody waits on (the webhook dispatcher,
        alerts, the watchdog, the scheduler), not the projector, whose every batch a
        writer is waiting for."""
        if not join_group and not subscriber.keeps_offsets:
            raise ValueError("only a subscriber that keeps its own offsets can read outside its group")
        self.log = log
        self.subscriber = subscriber
        self.join_group = join_group
        self.max_batch = max_batch
        self.poll_timeout = poll_timeout
        self.linger = linger
        self.dead_letters = 0  # records this loop skipped (dead-lettered by it or before it)
        self._next_check = 0.0  # when idle, when to look at the stored offsets next
        self._patience = subscriber.patience(linger)  # the consumer's, as last set
        self._box = DeadLetterBox(log, subscriber.group)
        self._consumer: Consumer | None = None

    @property
    def consumer(self) -> Consumer:
        if self._consumer is None:
            topics = list(self.subscriber.topics)
            if self.join_group:
                self._consumer = self.log.consumer(topics, self.subscriber.group, on_assign=self._resume, patience=self._patience)
            else:
                # Alone, every partition is assigned at once, before a callback could
                # reach this consumer: resume here instead.
                self._consumer = self.log.consumer(topics, patience=self._patience)
                self._resume(self._consumer.assignment())
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
        if (patience := self.subscriber.patience(self.linger)) != self._patience:
            self.consumer.set_patience(patience)
            self._patience = patience
        records = self.consumer.poll(self.poll_timeout if timeout is None else timeout, self.max_batch)
        if not records:
            self._check_stored()
            return 0
        deliveries: list[Delivery] = []
        poison: list[tuple[Record, str]] = []
        spans: dict[TopicPartition, tuple[int, int]] = {}
        for record in records:
            spans[record.tp] = (spans.get(record.tp, (record.offset, 0))[0], record.offset + 1)
            if record.error is not None:  # the log could not read it (damaged, gone)
                poison.append((record, record.error))
                continue
            try:
                deliveries.append(Delivery(decode(record.value), record))
            except CodecError as error:
                poison.append((record, str(error)))
        # Before the offsets move past them, so a crash never loses a poison record.
        self._dead_letter(poison)
        try:
            rejected = self.subscriber.apply(deliveries, spans) or []
        except StalePosition:
            # Someone else (another instance, a process catching up) got there first;
            # nothing of this batch was written. Go back to what the store says.
            self._resume(self.consumer.assignment())
            return 0
        self._dead_letter([(d.record, reason) for d, reason in rejected])
        if not self.subscriber.keeps_offsets:
            self.consumer.commit({tp: end for tp, (_, end) in spans.items()})
        return len(records)

    def _check_stored(self) -> None:
        """While idle, now and then: have the subscriber's stored offsets gone back?

        A crash of the views database can lose its last commits (PostgreSQL's
        ``synchronous_commit=off``; SQLite's ``synchronous=NORMAL`` on a machine crash),
        offsets with them. The fence notices at the next batch, but with nothing new to
        read there is none, and what the log still holds stays missing from the views.
        Seek back to what the store says instead."""
        if not self.subscriber.offsets_may_go_back or time.monotonic() < self._next_check:
            return
        self._next_check = time.monotonic() + STORED_RECHECK
        assigned = self.consumer.assignment()
        stored = self.subscriber.stored_offsets(assigned)
        for tp in sorted(assigned):
            if (back := stored.get(tp, 0)) < self.consumer.position(tp):
                logger.warning("%s: the stored offset of %s[%d] went back to %d: applying again from there",
                               self.subscriber.group, tp.topic, tp.partition, back)
                self.consumer.seek(tp, back)

    def _dead_letter(self, poison: list[tuple[Record, str]]) -> None:
        for record, reason in poison:
            logger.warning("dead-lettering %s[%d]@%d: %s", record.topic, record.partition, record.offset, reason)
        self._box.send(poison)
        self.dead_letters += len(poison)

    def catch_up(self, timeout: float = 60.0, on_step: Callable[[int], object] | None = None) -> None:
        """Step until every partition is read up to where the log ended when called;
        ``on_step`` hears how many records each step handled (for progress bars)."""
        consumer = self.consumer  # first: opening it creates missing topics
        ends = {
            TopicPartition(topic, partition): end
            for topic in self.subscriber.topics
            for partition, end in self.log.end_offsets(topic).items()
        }
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < end for tp, end in ends.items() if tp in consumer.assignment()) or not consumer.assignment():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.subscriber.group} did not catch up with the log within {timeout} s")
            handled = self.step(timeout=0.05)
            if on_step is not None and handled:
                on_step(handled)

    def run(self, stop: threading.Event) -> None:
        """Step until ``stop`` is set, then leave the group cleanly."""
        try:
            while not stop.is_set():
                self.step()
        finally:
            self.close()

    def close(self) -> None:
        self._box.close()
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
