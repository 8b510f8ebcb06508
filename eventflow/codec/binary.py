"""Avro single-object encoding of events: the codec's hot path.

Layout of an encoded event (Avro specification, "Single-object encoding")::

    C3 01 | 8-byte CRC-64-AVRO fingerprint of the writer schema (little-endian) | Avro binary body

Everything that can be computed once per schema (parsed schemas, header bytes, the
reader schema each writer schema resolves to) is computed once, when the registry is
first used.
"""

from __future__ import annotations

import threading
from io import BytesIO
from typing import Any

from fastavro import schemaless_reader, schemaless_writer

from eventflow.codec import columns as metric_columns
from eventflow.codec.errors import CodecError, DecodeError, EncodeError
from eventflow.codec.registry import HEADER_SIZE, MARKER, Schema, registry
from eventflow.events import Event

# event type -> (writer schema, fastavro wire schema, header bytes, payload field names)
_ENCODERS: dict[str, tuple[Schema, dict, bytes, frozenset[str]]] = {}
# fingerprint -> (writer schema, writer wire schema, reader wire schema or None if the same)
_DECODERS: dict[bytes, tuple[Schema, dict, dict | None]] = {}
_tables_lock = threading.Lock()
# event types whose columns are written in bulk (codec/columns.py)
_COLUMNS: set[str] = set()
_EMPTY_COLUMNS: dict[str, list[Any]] = {name: [] for name, _ in metric_columns.ARRAYS}


def _build_tables() -> None:
    with _tables_lock:
        if _DECODERS:
            return
        reg = registry()
        decoders = {}
        for s in reg.schemas():
            current = reg.current(s.event_type)
            decoders[s.fingerprint] = (s, s.wire, None if current is s else current.wire)
        for event_type in reg.event_types():
            s = reg.current(event_type)
            _ENCODERS[event_type] = (s, s.wire, s.header, frozenset(s.payload_fields))
            if event_type == "run.metrics_logged" and metric_columns.fits(s.wire):
                _COLUMNS.add(event_type)
        _DECODERS.update(decoders)  # last: it is the "tables are built" flag


def encode(event: Event) -> bytes:
    """Encode an event with the current schema of its type (Avro single-object encoding).

    Raises EncodeError if the type is unknown or the event does not fit the schema.
    """
    try:
        schema, wire, header, allowed = _ENCODERS[event.type]
    except KeyError:
        if not _DECODERS:
            _build_tables()
            return encode(event)
        raise EncodeError(
            f"cannot encode event: unknown event type {event.type!r}: "
            f"no schema for it (known types: {', '.join(sorted(_ENCODERS))})"
        ) from None
    except AttributeError:
        raise EncodeError(f"encode() takes an eventflow.events.Event, got {type(event).__name__}") from None
    payload = event.payload
    try:
        extra = payload.keys() - allowed
    except AttributeError:
        raise EncodeError(
            f"cannot encode {event.type} event: payload must be a dict, got {type(payload).__name__}"
        ) from None
    if extra:
        raise EncodeError(
            f"cannot encode {event.type} event: payload has field(s) not in schema {schema.name} "
            f"(v{schema.version}): {', '.join(sorted(map(str, extra)))}"
        )
    record = {
        "event_id": event.event_id,
        "event_type": event.type,
        "time": event.time,
        "actor": event.actor,
        "source": event.source,
        "correlation_id": event.correlation_id,
        "causation_id": event.causation_id,
        "payload": payload,
    }
    columns = None
    if event.type in _COLUMNS and type(payload.get("columns")) is dict:
        columns = metric_columns.encode_columns(payload["columns"])
        if columns is not None:
            record["payload"] = {**payload, "columns": _EMPTY_COLUMNS}
    buf = BytesIO()
    buf.write(header)
    try:
        schemaless_writer(buf, wire, record)
    except Exception as exc:
        raise _encode_error(event.type, schema, {**record, "payload": payload}, exc) from exc
    if columns is None:
        return buf.getvalue()
    body = buf.getbuffer()
    return bytes(body[: len(body) - len(metric_columns.EMPTY)]) + columns


