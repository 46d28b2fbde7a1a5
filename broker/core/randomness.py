"""Random identifiers from a pooled draw of the operating system's random source.

Every call of `os.urandom` lets go of the GIL around its system call, and on a busy
process another thread then takes the interpreter: a request that names four fresh ids
(its request, its disclosure, its audit entry, a subject placeholder) paid four thread
switches for them, measured as the largest single cost of an awaited audit append.
Drawing 4 KiB at a time and handing out slices costs one switch per few hundred ids.

The bytes are the operating system's, each handed out once. This is for identifiers
only; keys and nonces keep their own `os.urandom` calls. A forked child drops the pool it
inherited, so parent and child never hand out the same bytes.
"""

from __future__ import annotations

import base64
import os
import threading
from typing import Final

POOL_BYTES: Final = 4096


class RandomPool:
    """Slices of one `os.urandom` draw, refilled when used up; safe across threads."""

    def __init__(self, size: int = POOL_BYTES) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._buffer = b""
        self._used = 0

    def take(self, count: int) -> bytes:
        """`count` fresh random bytes, never handed out before."""
        if count > self._size:
            return os.urandom(count)
        with self._lock:
            start = self._used
            if start + count > len(self._buffer):
                self._buffer, start = os.urandom(self._size), 0
            self._used = start + count
            return self._buffer[start : start + count]

    def forget(self) -> None:
        """Drop the current draw (in a forked child, which must not reuse its parent's)."""
        self._lock = threading.Lock()
        self._buffer, self._used = b"", 0


_POOL = RandomPool()
os.register_at_fork(after_in_child=_POOL.forget)


def token_bytes(count: int) -> bytes:
    return _POOL.take(count)


def token_hex(count: int) -> str:
    """`count` random bytes as lowercase hex (like `secrets.token_hex`)."""
    return _POOL.take(count).hex()


def token_urlsafe(count: int) -> str:
    """`count` random bytes as unpadded base64url (like `secrets.token_urlsafe`)."""
    return base64.urlsafe_b64encode(_POOL.take(count)).rstrip(b"=").decode("ascii")


def token_b32(count: int) -> str:
    """`count` random bytes as lowercase unpadded base32 (the broker's public ids)."""
    return base64.b32encode(_POOL.take(count)).decode("ascii").rstrip("=").lower()
