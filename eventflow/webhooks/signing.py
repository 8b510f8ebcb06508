"""Standard Webhooks signatures: ``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``.

A secret is ``whsec_`` + base64 of random bytes; the HMAC key is those bytes. While a
secret is being rotated, each message carries one signature per live secret (space
separated), so a receiver can switch at its own pace.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets as _random
from collections.abc import Sequence

PREFIX = "whsec_"


def new_secret() -> str:
    return PREFIX + base64.b64encode(_random.token_bytes(32)).decode()


def check_secret(secret: str) -> str:
    """A secret given by a user: ``whsec_`` + base64 of 24 to 64 bytes, or a ValueError."""
    if not isinstance(secret, str) or not secret.startswith(PREFIX):
        raise ValueError("a webhook secret must start with 'whsec_' followed by base64 (leave it out to have one made)")
    try:
        key = base64.b64decode(secret[len(PREFIX):], validate=True)
    except ValueError:
        raise ValueError("a webhook secret must be 'whsec_' followed by valid base64") from None
    if not 24 <= len(key) <= 64:
        raise ValueError(f"a webhook secret must hold 24 to 64 bytes of key, this one holds {len(key)}")
    return secret


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret[len(PREFIX):])
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def signature_header(secrets: Sequence[str], message_id: str, timestamp: int, body: bytes) -> str:
    return " ".join(sign(secret, message_id, timestamp, body) for secret in secrets)
