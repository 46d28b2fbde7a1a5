"""Validators and normalisers for the identifiers signals carry (BSN, postcode, plate, KvK, BAG).

Pure functions: intake calls them before anything is stored, so a malformed identifier never
reaches the blind index. None of them echo the value in an error; they answer yes/no or None.
"""

from __future__ import annotations

import re

__all__ = [
    "is_valid_bag_id",
    "is_valid_bsn",
    "is_valid_kvk",
    "normalise_plate",
    "normalise_postcode",
    "valid_bsn_from",
]

_NINE_DIGITS = re.compile(r"[0-9]{9}")
_EIGHT_DIGITS = re.compile(r"[0-9]{8}")
_SIXTEEN_DIGITS = re.compile(r"[0-9]{16}")
_POSTCODE = re.compile(r"([1-9][0-9]{3}) ?([A-Za-z]{2})")
_PLATE = re.compile(r"[A-Z0-9]{4,8}")
# PostNL does not issue these letter pairs (they recall the SA, SD and SS of the war years).
_UNUSED_POSTCODE_LETTERS = frozenset({"SA", "SD", "SS"})
# The BSN eleven test weighs the digits 9, 8, ..., 2 and the last digit -1.
_BSN_WEIGHTS = (9, 8, 7, 6, 5, 4, 3, 2, -1)


def _bsn_checksum(digits: str) -> int:
    return sum(w * int(d) for w, d in zip(_BSN_WEIGHTS, digits, strict=True))


def is_valid_bsn(value: str) -> bool:
    """True for nine digits that pass the eleven test and are not all zeros."""
    if not isinstance(value, str) or _NINE_DIGITS.fullmatch(value) is None:
        return False
    if value == "000000000":
        return False
    return _bsn_checksum(value) % 11 == 0


def valid_bsn_from(n: int) -> str:
    """The first valid BSN at or after `n` (0 <= n < 10**9), for demo and test data.

    Demo data must pass intake, so it needs numbers that pass the eleven test; counting up
    from a seed gives many distinct ones without a list.
    """
    if not 0 <= n < 10**9:
        raise ValueError("n must be between 0 and 999999999")
    candidate = max(n, 1)
    while candidate < 10**9:
        text = f"{candidate:09d}"
        if is_valid_bsn(text):
            return text
        candidate += 1
    raise ValueError("no valid BSN at or after n")


def normalise_postcode(value: str) -> str | None:
    """`"1234 ab"` -> `"1234AB"`; None when it is not a Dutch postcode."""
    if not isinstance(value, str):
        return None
    match = _POSTCODE.fullmatch(value.strip())
    if match is None:
        return None
    letters = match.group(2).upper()
    if letters in _UNUSED_POSTCODE_LETTERS:
        return None
    return match.group(1) + letters


def normalise_plate(value: str) -> str | None:
    """Licence plate in upper case without dashes or spaces (4-8 letters/digits); else None."""
    if not isinstance(value, str):
        return None
    plate = value.replace("-", "").replace(" ", "").upper()
    if _PLATE.fullmatch(plate) is None:
        return None
    return plate


def is_valid_kvk(value: str) -> bool:
    """A Chamber of Commerce number: exactly eight digits."""
    return isinstance(value, str) and _EIGHT_DIGITS.fullmatch(value) is not None


def is_valid_bag_id(value: str) -> bool:
    """A BAG object identifier (nummeraanduiding or verblijfsobject): sixteen digits."""
    return isinstance(value, str) and _SIXTEEN_DIGITS.fullmatch(value) is not None
