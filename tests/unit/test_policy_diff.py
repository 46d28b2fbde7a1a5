"""The diff of two packs: nothing against itself, exactly the change made, and per key the
same access and transforms as the rules expanded by hand (random packs and the demo pack)."""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from broker.core.policy import CompiledPolicy, Pack, load_pack, load_pack_from_text
from broker.core.policy.diff import DROPPED, AccessChange, Change, RuleChange, diff_packs
from broker.core.policy.transform_spec import parse_transform
from tests.conftest import DEMO_PACK
from tests.unit.test_policy_properties import ALL_REQUESTS, NOW, load, packs

PROPERTY = settings(max_examples=50, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
Generated = tuple[dict[str, Any], list[set[tuple[str, ...]]]]
DRUGS_RULE = "gemeente-drugs-handhaving"
DROPPED_RULE = "politie-fiscaal-hit"
ADDED_RULE = {
    "id": "woningcorporatie-energie-woonfraude",
    "description": "De woningcorporatie hoort of een adres afwijkend stroomverbruik heeft",
    "recipients": ["woningcorporatie"], "purposes": ["woonfraude"],
    "categories": ["energie-afwijking"], "access": "hit",
}


def compiled(data: dict[str, Any]) -> CompiledPolicy:
    return CompiledPolicy(load(data))


def owner_of(data: dict[str, Any], covered: list[set[tuple[str, ...]]]
             ) -> dict[tuple[str, ...], tuple[str, str, dict[str, Any]]]:
    """Per key, the rule that covers it: (id, access, fields as the pack writes them)."""
    found = {}
    for rule, keys in zip(data["rules"], covered, strict=True):
        fields = {p: parse_transform(t).as_data() for p, t in rule.get("fields", {}).items()}
        for key in keys:
            found[key] = (rule["id"], rule["access"], fields)
    return found


def expected_access(before: Generated, after: Generated) -> set[tuple[Any, ...]]:
    """The keys whose access or fields differ, computed from the generated rules alone."""
    old, new = owner_of(*before), owner_of(*after)
    found = set()
    for key in set(old) | set(new):
        _, old_access, old_fields = old.get(key, (None, "none", {}))
        _, new_access, new_fields = new.get(key, (None, "none", {}))
        fields = frozenset(
            (path, json.dumps(old_fields.get(path, DROPPED)),
             json.dumps(new_fields.get(path, DROPPED)))
            for path in set(old_fields) | set(new_fields)
            if old_fields.get(path) != new_fields.get(path))
        if old_access != new_access or fields:
            found.add((key, old_access, new_access, fields))
    return found


def reported(changes: tuple[AccessChange, ...]) -> set[tuple[Any, ...]]:
    return {(c.key, c.access_before, c.access_after,
             frozenset((i.path, json.dumps(i.before), json.dumps(i.after)) for i in c.changes))
            for c in changes}


@given(packs())
@PROPERTY
def test_a_pack_against_itself_has_no_changes(generated: Generated) -> None:
    policy = compiled(generated[0])
    changes = diff_packs(policy, policy)
    assert changes.empty
    assert changes.as_dict()["access"] == [] and changes.before == changes.after


@given(packs(), packs())
@PROPERTY
def test_the_access_changes_are_those_of_the_rules_expanded_by_hand(
        before: Generated, after: Generated) -> None:
    changes = diff_packs(compiled(before[0]), compiled(after[0]))
    assert reported(changes.access) == expected_access(before, after)
    assert changes.rules_added == tuple(
        r["id"] for r in after[0]["rules"] if r["id"] not in {x["id"] for x in before[0]["rules"]})


@given(packs(), packs())
@PROPERTY
def test_the_diff_backwards_is_the_diff_forwards_turned_round(
        before: Generated, after: Generated) -> None:
    old, new = compiled(before[0]), compiled(after[0])
    forwards, backwards = diff_packs(old, new), diff_packs(new, old)
    assert forwards.rules_added == backwards.rules_removed
    assert {(c.key, c.access_before, c.access_after) for c in forwards.access} == {
        (c.key, c.access_after, c.access_before) for c in backwards.access}


@given(packs())
@PROPERTY
def test_each_key_grants_what_the_compiled_policy_decides(generated: Generated) -> None:
    """The diff reads the same table the broker decides by."""
    policy = compiled(generated[0])
    changes = diff_packs(compiled({**generated[0], "rules": []}), policy)
    granted = {c.key: c.rule_after for c in changes.access}
    for request in ALL_REQUESTS:
        rule = policy.decide(*request, NOW, NOW)
        assert granted.get(request) == (rule.id if rule else None)


@given(packs(), st.data())
@PROPERTY
def test_changing_one_transform_shows_exactly_that_change(
        generated: Generated, data: st.DataObject) -> None:
    pack_data, covered = generated
    candidates = [i for i, r in enumerate(pack_data["rules"]) if r.get("fields")]
    assume(candidates)
    index = data.draw(st.sampled_from(candidates))
    rule = pack_data["rules"][index]
    path = data.draw(st.sampled_from(sorted(rule["fields"])))
    old = parse_transform(rule["fields"][path]).as_data()
    new = data.draw(st.sampled_from([t for t in ("reveal", "pseudonymise", "redact") if t != old]))
    changed = copy.deepcopy(pack_data)
    changed["rules"][index]["fields"][path] = new
    changes = diff_packs(compiled(pack_data), compiled(changed))
    old_fields = {p: parse_transform(t).as_data() for p, t in rule["fields"].items()}
    assert changes.rules_changed == (
        RuleChange(rule["id"], {"fields": (old_fields, {**old_fields, path: new})}),)
    assert not (changes.rules_added or changes.rules_removed or changes.catalogue)
    assert {c.key for c in changes.access} == covered[index]
    for change in changes.access:
        assert change.changes == (Change("field", old, new, path),)
        assert (change.access_before, change.access_after) == ("disclose", "disclose")
        assert change.rule_before == change.rule_after == rule["id"]


@given(packs(), st.data())
@PROPERTY
def test_dropping_a_rule_withdraws_its_keys_and_nothing_else(
        generated: Generated, data: st.DataObject) -> None:
    pack_data, covered = generated
    assume(pack_data["rules"])
    index = data.draw(st.integers(0, len(pack_data["rules"]) - 1))
    rule = pack_data["rules"][index]
    fewer = {**pack_data, "rules": [r for r in pack_data["rules"] if r is not rule]}
    changes = diff_packs(compiled(pack_data), compiled(fewer))
    assert changes.rules_removed == (rule["id"],)
    assert {c.key for c in changes.access} == covered[index]
    for change in changes.access:
        assert (change.access_after, change.rule_after) == ("none", None)
        assert {c.path: c.after for c in change.changes} == dict.fromkeys(
            rule.get("fields", {}), DROPPED)


# --- the demo pack, changed by hand ---------------------------------------------------------


def demo_data() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(load_pack(DEMO_PACK).canonical)
    return data


def from_data(data: dict[str, Any]) -> Pack:
    return load_pack_from_text({"pack.json": json.dumps(data)})


def rule_of(data: dict[str, Any], rule_id: str) -> dict[str, Any]:
    found: dict[str, Any] = next(r for r in data["rules"] if r["id"] == rule_id)
    return found


def test_the_demo_pack_against_itself_has_no_changes() -> None:
    policy = CompiledPolicy(load_pack(DEMO_PACK))
    assert diff_packs(policy, policy).empty


def test_a_pseudonym_revealed_a_rule_dropped_and_one_added_on_the_demo_pack() -> None:
    data = demo_data()
    draft = copy.deepcopy(data)
    rule_of(draft, DRUGS_RULE)["fields"]["subject.bsn"] = "reveal"
    draft["rules"] = [r for r in draft["rules"] if r["id"] != DROPPED_RULE] + [ADDED_RULE]
    live, changed = CompiledPolicy(from_data(data)), CompiledPolicy(from_data(draft))
    changes = diff_packs(live, changed)

    assert changes.rules_added == (ADDED_RULE["id"],)
    assert changes.rules_removed == (DROPPED_RULE,)
    assert [r.id for r in changes.rules_changed] == [DRUGS_RULE]
    assert list(changes.rules_changed[0].attributes) == ["fields"]
    assert not changes.catalogue and not changes.settings
    fiscal_bases = data["categories"]["fiscale-schuld"]["legal_bases"]
    energy_bases = data["categories"]["energie-afwijking"]["legal_bases"]
    expected = {
        # the drugs rule: two purposes, one source, one basis; the BSN now in clear
        **{("gemeente", purpose, "drugsgerelateerde-melding", "politie", "wpg-art-16"):
           ("disclose", "disclose", DRUGS_RULE, DRUGS_RULE,
            (Change("field", "pseudonymise", "reveal", "subject.bsn"),))
           for purpose in ("gemeentelijke-handhaving", "integrale-controle")},
        **{("politie", "integrale-controle", "fiscale-schuld", "belastingdienst", basis):
           ("hit", "none", DROPPED_RULE, None, ()) for basis in fiscal_bases},
        **{("woningcorporatie", "woonfraude", "energie-afwijking", "netbeheerder", basis):
           ("none", "hit", None, ADDED_RULE["id"], ()) for basis in energy_bases},
    }
    assert {c.key: (c.access_before, c.access_after, c.rule_before, c.rule_after, c.changes)
            for c in changes.access} == expected
    assert len(changes.access) == len(expected)


def test_a_contributor_added_reaches_every_rule_without_its_own_sources() -> None:
    data = demo_data()
    draft = copy.deepcopy(data)
    draft["categories"]["energie-afwijking"]["contributors"].append("woningcorporatie")
    changes = diff_packs(CompiledPolicy(from_data(data)), CompiledPolicy(from_data(draft)))
    assert changes.catalogue["categories"].changed == ("energie-afwijking",)
    assert not changes.rules_changed  # no rule's text changed, but what they grant did
    bases = data["categories"]["energie-afwijking"]["legal_bases"]
    expected = {
        (recipient, purpose, "energie-afwijking", "woningcorporatie", basis): rule["id"]
        for rule in data["rules"]
        if "energie-afwijking" in rule["categories"] and "sources" not in rule
        for recipient in rule["recipients"] for purpose in rule["purposes"]
        for basis in rule.get("legal_bases", bases)}
    assert len(expected) >= 2
    assert {c.key: c.rule_after for c in changes.access} == expected
    assert all(c.access_before == "none" and c.rule_before is None for c in changes.access)


def test_a_term_moved_is_a_condition_change() -> None:
    data = demo_data()
    draft = copy.deepcopy(data)
    rule_of(draft, DRUGS_RULE)["valid_until"] = "2028-12-31"
    changes = diff_packs(CompiledPolicy(from_data(data)), CompiledPolicy(from_data(draft)))
    assert len(changes.access) == 2
    assert {c.changes for c in changes.access} == {
        (Change("valid_until", "2027-12-31", "2028-12-31"),)}


def test_the_json_form_names_keys_and_values_as_written() -> None:
    data = demo_data()
    draft = copy.deepcopy(data)
    rule_of(draft, DRUGS_RULE)["fields"]["subject.birthdate"] = {"generalise": "year"}
    changes = diff_packs(CompiledPolicy(from_data(data)), CompiledPolicy(from_data(draft)))
    shown = changes.as_dict()
    assert shown["empty"] is False and shown["from"] != shown["to"]
    first = shown["access"][0]
    assert first["recipient"] == "gemeente" and first["legal_basis"] == "wpg-art-16"
    assert first["access"] == {"before": "disclose", "after": "disclose"}
    assert first["changes"] == [{"what": "field", "path": "subject.birthdate",
                                 "before": {"generalise": {"age_band": 10}},
                                 "after": {"generalise": "year"}}]
