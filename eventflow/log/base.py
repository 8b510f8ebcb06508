"""The log interface: what every implementation (Kafka, embedded) promises.

The semantics are Kafka's, so that code written against this interface behaves the same
on a laptop and on a cluster:

- a topic has a fixed number of partitions; a record's key picks its partition
  (murmur2, as Kafka's default partitioner), so one key's records stay in order;
- an offset is a record's position in its partition, starting at 0, without gaps from
  the reader's point of view;
- ``append`` returns only once the record is durable, with its partition and offset;
- a consumer either joins a named group (the group splits the partitions between its
  members and stores committed offsets) or reads alone (``group=None``);
- a committed offset is the *next* offset to read, as in Kafka;
- a record that cannot be read as it was appended (its checksum fails, its headers do
  not decode, its row is gone) is still handed out, at its position, with ``error``
  saying why and nothing of its content: a reader skips it (the consumer loop
  dead-letters it) and goes on, rather than stopping or trusting damaged bytes.
"""

from __future__ import annotations

import abc
import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

Headers = tuple[tuple[str, bytes], ...]


class TopicPartition(NamedTuple):
    topic: str
    partition: int


@dataclass(frozen=True)
class Message:
    """A record to append."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Headers = ()


@dataclass(frozen=True)
class Position:
    """Where an appended record landed."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class Record:
    """A record read from the log."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp: int  # ms since the epoch, set when appended
    headers: Headers = field(default=())
    # Why this record could not be read, or None. Then key is None, value and headers
    # empty: the damaged bytes never reach a decoder (a flipped bit can still decode).
    error: str | None = None
    # The record's tamper-evidence digest (eventflow.log.chain), where the log stores one
    # with the record itself (the embedded log); None on Kafka, whose chain is in seals.
    chain: bytes | None = None

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)

    def header(self, name: str) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


def unreadable(topic: str, partition: int, offset: int, timestamp: int, reason: str) -> Record:
    """The record handed out in place of one that cannot be read."""
    return Record(topic, partition, offset, None, b"", timestamp, (), reason)


class LogError(Exception):
    """The log could not do what was asked (unreachable, closed, misconfigured)."""


_guard_lock = threading.Lock()
_guards: dict[str, threading.Lock] = {}

# Called with the partitions a consumer gains or loses in a rebalance.
RebalanceCallback = Callable[[set[TopicPartition]], None]


class Consumer(abc.ABC):
    """Reads records from subscribed topics, as a group member or alone."""

    @abc.abstractmethod
    def poll(self, timeout: float = 1.0, max_records: int = 500) -> list[Record]:
        """Records after the current positions, waiting up to ``timeout`` seconds for some."""

    @abc.abstractmethod
    def commit(self, offsets: dict[TopicPartition, int] | None = None) -> None:
        """Store the group's next offsets (default: the current positions)."""

    @abc.abstractmethod
    def committed(self, tp: TopicPartition) -> int | None:
        """The group's committed next offset for a partition, or None."""

    @abc.abstractmethod
    def assignment(self) -> set[TopicPartition]:
        """The partitions this consumer reads now."""

    @abc.abstractmethod
    def position(self, tp: TopicPartition) -> int:
        """The next offset this consumer will read from an assigned partition."""

    @abc.abstractmethod
    def seek(self, tp: TopicPartition, offset: int) -> None:
        """Read an assigned partition from ``offset`` on."""

    @abc.abstractmethod
    def seek_to_beginning(self, tps: Iterable[TopicPartition] | None = None) -> None:
        """Read the given (default: all assigned) partitions from their first record."""

    @abc.abstractmethod
    def seek_to_time(self, timestamp_ms: int, tps: Iterable[TopicPartition] | None = None) -> None:
        """Read from the first record at or after ``timestamp_ms`` (the end if none)."""

    @abc.abstractmethod
    def set_patience(self, seconds: float) -> None:
        """Change the ``patience`` it was opened with (``Log.consumer``), from the next
        read on: a reader whose audience comes and goes (the dashboard feed, patient
        while no page watches) need not reopen."""

    @abc.abstractmethod
    def close(self) -> None:
        """Leave the group (handing partitions to the others) and release resources."""

    def __enter__(self) -> "Consumer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Log(abc.ABC):
    """An append-only, partitioned, replayable log of records."""

    @abc.abstractmethod
    def append(self, topic: str, key: bytes | None, value: bytes, headers: Headers = ()) -> Position:
        """Append one record; returns once it is durable."""

    @abc.abstractmethod
    def append_batch(self, messages: Sequence[Message]) -> list[Position]:
        """Append many records at once; returns once all are durable, in input order."""

    @abc.abstractmethod
    def consumer(
        self,
        topics: Sequence[str],
        group: str | None = None,
        *,
        on_assign: RebalanceCallback | None = None,
        on_revoke: RebalanceCallback | None = None,
        from_beginning: bool = True,
        patience: float = 0.0,
    ) -> Consumer:
        """A consumer of ``topics``.

        With a ``group`` the partitions are shared with the group's other members and the
        consumer starts from the group's committed offsets; without one it reads every
        partition. Where nothing is committed it starts at the beginning, or at the end
        when ``from_beginning`` is false. ``on_revoke`` runs before partitions are handed
        away (commit there), ``on_assign`` after new ones arrive (seek there).

        ``patience`` (seconds): how long a record may wait to be handed over with the
        ones after it. A poll that finds records keeps gathering for up to that long (up
        to its ``max_records``), so a reader nobody waits on wakes once per burst instead
        of once per append; on Kafka the broker does the gathering (``fetch.max.wait.ms``),
        so the reader does not even wake.
        """

    @abc.abstractmethod
    def create_topic(self, topic: str, partitions: int | None = None) -> None:
        """Create a topic if it does not exist (existing topics keep their partitions)."""

    @abc.abstractmethod
    def topics(self) -> list[str]:
        """The names of the existing topics."""

    @abc.abstractmethod
    def partitions(self, topic: str) -> list[int]:
        """The partition numbers of a topic."""

    @abc.abstractmethod
    def end_offsets(self, topic: str) -> dict[int, int]:
        """For each partition, the offset the next appended record will get."""

    @abc.abstractmethod
    def close(self) -> None:
        """Flush and release resources."""

    @contextlib.contextmanager
    def guard(self, name: str) -> Iterator[None]:
        """Hold a named lock around a read-then-append (append only if not yet there).

        Kafka has no lock a client could take, so the default serializes the threads of
        this process only; the embedded log overrides it with a file lock that also
        holds off other processes.
        """
        with _guard_lock:
            lock = _guards.setdefault(name, threading.Lock())
        with lock:
            yield

    def __enter__(self) -> "Log":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
