"""The registry of event schemas shipped in the ``eventflow.schemas`` package.

Each ``<event type>.v<N>.avsc`` file is one self-contained Avro record schema. It is
loaded from the installed package (``importlib.resources``), never from a source path.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from fastavro import parse_schema
from fastavro.schema import fingerprint as _fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form

from eventflow.codec.errors import CodecError

SCHEMA_PACKAGE = "eventflow.schemas"
#: The two marker bytes that start every Avro single-object encoded message.
MARKER = b"\xc3\x01"
#: Marker + 8-byte fingerprint.
HEADER_SIZE = len(MARKER) + 8

ENVELOPE_FIELDS: tuple[str, ...] = (
    "event_id",
    "event_type",
    "time",
    "actor",
    "source",
    "correlation_id",
    "causation_id",
    "payload",
)

_FILE_RE = re.compile(r"^(?P<type>[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*)\.v(?P<version>[1-9][0-9]*)\.avsc$")


def fingerprint(schema: dict[str, Any]) -> bytes:
    """The 8-byte CRC-64-AVRO fingerprint (little-endian, as written in single-object
    encoding) of a schema's Parsing Canonical Form."""
    return bytes.fromhex(_fastavro_fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))


def strip_logical_types(schema: Any) -> Any:
    """A copy of a schema without ``logicalType`` annotations.

    The codec reads and writes with these copies so that ``timestamp-millis`` stays an
    int of milliseconds and ``uuid`` stays a str (fastavro would otherwise return
    datetime and uuid.UUID objects). Logical types are not part of the Parsing
    Canonical Form, so the fingerprint is the same with or without them.
    """
    if isinstance(schema, dict):
        return {k: strip_logical_types(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [strip_logical_types(v) for v in schema]
    return schema


@dataclass(frozen=True, eq=False)
class Schema:
    """One version of one event type's schema."""

    event_type: str
    version: int
    #: 8-byte CRC-64-AVRO fingerprint, little-endian (the bytes on the wire).
    fingerprint: bytes
    #: fastavro-parsed schema, exactly as written in the file (logical types included).
    parsed: dict[str, Any]
    #: Full name of the top-level record, e.g. ``eventflow.events.RunFailedV1``.
    name: str
    #: The schema as loaded from the .avsc file (JSON).
    raw: dict[str, Any] = field(repr=False)
    #: File name inside the schemas package.
    filename: str = ""
    #: fastavro-parsed schema without logical types: what the codec reads/writes with.
    wire: dict[str, Any] = field(default=None, repr=False)  # type: ignore[assignment]
    #: MARKER + fingerprint: the first 10 bytes of every event written with this schema.
    header: bytes = b""
    #: Names of the payload's fields, in order.
    payload_fields: tuple[str, ...] = ()

    @property
    def fingerprint_hex(self) -> str:
        return self.fingerprint.hex()

    @property
    def payload_schema(self) -> dict[str, Any]:
        """The raw (JSON) schema of the payload record."""
        return self.raw["fields"][-1]["type"]


def _make_schema(raw: dict[str, Any], filename: str) -> Schema:
    m = _FILE_RE.match(filename)
    if not m:
        raise CodecError(f"schema file {filename!r} is not named <family>.<verb>.v<N>.avsc")
    event_type, version = m["type"], int(m["version"])
    if raw.get("eventflow.event_type") != event_type or raw.get("eventflow.version") != version:
        raise CodecError(
            f"schema file {filename!r} declares eventflow.event_type={raw.get('eventflow.event_type')!r} "
            f"and eventflow.version={raw.get('eventflow.version')!r}; the file name says {event_type!r} v{version}"
        )
    names = tuple(f["name"] for f in raw.get("fields", ()))
    if raw.get("type") != "record" or names != ENVELOPE_FIELDS:
        raise CodecError(f"schema file {filename!r} must be a record with the envelope fields {ENVELOPE_FIELDS}, has {names}")
    try:
        parsed = parse_schema(raw)
        wire = parse_schema(strip_logical_types(raw))
    except Exception as exc:  # fastavro raises several types for a bad schema
        raise CodecError(f"schema file {filename!r} is not a valid Avro schema: {exc}") from exc
    fp = fingerprint(raw)
    payload = raw["fields"][-1]["type"]
    return Schema(
        event_type=event_type,
        version=version,
        fingerprint=fp,
        parsed=parsed,
        name=parsed["name"],
        raw=raw,
        filename=filename,
        wire=wire,
        header=MARKER + fp,
        payload_fields=tuple(f["name"] for f in payload["fields"]),
    )


class SchemaRegistry:
    """All event schemas, by event type and version and by fingerprint."""

    def __init__(self, schemas: list[Schema]):
        by_type: dict[str, list[Schema]] = {}
        by_fp: dict[bytes, Schema] = {}
        for s in schemas:
            other = by_fp.get(s.fingerprint)
            if other is not None:
                raise CodecError(
                    f"schemas {other.filename!r} and {s.filename!r} have the same fingerprint "
                    f"{s.fingerprint.hex()}: they are the same schema"
                )
            by_fp[s.fingerprint] = s
            by_type.setdefault(s.event_type, []).append(s)
        for event_type, versions in by_type.items():
            versions.sort(key=lambda s: s.version)
            numbers = [s.version for s in versions]
            if numbers != list(range(1, len(numbers) + 1)):
                raise CodecError(f"schema versions of {event_type!r} must be 1..N without gaps, found {numbers}")
        self._by_type = by_type
        self._by_fp = by_fp
        self._current = {t: v[-1] for t, v in by_type.items()}

    @classmethod
    def load(cls, package: str = SCHEMA_PACKAGE) -> "SchemaRegistry":
        """Load every ``*.avsc`` file of an installed package."""
        root = resources.files(package)
        schemas = []
        for entry in sorted(root.iterdir(), key=lambda e: e.name):
            if not entry.name.endswith(".avsc"):
                continue
            try:
                raw = json.loads(entry.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise CodecError(f"schema file {entry.name!r} is not valid JSON: {exc}") from exc
            schemas.append(_make_schema(raw, entry.name))
        if not schemas:
            raise CodecError(f"no .avsc schema found in package {package!r}")
        return cls(schemas)

    def current(self, event_type: str) -> Schema:
        """The highest version of an event type's schema: the one events are written with."""
        try:
            return self._current[event_type]
        except KeyError:
            raise CodecError(self._unknown(event_type)) from None

    def versions(self, event_type: str) -> list[Schema]:
        """All versions of an event type's schema, oldest first."""
        try:
            return list(self._by_type[event_type])
        except KeyError:
            raise CodecError(self._unknown(event_type)) from None

    def by_fingerprint(self, fp: bytes) -> Schema:
        try:
            return self._by_fp[bytes(fp)]
        except KeyError:
            raise CodecError(
                f"unknown schema fingerprint {bytes(fp).hex()}: the schema is not known to this version of eventflow"
            ) from None

    def get(self, event_type: str, version: int) -> Schema:
        for s in self.versions(event_type):
            if s.version == version:
                return s
        raise CodecError(f"event type {event_type!r} has no schema version {version}")

    def event_types(self) -> list[str]:
        return sorted(self._by_type)

    def schemas(self) -> list[Schema]:
        """Every schema, every version."""
        return [s for t in self.event_types() for s in self._by_type[t]]

    def __contains__(self, event_type: object) -> bool:
        return event_type in self._current

    def _unknown(self, event_type: str) -> str:
        return f"unknown event type {event_type!r}: no schema for it in {SCHEMA_PACKAGE}"


_registry: SchemaRegistry | None = None
_lock = threading.Lock()


def registry() -> SchemaRegistry:
    """The process-wide registry, loaded on first use from the installed package."""
    global _registry
    reg = _registry
    if reg is None:
        with _lock:
            if _registry is None:
                _registry = SchemaRegistry.load()
            reg = _registry
    return reg
