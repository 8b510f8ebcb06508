"""Several encoded events in one body: each length-prefixed (4 bytes, big-endian).

The body of ``POST /api/2.0/eventflow/events`` (the SDK's HTTP transport) and of a
spool file: here, so that the SDK and the server share it without importing each other.
"""

from __future__ import annotations

import struct

from eventflow.codec.errors import DecodeError

CONTENT_TYPE = "application/vnd.eventflow.events"


def pack(encoded: list[bytes]) -> bytes:
    return b"".join(struct.pack(">I", len(item)) + item for item in encoded)


def unpack(body: bytes) -> list[bytes]:
    """The encoded events of a body, or DecodeError naming where it is cut short."""
    items, at = [], 0
    while at < len(body):
        if at + 4 > len(body):
            raise DecodeError("truncated event batch: a length prefix is cut short")
        (size,) = struct.unpack_from(">I", body, at)
        at += 4
        if at + size > len(body):
            raise DecodeError(f"truncated event batch: an event of {size} bytes is cut short")
        items.append(body[at : at + size])
        at += size
    return items
