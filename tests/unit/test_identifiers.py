"""Identifier validation and normalisation for signal intake."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.core.identifiers import (
    is_valid_bag_id,
    is_valid_bsn,
    is_valid_kvk,
    normalise_plate,
    normalise_postcode,
    valid_bsn_from,
)


@pytest.mark.parametrize("bsn", ["111222333", "123456782", "999999990", "010000008"])
def test_bsn_passing_the_eleven_test_is_valid(bsn: str) -> None:
    assert is_valid_bsn(bsn)


@pytest.mark.parametrize("bsn", [
    "111222334",      # fails the eleven test
    "123456789",      # fails the eleven test
    "000000000",      # all zeros pass the arithmetic but are no BSN
    "12345678",       # eight digits
    "1234567820",     # ten digits
    "12345678a",
    " 111222333",
    "１１１２２２３３３",  # full-width digits are not ASCII digits
    "",
])
def test_bsn_that_is_not_nine_digits_passing_the_eleven_test_is_invalid(bsn: str) -> None:
    assert not is_valid_bsn(bsn)


def test_non_text_bsn_is_invalid() -> None:
    assert not is_valid_bsn(111222333)  # type: ignore[arg-type]


@given(st.integers(min_value=0, max_value=10**9 - 10**6))
@settings(max_examples=200, deadline=None)
def test_valid_bsn_from_gives_a_valid_bsn_at_or_after_n(n: int) -> None:
    bsn = valid_bsn_from(n)
    assert is_valid_bsn(bsn)
    assert int(bsn) >= n
    # No valid BSN was skipped between n and the answer.
    assert not any(is_valid_bsn(f"{k:09d}") for k in range(max(n, 1), int(bsn)))


def test_valid_bsn_from_refuses_out_of_range() -> None:
    with pytest.raises(ValueError, match="between"):
        valid_bsn_from(10**9)


@pytest.mark.parametrize(("raw", "normal"), [
    ("1012AB", "1012AB"), ("1012 ab", "1012AB"), ("9999zz", "9999ZZ"), (" 1012AB ", "1012AB"),
])
def test_postcode_is_normalised(raw: str, normal: str) -> None:
    assert normalise_postcode(raw) == normal


@pytest.mark.parametrize("raw", [
    "0123AB",  # first digit 0
    "1012SA", "1012sd", "1012 SS",  # letter pairs not issued
    "1012A", "101AB", "1012ABC", "1012  AB", "1012-AB", "", "ABCD12", "1012ÄB",
])
def test_bad_postcode_is_refused(raw: str) -> None:
    assert normalise_postcode(raw) is None


@pytest.mark.parametrize(("raw", "normal"), [
    ("12-ABC-3", "12ABC3"), ("xx-99-yy", "XX99YY"), ("G 123 BB", "G123BB"), ("AB12", "AB12"),
])
def test_plate_is_normalised(raw: str, normal: str) -> None:
    assert normalise_plate(raw) == normal


@pytest.mark.parametrize("raw", ["ABC", "123456789", "AB_12_CD", "AB.12.CD", "", "ÄB-12-CD"])
def test_bad_plate_is_refused(raw: str) -> None:
    assert normalise_plate(raw) is None


def test_kvk_is_eight_digits() -> None:
    assert is_valid_kvk("12345678")
    for bad in ("1234567", "123456789", "1234567a", ""):
        assert not is_valid_kvk(bad)


def test_bag_id_is_sixteen_digits() -> None:
    assert is_valid_bag_id("0363010000000001")
    for bad in ("036301000000001", "03630100000000011", "036301000000000a", ""):
        assert not is_valid_bag_id(bad)
