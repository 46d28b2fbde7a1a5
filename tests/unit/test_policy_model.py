"""Category attribute checks, transform parsing and the field catalogue."""

from __future__ import annotations

from typing import Any

import pytest

from broker.core.policy import Category, parse_transform
from broker.core.policy.model import field_kind
from broker.core.policy.transform_spec import transform_fits

SECRET = "Geheim-0613"


def category(**attributes: dict[str, Any]) -> Category:
    return Category.model_validate({
        "title": "T", "subject_types": ["address"], "contributors": ["netbeheerder"],
        "legal_bases": ["b"], "retention_days": 30, "attributes": attributes})


CAT = category(
    kwh={"type": "number", "min": 0, "max": 100000},
    count={"type": "integer", "min": 1},
    sealed={"type": "boolean"},
    note={"type": "text", "max_length": 20, "required": False},
    level={"type": "enum", "values": ["laag", "hoog"]},
    seen_on={"type": "date", "required": False},
    seen_at={"type": "datetime", "required": False},
)
GOOD: dict[str, object] = {"kwh": 2400.5, "count": 3, "sealed": False, "level": "hoog"}


def test_good_attributes_pass() -> None:
    assert CAT.check_attributes(GOOD) == []
    assert CAT.check_attributes({**GOOD, "note": "ok", "seen_on": "2026-11-20",
                                 "seen_at": "2026-11-20T09:00:00+01:00"}) == []
    assert CAT.check_attributes({**GOOD, "seen_at": "2026-11-20T08:00:00Z"}) == []


def test_missing_and_unknown_attributes_are_named() -> None:
    attrs = {k: v for k, v in GOOD.items() if k != "count"}
    attrs["colour"] = "red"
    assert CAT.check_attributes(attrs) == [
        ("count", "missing required attribute"),
        ("colour", "unknown attribute for this category"),
    ]


def test_null_counts_as_missing() -> None:
    assert CAT.check_attributes({**GOOD, "sealed": None}) == [
        ("sealed", "missing required attribute")]


@pytest.mark.parametrize(("name", "value"), [
    ("kwh", True), ("kwh", "2400"), ("kwh", float("inf")), ("kwh", float("nan")),
    ("kwh", -1), ("kwh", 100001),
    ("count", False), ("count", 2.0), ("count", 0),
    ("sealed", 1), ("sealed", "true"),
    ("note", 5), ("note", "x" * 21), ("note", "a\x00b"),
    ("level", "middel"), ("level", 1),
    ("seen_on", "2026-02-30"), ("seen_on", "20-11-2026"), ("seen_on", "2026-11-20T09:00:00Z"),
    ("seen_at", "2026-11-20T09:00:00"), ("seen_at", "2026-11-20"), ("seen_at", "yesterday"),
])
def test_wrong_type_or_range_is_refused(name: str, value: object) -> None:
    problems = CAT.check_attributes({**GOOD, name: value})
    assert [n for n, _ in problems] == [name]


def test_messages_never_contain_the_value() -> None:
    problems = CAT.check_attributes({**GOOD, "note": SECRET * 3, "level": SECRET,
                                     "kwh": SECRET, SECRET: 1})
    assert len(problems) == 4
    for name, message in problems:
        assert SECRET not in message
        assert name != SECRET or message == "unknown attribute for this category"


@pytest.mark.parametrize(("written", "as_data"), [
    ("reveal", "reveal"), ("pseudonymise", "pseudonymise"), ("redact", "redact"),
    ({"generalise": "month"}, {"generalise": "month"}),
    ({"generalise": {"bucket": 500}}, {"generalise": {"bucket": 500}}),
    ({"generalise": {"age_band": 10}}, {"generalise": {"age_band": 10}}),
    ({"mask": {"keep_last": 4}}, {"mask": {"keep_last": 4}}),
])
def test_transforms_round_trip_to_the_pack_form(written: object, as_data: object) -> None:
    assert parse_transform(written).as_data() == as_data


def test_field_kinds_follow_the_subject_types() -> None:
    person = Category.model_validate({
        "title": "P", "subject_types": ["person"], "contributors": ["a"],
        "legal_bases": ["b"], "retention_days": 1})
    mixed = Category.model_validate({
        "title": "M", "subject_types": ["person", "company"], "contributors": ["a"],
        "legal_bases": ["b"], "retention_days": 1})
    assert field_kind(person, "subject.bsn") == "bsn"
    assert field_kind(mixed, "subject.bsn") is None  # a company has no BSN
    assert field_kind(mixed, "subject.name") == "text"
    assert field_kind(CAT, "subject.bag_id") == "bag_id"
    assert field_kind(CAT, "attributes.kwh") == "number"
    assert field_kind(CAT, "attributes.nope") is None
    assert transform_fits(parse_transform({"generalise": {"age_band": 5}}), "birthdate")
    assert not transform_fits(parse_transform({"generalise": {"age_band": 5}}), "date")
