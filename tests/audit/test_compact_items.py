"""Compact disclosure items: a page's rule's fields written once, read back exactly."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from broker.audit.compact import RULE_FIELDS, compact, released_fields

FIELD_MAPS: list[dict[str, Any]] = [
    {},
    {"location.postcode": "reveal"},
    {"location.postcode": "reveal", "observed_at": {"generalise": "month"}},
    {"subject.bsn": "pseudonymise", "observed_at": {"generalise": "month"}},
]
items_strategy = st.lists(
    st.fixed_dictionaries({
        "signal_id": st.sampled_from(["sig_a", "sig_b", "sig_c"]),
        "rule": st.sampled_from(["r-een", "r-twee", None]),
        "fields": st.sampled_from(FIELD_MAPS),
    }),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(items_strategy)
def test_every_item_reads_back_the_fields_it_released(items: list[dict[str, Any]]) -> None:
    original = copy.deepcopy(items)
    table = compact(items)
    objects = {RULE_FIELDS: table} if table else {}
    assert [released_fields(item, objects) for item in items] == [
        item["fields"] for item in original]
    # Only `fields` changes, and an item keeps its own fields unless its rule's are listed.
    for before, after in zip(original, items, strict=True):
        assert {k: v for k, v in after.items() if k != "fields"} == {
            k: v for k, v in before.items() if k != "fields"}
        assert after["fields"] in ({}, before["fields"])
        if after["fields"] != before["fields"]:
            assert table[before["rule"]] == before["fields"]


def test_a_page_of_one_shape_names_the_rules_fields_once() -> None:
    items = [{"signal_id": f"sig_{n}", "rule": "r-een", "fields": dict(FIELD_MAPS[2])}
             for n in range(5)]
    items.append({"signal_id": "sig_x", "rule": "r-een", "fields": dict(FIELD_MAPS[1])})
    items.append({"signal_id": "sig_y", "rule": "r-twee", "fields": dict(FIELD_MAPS[3])})
    table = compact(items)
    assert table == {"r-een": FIELD_MAPS[2]}
    assert [item["fields"] for item in items] == [{}] * 5 + [FIELD_MAPS[1], FIELD_MAPS[3]]


def test_a_rule_with_an_item_that_released_nothing_is_left_whole() -> None:
    items = [{"signal_id": "sig_a", "rule": "r-een", "fields": dict(FIELD_MAPS[1])},
             {"signal_id": "sig_b", "rule": "r-een", "fields": dict(FIELD_MAPS[1])},
             {"signal_id": "sig_c", "rule": "r-een", "fields": {}}]
    assert compact(items) == {}
    assert [item["fields"] for item in items] == [FIELD_MAPS[1], FIELD_MAPS[1], {}]


def test_damaged_objects_read_as_no_fields() -> None:
    item = {"rule": "r-een", "fields": {}}
    for objects in (None, [], {RULE_FIELDS: "x"}, {RULE_FIELDS: {"r-een": 3}}, {}):
        assert released_fields(item, objects) == {}
    assert released_fields({"rule": None, "fields": {}}, {RULE_FIELDS: {"r-een": {}}}) == {}
