"""The codec's exceptions."""

from __future__ import annotations


class CodecError(ValueError):
    """An event could not be encoded or decoded, or the schemas are inconsistent."""


class EncodeError(CodecError):
    """An event does not fit its type's schema (or its type is unknown)."""


class DecodeError(CodecError):
    """Bytes are not a decodable eventflow event."""
