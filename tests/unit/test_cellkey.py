"""The cell key method of area summaries (broker/core/cellkey.py): the table's own facts,
the numbers docs/policy.md gives for it, the look-up, and the differencing attacks run
against the pure code over many worlds."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.core import cellkey
from tests.differencing import Seen, could_show, possible

KEYS = st.integers(min_value=0, max_value=cellkey.KEY_SPACE - 1)
COUNTS = st.integers(min_value=0, max_value=100_000)
ROWS = sorted(cellkey.TABLE)


def _share(count: int, noises: set[int]) -> Fraction:
    weights = cellkey.row(count)
    return Fraction(sum(weights[n] for n in noises), cellkey.WEIGHT_TOTAL)


# --- the table ---------------------------------------------------------------------------


@pytest.mark.parametrize("count", ROWS)
def test_each_row_is_a_distribution_with_mean_zero_and_variance_one(count: int) -> None:
    weights = cellkey.row(count)
    assert sum(weights.values()) == cellkey.WEIGHT_TOTAL
    assert all(w > 0 for w in weights.values())
    assert sum(n * w for n, w in weights.items()) == 0
    assert sum(n * n * w for n, w in weights.items()) == cellkey.WEIGHT_TOTAL
    assert max(abs(n) for n in weights) == cellkey.MAX_NOISE
    assert min(weights) == -min(count, cellkey.MAX_NOISE)  # never below zero
    assert list(weights) == sorted(weights)


def test_the_numbers_docs_policy_gives() -> None:
    """docs/policy.md, "Area summaries": what the noise costs, measured on the table."""
    assert cellkey.row(3) is cellkey.row(4) is cellkey.row(10**6)
    assert _share(3, {0}) == Fraction(388, 1000)
    assert _share(3, {-1, 0, 1}) == Fraction(874, 1000)
    assert _share(3, {-2, 2}) == Fraction(124, 1000)
    assert _share(3, {-3, 3}) == Fraction(2, 1000)
    assert _share(1, {-1}) == Fraction(397, 1000)  # a single signal counted as none
    two, three = _noise_difference(2), _noise_difference(3)
    assert round(float(two[0]), 3) == 0.276  # subtracting two counts comes out exact
    assert round(float(three[0]), 3) == 0.227  # subtracting three
    assert sum(n * n * p for n, p in three.items()) == 3


def _noise_difference(cells: int) -> dict[int, Fraction]:
    """The distribution of one count's noise minus the noise of `cells - 1` other counts."""
    one = {n: _share(3, {n}) for n in cellkey.row(3)}
    total = dict(one)
    for _ in range(cells - 1):
        sums: dict[int, Fraction] = {}
        for a, p in total.items():
            for b, q in one.items():
                sums[a - b] = sums.get(a - b, Fraction(0)) + p * q
        total = sums
    return total


