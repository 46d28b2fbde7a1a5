"""Brute-force brake for the token endpoint: failures per client id and per address.

After `limit` failed attempts within a minute under one key, every further
attempt under that key (even with the right credentials) gets 429 until the
oldest failure leaves the window (ASVS 6.3.1). The counter lives in the
process; each broker process brakes on its own, which bounds guessing per
process and is enough with a handful of processes.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Final

WINDOW_SECONDS: Final = 60.0
# Past this many keys, every window is swept so that keys with no recent failure go.
MAX_KEYS: Final = 100_000


class FailureCounter:
    """Sliding one-minute windows of failure times, by key (e.g. `client:ID`, `addr:IP`)."""

    def __init__(self, limit: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: dict[str, deque[float]] = {}

    def _window(self, key: str, now: float) -> deque[float] | None:
        window = self._failures.get(key)
        if window is None:
            return None
        while window and window[0] <= now - WINDOW_SECONDS:
            window.popleft()
        if not window:
            del self._failures[key]
            return None
        return window

    def retry_after(self, keys: Iterable[str]) -> int | None:
        """Seconds to wait when any key is over its limit, else None."""
        now = self._clock()
        wait = 0.0
        with self._lock:
            for key in keys:
                window = self._window(key, now)
                if window is not None and len(window) >= self.limit:
                    oldest = window[len(window) - self.limit]
                    wait = max(wait, oldest + WINDOW_SECONDS - now)
        return max(1, math.ceil(wait)) if wait > 0 else None

    def fail(self, keys: Iterable[str]) -> None:
        """Count one failed attempt under each key."""
        now = self._clock()
        with self._lock:
            if len(self._failures) >= MAX_KEYS:
                for key in list(self._failures):
                    self._window(key, now)
            for key in keys:
                window = self._failures.setdefault(key, deque())
                window.append(now)
                # Only the newest `limit` failures decide anything; keep no more.
                while len(window) > self.limit:
                    window.popleft()
