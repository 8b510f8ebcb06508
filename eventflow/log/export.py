"""The log as Avro Object Container Files: one per topic and partition, and a manifest.

An OCF has one schema, and a partition holds events of many writer schemas (every event
type of its families, several versions each). Each record of the file is therefore a
wrapper, ``eventflow.export.LogRecord``:

- where and when: ``topic``, ``partition``, ``offset``, ``timestamp`` (log-append time);
- what the log held, byte for byte: ``key``, ``headers``, ``value`` (the Avro
  single-object encoding, writer fingerprint included) and ``chain`` (its tamper-evidence
  digest, when the log kept one) — what ``import`` replays and ``verify`` re-chains;
- the event, decoded: ``event_id``, ``event_type``, ``writer_fingerprint``, and ``event``,
  a union of every writer schema of the topic, the branch being the event's own writer
  schema (not resolved to a newer one: the file shows what was written).

Why both: the decoded ``event`` is what lets any Avro tool (``fastavro``, ``avro-tools
tojson``, Spark) read every field of every event with no eventflow code and no schema
registry; the raw ``value`` is what keeps the export exact (re-encoding would not give
the same bytes back, and the chain covers the bytes). A value that is not an eventflow
event (a dead letter's JSON, an unknown fingerprint) has ``event`` null and its bytes in
``value``; an unreadable record has ``error`` set and nothing else.

A union may not define one name twice, and the writer schemas share named types that
differ between versions (``eventflow.Source`` grew fields in v2). So each branch is its
writer schema with every named type moved under a namespace of its own,
``w<fingerprint>.`` + the original full name: same fields, same binary encoding. The
original schemas, unchanged, are in the file's metadata (``eventflow.writer_schemas``,
fingerprint → schema) for readers that decode ``value`` as single-object encoding.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from io import BytesIO
from pathlib import Path
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.write import Writer

from eventflow.codec import HEADER_SIZE, MARKER, Schema, registry
from eventflow.codec.columns import avro_long
from eventflow.events import FAMILIES
from eventflow.log.base import Log, Record, TopicPartition
from eventflow.log.chain import GENESIS, link
from eventflow.log.embedded import EmbeddedLog
from eventflow.log.reading import read_through, snapshot_ends

FORMAT = "eventflow-log-export"
MANIFEST = "manifest.json"
PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


def _namespaced(schema: Any, prefix: str, namespace: str | None = None) -> Any:
    """``schema`` with every named type (and reference to one) under ``prefix``."""
    if isinstance(schema, str):
        if schema in PRIMITIVES:
            return schema
        full = schema if "." in schema else (f"{namespace}.{schema}" if namespace else schema)
        return f"{prefix}.{full}"
    if isinstance(schema, list):
        return [_namespaced(branch, prefix, namespace) for branch in schema]
    kind = schema.get("type")
    if kind in ("record", "error", "enum", "fixed"):
        name = schema["name"]
        full = name if "." in name else ".".join(filter(None, (schema.get("namespace", namespace), name)))
        inner = full.rsplit(".", 1)[0] if "." in full else None
        out = {k: v for k, v in schema.items() if k not in ("namespace", "aliases")}
        out["name"] = f"{prefix}.{full}"
        if kind in ("record", "error"):
            out["fields"] = [{**f, "type": _namespaced(f["type"], prefix, inner)} for f in schema["fields"]]
        return out
    if kind == "array":
        return {**schema, "items": _namespaced(schema["items"], prefix, namespace)}
    if kind == "map":
        return {**schema, "values": _namespaced(schema["values"], prefix, namespace)}
    if isinstance(kind, (dict, list)):
        return {**schema, "type": _namespaced(kind, prefix, namespace)}
    return schema


def topic_schemas(topic: str) -> list[Schema]:
    """Every writer schema (each version of each event type) whose events go to ``topic``."""
    families = {name for name, family in FAMILIES.items() if family.topic == topic}
    return [s for s in registry().schemas() if s.event_type.split(".", 1)[0] in families]


def wrapper_schema(schemas: Sequence[Schema]) -> dict[str, Any]:
    """The OCF schema of a partition whose events were written with ``schemas``."""
    branches = [_namespaced(s.raw, f"w{s.fingerprint_hex}") for s in schemas]
    return {
        "type": "record",
        "name": "LogRecord",
        "namespace": "eventflow.export",
        "doc": "One record of an eventflow log partition: where it was, its exact bytes, and its event decoded.",
        "fields": [
            {"name": "topic", "type": "string"},
            {"name": "partition", "type": "int"},
            {"name": "offset", "type": "long"},
            {"name": "timestamp", "type": {"type": "long", "logicalType": "timestamp-millis"}, "doc": "Log-append time."},
            {"name": "key", "type": ["null", "bytes"]},
            {"name": "headers", "type": {"type": "array", "items": {
                "type": "record", "name": "Header", "fields": [{"name": "name", "type": "string"}, {"name": "value", "type": "bytes"}]}}},
            {"name": "value", "type": "bytes", "doc": "The record's value as appended (Avro single-object encoding for events)."},
            {"name": "chain", "type": ["null", "bytes"], "doc": "The record's tamper-evidence digest (SHA-256, chained), if the log kept one."},
            {"name": "error", "type": ["null", "string"], "doc": "Why the record could not be read; then it holds nothing else."},
            {"name": "event_id", "type": ["null", "string"]},
            {"name": "event_type", "type": ["null", "string"]},
            {"name": "writer_fingerprint", "type": ["null", "string"], "doc": "CRC-64-AVRO fingerprint (hex) of the writer schema."},
            {"name": "event", "type": ["null", *branches], "doc": "The event decoded with its own writer schema; null if the value is no known event."},
        ],
    }


class _Block:
    """Encoded records handed to fastavro's ``Writer.write_block`` (compressed and framed there)."""

    def __init__(self, count: int, data: BytesIO):
        self.num_records, self.bytes_ = count, data


