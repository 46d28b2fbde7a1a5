"""The closed audit entry, its RFC 8785 bytes, and the fast canonical check held to `rfc8785`."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from broker.core.entry import (
    ENTRY_FIELDS,
    MAX_SAFE_INTEGER,
    Actor,
    Entry,
    EntryInvalid,
    Item,
    PolicyRef,
    canonical_json,
    decode_entry,
    encode_entry,
    entry_json,
    format_time,
    is_canonical,
    parse_canonical,
    subject_tag,
)

ORIGIN = "sluis.example/audit"


def disclosure(seq: int = 1042) -> Entry:
    return Entry(
        origin=ORIGIN,
        id="aud_01",
        seq=seq,
        time="2026-11-28T10:00:00.123Z",
        action="disclosure",
        outcome="granted",
        actor=Actor(client="cl_1", org="gemeente", roles=["requester"], acting_user_tag="t"),
        purpose="integrale-controle",
        case_reference="ZAAK-2026-0042",
        policy=PolicyRef(pack="demo", hash="sha256:9f86"),
        request_id="req_1",
        items=[
            Item(
                signal_id="sg_1",
                rule="gemeente-energie",
                legal_basis="elektriciteitswet-levering",
                category="energie-afwijking",
                source="netbeheerder",
                fields={"location.postcode": "reveal", "attributes.kwh": {"bucket": 500}},
                subject_tags=["kq9X"],
            )
        ],
        objects={"disclosure_id": "dsc_1"},
    )


EXPECTED = (
    b'{"action":"disclosure","actor":{"acting_user_tag":"t","client":"cl_1","org":"gemeente",'
    b'"roles":["requester"]},"case_reference":"ZAAK-2026-0042","confidential_until":null,'
    b'"id":"aud_01","items":[{"category":"energie-afwijking","fields":{"attributes.kwh":'
    b'{"bucket":500},"location.postcode":"reveal"},"legal_basis":"elektriciteitswet-levering",'
    b'"rule":"gemeente-energie","signal_id":"sg_1","source":"netbeheerder","subject_tags":'
    b'["kq9X"]}],"legal_basis":null,"objects":{"disclosure_id":"dsc_1"},'
    b'"origin":"sluis.example/audit","outcome":"granted","policy":{"hash":"sha256:9f86",'
    b'"pack":"demo"},"purpose":"integrale-controle","reason":null,"request_id":"req_1",'
    b'"seq":1042,"time":"2026-11-28T10:00:00.123Z","v":1}'
)


# --- The entry and its bytes ---


def test_a_disclosure_encodes_to_the_expected_canonical_bytes() -> None:
    data = encode_entry(disclosure())
    assert data == EXPECTED
    assert data == rfc8785.dumps(json.loads(data))
    assert decode_entry(data) == disclosure()
    assert set(json.loads(data)) == ENTRY_FIELDS


def test_a_minimal_entry_carries_every_field() -> None:
    entry = Entry(
        origin=ORIGIN,
        id="aud_2",
        seq=0,
        time="2026-01-01T00:00:00.000Z",
        action="policy_loaded",
        outcome="granted",
    )
    decoded = json.loads(encode_entry(entry))
    assert set(decoded) == ENTRY_FIELDS
    assert decoded["actor"] == {"acting_user_tag": None, "client": None, "org": None, "roles": []}
    assert (decoded["items"], decoded["objects"], decoded["v"]) == ([], {}, 1)


def _variant(change: str) -> bytes:
    return EXPECTED.replace(b'"seq":1042', change.encode(), 1)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (EXPECTED + b"\n", "trailing newline"),
        (b" " + EXPECTED, "leading space"),
        (EXPECTED.replace(b":", b": ", 1), "whitespace"),
        (b"\xef\xbb\xbf" + EXPECTED, "byte order mark"),
        (
            EXPECTED.replace(b'"action":"disclosure",', b"", 1)[:-1] + b',"action":"disclosure"}',
            "order",
        ),
        (EXPECTED.replace(b"ZAAK", b"\\u005aAAK", 1), "needless escape"),
        (_variant('"seq":1042.0'), "float seq"),
        (_variant('"seq":1.042e3'), "exponent"),
        (_variant('"seq":01042'), "leading zero"),
        (_variant('"seq":true'), "bool seq"),
        (_variant('"seq":-1'), "negative seq"),
        (_variant('"seq":9007199254740992'), "beyond 2**53"),
        (_variant('"seq":NaN'), "NaN"),
        (_variant('"seq":1042,"seq":1042'), "duplicate key"),
        (_variant('"seq":1042,"extra":1'), "unknown field"),
        (EXPECTED.replace(b'"reason":null,', b"", 1), "missing field"),
        (EXPECTED.replace(b'"v":1', b'"v":2', 1), "other version"),
        (EXPECTED.replace(b".123Z", b"Z", 1), "time without milliseconds"),
        (EXPECTED.replace(b".123Z", b".123+01:00", 1), "time not in UTC"),
        (EXPECTED.replace(b"2026-11-28T", b"2026-13-28T", 1), "impossible month"),
        (EXPECTED.replace(b'"disclosure"', b'"leak"', 1), "unknown action"),
        (EXPECTED.replace(b'"granted"', b'"maybe"', 1), "unknown outcome"),
        (
            EXPECTED.replace(b'"confidential_until":null', b'"confidential_until":"2026-02-30"'),
            "date",
        ),
        (EXPECTED.replace(b'{"bucket":500}', b'{"bucket":0.5}', 1), "float in a transform"),
        (EXPECTED.replace(b'"dsc_1"', b"1.5", 1), "float in objects"),
        (EXPECTED.replace(b"sg_1", b"sg_\xff", 1), "invalid UTF-8"),
        (EXPECTED[:-1], "truncated"),
        (b"[]", "not an object"),
    ],
)
def test_decode_refuses_anything_but_a_valid_canonical_entry(data: bytes, why: str) -> None:
    with pytest.raises(EntryInvalid):
        decode_entry(data)


@pytest.mark.parametrize(
    "change",
    [
        {"seq": 1.0},
        {"seq": True},
        {"seq": MAX_SAFE_INTEGER + 1},
        {"objects": {"x": 1.5}},
        {"objects": {"x": [1, {"y": 2.0}]}},
        {"time": "2026-11-28T10:00:00Z"},
        {"confidential_until": "28-11-2026"},
        {"action": "leak"},
        {"extra": "field"},
    ],
)
def test_the_model_refuses_floats_and_unknown_values(change: dict[str, Any]) -> None:
    values = disclosure().model_dump() | change
    with pytest.raises(ValidationError):
        Entry(**values)


def test_transforms_refuse_floats() -> None:
    values: dict[str, Any] = {"signal_id": "s", "rule": "r", "legal_basis": "b"}
    values |= {"category": "c", "source": "o", "fields": {"x": {"bucket": 0.5}}}
    with pytest.raises(ValidationError):
        Item(**values)


def test_format_time_is_utc_with_milliseconds() -> None:
    moment = datetime(2026, 11, 28, 11, 0, 0, 123987, tzinfo=timezone(timedelta(hours=1)))
    assert format_time(moment) == "2026-11-28T10:00:00.123Z"
    assert format_time(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05.000Z"
    with pytest.raises(ValueError, match="timezone-aware"):
        format_time(datetime(2026, 1, 2))


def test_subject_tag_is_hmac_sha256_base64url() -> None:
    # RFC 4231 test case 2: HMAC-SHA-256(key "Jefe", "what do ya want for nothing?").
    mac = bytes.fromhex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    tag = subject_tag(b"Jefe", "what do ya want for nothing?")
    assert tag == base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    assert tag == "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM"
    assert subject_tag(b"Jefe", "aud_2") != tag
    assert subject_tag(b"other", "what do ya want for nothing?") != tag


# --- The fast canonical form equals rfc8785 ---

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)
    | st.text(st.characters(exclude_categories=["Cs"])),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(st.characters(exclude_categories=["Cs"]), max_size=6), children, max_size=4
        )
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_canonical_json_equals_rfc8785(value: Any) -> None:
    expected = rfc8785.dumps(value)
    assert canonical_json(value) == expected
    assert parse_canonical(expected) == value
    assert is_canonical(expected)


@settings(max_examples=300, deadline=None)
@given(json_values, st.sampled_from(["ascii", "spaced", "unsorted", "indented"]))
def test_is_canonical_agrees_with_rfc8785_on_other_encodings(value: Any, style: str) -> None:
    styles: dict[str, dict[str, Any]] = {
        "ascii": {"ensure_ascii": True, "separators": (",", ":"), "sort_keys": True},
        "spaced": {"ensure_ascii": False, "sort_keys": True},
        "unsorted": {"ensure_ascii": False, "separators": (",", ":")},
        "indented": {"ensure_ascii": False, "indent": 1, "sort_keys": True},
    }
    data = json.dumps(value, **styles[style]).encode("utf-8")
    assert is_canonical(data) == (data == rfc8785.dumps(value))


def test_key_order_is_by_utf16_code_units() -> None:
    # U+1F600 is D83D DE00 in UTF-16, before U+FFFF; by code point it would come after.
    value = {"\uffff": 1, "\U0001f600": 2, "a": 3}
    assert canonical_json(value) == rfc8785.dumps(value)
    assert canonical_json(value).startswith(b'{"a":3,"\xf0\x9f\x98\x80":2')


@pytest.mark.parametrize("value", [1.5, 2**53, -(2**53), {"x": [0.0]}, "\ud800", object()])
def test_canonical_json_refuses_what_rfc8785_refuses_or_entries_forbid(value: Any) -> None:
    with pytest.raises(EntryInvalid):
        canonical_json(value)


@pytest.mark.parametrize(
    "data",
    [b"1.0", b"-0", b"1e2", b"NaN", b"Infinity", b'"\\ud800"', b"[1,]", b"", b"\xff", b"[" * 5000],
)
def test_parse_canonical_refuses_odd_bytes(data: bytes) -> None:
    assert not is_canonical(data)


# --- Random entries round trip ---

text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
entries = st.builds(
    Entry,
    origin=st.text(min_size=1, max_size=10),
    id=st.text(min_size=1, max_size=10),
    seq=st.integers(0, MAX_SAFE_INTEGER),
    time=st.datetimes(
        min_value=datetime(1970, 1, 1), max_value=datetime(9999, 1, 1), timezones=st.just(UTC)
    ).map(format_time),
    action=st.sampled_from(["hit", "refusal", "alert", "audit_read"]),
    outcome=st.sampled_from(["granted", "refused", "error"]),
    reason=st.none() | text,
    actor=st.builds(Actor, client=st.none() | text, roles=st.lists(text, max_size=2)),
    purpose=st.none() | text,
    items=st.lists(
        st.builds(
            Item,
            signal_id=text,
            rule=text,
            legal_basis=text,
            category=text,
            source=text,
            fields=st.dictionaries(text, text | st.dictionaries(text, json_values, max_size=2)),
            subject_tags=st.lists(text, max_size=3),
        ),
        max_size=2,
    ),
    objects=st.dictionaries(text, json_values, max_size=3),
    confidential_until=st.none() | st.dates().map(lambda d: d.isoformat()),
)


@settings(max_examples=150, deadline=None)
@given(entries)
def test_random_entries_round_trip(entry: Entry) -> None:
    data = encode_entry(entry)
    assert entry_json(entry) == data
    assert decode_entry(data) == entry
    assert parse_canonical(data) == entry.model_dump(mode="json")


# --- The model's own serialiser writes the canonical form ---


@pytest.mark.parametrize("model", [Actor, PolicyRef, Item, Entry])
def test_fields_are_declared_in_rfc8785_order(model: type[Any]) -> None:
    names = list(model.model_fields)
    assert names == sorted(names)


def test_the_model_serialises_to_the_expected_canonical_bytes() -> None:
    assert entry_json(disclosure()) == EXPECTED


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(st.characters(exclude_categories=["Cs"]), max_size=6),
                       json_values, max_size=5))
def test_open_objects_are_held_in_rfc8785_order_at_every_depth(objects: dict[str, Any]) -> None:
    values = disclosure().model_dump() | {"objects": objects}
    entry = Entry(**values)
    assert entry.objects == objects
    assert entry_json(entry) == rfc8785.dumps(entry.model_dump(mode="json"))


@pytest.mark.parametrize("change", [
    {"objects": {"x": 2**53}},
    {"objects": {"x": [{"y": -(2**53)}]}},
])
def test_the_model_refuses_integers_beyond_2_53_anywhere(change: dict[str, Any]) -> None:
    values = disclosure().model_dump() | change
    with pytest.raises(ValidationError):
        Entry(**values)


def test_entry_json_refuses_a_lone_surrogate() -> None:
    values = disclosure().model_dump() | {"reason": "\ud800"}
    with pytest.raises(EntryInvalid):
        entry_json(Entry(**values))