def decode(data: bytes) -> Event:
    """Decode a single-object encoded event, resolving its writer schema to the current
    schema of its type. Raises DecodeError on anything that is not a decodable event."""
    if type(data) is not bytes:
        if not isinstance(data, (bytearray, memoryview)):
            raise DecodeError(f"decode() takes bytes, got {type(data).__name__}")
        data = bytes(data)
    if len(data) < HEADER_SIZE or data[:2] != MARKER:
        if data[:2] != MARKER:
            reason = f"it does not start with the Avro single-object marker c3 01 (first bytes: {data[:12].hex(' ') or 'none'})"
        else:
            reason = f"it is too short ({len(data)} bytes) to hold the 10-byte header (bytes: {data.hex(' ')})"
        raise DecodeError(f"not an eventflow event: {reason}")
    fp = data[2:HEADER_SIZE]
    try:
        schema, writer, reader = _DECODERS[fp]
    except KeyError:
        if not _DECODERS:
            _build_tables()
            return decode(data)
        raise DecodeError(
            f"unknown writer schema fingerprint {fp.hex()}: the schema is not known to this version "
            f"of eventflow (written by a newer or foreign producer?)"
        ) from None
    fo = BytesIO(data)
    fo.seek(HEADER_SIZE)
    try:
        rec = schemaless_reader(fo, writer, reader, return_record_name=False)
    except Exception as exc:
        raise DecodeError(
            f"corrupt event body: cannot decode it with schema {schema.name} "
            f"({schema.event_type} v{schema.version}, fingerprint {fp.hex()}): {_short(exc)}"
        ) from exc
    end = fo.tell()
    if end != len(data):
        raise DecodeError(
            f"corrupt event body: {len(data) - end} trailing byte(s) after a complete "
            f"{schema.event_type} v{schema.version} record (schema {schema.name})"
        )
    if rec["event_type"] != schema.event_type:
        raise DecodeError(
            f"corrupt event: its body says event_type {rec['event_type']!r} but it was written "
            f"with the schema of {schema.event_type!r} ({schema.name})"
        )
    return Event(
        rec["event_type"],
        rec["payload"],
        rec["event_id"],
        rec["time"],
        rec["actor"],
        rec["source"],
        rec["correlation_id"],
        rec["causation_id"],
    )


# ------------------------------------------------------------------ untrusted input

# Above this size an untrusted event is walked (not decoded) first; below it, decoding it
# whole costs at most a few MB even at the worst ratio, and it is counted afterwards.
SCAN_ABOVE = 64 * 1024


def decode_untrusted(data: bytes, max_records: int) -> tuple[Event, int]:
    """Decode an event from a client, refusing one whose arrays hold more than
    ``max_records`` records; returns the event and how many it holds.

    A record in an array is what a few bytes can make expensive: ``{key: "", value: ""}``
    is 2 bytes on the wire and ~190 bytes as a dict, so 16 MB of empty tags would decode
    to 2 GB. A large event is therefore walked first, its array block counts checked
    before a single item is materialised; a small one is decoded and counted. Events read
    back from the log (the consumers' hot path) use ``decode``, which this does not slow.
    """
    if type(data) is not bytes:
        data = bytes(data)
    if len(data) > SCAN_ABOVE and len(data) >= HEADER_SIZE and data[:2] == MARKER:
        entry = _DECODERS.get(data[2:HEADER_SIZE]) if _DECODERS else None
        if entry is None and not _DECODERS:
            _build_tables()
            entry = _DECODERS.get(data[2:HEADER_SIZE])
        if entry is not None:
            schema, writer, _ = entry
            counted = _Counter(max_records, schema.event_type)
            try:
                _walk(writer, data, HEADER_SIZE, writer.get("__named_schemas", {}), counted)
            except (IndexError, ValueError, KeyError, RecursionError) as exc:
                if isinstance(exc, DecodeError):
                    raise
                raise DecodeError(f"corrupt event body: cannot walk it with schema {schema.name}: {_short(exc)}") from None
    event = decode(data)
    records = _records_in(event.payload)
    if records > max_records:
        raise _too_many(event.type, records, max_records)
    return event, records


