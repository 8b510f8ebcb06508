"""Slow salted hashes for passwords and token secrets (the standard library's scrypt).

A fast hash (sha256) of a leaked table is cracked at billions of guesses a second; scrypt
costs each guess ~16 MB of memory and tens of milliseconds. The cost is paid once per
credential and process: verified credentials are cached (:mod:`eventflow.auth.authenticator`).
Stored form: ``scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>``, so the cost can rise later
without breaking older hashes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

N, R, P = 2**14, 8, 1
SALT_BYTES, HASH_BYTES = 16, 32


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_secret(secret: str) -> str:
    salt = os.urandom(SALT_BYTES)
    digest = hashlib.scrypt(secret.encode("utf-8"), salt=salt, n=N, r=R, p=P, dklen=HASH_BYTES)
    return f"scrypt${N}${R}${P}${_b64(salt)}${_b64(digest)}"


def verify_secret(secret: str, stored: str) -> bool:
    """Whether ``secret`` hashes to ``stored`` (constant time in the comparison)."""
    try:
        scheme, n, r, p, salt, expected = stored.split("$")
        if scheme != "scrypt":
            return False
        digest = hashlib.scrypt(
            secret.encode("utf-8"), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
            dklen=len(base64.b64decode(expected)), maxmem=256 * 1024 * 1024,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, base64.b64decode(expected))
