"""What a request can reach: exactly the signals its rules release, as the database seeks them.

`CompiledPolicy.reach` lists per (category, source, legal basis) with a rule in force the
oldest observation it accepts; a request reads only signals within those reaches. Held
here to the decision itself: a signal is within a reach if and only if a rule releases it
at the level, over the demo pack and one with rules in disjoint terms.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from broker.core.policy import CompiledPolicy, load_pack
from broker.core.policy.evaluate import Reach
from tests.conftest import DEMO_PACK
from tests.unit.packs import base_pack, load

DEMO = CompiledPolicy(load_pack(DEMO_PACK))
_windowed = base_pack()
_windowed["rules"][0].update(valid_from="2026-01-01", valid_until="2026-12-31",
                             max_age_days=30)
_windowed["rules"].append(dict(_windowed["rules"][0], id="gemeente-energie-2027",
                               valid_from="2027-01-01", valid_until="2027-12-31",
                               max_age_days=400, access="hit", fields={}))
WINDOWED = CompiledPolicy(load(_windowed))
LEVELS = ("hit", "aggregate", "disclose")


def _names(policy: CompiledPolicy) -> dict[str, list[str]]:
    model = policy.pack.model
    return {
        "orgs": sorted(model.organisations),
        "purposes": sorted(model.purposes),
        "categories": sorted(model.categories),
        "bases": sorted(model.legal_bases),
    }


def within(reach: tuple[Reach, ...], category: str, source: str, basis: str,
           observed_ts: float) -> bool:
    return any(r.category == category and r.source == source and r.legal_basis == basis
               and (r.since is None or observed_ts >= r.since) for r in reach)


@st.composite
def requests(draw: st.DrawFn, policy: CompiledPolicy) -> tuple[object, ...]:
    names = _names(policy)
    now = datetime(2025, 6, 1, tzinfo=UTC) + timedelta(
        seconds=draw(st.integers(0, 3 * 365 * 86400)))
    age = timedelta(seconds=draw(st.integers(0, 1200 * 86400)))
    if draw(st.booleans()):  # a signal near its rule's age limit
        age = timedelta(days=draw(st.sampled_from([30, 365, 400, 730, 1095])),
                        seconds=draw(st.integers(-90, 90)))
    return (draw(st.sampled_from(names["orgs"])), draw(st.sampled_from(names["purposes"])),
            draw(st.sampled_from(names["categories"])), draw(st.sampled_from(names["orgs"])),
            draw(st.sampled_from(names["bases"])), (now - age).timestamp(), now.timestamp(),
            draw(st.sampled_from(LEVELS)))


def _agrees(policy: CompiledPolicy, request: tuple[object, ...]) -> None:
    """Within the reach if and only if a rule releases the signal at the start of the
    minute; so every signal a rule releases now is within it (a reach may take in signals
    up to a minute older, which the decision then leaves out)."""
    recipient, purpose, category, source, basis, observed, now, level = request
    assert isinstance(observed, float) and isinstance(now, float) and isinstance(level, str)
    args = (str(recipient), str(purpose), str(category), str(source), str(basis))

    def released(at: float) -> bool:
        rule = policy.decide_ts(*args, observed, at)
        return rule is not None and rule.grants(level)

    reach = policy.reach(args[0], args[1], level, now)
    found = within(reach, args[2], args[3], args[4], observed)
    assert found == released(now // 60 * 60)
    assert found or not released(now)


@settings(max_examples=500, deadline=None)
@given(requests(DEMO))
def test_the_demo_packs_reach_is_what_its_rules_release(request: tuple[object, ...]) -> None:
    _agrees(DEMO, request)


@settings(max_examples=200, deadline=None)
@given(requests(WINDOWED))
def test_rules_in_disjoint_terms_reach_in_their_own_term(request: tuple[object, ...]) -> None:
    _agrees(WINDOWED, request)


def test_a_reach_names_each_rule_key_once_in_order() -> None:
    now = datetime(2026, 11, 28, tzinfo=UTC).timestamp()
    reach = DEMO.reach("gemeente", "integrale-controle", "hit", now)
    keys = [(r.category, r.source, r.legal_basis) for r in reach]
    assert keys == sorted(set(keys))
    assert ("drugsgerelateerde-melding", "politie", "wpg-art-16") in keys
    # The same category under another legal basis, or from another source, is out of reach.
    assert ("drugsgerelateerde-melding", "politie", "wpg-art-19") not in keys
    assert not any(r.source == "gemeente" and r.category == "overlast-melding" for r in reach)
    assert DEMO.reach("gemeente", "no-such-purpose", "hit", now) == ()
    after_the_covenant = datetime(2028, 6, 1, tzinfo=UTC).timestamp()
    assert "drugsgerelateerde-melding" not in {
        r.category for r in DEMO.reach("gemeente", "integrale-controle", "hit",
                                       after_the_covenant)}
