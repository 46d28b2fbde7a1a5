"""Abuse limits on requests for signals: a request rate per client and purpose, and a brake
on one client asking about many distinct subjects (enumeration, docs/security.md row 24).

- Rate: a token bucket per (client, purpose) holding one minute's allowance
  (`request_rate_per_minute`), refilled continuously; an empty bucket is 429 with
  `Retry-After`.
- Fishing: the distinct subjects (blind-index tokens) one client asked about in the last
  hour. Asking about one more than `fishing_subjects_per_hour` is 429, and the first time
  in an episode the caller is told to record an `alert` audit entry. Subjects already asked
  about in the window stay allowed. A query that names no subject (an area, signal ids)
  counts the subjects of the signals it releases, and its page ends before the first that
  does not fit.

Counting is in process memory, per broker process: with N processes a client gets up to N
times the allowance. That bounds abuse well enough for a handful of processes; a shared
counter (in the database) is the step for a larger fleet.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from broker.errors import RateLimited

HOUR: Final = 3600.0
UNKNOWN_PURPOSE: Final = "(unknown)"
# Past this many buckets, full (idle) ones are dropped: they hold no information.
MAX_BUCKETS: Final = 50_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


@dataclass(slots=True)
class _Subjects:
    seen: OrderedDict[bytes, float]
    alerted: bool = False


class AbuseLimits:
    """The limits of one broker process; thread-safe."""

    def __init__(
        self,
        rate_per_minute: int,
        subjects_per_hour: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity = float(rate_per_minute)
        self.refill = rate_per_minute / 60.0  # tokens per second
        self.subjects_per_hour = subjects_per_hour
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._subjects: dict[str, _Subjects] = {}

    def admit(self, client_id: str, purpose: str) -> None:
        """Take one request from the (client, purpose) bucket; 429 when it is empty.

        Pass a purpose of the live pack (or `UNKNOWN_PURPOSE`): the buckets are keyed by it,
        and made-up purposes must not grow the table.
        """
        now = self._clock()
        with self._lock:
            if len(self._buckets) >= MAX_BUCKETS:
                self._drop_full(now)
            key = (client_id, purpose)
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(self.capacity, now)
            else:
                refilled = bucket.tokens + (now - bucket.stamp) * self.refill
                bucket.tokens = min(self.capacity, refilled)
                bucket.stamp = now
            if bucket.tokens < 1.0:
                wait = math.ceil((1.0 - bucket.tokens) / self.refill)
                raise RateLimited(wait, "Too many requests for this purpose; slow down.")
            bucket.tokens -= 1.0

    def _drop_full(self, now: float) -> None:
        for key, bucket in list(self._buckets.items()):
            if bucket.tokens + (now - bucket.stamp) * self.refill >= self.capacity:
                del self._buckets[key]

    def _window(self, client_id: str, now: float) -> _Subjects:
        """The client's subjects of the last hour, older ones dropped (under the lock)."""
        state = self._subjects.get(client_id)
        if state is None:
            state = self._subjects[client_id] = _Subjects(OrderedDict())
        seen = state.seen
        while seen:
            oldest, stamp = next(iter(seen.items()))
            if stamp > now - HOUR:
                break
            del seen[oldest]
        return state

    def ask_about(self, client_id: str, subject: bytes) -> bool:
        """Count `subject` among the client's distinct subjects of the last hour.

        Returns True when this request is the first one over the limit in an episode (the
        caller records an `alert` entry, then raises `over_limit`); raises `RateLimited`
        for later new subjects in the same episode. A subject already counted passes.
        """
        now = self._clock()
        with self._lock:
            state = self._window(client_id, now)
            seen = state.seen
            if subject in seen:
                seen[subject] = now
                seen.move_to_end(subject)
                return False
            if len(seen) < self.subjects_per_hour:
                seen[subject] = now
                state.alerted = False
                return False
            if state.alerted:
                raise self._over(state, now)
            state.alerted = True
            return True

    def ask_about_released(self, client_id: str, subjects: Sequence[bytes | None]) -> int:
        """Count the subjects of signals about to be released (an area or id query), in
        order, as far as they fit: returns how many of `subjects` fit (None, a signal of no
        subject, always fits). Where none fits, as `ask_about` over the limit: 0 the first
        time in an episode (the caller records an `alert`), `RateLimited` later."""
        now = self._clock()
        with self._lock:
            state = self._window(client_id, now)
            seen = state.seen
            fitting = 0
            for subject in subjects:
                if subject is not None and subject in seen:
                    seen[subject] = now
                    seen.move_to_end(subject)
                elif subject is not None:
                    if len(seen) >= self.subjects_per_hour:
                        break
                    seen[subject] = now
                    state.alerted = False
                fitting += 1
            if fitting or not subjects:
                return fitting
            if state.alerted:
                raise self._over(state, now)
            state.alerted = True
            return 0

    def over_limit(self, client_id: str) -> RateLimited:
        """The 429 for a client over its distinct-subject limit, with the time until the
        oldest subject leaves the window."""
        now = self._clock()
        with self._lock:
            return self._over(self._subjects.get(client_id), now)

    @staticmethod
    def _over(state: _Subjects | None, now: float) -> RateLimited:
        stamps = list(state.seen.values()) if state else []
        wait = math.ceil(min(stamps) + HOUR - now) if stamps else 1
        return RateLimited(wait, "Too many distinct subjects asked about in the last hour.")

    def distinct_subjects(self, client_id: str) -> int:
        with self._lock:
            state = self._subjects.get(client_id)
            return len(state.seen) if state else 0