@dataclass
class _PartitionFile:
    """One open OCF being written, and what the manifest says of it.

    Records are encoded here, not by ``Writer.write``: the ``event`` branch's binary
    encoding *is* the value's body (the branch is the writer schema renamed), so it is
    copied, not re-encoded — twice as fast, and exactly what the writer wrote. Only the
    wrapper's other fields go through fastavro (``prefix``, the schema without ``event``).
    """

    path: Path
    handle: Any
    writer: Writer
    decoders: dict[bytes, tuple[Schema, bytes]]  # fingerprint -> (schema, the union index encoded)
    prefix: dict[str, Any]
    pending: BytesIO = field(default_factory=BytesIO)
    pending_count: int = 0
    records: int = 0
    events: int = 0
    first_offset: int | None = None
    last_offset: int | None = None
    last_chain: bytes | None = None
    # For a log that keeps no digest with its records (Kafka): the chain computed here,
    # from the partition's first record (None: the export started mid-partition).
    running: bytes | None = None


def _decode(value: bytes, decoders: dict[bytes, tuple[Schema, bytes]]) -> tuple[Schema, bytes, dict] | None:
    """The event in ``value`` read with its own writer schema, or None if it is none (a
    damaged body too: it is decoded to be sure the file's union branch will read)."""
    if len(value) < HEADER_SIZE or value[:2] != MARKER:
        return None
    found = decoders.get(value[2:HEADER_SIZE])
    if found is None:
        return None
    schema, name = found
    buffer = BytesIO(value)
    buffer.seek(HEADER_SIZE)
    try:
        event = schemaless_reader(buffer, schema.wire, None, return_record_name=False)
    except Exception:  # noqa: BLE001 - a damaged body: keep the bytes, not a decoding
        return None
    return (schema, name, event) if buffer.tell() == len(value) else None


def parse_since(text: str | None) -> int | None:
    """``--since``: milliseconds since the epoch, or ISO 8601 (UTC unless it says)."""
    if text is None:
        return None
    if text.strip().isdigit():
        return int(text)
    from datetime import datetime, timezone

    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--since {text!r} is neither milliseconds since the epoch nor an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


