"""Tamper evidence: a SHA-256 digest per record, chained to the previous one of its partition.

``link(previous, ...)`` covers where the record is (topic, partition, offset), when it was
appended (its log timestamp), and everything it holds (key, value, every header), each
part length-prefixed. Changing, inserting, removing or reordering a record changes its
digest and so every digest after it: a reader who knows one digest of a partition (the
last one in an export's manifest, a seal, a copy written down elsewhere) can check every
record before it.

Who computes the chain, and therefore what it proves:

- **Embedded log**: the appender, inside the write transaction that assigns the offset
  (one writer per partition at a time, under SQLite's lock), so every record gets its
  digest the moment it exists. It is stored beside the record (``Record.chain``), not in
  ``headers``, so a consumer reads exactly the headers its producer wrote.
- **Kafka**: many producers append to one partition and none knows the record before its
  own, so no producer can chain. A *sealer* (``eventflow log seal``) reads each partition
  in order after the fact, computes the same chain and appends a *seal* — (topic,
  partition, offset, digest of the record at that offset) — to its own topic
  ``eventflow.chain-seals``. Verification recomputes the chain and compares it with every
  seal; a record changed after it was sealed is found between two seals. Records appended
  since the last seal are not covered yet.

What no chain can do: stop someone who can rewrite the records *and* every digest after
them (the embedded file's owner; a Kafka admin who can rewrite the seal topic too). Against
that, keep an anchor out of their reach — an export's manifest, or seals on another
system — and check against it (``eventflow log verify --export DIR``).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from eventflow.log.base import Headers

#: The "previous digest" of a partition's first record.
GENESIS = bytes(32)

_WHERE = struct.Struct(">qqq")
_LENGTH = struct.Struct(">i")
_NONE = _LENGTH.pack(-1)


def link(
    previous: bytes, topic: str, partition: int, offset: int, timestamp: int, key: bytes | None, value: bytes, headers: Headers
) -> bytes:
    """The digest of one record chained to ``previous`` (the digest of the record before it)."""
    digest = hashlib.sha256(previous)
    digest.update(_WHERE.pack(partition, offset, timestamp))
    parts: list[bytes | None] = [topic.encode(), key, value]
    for name, header in headers:
        parts += (name.encode(), header)
    digest.update(_LENGTH.pack(len(headers)))
    for part in parts:
        if part is None:
            digest.update(_NONE)
        else:
            digest.update(_LENGTH.pack(len(part)))
            digest.update(part)
    return digest.digest()


@dataclass(frozen=True)
class Break:
    """Where a partition's chain stops matching, and how."""

    topic: str
    partition: int
    offset: int  # the first offset that does not match (for a seal: the seal's offset)
    reason: str
    after: int | None = None  # for a seal: the last offset known good (the previous seal)

    @property
    def where(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"

    def __str__(self) -> str:
        span = f" (a record between offsets {self.after + 1} and {self.offset} was changed)" if self.after is not None else ""
        return f"{self.where}: {self.reason}{span}"


@dataclass(frozen=True)
class Chained:
    """One record as the chain sees it: what ``link`` covers, and the digest stored with it."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes
    headers: Headers
    stored: bytes | None  # the digest the record carries (None: it carries none)
    error: str | None = None  # unreadable: nothing of it can be checked


class ChainCheck:
    """Recomputes one partition's chain record by record, noting the first break.

    Records that carry no digest before the first one that does are "unchained" (appended
    before the chain existed); the chain then starts from ``GENESIS`` at the first chained
    record. A record without a digest after a chained one is a break (its digest removed).
    """

    def __init__(self, topic: str, partition: int, previous: bytes = GENESIS, expected_offset: int | None = None):
        self.topic, self.partition = topic, partition
        self.previous = previous
        self.chained = previous != GENESIS
        self.expected = expected_offset
        self.unchained = 0
        self.checked = 0
        self.last_offset: int | None = None
        self.broken: Break | None = None

    def feed(self, record: Chained) -> bytes | None:
        """Check one record (in offset order); returns the chain's digest after it."""
        if self.broken is not None:
            return None
        if record.error is not None:
            return self._break(record.offset, f"unreadable, its digest cannot be checked: {record.error}")
        if self.expected is not None and record.offset != self.expected:
            return self._break(record.offset, f"offset {self.expected} is missing: the chain skips to {record.offset}")
        self.expected = record.offset + 1
        self.last_offset = record.offset
        if record.stored is None and not self.chained:
            self.unchained += 1
            return None
        digest = link(self.previous, record.topic, record.partition, record.offset, record.timestamp, record.key, record.value, record.headers)
        if record.stored is None:
            return self._break(record.offset, "the record carries no chain digest, yet the records before it do (removed?)")
        if record.stored != digest:
            return self._break(
                record.offset,
                f"chain digest mismatch: the record or the one before it changed (stored {record.stored.hex()[:16]}…, "
                f"computed {digest.hex()[:16]}…)",
            )
        self.chained = True
        self.previous = digest
        self.checked += 1
        return digest

    def _break(self, offset: int, reason: str) -> None:
        self.broken = Break(self.topic, self.partition, offset, reason)
        return None


def first_breaks(records: Iterable[Chained]) -> Iterator[Break]:
    """The first break of every partition in ``records`` (each partition in offset order)."""
    checks: dict[tuple[str, int], ChainCheck] = {}
    for record in records:
        check = checks.get((record.topic, record.partition))
        if check is None:
            check = checks[(record.topic, record.partition)] = ChainCheck(record.topic, record.partition)
        check.feed(record)
    for check in checks.values():
        if check.broken is not None:
            yield check.broken
