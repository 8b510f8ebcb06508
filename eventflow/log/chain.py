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
from dataclasses import dataclass

from eventflow.log.base import Headers, Record

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


class ChainCheck:
    """Recomputes one partition's chain record by record (in offset order) and keeps the
    first place where it breaks: against the digest a record carries (embedded log) and
    against the seals made of the partition (Kafka's sealer; ``seals`` maps offset → digest).

    Records carrying no digest before the first that does were appended before the chain
    existed ("unchained"): the chain restarts from ``GENESIS`` at the first chained record.
    A record without a digest after a chained one is a break (its digest was removed).
    """

    def __init__(self, topic: str, partition: int, seals: dict[int, bytes] | None = None, *, anchored: bool = False):
        """``anchored``: the records start mid-partition (an export ``--since``), so the
        first record's own digest is taken as given and the chain checked from there."""
        self.topic, self.partition = topic, partition
        self.anchored = anchored
        self.seals = seals or {}
        self.previous = GENESIS
        self.chained = False
        self.unchained = 0
        self.checked = 0
        self.sealed = 0
        self.last_offset: int | None = None
        self.last_seal: int | None = None
        self.broken: Break | None = None

    def feed(self, record: Record) -> bytes | None:
        """Check one record; returns the chain's digest after it (None once broken)."""
        if self.broken is not None:
            return None
        if record.error is not None:
            return self._break(record.offset, f"unreadable, so its digest cannot be checked: {record.error}")
        self.last_offset = record.offset
        stored = record.chain
        if stored is not None and not self.chained:
            self.chained, self.previous = True, GENESIS
            if self.anchored:
                self.previous, self.last_offset = stored, record.offset
                self.checked += 1
                return stored
        digest = link(self.previous, record.topic, record.partition, record.offset, record.timestamp, record.key, record.value, record.headers)
        if stored is not None:
            if stored != digest:
                return self._break(
                    record.offset,
                    f"chain digest mismatch: this record (or one before it) changed since it was appended "
                    f"(stored {stored.hex()[:16]}…, computed {digest.hex()[:16]}…)",
                )
            self.checked += 1
        elif self.chained:
            return self._break(record.offset, "the record carries no chain digest, yet the records before it do (removed?)")
        else:
            self.unchained += 1
        seal = self.seals.get(record.offset)
        if seal is not None:
            if seal != digest:
                self.broken = Break(
                    self.topic, self.partition, record.offset,
                    f"the seal of offset {record.offset} does not match the records (sealed {seal.hex()[:16]}…, "
                    f"computed {digest.hex()[:16]}…)",
                    after=self.last_seal if self.last_seal is not None else -1,
                )
                return None
            self.last_seal = record.offset
            self.sealed += 1
        self.previous = digest
        return digest

    def finish(self) -> Break | None:
        """After the last record: seals of offsets that are no longer there are a break too."""
        if self.broken is None:
            beyond = sorted(o for o in self.seals if self.last_offset is None or o > self.last_offset)
            if beyond:
                self.broken = Break(
                    self.topic, self.partition, beyond[0],
                    f"sealed offset {beyond[0]} is no longer in the log (records removed or the topic recreated)",
                    after=self.last_seal if self.last_seal is not None else -1,
                )
        return self.broken

    def _break(self, offset: int, reason: str) -> None:
        self.broken = Break(self.topic, self.partition, offset, reason)
        return None
