"""The event codec: Avro schemas by event type and version, and the single-object
encoding of events on the log.

    >>> from eventflow.codec import encode, decode
    >>> data = encode(event)          # C3 01 | fingerprint | Avro body
    >>> decode(data) == event
    True

Schemas are the ``*.avsc`` files of the installed ``eventflow.schemas`` package, one per
event type and version; events are always written with the current (highest) version
and read back resolved to it, whatever version wrote them.
"""

from eventflow.codec.binary import decode, decode_untrusted, encode, explain
from eventflow.codec.compat import check_backward, check_registry
from eventflow.codec.errors import CodecError, DecodeError, EncodeError
from eventflow.codec.registry import (
    ENVELOPE_FIELDS,
    HEADER_SIZE,
    MARKER,
    Schema,
    SchemaRegistry,
    fingerprint,
    registry,
    strip_logical_types,
)

__all__ = [
    "CodecError",
    "DecodeError",
    "ENVELOPE_FIELDS",
    "EncodeError",
    "HEADER_SIZE",
    "MARKER",
    "Schema",
    "SchemaRegistry",
    "check_backward",
    "check_registry",
    "decode",
    "decode_untrusted",
    "encode",
    "explain",
    "fingerprint",
    "registry",
    "strip_logical_types",
]
