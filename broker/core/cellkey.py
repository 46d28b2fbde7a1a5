"""The cell key method: consistent noise on the counts of an area summary (docs/policy.md).

Each signal has a record key, a keyed pseudorandom number in [0, 2**64) made from its id;
a cell (the signals one category counts in one answer) has as its cell key the sum of its
records' keys modulo 2**64, a fraction of the key space that is uniform whatever the cell.
A fixed perturbation table maps (true count, cell key) to the noise added. So the same set
of signals always gets the same count, whoever asks, for whichever purpose and at which
area level, and asking again averages nothing away; a cell of other signals (a nested or
overlapping area, a rule with another filter, one signal added) gets noise of its own, so
subtracting published counts leaves the sum of several noises rather than a suppressed
cell's count. Statistics offices publish tables this way (the Australian Bureau of
Statistics' TableBuilder, Statistics Netherlands, the ONS for the 2021 census).

The table has one row for a count of 1, one for 2, and one for every count from 3 up:
weights out of 10 000 for each noise from -3 to +3, with mean 0 and variance 1 in every
row, a chance of 0.1 % for each of -3 and +3, the rest spread as evenly as those allow
(maximal entropy, in steps of 10), and no perturbed count below zero. A count of zero
stays zero. The suppression threshold applies to the perturbed count, so a cell appearing
after one more signal says nothing exact about the count before.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Final

RECORD_KEY_LABEL: Final = b"sluis/cell-key/v1"
"""The HMAC label of record keys, apart from every other use of the same key."""
KEY_SPACE: Final = 1 << 64
WEIGHT_TOTAL: Final = 10_000
MAX_NOISE: Final = 3


def _row(weights: dict[int, int]) -> Mapping[int, int]:
    return MappingProxyType(dict(sorted(weights.items())))


TABLE: Final[Mapping[int, Mapping[int, int]]] = MappingProxyType({
    1: _row({-1: 3970, 0: 3080, 1: 1940, 2: 1000, 3: 10}),
    2: _row({-2: 630, -1: 2460, 0: 3830, 1: 2450, 2: 620, 3: 10}),
    3: _row({-3: 10, -2: 620, -1: 2430, 0: 3880, 1: 2430, 2: 620, 3: 10}),
})
"""Noise weights (out of `WEIGHT_TOTAL`) by true count; row 3 serves every count from 3."""


def row(count: int) -> Mapping[int, int]:
    """The noise distribution of a true count of at least 1: weights by noise."""
    if count < 1:
        raise ValueError("only a count of at least 1 has noise")
    return TABLE[min(count, max(TABLE))]


def record_key(secret: bytes, signal_id: str) -> int:
    """A signal's record key: a keyed HMAC of its id, as a number in [0, 2**64)."""
    message = RECORD_KEY_LABEL + b"\x1f" + signal_id.encode()
    return int.from_bytes(hmac.digest(secret, message, "sha256")[:8], "big")


def cell_key(record_keys: Iterable[int]) -> int:
    """The cell key of a set of records: the sum of their keys modulo 2**64."""
    return sum(record_keys) % KEY_SPACE


def noise(count: int, key: int) -> int:
    """The noise the table adds to a true count in the cell with `key` (0 for 0)."""
    if count == 0:
        return 0
    column = (key % KEY_SPACE) * WEIGHT_TOTAL >> 64  # the key's place among the weights
    below = 0
    for value, weight in row(count).items():
        below += weight
        if column < below:
            return value
    raise AssertionError("a row's weights sum to WEIGHT_TOTAL")  # pragma: no cover


def perturbed(count: int, key: int) -> int:
    """The true count with the table's noise; never below zero."""
    return count + noise(count, key)


def published(count: int, key: int, threshold: int) -> int | None:
    """The perturbed count, or None (suppressed) when it is below `threshold` (at least 1,
    so an empty cell is always suppressed)."""
    shown = perturbed(count, key)
    return shown if shown >= max(threshold, 1) else None


def published_count(secret: bytes, signal_ids: Iterable[str], threshold: int) -> int | None:
    """The count of a cell of signals as an answer shows it: perturbed, or None."""
    keys = [record_key(secret, signal_id) for signal_id in set(signal_ids)]
    return published(len(keys), cell_key(keys), threshold)