def export_log(
    log: Log,
    out: str | os.PathLike[str],
    *,
    topics: Sequence[str] | None = None,
    since_ms: int | None = None,
    source: str = "",
    on_step: Callable[[int], None] | None = None,
    codec: str = "deflate",
) -> dict[str, Any]:
    """Write every record of ``topics`` (default: all) to ``out``; returns the manifest."""
    directory = Path(out)
    existing = log.topics()
    unknown = [t for t in topics or () if t not in existing]
    if unknown:
        raise ValueError(f"no such topic on the log: {', '.join(unknown)} (it has: {', '.join(existing) or 'none'})")
    chosen = list(topics) if topics else existing
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / MANIFEST).exists() or any(directory.glob("*.avro")):
        raise ValueError(f"{directory} already holds an export: give an empty or new directory")
    ends = snapshot_ends(log, chosen)
    files: dict[TopicPartition, _PartitionFile] = {}
    started = time.time()
    try:
        for tp in sorted(ends):
            files[tp] = _open_file(directory, tp, codec)
        compute_chain = not isinstance(log, EmbeddedLog)  # the embedded log stores its own
        for record in read_through(log, chosen, ends=ends, since_ms=since_ms, on_step=on_step):
            _write(files[record.tp], record, compute_chain)
    finally:
        for file in files.values():
            _flush_block(file)
            file.writer.flush()
            file.handle.close()
    partitions = {topic: len(log.partitions(topic)) for topic in chosen}
    manifest = {
        "format": FORMAT,
        "version": 1,
        "source": source,
        "exported_at": int(started * 1000),
        "since": since_ms,
        "chain": "computed from the records at export" if not isinstance(log, EmbeddedLog) else "as stored with each record",
        "topics": {topic: {"partitions": count} for topic, count in partitions.items()},
        "records": sum(f.records for f in files.values()),
        "files": [_describe(tp, f, ends[tp]) for tp, f in sorted(files.items())],
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _open_file(directory: Path, tp: TopicPartition, codec: str) -> _PartitionFile:
    schemas = topic_schemas(tp.topic)
    path = directory / f"{tp.topic}-{tp.partition}.avro"
    handle = open(path, "wb")
    metadata = {
        "eventflow.topic": tp.topic,
        "eventflow.partition": str(tp.partition),
        "eventflow.writer_schemas": json.dumps({s.fingerprint_hex: s.raw for s in schemas}, separators=(",", ":")),
    }
    full = wrapper_schema(schemas)
    writer = Writer(handle, parse_schema(full), codec=codec, metadata=metadata)
    prefix = parse_schema({**full, "fields": [f for f in full["fields"] if f["name"] != "event"]})
    # branch 0 is null; the writer schemas follow in order
    decoders = {s.fingerprint: (s, avro_long(index + 1)) for index, s in enumerate(schemas)}
    return _PartitionFile(path, handle, writer, decoders, prefix)


_NULL_BRANCH = avro_long(0)
_BLOCK_RECORDS = 2000


def _flush_block(file: _PartitionFile) -> None:
    if file.pending_count:
        file.writer.write_block(_Block(file.pending_count, file.pending))
        file.pending, file.pending_count = BytesIO(), 0


def _write(file: _PartitionFile, record: Record, compute_chain: bool) -> None:
    if compute_chain and record.error is None and record.chain is None:
        if file.running is None and file.first_offset is None and record.offset == 0:
            file.running = GENESIS
        if file.running is not None:
            file.running = link(file.running, record.topic, record.partition, record.offset, record.timestamp,
                                record.key, record.value, record.headers)
            record = replace(record, chain=file.running)
    decoded = _decode(record.value, file.decoders) if record.error is None else None
    wrapped: dict[str, Any] = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
        "key": record.key,
        "headers": [{"name": name, "value": value} for name, value in record.headers],
        "value": record.value,
        "chain": record.chain,
        "error": record.error,
        "event_id": None,
        "event_type": None,
        "writer_fingerprint": None,
    }
    if decoded is not None:
        schema, branch, event = decoded
        wrapped.update(event_id=event["event_id"], event_type=event["event_type"], writer_fingerprint=schema.fingerprint_hex)
        file.events += 1
    schemaless_writer(file.pending, file.prefix, wrapped)
    if decoded is not None:
        file.pending.write(branch)
        file.pending.write(memoryview(record.value)[HEADER_SIZE:])
    else:
        file.pending.write(_NULL_BRANCH)
    file.pending_count += 1
    if file.pending_count >= _BLOCK_RECORDS:
        _flush_block(file)
    file.records += 1
    if file.first_offset is None:
        file.first_offset = record.offset
    file.last_offset = record.offset
    file.last_chain = record.chain


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _describe(tp: TopicPartition, file: _PartitionFile, end: int) -> dict[str, Any]:
    return {
        "file": file.path.name,
        "topic": tp.topic,
        "partition": tp.partition,
        "records": file.records,
        "events": file.events,
        "first_offset": file.first_offset,
        "last_offset": file.last_offset,
        "end_offset": end,
        "last_chain": file.last_chain.hex() if file.last_chain else None,
        "bytes": file.path.stat().st_size,
        "sha256": file_digest(file.path),
    }


def read_manifest(directory: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(directory) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{directory} is not an eventflow export: it has no {MANIFEST}") from None
    except ValueError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path} is not an eventflow export manifest (format {manifest.get('format')!r})")
    return manifest