def _too_many(event_type: str, count: int, limit: int) -> DecodeError:
    return DecodeError(
        f"a {event_type} event holds {count} or more items (records in arrays), over the {limit} this request may "
        "carry for its size; send fewer items per event, or fewer events per request"
    )


class _Counter:
    __slots__ = ("left", "limit", "event_type")

    def __init__(self, limit: int, event_type: str):
        self.left, self.limit, self.event_type = limit, limit, event_type

    def take(self, count: int) -> None:
        self.left -= count
        if self.left < 0:
            raise _too_many(self.event_type, self.limit - self.left, self.limit)


def _records_in(value: Any) -> int:
    """Records in the arrays of a decoded value (every array of our schemas holds records
    or primitives, never both)."""
    if isinstance(value, dict):
        return sum(_records_in(v) for v in value.values() if isinstance(v, (dict, list)))
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return len(value) + sum(_records_in(item) for item in value)
    return 0


_FIXED_SIZE = {"null": 0, "boolean": 1, "float": 4, "double": 8}


def _long(data: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = data[pos]  # IndexError past the end: truncated
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7
        if shift > 63:
            raise ValueError("a varint longer than 10 bytes")


def _holds_records(schema: Any, named: dict) -> bool:
    if isinstance(schema, str):
        return schema in named and named[schema].get("type") == "record"
    if isinstance(schema, list):
        return any(_holds_records(branch, named) for branch in schema)
    return schema.get("type") in ("record", "array", "map")


def _walk(schema: Any, data: bytes, pos: int, named: dict, counted: _Counter) -> int:
    """The position after one datum of ``schema`` at ``pos``, counting records in arrays."""
    if isinstance(schema, str):
        if schema in _FIXED_SIZE:
            return pos + _FIXED_SIZE[schema]
        if schema in ("int", "long"):
            return _long(data, pos)[1]
        if schema in ("string", "bytes"):
            size, pos = _long(data, pos)
            if size < 0 or pos + size > len(data):
                raise ValueError(f"a {schema} of {size} bytes runs past the end")
            return pos + size
        return _walk(named[schema], data, pos, named, counted)
    if isinstance(schema, list):
        index, pos = _long(data, pos)
        return _walk(schema[index], data, pos, named, counted)
    kind = schema["type"]
    if kind == "record":
        for field in schema["fields"]:
            pos = _walk(field["type"], data, pos, named, counted)
        return pos
    if kind == "enum":
        return _long(data, pos)[1]
    if kind == "fixed":
        return pos + schema["size"]
    if kind in ("array", "map"):
        item = schema["items"] if kind == "array" else schema["values"]
        heavy = _holds_records(item, named)
        while True:
            count, pos = _long(data, pos)
            if count == 0:
                return pos
            if count < 0:
                count = -count
                size, pos = _long(data, pos)
                if not heavy and size >= 0:
                    pos += size  # a sized block of primitives: skipped whole
                    continue
            if heavy:
                counted.take(count)  # before walking (or anyone materialising) the items
            elif count > len(data) - pos:  # every primitive item here is at least a byte
                raise ValueError(f"an array block of {count} items runs past the end")
            for _ in range(count):
                if kind == "map":
                    pos = _walk("string", data, pos, named, counted)
                pos = _walk(item, data, pos, named, counted)
    return _walk(kind, data, pos, named, counted)  # a primitive with a logical type


# ---------------------------------------------------------------------------- errors


def _encode_error(event_type: str, schema: Schema, record: dict, exc: Exception) -> EncodeError:
    """Explain why a record did not fit (only called once writing has failed)."""
    problems = explain(schema.wire, record)
    if not problems:
        try:
            from fastavro.validation import validate

            validate(record, schema.wire, raise_errors=True)
        except Exception as vexc:  # ValidationError: a list of field paths
            problems = [" ".join(str(vexc).split())[:500]]
    if not problems:
        problems = [_short(exc)]
    return EncodeError(
        f"cannot encode {event_type} event with schema {schema.name} (v{schema.version}): " + "; ".join(problems)
    )


_PRIMITIVE_CHECKS: dict[str, Any] = {
    "null": lambda v: v is None,
    "boolean": lambda v: isinstance(v, bool),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool) and -(2**31) <= v < 2**31,
    "long": lambda v: isinstance(v, int) and not isinstance(v, bool) and -(2**63) <= v < 2**63,
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "double": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "bytes": lambda v: isinstance(v, (bytes, bytearray)),
}


