"""The demo pack (policies/ondermijning): loads, lints clean, and its own tests pass."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from broker.core.policy import CompiledPolicy, lint_pack, load_pack, run_pack_tests
from broker.core.transforms import flatten_signal, release

DEMO = Path(__file__).resolve().parents[2] / "policies" / "ondermijning"
PACK = load_pack(DEMO)
POLICY = CompiledPolicy(PACK)
NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)

API_SIGNAL = {
    "category": "energie-afwijking",
    "legal_basis": "elektriciteitswet-levering",
    "subject": {"type": "address", "bag_id": "0363010000000001"},
    "location": {"postcode": "1012AB", "house_number": 12, "street": "Dijkstraat",
                 "city": "Amsterdam"},
    "observed_at": "2026-11-20T09:00:00+01:00",
    "description": "Meter seal broken, consumption tripled",
    "attributes": {"kwh_per_month": 2400, "meter_seal_broken": True},
}


def test_demo_pack_is_split_over_several_files() -> None:
    assert len(list(DEMO.glob("*.yaml"))) >= 5
    assert PACK.name == "ondermijning"


def test_demo_pack_lints_clean_but_for_its_betrayed_hiding_rules() -> None:
    """The two rules that hide the politie from the netbeheerder and the woningcorporatie
    are betrayed by the pack itself: only the politie contributes hennepteelt-vermoeden,
    and wpg-art-19 is the politie's own law (and one rule's description names it)."""
    warnings = lint_pack(PACK, date(2026, 11, 28))
    assert [(w.code, w.entry) for w in warnings] == [
        ("hidden-source-betrayed", "rules[17] netbeheerder-hennep-energiefraude"),
        ("hidden-source-betrayed", "rules[18] woningcorporatie-hennep-woonfraude"),
    ]


def test_demo_pack_tests_pass_and_cover_every_rule() -> None:
    results = run_pack_tests(POLICY)
    failures = [f"{r.name()}: {r.reason}" for r in results if not r.passed]
    assert failures == []
    assert {r.rule for r in results} - {None} == {rule.id for rule in PACK.rules}
    assert sum(r.test.expect == "none" for r in results) >= 5


def test_demo_pack_size() -> None:
    assert len(PACK.organisations) == 7
    assert len(PACK.purposes) >= 8
    assert len(PACK.legal_bases) >= 10
    assert len(PACK.categories) >= 10
    assert len(PACK.rules) >= 15
    assert {r.access for r in PACK.rules} == {"hit", "aggregate", "disclose"}


def test_api_example_signal_is_accepted_and_released_as_documented() -> None:
    category = PACK.category("energie-afwijking")
    assert category is not None
    assert category.check_attributes(API_SIGNAL["attributes"]) == []  # type: ignore[arg-type]
    rule = POLICY.decide("gemeente", "integrale-controle", "energie-afwijking", "netbeheerder",
                         "elektriciteitswet-levering",
                         datetime.fromisoformat("2026-11-20T09:00:00+01:00"), NOW)
    assert rule is not None
    assert rule.id == "gemeente-energie-integrale-controle"
    released = release(rule.fields, flatten_signal(API_SIGNAL), recipient="gemeente",
                       purpose="integrale-controle", pseudonym_key=b"k" * 32, today=NOW.date())
    assert released == {
        "location.postcode": "1012AB", "location.house_number": 12, "observed_at": "2026-11",
        "attributes.kwh_per_month": {"gte": 2000, "lt": 2500},
        "attributes.meter_seal_broken": True}


def test_gemeente_gets_a_person_category_with_pseudonymised_bsn() -> None:
    answer = POLICY.explain("gemeente", "integrale-controle", "drugsgerelateerde-melding",
                            "politie", "wpg-art-16")
    assert answer.access == "disclose"
    assert answer.fields["subject.bsn"] == "pseudonymise"


@pytest.mark.parametrize("category", ["hennepteelt-vermoeden", "drugsgerelateerde-melding",
                                      "energie-afwijking"])
def test_belastingdienst_gets_only_hits_on_police_and_energy_signals(category: str) -> None:
    answer = POLICY.explain("belastingdienst", "fiscale-handhaving", category,
                            "netbeheerder" if category == "energie-afwijking" else "politie")
    assert answer.access == "hit"


def test_riec_gets_suppressed_counts_only() -> None:
    riec_rules = [r for r in PACK.rules if "riec" in r.recipients]
    assert riec_rules
    assert all(r.access == "aggregate" and r.min_count == 5 for r in riec_rules)
    assert POLICY.categories_for("riec", "ondermijningsbeeld", "aggregate") == set(
        PACK.categories)
