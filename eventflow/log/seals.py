"""Seals: the chain of a log whose appenders cannot chain (Kafka), computed after the fact.

On Kafka several producers (API servers, SDKs writing directly) append to one partition,
each without knowing the record before its own, and a record cannot be changed once
appended, so no digest can be put in its header. The sealer instead reads every partition
in order, computes ``eventflow.log.chain.link`` over it exactly as the embedded appender
does, and appends a *seal* — the digest of the record at an offset — to the topic
``eventflow.chain-seals`` (keyed by topic and partition), every ``every`` records and at
the end of what it read. The next run resumes from the last seal. Only one sealer should
run at a time (a second one writes the same digests again: harmless, not useful).

``verify`` recomputes each partition's chain from offset 0 and compares it with the
digest each record carries (embedded) and with every seal (Kafka), reporting the first
break per partition.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from eventflow.log.base import Log, Message, TopicPartition
from eventflow.log.chain import GENESIS, ChainCheck, link
from eventflow.log.reading import read_through, snapshot_ends

SEAL_TOPIC = "eventflow.chain-seals"


@dataclass(frozen=True)
class Seal:
    topic: str
    partition: int
    offset: int
    digest: bytes
    sealed_at: int  # ms since the epoch

    def to_message(self) -> Message:
        body = {"topic": self.topic, "partition": self.partition, "offset": self.offset,
                "digest": self.digest.hex(), "sealed_at": self.sealed_at}
        return Message(SEAL_TOPIC, f"{self.topic}:{self.partition}".encode(), json.dumps(body, sort_keys=True).encode())


def read_seals(log: Log) -> dict[TopicPartition, dict[int, bytes]]:
    """Every seal on the log, by partition and offset (unreadable seals are left out)."""
    seals: dict[TopicPartition, dict[int, bytes]] = {}
    if SEAL_TOPIC not in log.topics():
        return seals
    for record in read_through(log, [SEAL_TOPIC]):
        if record.error is not None:
            continue
        try:
            body = json.loads(record.value)
            tp = TopicPartition(str(body["topic"]), int(body["partition"]))
            seals.setdefault(tp, {})[int(body["offset"])] = bytes.fromhex(body["digest"])
        except (ValueError, KeyError, TypeError):
            continue
    return seals


def sealable(log: Log, topics: Sequence[str] | None = None) -> list[str]:
    """The topics to seal or verify: the given ones, or every topic but the seals'."""
    existing = log.topics()
    if topics:
        return [t for t in topics if t in existing]
    return [t for t in existing if t != SEAL_TOPIC]


def seal(log: Log, topics: Sequence[str] | None = None, *, every: int = 10_000,
         on_step: Callable[[int], None] | None = None) -> list[Seal]:
    """Seal what was appended since the last seals; returns the seals written."""
    chosen = sealable(log, topics)
    if not chosen:
        return []
    known = read_seals(log)
    previous: dict[TopicPartition, bytes] = {}
    starts: dict[TopicPartition, int] = {}
    for tp, by_offset in known.items():
        last = max(by_offset)
        previous[tp], starts[tp] = by_offset[last], last + 1
    since_seal: dict[TopicPartition, int] = {}
    last_record: dict[TopicPartition, tuple[int, bytes]] = {}
    written: list[Seal] = []
    pending: list[Seal] = []
    for record in read_through(log, chosen, ends=snapshot_ends(log, chosen), starts=starts, on_step=on_step):
        tp = record.tp
        if record.error is not None:
            continue  # no digest can be computed past it; verify reports it
        digest = previous[tp] = link(previous.get(tp, GENESIS), record.topic, record.partition, record.offset,
                                     record.timestamp, record.key, record.value, record.headers)
        last_record[tp] = (record.offset, digest)
        since_seal[tp] = since_seal.get(tp, 0) + 1
        if since_seal[tp] >= every:
            pending.append(Seal(tp.topic, tp.partition, record.offset, digest, int(time.time() * 1000)))
            since_seal[tp] = 0
        if len(pending) >= 100:
            log.append_batch([s.to_message() for s in pending])
            written += pending
            pending = []
    for tp, count in since_seal.items():
        if count:
            offset, digest = last_record[tp]
            pending.append(Seal(tp.topic, tp.partition, offset, digest, int(time.time() * 1000)))
    if pending:
        log.append_batch([s.to_message() for s in pending])
        written += pending
    return written


def verify(log: Log, topics: Sequence[str] | None = None, *,
           on_step: Callable[[int], None] | None = None) -> dict[TopicPartition, ChainCheck]:
    """Recompute every partition's chain against its records' digests and its seals."""
    chosen = sealable(log, topics)
    seals = read_seals(log)
    ends = snapshot_ends(log, chosen)
    checks = {tp: ChainCheck(tp.topic, tp.partition, seals.get(tp)) for tp in ends}
    for record in read_through(log, chosen, ends=ends, on_step=on_step):
        checks[record.tp].feed(record)
    for check in checks.values():
        check.finish()
    return checks
