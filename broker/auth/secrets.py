"""Client secrets: generated here, stored only as a slow salted hash (scrypt).

A database dump must not hand out working credentials, so the broker keeps
`scrypt$n$r$p$salt$hash` and compares in constant time. The cost parameters
travel with each hash, so they can be raised later without breaking old ones.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets as _random
from functools import cache
from typing import Final

SCRYPT_N: Final = 2**14
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
SALT_BYTES: Final = 16
HASH_BYTES: Final = 32
SECRET_BYTES: Final = 32
# Longer inputs are refused before hashing: no real secret is this long.
MAX_SECRET_CHARS: Final = 512
# Refuse stored parameters that would make one check cost more than ~128 MiB.
_MAX_COST: Final = 2**17
_SCHEME: Final = "scrypt"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def new_secret() -> str:
    """A fresh client secret: 32 random bytes, URL-safe text."""
    return _random.token_urlsafe(SECRET_BYTES)


def _derive(secret: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(
        secret.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * r * n, dklen=length
    )


def hash_secret(secret: str) -> str:
    """The stored form of a secret: `scrypt$n$r$p$salt_b64$hash_b64`."""
    salt = _random.token_bytes(SALT_BYTES)
    digest = _derive(secret, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P, HASH_BYTES)
    return f"{_SCHEME}${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def _parse(stored: str) -> tuple[int, int, int, bytes, bytes] | None:
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != _SCHEME:
        return None
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt = base64.b64decode(parts[4], validate=True)
        digest = base64.b64decode(parts[5], validate=True)
    except ValueError:
        return None
    if not (1 < n <= _MAX_COST and n & (n - 1) == 0 and 0 < r <= 32 and 0 < p <= 16):
        return None
    if len(salt) < SALT_BYTES or not digest:
        return None
    return n, r, p, salt, digest


def verify_secret(secret: str, stored: str) -> bool:
    """True when `secret` matches the stored hash; constant-time in the comparison."""
    parsed = _parse(stored)
    if parsed is None or not secret or len(secret) > MAX_SECRET_CHARS:
        return False
    n, r, p, salt, digest = parsed
    try:
        candidate = _derive(secret, salt, n, r, p, len(digest))
    except (ValueError, UnicodeEncodeError):
        return False
    return hmac.compare_digest(candidate, digest)


@cache
def dummy_hash() -> str:
    """A hash no secret matches, checked when the client does not exist.

    An unknown client id then costs the same time as a wrong secret, so ids
    cannot be probed by timing the token endpoint.
    """
    return hash_secret(new_secret())
