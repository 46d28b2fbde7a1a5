"""The volume budget: signals released per hour, per client and per acting person
(docs/security.md row 52).

The request rate limit counts requests, not what they carry: one area disclosure can
release a page of signals, and a client paging through a busy area at its request rate
would fill the log and the disk, and slow every other partner down. So every released
signal is also counted against two budgets, the client's and (when one is named) the
acting person's, each `per_hour` signals in the last hour. The hour is counted in whole
minutes: at most `per_hour` signals are released in the minute of a request and the 59
before it.

A request takes what it may release before it decrypts anything (`take`: up to what it
wants, at most what both budgets have left) and gives back what it did not release
(`give_back`), so requests racing each other never release more than the budget between
them. An exhausted budget is 429 with `Retry-After` (the seconds until its oldest minute
leaves the hour); the first refusal of an episode is recorded as an `alert` entry by the
caller, later ones are not, so refused requests cannot flood the log.

Counting is in process memory, per broker process, like the other abuse limits
(`broker.services.ratelimit`): with N processes a client gets up to N times the budget.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from broker.errors import RateLimited

MINUTE: Final = 60.0
WINDOW_MINUTES: Final = 60
MAX_HOLDERS: Final = 50_000
"""Past this many budget holders, those with nothing released in the hour are dropped."""


@dataclass(slots=True)
class _Holder:
    minutes: deque[list[int]] = field(default_factory=deque)  # [minute, released]
    total: int = 0
    alerted: bool = False


class ReleaseBudget:
    """The released-signal budgets of one broker process; thread-safe."""

    def __init__(self, per_hour: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_hour = per_hour
        self._clock = clock
        self._lock = threading.Lock()
        self._holders: dict[str, _Holder] = {}

    def _holder(self, key: str, minute: int) -> _Holder:
        holder = self._holders.get(key)
        if holder is None:
            if len(self._holders) >= MAX_HOLDERS:
                self._drop_idle(minute)
            holder = self._holders[key] = _Holder()
        minutes = holder.minutes
        while minutes and minutes[0][0] <= minute - WINDOW_MINUTES:
            holder.total -= minutes.popleft()[1]
        return holder

    def _drop_idle(self, minute: int) -> None:
        for key, holder in list(self._holders.items()):
            if not holder.minutes or holder.minutes[-1][0] <= minute - WINDOW_MINUTES:
                del self._holders[key]

    def take(self, keys: Sequence[str], wanted: int) -> int:
        """Count up to `wanted` signals against every budget in `keys`; returns how many
        were granted (what all of them have left, at most `wanted`). Granting nothing while
        signals were wanted starts (or continues) an over-budget episode."""
        minute = int(self._clock() // MINUTE)
        with self._lock:
            holders = [self._holder(key, minute) for key in keys]
            granted = wanted
            for holder in holders:
                granted = min(granted, self.per_hour - holder.total)
            granted = max(granted, 0)
            for holder in holders:
                if granted:
                    if holder.minutes and holder.minutes[-1][0] == minute:
                        holder.minutes[-1][1] += granted
                    else:
                        holder.minutes.append([minute, granted])
                    holder.total += granted
                if holder.total < self.per_hour:
                    holder.alerted = False
            return granted

    def give_back(self, keys: Sequence[str], count: int) -> None:
        """Return `count` signals taken by this request (in this minute or earlier) and not
        released."""
        if count <= 0:
            return
        with self._lock:
            for key in keys:
                holder = self._holders.get(key)
                if holder is None:
                    continue
                left = count
                while left and holder.minutes:
                    newest = holder.minutes[-1]
                    back = min(left, newest[1])
                    newest[1] -= back
                    holder.total -= back
                    left -= back
                    if newest[1] == 0:
                        holder.minutes.pop()

    def exhausted(self, keys: Sequence[str]) -> bool | None:
        """None while every budget in `keys` has room; else whether this is the first
        refusal of an episode for one of them (the caller records an `alert` entry)."""
        minute = int(self._clock() // MINUTE)
        with self._lock:
            spent = []
            for key in keys:
                if key not in self._holders:  # nothing released in the hour
                    continue
                holder = self._holder(key, minute)
                if holder.total >= self.per_hour:
                    spent.append(holder)
                else:
                    holder.alerted = False
            if not spent:
                return None
            first = not any(h.alerted for h in spent)
            for holder in spent:
                holder.alerted = True
            return first

    def over_budget(self, keys: Sequence[str]) -> RateLimited:
        """The 429 for an exhausted budget, with the seconds until it has room again."""
        now = self._clock()
        minute = int(now // MINUTE)
        wait = 1
        with self._lock:
            for key in keys:
                holder = self._holder(key, minute)
                if holder.total < self.per_hour or not holder.minutes:
                    continue
                # The holder has room again once enough of its oldest minutes leave the hour.
                left = holder.total
                for stamp, released in holder.minutes:
                    left -= released
                    if left < self.per_hour:
                        leaves = (stamp + WINDOW_MINUTES) * MINUTE
                        wait = max(wait, math.ceil(leaves - now))
                        break
        return RateLimited(wait, "Too many signals released in the last hour; wait, or ask "
                                 "for less.")

    def released(self, key: str) -> int:
        """Signals counted against `key` in the last hour."""
        minute = int(self._clock() // MINUTE)
        with self._lock:
            return self._holder(key, minute).total if key in self._holders else 0