def _short(exc: BaseException, limit: int = 300) -> str:
    """An exception as one short line (fastavro's errors may embed whole schemas)."""
    text = " ".join(str(exc).split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}"


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def _type_name(schema: Any) -> str:
    if isinstance(schema, str):
        return schema
    if isinstance(schema, list):
        return "[" + ", ".join(_type_name(s) for s in schema) + "]"
    t = schema.get("type")
    if t in ("record", "enum", "fixed"):
        return f"{t} {schema.get('name')}"
    if t == "array":
        return f"array of {_type_name(schema['items'])}"
    if t == "map":
        return f"map of {_type_name(schema['values'])}"
    return str(t)


def explain(schema: dict, datum: Any) -> list[str]:
    """Every place where ``datum`` does not fit a fastavro-parsed ``schema``, as
    ``path: problem`` strings (``payload.tags[0].value: expected string, got NoneType None``)."""
    named = schema.get("__named_schemas", {}) if isinstance(schema, dict) else {}
    out: list[str] = []
    _explain(schema, datum, "", named, out)
    return out


def _explain(schema: Any, datum: Any, path: str, named: dict, out: list[str]) -> None:
    where = path or "(event)"
    if isinstance(schema, str):
        check = _PRIMITIVE_CHECKS.get(schema)
        if check is not None:
            if not check(datum):
                out.append(f"{where}: expected {schema}, got {_describe(datum)}")
            return
        if schema in named:
            _explain(named[schema], datum, path, named, out)
            return
        out.append(f"{where}: unknown type {schema!r} in schema")
        return
    if isinstance(schema, list):
        for branch in schema:
            sub: list[str] = []
            _explain(branch, datum, path, named, sub)
            if not sub:
                return
        out.append(f"{where}: expected one of {_type_name(schema)}, got {_describe(datum)}")
        return
    t = schema.get("type")
    if t == "record":
        if not isinstance(datum, dict):
            out.append(f"{where}: expected a record {schema['name']} (a dict), got {_describe(datum)}")
            return
        for field in schema["fields"]:
            name = field["name"]
            sub_path = f"{path}.{name}" if path else name
            if name not in datum:
                if "default" not in field and not (isinstance(field["type"], list) and "null" in field["type"]):
                    out.append(f"{sub_path}: required field is missing")
                continue
            _explain(field["type"], datum[name], sub_path, named, out)
    elif t == "enum":
        if datum not in schema["symbols"]:
            out.append(f"{where}: expected one of the symbols {schema['symbols']}, got {_describe(datum)}")
    elif t == "array":
        if not isinstance(datum, (list, tuple)):
            out.append(f"{where}: expected an array (a list), got {_describe(datum)}")
            return
        for i, item in enumerate(datum):
            _explain(schema["items"], item, f"{path}[{i}]", named, out)
    elif t == "map":
        if not isinstance(datum, dict):
            out.append(f"{where}: expected a map (a dict), got {_describe(datum)}")
            return
        for k, v in datum.items():
            if not isinstance(k, str):
                out.append(f"{where}: map keys must be strings, got {_describe(k)}")
            _explain(schema["values"], v, f"{path}[{k!r}]", named, out)
    elif t == "fixed":
        if not isinstance(datum, (bytes, bytearray)) or len(datum) != schema["size"]:
            out.append(f"{where}: expected {schema['size']} bytes, got {_describe(datum)}")
    else:
        _explain(t, datum, path, named, out)


__all__ = ["encode", "decode", "decode_untrusted", "explain", "CodecError", "DecodeError", "EncodeError"]
