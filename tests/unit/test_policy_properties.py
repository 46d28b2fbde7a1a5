"""Properties over random small packs: one rule or none, exactly its fields, stable pseudonyms.

The packs are generated as data and loaded through the real loader; the expected decision is
computed here independently, by expanding every rule by hand.
"""

from __future__ import annotations

import itertools
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from broker.core.policy import CompiledPolicy, Pack, load_pack_from_text, parse_transform
from broker.core.policy.model import FIELD_CATALOGUE, Category, field_kind
from broker.core.policy.transform_spec import transform_fits
from broker.core.transforms import (
    apply_transform,
    flatten_signal,
    pseudonymise,
    pseudonymiser_for,
    release,
)
from tests.unit.packs import as_files

ORGS = ("a", "b", "c", "d")
GROUP = "g"
PURPOSES = ("p-een", "p-twee", "p-drie")
BASES = ("l-een", "l-twee", "l-drie")
CATEGORY_IDS = ("c-een", "c-twee", "c-drie")
ATTRIBUTES = {"n": {"type": "number"}, "i": {"type": "integer"}, "t": {"type": "text"},
              "b": {"type": "boolean"}, "d": {"type": "date"}}
NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)
TODAY = NOW.date()
KEY = b"property-test-key-0123456789abcd"
PROPERTY = settings(max_examples=120, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

TRANSFORMS_BY_KIND: dict[str, list[object]] = {
    "any": ["reveal", "pseudonymise", "redact"],
    "date": [{"generalise": "year"}, {"generalise": "month"}, {"generalise": "day"}],
    "postcode": [{"generalise": "pc4"}, {"mask": {"keep_last": 2}}],
    "number": [{"generalise": {"bucket": 10}}, {"generalise": {"bucket": 500}}],
    "birthdate": [{"generalise": {"age_band": 10}}, {"generalise": "year"}],
    "text": [{"mask": {"keep_last": 3}}, {"mask": {"keep_last": 0}}],
}
SAMPLE_VALUES: dict[str, object] = {
    "subject.type": "person", "subject.bsn": "111222333", "subject.name": "Jan de Vries",
    "subject.birthdate": "1984-05-17", "subject.kvk": "12345678", "subject.plate": "12ABC3",
    "subject.bag_id": "0363010000000001", "location.postcode": "1012AB",
    "location.house_number": 12, "location.house_letter": "a", "location.addition": "2",
    "location.street": "Dijkstraat", "location.city": "Amsterdam",
    "observed_at": "2026-11-20T09:00:00+01:00", "description": "vrije tekst",
    "attributes.n": 2400.5, "attributes.i": 7, "attributes.t": "tekst", "attributes.b": True,
    "attributes.d": "2026-01-31",
}


def _some(draw: st.DrawFn, items: tuple[str, ...] | list[str]) -> list[str]:
    return draw(st.lists(st.sampled_from(list(items)), min_size=1, max_size=len(items),
                         unique=True))


@st.composite
def categories(draw: st.DrawFn) -> dict[str, dict[str, Any]]:
    result = {}
    for category_id in CATEGORY_IDS:
        names = draw(st.lists(st.sampled_from(sorted(ATTRIBUTES)), unique=True, max_size=3))
        result[category_id] = {
            "title": category_id, "subject_types": [draw(st.sampled_from(
                ["person", "company", "address", "vehicle"]))],
            "contributors": _some(draw, ORGS), "legal_bases": _some(draw, BASES),
            "retention_days": 30, "attributes": {n: ATTRIBUTES[n] for n in names}}
    return result


def _kind_group(kind: str) -> str:
    return {"datetime": "date", "date": "date", "integer": "number", "number": "number",
            "postcode": "postcode", "birthdate": "birthdate", "text": "text",
            "enum": "text"}.get(kind, "any")


def _fields(draw: st.DrawFn, cats: list[Category]) -> dict[str, object]:
    paths = [p for p in [*FIELD_CATALOGUE, *(f"attributes.{a}" for a in ATTRIBUTES)]
             if all(field_kind(c, p) is not None for c in cats)]
    chosen = draw(st.lists(st.sampled_from(paths), unique=True, max_size=6)) if paths else []
    fields: dict[str, object] = {}
    for path in chosen:
        kinds = {field_kind(c, path) for c in cats}
        options = [t for t in [*TRANSFORMS_BY_KIND["any"],
                               *TRANSFORMS_BY_KIND[_kind_group(str(next(iter(kinds))))]]
                   if all(transform_fits(parse_transform(t), str(k)) for k in kinds)]
        fields[path] = draw(st.sampled_from(options))
    return fields


def expand(names: list[str]) -> set[str]:
    return {o for n in names for o in (ORGS if n == GROUP else (n,))}


def rule_keys(rule: dict[str, Any], cats: dict[str, dict[str, Any]]) -> set[tuple[str, ...]]:
    """Every (recipient, purpose, category, source, basis) the rule covers, expanded by hand."""
    keys: set[tuple[str, ...]] = set()
    for category_id in rule["categories"]:
        cat = cats[category_id]
        sources = set(rule.get("sources") or cat["contributors"]) & set(cat["contributors"])
        bases = set(rule.get("legal_bases") or cat["legal_bases"]) & set(cat["legal_bases"])
        keys |= set(itertools.product(expand(rule["recipients"]), rule["purposes"],
                                      [category_id], sources, bases))
    return keys


@st.composite
def rule_for(draw: st.DrawFn, cats: dict[str, dict[str, Any]], rule_id: str) -> dict[str, Any]:
    chosen = _some(draw, list(cats))
    rule: dict[str, Any] = {
        "id": rule_id, "description": "generated", "recipients": _some(draw, [*ORGS, GROUP]),
        "purposes": _some(draw, PURPOSES), "categories": chosen,
        "access": draw(st.sampled_from(["hit", "aggregate", "disclose"]))}
    common_sources: set[str] = set.intersection(*(set(cats[c]["contributors"]) for c in chosen))
    narrow_sources: bool = draw(st.booleans())
    if common_sources and narrow_sources:
        rule["sources"] = _some(draw, sorted(common_sources))
    common_bases: set[str] = set.intersection(*(set(cats[c]["legal_bases"]) for c in chosen))
    narrow_bases: bool = draw(st.booleans())
    if common_bases and narrow_bases:
        rule["legal_bases"] = _some(draw, sorted(common_bases))
    if rule["access"] == "disclose":
        models = [Category.model_validate(cats[c]) for c in chosen]
        rule["fields"] = _fields(draw, models)
    return rule


@st.composite
def packs(draw: st.DrawFn) -> tuple[dict[str, Any], list[set[tuple[str, ...]]]]:
    """A valid random pack and, per rule, the keys it covers (rules never overlap)."""
    cats = draw(categories())
    rules: list[dict[str, Any]] = []
    covered: list[set[tuple[str, ...]]] = []
    taken: set[tuple[str, ...]] = set()
    for index in range(draw(st.integers(min_value=0, max_value=6))):
        rule = draw(rule_for(cats, f"r-{index}"))
        keys = rule_keys(rule, cats)
        if keys & taken:
            continue  # would overlap: the loader refuses that, so leave it out
        taken |= keys
        rules.append(rule)
        covered.append(keys)
    data = {
        "pack": "willekeurig", "version": "1",
        "organisations": {o: {"name": o.upper()} for o in ORGS},
        "groups": {GROUP: list(ORGS)},
        "legal_bases": {b: {"title": b} for b in BASES},
        "purposes": {p: {"title": p} for p in PURPOSES},
        "categories": cats, "rules": rules}
    return data, covered


def load(data: dict[str, Any]) -> Pack:
    return load_pack_from_text(as_files(data))


ALL_REQUESTS = list(itertools.product(ORGS, PURPOSES, CATEGORY_IDS, ORGS, BASES))


def signal_for(category: dict[str, Any]) -> dict[str, object]:
    """A flattened signal carrying every field a signal of this category can have."""
    model = Category.model_validate(category)
    return {p: v for p, v in SAMPLE_VALUES.items() if field_kind(model, p) is not None}


def disclose(policy: CompiledPolicy, request: tuple[str, ...],
             flat: dict[str, object]) -> dict[str, object] | None:
    """What a recipient receives of one signal: None when it does not exist for them."""
    recipient, purpose, category, source, basis = request
    rule = policy.decide(recipient, purpose, category, source, basis, NOW, NOW)
    if rule is None or not rule.grants("disclose"):
        return None
    return release(rule.fields, flat, recipient=recipient, purpose=purpose,
                   pseudonym_key=KEY, today=TODAY)


@given(packs())
@PROPERTY
def test_decision_is_the_one_rule_covering_the_request(
        generated: tuple[dict[str, Any], list[set[tuple[str, ...]]]]) -> None:
    data, covered = generated
    policy = CompiledPolicy(load(data))
    owner = {key: data["rules"][i]["id"] for i, keys in enumerate(covered) for key in keys}
    for request in ALL_REQUESTS:
        rule = policy.decide(*request, NOW, NOW)
        assert (rule.id if rule else None) == owner.get(request)


@given(packs())
@PROPERTY
def test_field_is_released_iff_the_matching_rule_names_it(
        generated: tuple[dict[str, Any], list[set[tuple[str, ...]]]]) -> None:
    data, covered = generated
    policy = CompiledPolicy(load(data))
    for request in ALL_REQUESTS:
        flat = signal_for(data["categories"][request[2]])
        released = disclose(policy, request, flat)
        owners = [data["rules"][i] for i, keys in enumerate(covered) if request in keys]
        if not owners or owners[0]["access"] != "disclose":
            assert released is None  # no rule, no release
            continue
        assert set(released or {}) == set(owners[0].get("fields", {})) & set(flat)


@given(packs(), st.data())
@PROPERTY
def test_adding_an_unrelated_rule_changes_no_other_decision(
        generated: tuple[dict[str, Any], list[set[tuple[str, ...]]]], data: st.DataObject) -> None:
    pack_data, covered = generated
    extra = data.draw(rule_for(pack_data["categories"], "extra"))
    extra_keys = rule_keys(extra, pack_data["categories"])
    assume(not extra_keys & set().union(*covered))
    before = CompiledPolicy(load(pack_data))
    pack_data["rules"].append(extra)
    after = CompiledPolicy(load(pack_data))
    for request in ALL_REQUESTS:
        old = before.decide(*request, NOW, NOW)
        new = after.decide(*request, NOW, NOW)
        if request in extra_keys:
            assert old is None
            assert new is not None
            assert new.id == "extra"
        else:
            assert (old and old.id) == (new and new.id)


@given(st.sampled_from(sorted(SAMPLE_VALUES)), st.data())
@settings(max_examples=200, deadline=None)
def test_every_transform_output_has_the_documented_form(path: str, data: st.DataObject) -> None:
    value = SAMPLE_VALUES[path]
    kind = FIELD_CATALOGUE[path][1] if path in FIELD_CATALOGUE else ATTRIBUTES[
        path.split(".", 1)[1]]["type"]
    options = [t for group in TRANSFORMS_BY_KIND.values() for t in group
               if transform_fits(parse_transform(t), kind)]
    written = data.draw(st.sampled_from(options))
    transform = parse_transform(written)
    out = apply_transform(transform, path, value, pseudonymiser_for(KEY, "a", "p-een"), TODAY)
    check_form(transform.kind, transform.option, transform.n, value, out)


def check_form(kind: str, option: str | None, n: int | None, value: object,
               out: object) -> None:
    if kind == "reveal":
        assert out == value
    elif kind == "redact":
        assert out is None
    elif kind == "pseudonymise":
        assert isinstance(out, str)
        assert re.fullmatch(r"ps_[a-z2-7]{26}", out)
    elif kind == "mask":
        assert isinstance(out, str)
        assert isinstance(value, str)
        assert len(out) == len(value)
        kept = (n or 0) if len(value) > (n or 0) else 0  # a short value is masked whole
        assert out == "*" * (len(value) - kept) + (value[len(value) - kept:] if kept else "")
    elif option in ("year", "month", "day"):
        pattern = {"year": r"\d{4}", "month": r"\d{4}-\d{2}", "day": r"\d{4}-\d{2}-\d{2}"}
        assert isinstance(out, str)
        assert re.fullmatch(pattern[option], out)
    elif option == "pc4":
        assert isinstance(out, str)
        assert re.fullmatch(r"[1-9]\d{3}", out)
    else:
        assert isinstance(out, dict)
        assert n is not None
        assert out["lt"] - out["gte"] == n
        assert out["gte"] % n == 0


@given(st.floats(min_value=-1e9, max_value=1e9, allow_nan=False) | st.integers(-10**9, 10**9),
       st.integers(min_value=1, max_value=10**6))
@settings(max_examples=300, deadline=None)
def test_bucket_contains_the_value(value: float, width: int) -> None:
    out = apply_transform(parse_transform({"generalise": {"bucket": width}}), "x", value,
                          pseudonymiser_for(KEY, "a", "p"), TODAY)
    assert isinstance(out, dict)
    assert out["gte"] <= value < out["lt"]
    assert out["lt"] - out["gte"] == width


@given(st.dates(min_value=date(1900, 1, 1), max_value=TODAY), st.integers(1, 25))
@settings(max_examples=300, deadline=None)
def test_age_band_contains_the_age(born: date, width: int) -> None:
    out = apply_transform(parse_transform({"generalise": {"age_band": width}}),
                          "subject.birthdate", born.isoformat(),
                          pseudonymiser_for(KEY, "a", "p"), TODAY)
    assert isinstance(out, dict)
    age = TODAY.year - born.year - ((TODAY.month, TODAY.day) < (born.month, born.day))
    assert out["gte"] <= age < out["lt"]
    assert out["gte"] % width == 0


@given(st.text(max_size=40) | st.integers() | st.booleans(), st.sampled_from(ORGS),
       st.sampled_from(ORGS), st.sampled_from(PURPOSES), st.sampled_from(PURPOSES))
@settings(max_examples=300, deadline=None)
def test_pseudonyms_stable_per_recipient_and_purpose_and_unlinkable_across(
        value: object, org: str, other_org: str, purpose: str, other_purpose: str) -> None:
    mine = pseudonymise(KEY, org, purpose, "subject.bsn", value)
    assert mine == pseudonymise(KEY, org, purpose, "subject.bsn", value)
    if other_org != org:
        assert mine != pseudonymise(KEY, other_org, purpose, "subject.bsn", value)
    if other_purpose != purpose:
        assert mine != pseudonymise(KEY, org, other_purpose, "subject.bsn", value)


def test_max_age_is_part_of_the_decision() -> None:
    data = {
        "pack": "tijd", "version": "1", "organisations": {"a": {"name": "A"}},
        "legal_bases": {"l-een": {"title": "L"}}, "purposes": {"p-een": {"title": "P"}},
        "categories": {"c-een": {"title": "C", "subject_types": ["address"],
                                 "contributors": ["a"], "legal_bases": ["l-een"],
                                 "retention_days": 30}},
        "rules": [{"id": "r", "description": "d", "recipients": ["a"], "purposes": ["p-een"],
                   "categories": ["c-een"], "access": "hit", "max_age_days": 10}]}
    policy = CompiledPolicy(load(data))
    request = ("a", "p-een", "c-een", "a", "l-een")
    assert policy.decide(*request, NOW - timedelta(days=9), NOW) is not None
    assert policy.decide(*request, NOW - timedelta(days=11), NOW) is None
    assert flatten_signal({}) == {}
