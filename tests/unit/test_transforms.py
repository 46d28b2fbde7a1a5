"""Field transforms, pseudonyms and signal references."""

from __future__ import annotations

import base64
import os
import re
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from broker.core.policy import parse_transform
from broker.core.transforms import (
    HmacKey,
    b32_26,
    flatten_signal,
    generalise,
    mask,
    normalise_value,
    pseudonymise,
    release,
    signal_ref,
)

KEY = bytes(range(32))
PSEUDONYM = re.compile(r"ps_[a-z2-7]{26}")
REF = re.compile(r"sg_[a-z2-7]{26}")
TODAY = date(2026, 11, 28)

API_EXAMPLE = {
    "category": "energie-afwijking",
    "legal_basis": "elektriciteitswet-levering",
    "subject": {"type": "address", "bag_id": "0363010000000001"},
    "location": {"postcode": "1012AB", "house_number": 12, "street": "Dijkstraat",
                 "city": "Amsterdam"},
    "observed_at": "2026-11-20T09:00:00+01:00",
    "description": "Meter seal broken, consumption tripled",
    "attributes": {"kwh_per_month": 2400, "meter_seal_broken": True},
}


# RFC 4231 section 4: HMAC-SHA256 test cases 1, 2, 6 and 7 (the last two use keys longer
# than the SHA-256 block, which must be hashed first).
@pytest.mark.parametrize(("key", "data", "mac"), [
    (b"\x0b" * 20, b"Hi There",
     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (b"Jefe", b"what do ya want for nothing?",
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    (b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First",
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    (b"\xaa" * 131, b"This is a test using a larger than block-size key and a larger than "
     b"block-size data. The key needs to be hashed before being used by the HMAC algorithm.",
     "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
])
def test_hmac_matches_rfc_4231_vectors(key: bytes, data: bytes, mac: str) -> None:
    assert HmacKey(key).mac(data).hex() == mac


def test_b32_is_rfc_4648_base32_lower_case_first_26_characters() -> None:
    for _ in range(200):
        digest = os.urandom(32)
        assert b32_26(digest) == base64.b32encode(digest).decode("ascii")[:26].lower()


def test_pseudonym_has_the_documented_form_and_is_stable() -> None:
    first = pseudonymise(KEY, "gemeente", "integrale-controle", "subject.bsn", "111222333")
    again = pseudonymise(KEY, "gemeente", "integrale-controle", "subject.bsn", "111222333")
    assert PSEUDONYM.fullmatch(first)
    assert first == again


def test_pseudonym_is_unlinkable_across_recipient_purpose_path_and_key() -> None:
    value = "111222333"
    variants = {
        pseudonymise(KEY, "gemeente", "integrale-controle", "subject.bsn", value),
        pseudonymise(KEY, "politie", "integrale-controle", "subject.bsn", value),
        pseudonymise(KEY, "gemeente", "bibob-toets", "subject.bsn", value),
        pseudonymise(KEY, "gemeente", "integrale-controle", "subject.kvk", value),
        pseudonymise(bytes(32), "gemeente", "integrale-controle", "subject.bsn", value),
    }
    assert len(variants) == 5


def test_pseudonym_input_is_length_prefixed_not_concatenated() -> None:
    assert (pseudonymise(KEY, "ab", "c", "p", "v") != pseudonymise(KEY, "a", "bc", "p", "v"))
    assert (pseudonymise(KEY, "r", "p", "ab", "c") != pseudonymise(KEY, "r", "p", "a", "bc"))


def test_equal_values_give_equal_pseudonyms_after_normalisation() -> None:
    def ps(value: object) -> str:
        return pseudonymise(KEY, "gemeente", "p", "attributes.x", value)

    assert ps(" Kapsalon ") == ps("Kapsalon")
    assert ps("e\u0301") == ps("\u00e9")  # NFD and NFC spellings of é
    assert ps(2400) == ps(2400.0)
    assert ps("12") != ps(12)
    assert ps(True) != ps(1)
    assert normalise_value(True) != normalise_value(1)


def test_signal_ref_form_and_scope() -> None:
    ref = signal_ref(KEY, "gemeente", "integrale-controle", "sig_1")
    assert REF.fullmatch(ref)
    assert ref == signal_ref(KEY, "gemeente", "integrale-controle", "sig_1")
    assert ref != signal_ref(KEY, "politie", "integrale-controle", "sig_1")
    assert ref != signal_ref(KEY, "gemeente", "bibob-toets", "sig_1")
    assert ref != signal_ref(KEY, "gemeente", "integrale-controle", "sig_2")
    # A pseudonym and a reference never share a MAC input, even with colliding texts.
    assert ref[3:] != pseudonymise(KEY, "gemeente", "integrale-controle", "sig_1", "")[3:]


@pytest.mark.parametrize(("option", "value", "expected"), [
    ("year", "2026-11-20T09:00:00+01:00", "2026"),
    ("month", "2026-11-20T09:00:00+01:00", "2026-11"),
    ("day", "2026-11-20T23:30:00-05:00", "2026-11-20"),  # the day as written, in its offset
    ("month", "2026-02-03", "2026-02"),
    ("day", date(2026, 1, 2), "2026-01-02"),
    ("year", datetime(2025, 12, 31, 23, 0, tzinfo=UTC), "2025"),
    ("pc4", "1012AB", "1012"),
])
def test_generalise_words(option: str, value: object, expected: str) -> None:
    assert generalise(option, None, value, TODAY) == expected


@pytest.mark.parametrize(("value", "width", "expected"), [
    (2400, 500, {"gte": 2000, "lt": 2500}),
    (2500, 500, {"gte": 2500, "lt": 3000}),
    (0, 500, {"gte": 0, "lt": 500}),
    (499.99, 500, {"gte": 0, "lt": 500}),
    (-1, 500, {"gte": -500, "lt": 0}),
    (-5e-324, 500, {"gte": -500, "lt": 0}),  # the division alone would round to -0.0
])
def test_generalise_bucket(value: float, width: int, expected: dict[str, int]) -> None:
    assert generalise("bucket", width, value, TODAY) == expected


@pytest.mark.parametrize(("birthdate", "expected"), [
    ("1990-11-28", {"gte": 30, "lt": 40}),   # 36 today
    ("1986-11-28", {"gte": 40, "lt": 50}),   # 40th birthday today
    ("1986-11-29", {"gte": 30, "lt": 40}),   # 40 tomorrow
    ("2020-01-01", {"gte": 0, "lt": 10}),
])
def test_generalise_age_band_uses_whole_years_on_the_day(birthdate: str,
                                                         expected: dict[str, int]) -> None:
    assert generalise("age_band", 10, birthdate, TODAY) == expected


@pytest.mark.parametrize(("option", "n", "value"), [
    ("month", None, "not a date"), ("month", None, 12), ("pc4", None, 1012),
    ("bucket", 500, "2400"), ("bucket", 500, True), ("bucket", 500, float("nan")),
    ("age_band", 10, "1990-13-01"), ("age_band", 10, 1990),
])
def test_generalise_withholds_values_that_do_not_fit(option: str, n: int | None,
                                                     value: object) -> None:
    assert generalise(option, n, value, TODAY) is None


@pytest.mark.parametrize(("value", "keep", "expected"), [
    ("Kapsalon De Schaar", 4, "**************haar"),
    ("12ABC3", 0, "******"),
    ("abc", 3, "***"),  # keeping all would reveal it whole
    ("ab", 5, "**"),
])
def test_mask_keeps_only_the_last_characters(value: str, keep: int, expected: str) -> None:
    assert mask(value, keep) == expected


def test_flatten_signal_gives_dotted_paths_without_the_envelope() -> None:
    assert flatten_signal(API_EXAMPLE) == {
        "subject.type": "address",
        "subject.bag_id": "0363010000000001",
        "location.postcode": "1012AB",
        "location.house_number": 12,
        "location.street": "Dijkstraat",
        "location.city": "Amsterdam",
        "observed_at": "2026-11-20T09:00:00+01:00",
        "description": "Meter seal broken, consumption tripled",
        "attributes.kwh_per_month": 2400,
        "attributes.meter_seal_broken": True,
    }


def test_flatten_signal_drops_nulls_and_renders_datetimes() -> None:
    when = datetime(2026, 11, 20, 9, tzinfo=timezone(timedelta(hours=1)))
    flat = flatten_signal({"subject": {"type": "person", "name": None}, "observed_at": when,
                           "description": None})
    assert flat == {"subject.type": "person", "observed_at": "2026-11-20T09:00:00+01:00"}


def test_release_gives_exactly_the_named_fields_through_their_transforms() -> None:
    fields = {
        "location.postcode": parse_transform("reveal"),
        "observed_at": parse_transform({"generalise": "month"}),
        "attributes.kwh_per_month": parse_transform({"generalise": {"bucket": 500}}),
        "subject.bag_id": parse_transform("pseudonymise"),
        "description": parse_transform("redact"),
        "location.street": parse_transform({"mask": {"keep_last": 4}}),
        "location.house_letter": parse_transform("reveal"),  # the signal has none
    }
    released = release(fields, flatten_signal(API_EXAMPLE), recipient="gemeente",
                       purpose="integrale-controle", pseudonym_key=KEY, today=TODAY)
    assert released == {
        "location.postcode": "1012AB",
        "observed_at": "2026-11",
        "attributes.kwh_per_month": {"gte": 2000, "lt": 2500},
        "subject.bag_id": pseudonymise(KEY, "gemeente", "integrale-controle",
                                       "subject.bag_id", "0363010000000001"),
        "description": None,
        "location.street": "******raat",
    }


def test_release_with_no_fields_releases_nothing() -> None:
    assert release({}, flatten_signal(API_EXAMPLE), recipient="gemeente", purpose="p",
                   pseudonym_key=KEY, today=TODAY) == {}