@pytest.mark.parametrize("count", [*ROWS, 57])
def test_the_look_up_realises_the_table_exactly(count: int) -> None:
    """One cell key in each of the 10 000 columns gives each noise as often as its weight."""
    seen: dict[int, int] = {}
    for column in range(cellkey.WEIGHT_TOTAL):
        key = -(-column * cellkey.KEY_SPACE // cellkey.WEIGHT_TOTAL)  # the column's first key
        noise = cellkey.noise(count, key)
        seen[noise] = seen.get(noise, 0) + 1
    assert seen == dict(cellkey.row(count))


# --- properties ----------------------------------------------------------------------------


@given(count=COUNTS, key=KEYS)
def test_noise_comes_from_the_row_and_never_goes_below_zero(count: int, key: int) -> None:
    noise = cellkey.noise(count, key)
    assert noise == cellkey.noise(count, key)  # a function of (count, key) alone
    if count == 0:
        assert noise == 0  # zero stays zero
    else:
        assert noise in cellkey.row(count)
    assert cellkey.perturbed(count, key) == count + noise >= 0


@given(count=COUNTS, key=KEYS, threshold=st.integers(min_value=1, max_value=60))
def test_the_threshold_applies_to_the_perturbed_count(count: int, key: int,
                                                      threshold: int) -> None:
    shown = cellkey.published(count, key, threshold)
    perturbed = cellkey.perturbed(count, key)
    assert shown == (perturbed if perturbed >= threshold else None)
    assert could_show(count, shown, threshold)  # the attacker's model is the table's
    if count == 0:
        assert shown is None


@given(keys=st.lists(KEYS, max_size=30), data=st.data())
def test_the_cell_key_is_the_sum_of_its_records_whatever_the_order(
    keys: list[int], data: st.DataObject
) -> None:
    shuffled = data.draw(st.permutations(keys))
    assert cellkey.cell_key(keys) == cellkey.cell_key(shuffled) < cellkey.KEY_SPACE
    cut = data.draw(st.integers(min_value=0, max_value=len(keys)))
    parts = cellkey.cell_key(keys[:cut]) + cellkey.cell_key(keys[cut:])
    assert cellkey.cell_key(keys) == parts % cellkey.KEY_SPACE


@given(secret=st.binary(min_size=32, max_size=32), signal_id=st.text(min_size=1))
def test_record_keys_are_keyed(secret: bytes, signal_id: str) -> None:
    key = cellkey.record_key(secret, signal_id)
    assert 0 <= key < cellkey.KEY_SPACE
    assert key == cellkey.record_key(secret, signal_id)
    other = bytes([secret[0] ^ 1]) + secret[1:]
    assert cellkey.record_key(other, signal_id) != key


def test_record_keys_stay_what_they_are() -> None:
    """A known answer: a changed record key would give every cell fresh noise."""
    secret = bytes(range(32))
    assert cellkey.record_key(secret, "sig_0000000000000000000000000") == 8755486621784438414


@given(ids=st.sets(st.text(min_size=1, max_size=8), max_size=20),
       threshold=st.integers(min_value=1, max_value=10))
def test_a_cells_count_depends_on_its_set_of_signals_only(ids: set[str],
                                                          threshold: int) -> None:
    secret = b"\x01" * 32
    forward = sorted(ids)
    assert cellkey.published_count(secret, forward, threshold) == \
        cellkey.published_count(secret, forward[::-1] + forward, threshold)


# --- the attacks, over many worlds ----------------------------------------------------------

SECRET = b"\x07" * 32
WORLDS = 600


def _shown(ids: list[str]) -> int | None:
    return cellkey.published_count(SECRET, ids, 5)


def test_nested_areas_and_one_added_signal_leave_the_attacker_uncertain() -> None:
    """PC4 minus the shown PC6s, and the counts after one added signal: the subtraction is
    wrong in most worlds, and in none is only one count possible."""
    rng = random.Random(11)
    wrong = made = 0
    for world in range(WORLDS):
        counts = (rng.randint(5, 12), rng.randint(5, 12), rng.randint(1, 4))
        cells = [[f"s{world}-{c}-{i}" for i in range(n)] for c, n in enumerate(counts)]
        everything = [i for cell in cells for i in cell]
        seen = [Seen((c,), _shown(cell)) for c, cell in enumerate(cells)]
        seen.append(Seen((0, 1, 2), _shown(everything)))
        ab, ac, ad, pc4 = (s.shown for s in seen)
        if ad is None and None not in (ab, ac, pc4):
            made += 1
            wrong += pc4 - ab - ac != counts[2]  # type: ignore[operator]
        nested = possible(2, seen, 3)
        added = f"a{world}"
        seen += [Seen((2,), _shown([*cells[2], added]), added=1),
                 Seen((0, 1, 2), _shown([*everything, added]), added=1)]
        timed = possible(2, seen, 3)
        assert counts[2] in nested and counts[2] in timed
        assert len(nested) > 1 and len(timed) > 1
    assert made > WORLDS * 3 // 4
    assert wrong > made * 2 // 3


def test_a_count_with_and_without_a_filter_leaves_the_attacker_uncertain() -> None:
    """All signals of a category minus those a filter keeps: the rest are not exact."""
    rng = random.Random(12)
    wrong = made = 0
    for world in range(WORLDS):
        kept, rest = rng.randint(5, 12), rng.randint(1, 4)
        cells = [[f"k{world}-{i}" for i in range(kept)], [f"r{world}-{i}" for i in range(rest)]]
        seen = [Seen((0,), _shown(cells[0])), Seen((0, 1), _shown(cells[0] + cells[1]))]
        if None not in (seen[0].shown, seen[1].shown):
            made += 1
            wrong += seen[1].shown - seen[0].shown != rest  # type: ignore[operator]
        found = possible(1, seen, 2)
        assert rest in found and len(found) > 1
    assert made > WORLDS * 3 // 4
    assert wrong > made * 2 // 3
