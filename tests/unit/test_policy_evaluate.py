"""Decisions: one rule or none, time conditions, purposes and dry runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from broker.core.policy import CompiledPolicy
from tests.unit.packs import base_pack, load

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
CET = timezone(timedelta(hours=1))


def compiled(**changes: object) -> CompiledPolicy:
    data = base_pack()
    data["rules"][0].update(changes)
    return CompiledPolicy(load(data))


POLICY = compiled()


def test_matching_signal_gets_its_rule() -> None:
    rule = POLICY.decide("gemeente", "integrale-controle", "energie-afwijking", "netbeheerder",
                         "elektriciteitswet", NOW, NOW)
    assert rule is not None
    assert rule.id == "gemeente-energie"
    assert rule.grants("disclose")
    assert rule.grants("aggregate")
    assert rule.grants("hit")
    assert rule.fields["observed_at"].as_data() == {"generalise": "month"}


@pytest.mark.parametrize("key", [
    ("politie", "integrale-controle", "energie-afwijking", "netbeheerder", "elektriciteitswet"),
    ("gemeente", "ondermijningsbeeld", "energie-afwijking", "netbeheerder", "elektriciteitswet"),
    ("gemeente", "integrale-controle", "drugs-melding", "politie", "wpg-art-20"),
    ("gemeente", "integrale-controle", "energie-afwijking", "politie", "elektriciteitswet"),
    ("nobody", "integrale-controle", "energie-afwijking", "netbeheerder", "elektriciteitswet"),
])
def test_no_rule_no_decision(key: tuple[str, str, str, str, str]) -> None:
    assert POLICY.decide(*key, NOW, NOW) is None


def test_aggregate_rule_grants_hit_but_not_disclose() -> None:
    rule = POLICY.decide("riec", "ondermijningsbeeld", "drugs-melding", "politie", "wpg-art-20",
                         NOW, NOW)
    assert rule is not None
    assert rule.grants("aggregate")
    assert rule.grants("hit")
    assert not rule.grants("disclose")
    assert rule.min_count == 5


def test_max_age_excludes_older_signals() -> None:
    policy = compiled(max_age_days=30)
    args = ("gemeente", "integrale-controle", "energie-afwijking", "netbeheerder",
            "elektriciteitswet")
    assert policy.decide(*args, NOW - timedelta(days=30), NOW) is not None
    assert policy.decide(*args, NOW - timedelta(days=30, seconds=1), NOW) is None


def test_validity_term_is_in_dutch_calendar_days() -> None:
    policy = compiled(valid_from="2026-01-01", valid_until="2026-12-31")
    args = ("gemeente", "integrale-controle", "energie-afwijking", "netbeheerder",
            "elektriciteitswet")
    seen = datetime(2025, 12, 1, tzinfo=UTC)
    # 2026-01-01 00:00 in Amsterdam is 2025-12-31 23:00 UTC.
    assert policy.decide(*args, seen, datetime(2025, 12, 31, 22, 59, tzinfo=UTC)) is None
    assert policy.decide(*args, seen, datetime(2025, 12, 31, 23, 0, tzinfo=UTC)) is not None
    assert policy.decide(*args, seen, datetime(2026, 12, 31, 23, 59, tzinfo=CET)) is not None
    assert policy.decide(*args, seen, datetime(2027, 1, 1, 0, 0, tzinfo=CET)) is None


def test_rules_with_disjoint_terms_each_decide_in_their_own_term() -> None:
    data = base_pack()
    data["rules"][0].update(valid_from="2026-01-01", valid_until="2026-12-31")
    data["rules"].append(dict(data["rules"][0], id="gemeente-energie-2027",
                              valid_from="2027-01-01", valid_until="2027-12-31"))
    policy = CompiledPolicy(load(data))
    args = ("gemeente", "integrale-controle", "energie-afwijking", "netbeheerder",
            "elektriciteitswet")
    in_2026 = datetime(2026, 6, 1, tzinfo=UTC)
    in_2027 = datetime(2027, 6, 1, tzinfo=UTC)
    assert policy.decide(*args, in_2026, in_2026).id == "gemeente-energie"  # type: ignore[union-attr]
    assert policy.decide(*args, in_2027, in_2027).id == "gemeente-energie-2027"  # type: ignore[union-attr]
    assert policy.decide(*args, in_2027, datetime(2028, 1, 2, tzinfo=UTC)) is None
    assert policy.explain(*args[:4], now=in_2027).rule == "gemeente-energie-2027"


def test_decide_ts_agrees_with_decide() -> None:
    policy = compiled(max_age_days=30, valid_from="2026-01-01")
    args = ("gemeente", "integrale-controle", "energie-afwijking", "netbeheerder",
            "elektriciteitswet")
    for days in (0, 29, 31):
        seen = NOW - timedelta(days=days)
        assert policy.decide(*args, seen, NOW) is policy.decide_ts(
            *args, seen.timestamp(), NOW.timestamp())


def test_allows_purpose_follows_the_rules() -> None:
    assert POLICY.allows_purpose("gemeente", "integrale-controle")
    assert POLICY.allows_purpose("riec", "ondermijningsbeeld")
    assert not POLICY.allows_purpose("riec", "integrale-controle")
    assert not POLICY.allows_purpose("netbeheerder", "integrale-controle")


def test_categories_for_a_level() -> None:
    assert POLICY.categories_for("riec", "ondermijningsbeeld", "aggregate") == {
        "energie-afwijking", "drugs-melding"}
    assert POLICY.categories_for("riec", "ondermijningsbeeld", "disclose") == frozenset()
    assert POLICY.categories_for("gemeente", "integrale-controle") == {
        "energie-afwijking", "drugs-melding"}


def test_explain_reports_rule_and_fields_as_written() -> None:
    answer = POLICY.explain("gemeente", "integrale-controle", "energie-afwijking",
                            "netbeheerder")
    assert answer.as_dict() == {
        "access": "disclose",
        "rule": "gemeente-energie",
        "fields": {"location.postcode": "reveal", "observed_at": {"generalise": "month"},
                   "attributes.kwh_per_month": {"generalise": {"bucket": 500}}},
    }
    assert answer.legal_basis == "elektriciteitswet"


def test_explain_without_match_is_none() -> None:
    assert POLICY.explain("politie", "integrale-controle", "energie-afwijking",
                          "netbeheerder").as_dict() == {"access": "none"}
    assert POLICY.explain("gemeente", "integrale-controle", "drugs-melding", "politie",
                          "wpg-art-20").access == "none"
    assert POLICY.explain("gemeente", "integrale-controle", "nope", "politie").access == "none"


def test_explain_applies_the_term_only_when_given_a_time() -> None:
    policy = compiled(valid_until="2026-06-30")
    args = ("gemeente", "integrale-controle", "energie-afwijking", "netbeheerder")
    assert policy.explain(*args).access == "disclose"
    assert policy.explain(*args, now=NOW).access == "none"
