"""Replay an export into a log (``eventflow log import``), and copy one log into another.

What is kept: each record's topic, key, value and headers, byte for byte (so event ids,
keys and every envelope field stay as they were); the order of each source partition
(the files are merged by log time, a partition's records in offset order, and appended
in that order, so one key's events keep their order: they all came from one partition).
What is not: offsets and timestamps (the target assigns its own, and its own chain).

Idempotence: before appending, the target's records of the exported topics are read once
and counted by identity — the ``event_id`` header for events, a SHA-256 of key, value and
headers for anything else (a dead letter). An exported record is appended only while the
target holds fewer records of its identity than the export has so far, so importing twice,
or again after an interrupted import, adds nothing twice. That costs one read of the
target's topics (O(target records), ~100 bytes of memory per record: 1M records ≈ 100 MB)
per import; beyond tens of millions of records an on-disk index would be needed.
"""

from __future__ import annotations

import hashlib
import heapq
import os
import tempfile
from io import BytesIO
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastavro import block_reader, parse_schema, schemaless_reader

from eventflow.codec import HEADER_SIZE, strip_logical_types

from eventflow.log.base import Log, Message
from eventflow.log.export import MANIFEST, check_files, export_log, read_manifest, wrapper_schema
from eventflow.log.reading import read_through

# Every field of the wrapper but the event, without logical types (timestamps stay ms).
_PREFIX = parse_schema(strip_logical_types({
    **wrapper_schema([]),
    "fields": [f for f in wrapper_schema([])["fields"] if f["name"] != "event"],
}))


def identity(topic: str, key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes]]) -> bytes:
    """What makes a record "the same record" on two logs: its event id, else its content."""
    for name, header in headers:
        if name == "event_id":
            return b"e" + header
    digest = hashlib.sha256(topic.encode() + b"\0" + (key or b"") + b"\0" + value)
    for name, header in headers:
        digest.update(name.encode() + b"\0" + header + b"\0")
    return b"d" + digest.digest()


def present(log: Log, topics: Sequence[str], on_step: Callable[[int], None] | None = None) -> Counter[bytes]:
    """How many records of each identity the log's ``topics`` hold."""
    counts: Counter[bytes] = Counter()
    for record in read_through(log, topics, on_step=on_step):
        if record.error is None:
            counts[identity(record.topic, record.key, record.value, record.headers)] += 1
    return counts


def _raw_records(path: Path) -> Iterator[dict[str, Any]]:
    """The records of an export file without decoding their events: a replay needs only
    the exact bytes. The event branch is the value's body, so its length is known and it
    is skipped (a schema-resolving read that drops the field costs ~30 times more)."""
    with open(path, "rb") as handle:
        for block in block_reader(handle):
            data = block.bytes_
            for _ in range(block.num_records):
                item = schemaless_reader(data, _PREFIX, None)
                if _read_long(data):  # a branch other than null: the event, len(value) - 10 bytes
                    data.seek(len(item["value"]) - HEADER_SIZE, 1)
                yield item


def _read_long(data: BytesIO) -> int:
    """One Avro long (zig-zag varint)."""
    shift = result = 0
    while True:
        byte = data.read(1)[0]
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (result >> 1) ^ -(result & 1)
        shift += 7


@dataclass
class ImportReport:
    read: int = 0
    appended: int = 0
    skipped: int = 0  # already on the target
    unreadable: int = 0  # unreadable in the source: nothing to replay
    already: int = 0  # records the target's topics held before
    by_topic: dict[str, int] = field(default_factory=dict)


def import_export(
    directory: str | os.PathLike[str],
    target: Log,
    *,
    on_step: Callable[[int], None] | None = None,
    on_skip: Callable[[int], None] | None = None,
    batch: int = 2000,
    check: bool = True,
) -> ImportReport:
    """Append an export's records to ``target`` that it does not hold yet."""
    manifest = read_manifest(directory)
    if check:
        problems = check_files(directory, manifest)
        if problems:
            raise ValueError("the export does not match its manifest, nothing imported:\n  " + "\n  ".join(problems))
    topics = list(manifest["topics"])
    for topic, shape in manifest["topics"].items():
        target.create_topic(topic, shape["partitions"])  # new topics get the source's shape
    counts = present(target, topics)
    report = ImportReport(already=sum(counts.values()))
    files = [Path(directory) / entry["file"] for entry in manifest["files"] if entry["records"]]
    # One key's records are all in one file, in order; merging by log time keeps the
    # files' order and interleaves keys roughly as they were appended.
    merged = heapq.merge(*(_raw_records(path) for path in files), key=lambda item: item["timestamp"])
    pending: list[Message] = []
    for item in merged:
        report.read += 1
        if item["error"] is not None:
            report.unreadable += 1
            continue
        headers = tuple((h["name"], h["value"]) for h in item["headers"])
        ident = identity(item["topic"], item["key"], item["value"], headers)
        if counts[ident] > 0:
            counts[ident] -= 1
            report.skipped += 1
            if on_skip is not None:
                on_skip(1)
            continue
        pending.append(Message(item["topic"], item["key"], item["value"], headers))
        report.by_topic[item["topic"]] = report.by_topic.get(item["topic"], 0) + 1
        if len(pending) >= batch:
            report.appended += _flush(target, pending, on_step)
    report.appended += _flush(target, pending, on_step)
    return report


def _flush(target: Log, pending: list[Message], on_step: Callable[[int], None] | None) -> int:
    count = len(pending)
    if count:
        target.append_batch(pending)
        pending.clear()
        if on_step is not None:
            on_step(count)
    return count


def copy_log(
    source: Log,
    target: Log,
    *,
    topics: Sequence[str] | None = None,
    work: str | os.PathLike[str] | None = None,
    source_name: str = "",
    on_export: Callable[[int], None] | None = None,
    on_import: Callable[[int], None] | None = None,
    on_skip: Callable[[int], None] | None = None,
) -> tuple[dict[str, Any], ImportReport]:
    """Export ``source`` (into ``work``, default a temporary directory) and import it into
    ``target``: one path, the one ``export`` and ``import`` take, so a copy is checked as
    an export is. Returns the manifest and the import's report."""
    with tempfile.TemporaryDirectory(prefix="eventflow-copy-") as scratch:
        directory = Path(work) if work else Path(scratch) / "export"
        if (directory / MANIFEST).exists():
            manifest = read_manifest(directory)  # resume a copy whose export finished
        else:
            manifest = export_log(source, directory, topics=topics, source=source_name, on_step=on_export)
        report = import_export(directory, target, on_step=on_import, on_skip=on_skip)
    return manifest, report