def check_files(directory: str | os.PathLike[str], manifest: dict[str, Any]) -> list[str]:
    """Each file whose bytes differ from the manifest's digest, or that is missing."""
    problems = []
    for entry in manifest["files"]:
        path = Path(directory) / entry["file"]
        if not path.exists():
            problems.append(f"{entry['file']}: missing")
        elif file_digest(path) != entry["sha256"]:
            problems.append(f"{entry['file']}: its SHA-256 differs from the manifest's (the file changed since the export)")
    return problems


def read_file(path: str | os.PathLike[str]) -> Iterator[Record]:
    """The records of one export file, in offset order, as the log handed them out."""
    from fastavro import reader

    with open(path, "rb") as handle:
        for item in reader(handle, return_record_name=False):
            yield Record(
                item["topic"], item["partition"], item["offset"], item["key"], item["value"],
                _millis(item["timestamp"]), tuple((h["name"], h["value"]) for h in item["headers"]),
                item["error"], item["chain"],
            )


def _millis(value: Any) -> int:
    """fastavro hands timestamp-millis back as an aware datetime."""
    if isinstance(value, int):
        return value
    return round(value.timestamp() * 1000)


def verify_export(directory: str | os.PathLike[str], log: Log | None = None) -> tuple[int, list[str]]:
    """Check an export: each file against the manifest's digest, each file's chain, and,
    given the ``log`` it came from, each exported record's digest against the log's at the
    same position (so a copy is checked against its original). Returns the records read
    and the problems found, each naming its position."""
    from eventflow.log.chain import ChainCheck

    manifest = read_manifest(directory)
    problems = check_files(directory, manifest)
    changed = {problem.split(":", 1)[0] for problem in problems}
    exported: dict[TopicPartition, dict[int, bytes]] = {}
    read = 0
    for entry in manifest["files"]:
        path = Path(directory) / entry["file"]
        if not entry["records"] or entry["file"] in changed:
            continue  # a changed file's records cannot vouch for anything
        check = ChainCheck(entry["topic"], entry["partition"], anchored=(entry["first_offset"] or 0) > 0)
        digests = exported.setdefault(TopicPartition(entry["topic"], entry["partition"]), {})
        try:
            for record in read_file(path):
                read += 1
                check.feed(record)
                if record.chain is not None:
                    digests[record.offset] = record.chain
        except Exception as error:  # noqa: BLE001 - fastavro raises many kinds on damaged files
            problems.append(f"{entry['file']}: not a readable Avro file ({type(error).__name__}: {error})")
            continue
        if check.broken is not None:
            problems.append(f"in {entry['file']}: {check.broken}")
        elif entry.get("last_chain") and check.previous.hex() != entry["last_chain"] and check.chained:
            problems.append(f"in {entry['file']}: its last digest is not the manifest's ({entry['last_chain'][:16]}…)")
    if log is not None:
        problems += _against(log, exported)
    return read, problems


def _against(log: Log, exported: dict[TopicPartition, dict[int, bytes]]) -> list[str]:
    """Where the log's chain differs from the export's, first position per partition."""
    from eventflow.log.chain import ChainCheck

    problems = []
    topics = sorted({tp.topic for tp in exported})
    missing = [t for t in topics if t not in log.topics()]
    problems += [f"{t}: exported, but not on the log" for t in missing]
    wanted = [t for t in topics if t not in missing]
    checks: dict[TopicPartition, ChainCheck] = {}
    differs: dict[TopicPartition, str] = {}
    for record in read_through(log, wanted):
        tp = record.tp
        digests = exported.get(tp)
        if not digests:
            continue
        check = checks.setdefault(tp, ChainCheck(tp.topic, tp.partition))
        digest = check.feed(record)
        theirs = digests.get(record.offset)
        if theirs is not None and tp not in differs and digest != theirs:
            differs[tp] = (f"{tp.topic}[{tp.partition}]@{record.offset}: the log's record differs from the exported one "
                           f"(log {digest.hex()[:16] if digest else 'unchecked'}…, export {theirs.hex()[:16]}…)")
    for tp, digests in exported.items():
        if tp not in differs and tp.topic in wanted:
            check = checks.get(tp)
            last = max(digests)
            if check is None or check.last_offset is None or check.last_offset < last:
                differs[tp] = f"{tp.topic}[{tp.partition}]@{last}: exported, but the log no longer reaches this offset"
    return problems + [differs[tp] for tp in sorted(differs)]
