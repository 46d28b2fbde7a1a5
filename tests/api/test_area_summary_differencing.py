"""Row 50 of docs/security.md: a suppressed count of an area summary does not come back by
differencing nested areas (PC4 and its PC6s), a category counted with and without a
filter, or the counts before and after one added (and retracted) signal.

Each attack test builds thirty worlds (postcode areas) through the API and plays the
attacker of `tests/differencing.py`, who knows the perturbation table: its subtraction
must be wrong in at least a third of the worlds where it can subtract (about three in
four are expected), and no world may leave it only one possible count. With exact counts
every subtraction was right. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from broker.runtime import Runtime
from broker.settings import Settings
from tests.api.disclosure_kit import entry_at
from tests.conftest import DEMO_PACK
from tests.differencing import (
    CATEGORY,
    THRESHOLD,
    WORLDS,
    Outcome,
    Seen,
    World,
    add_and_retract,
    energy_count,
    energy_signal,
    nested_worlds,
    possible,
    submit,
    subtract_nested,
)

Headers = Callable[..., dict[str, str]]
RECENT = "ondermijningsbeeld-recent"
EXTRA_PURPOSE = f"""
  {RECENT}:
    title: "Ondermijningsbeeld van de laatste dertig dagen (RIEC)"
    requires_case_reference: false
"""
EXTRA_RULE = f"""
  - id: riec-energie-recent
    description: Het RIEC telt ook alleen de energiesignalen van de laatste dertig dagen
    recipients: [riec]
    purposes: [{RECENT}]
    categories: [{CATEGORY}]
    access: aggregate
    min_count: {THRESHOLD}
    max_age_days: 30
"""


@pytest.fixture
def settings(db_url: str, key_dir: Path, tmp_path: Path) -> Settings:
    """The demo pack and one rule more: the RIEC may also count the energy signals of the
    last thirty days, for a purpose of its own (the same category with a filter)."""
    pack = tmp_path / "pack"
    shutil.copytree(DEMO_PACK, pack)
    with (pack / "purposes.yaml").open("a") as purposes:
        purposes.write(EXTRA_PURPOSE)
    with (pack / "rules.yaml").open("a") as rules:
        rules.write(EXTRA_RULE)
    return Settings(database_url=db_url, key_dir=key_dir, policy_dir=pack,
                    checkpoint_every_seconds=3600)


def _clearly_wrong(outcome: Outcome) -> None:
    assert outcome.made >= WORLDS // 2, outcome
    assert outcome.wrong * 3 >= outcome.made, outcome


def test_nested_areas_do_not_subtract_to_a_suppressed_cell(
    api: TestClient, auth_headers: Headers
) -> None:
    """PC4 minus its shown PC6s was the suppressed PC6, exactly (13 - 5 - 5 = 3)."""
    worlds = nested_worlds(api, auth_headers("netbeheerder", ["contributor"]))
    outcome = subtract_nested(api, auth_headers("riec", ["requester"]), worlds)
    _clearly_wrong(outcome)
    assert outcome.perturbed > 0  # shown counts carry noise


def test_adding_and_retracting_one_signal_tells_nothing_exact(
    api: TestClient, auth_headers: Headers
) -> None:
    """One signal added at the suppressed PC6: its appearing, or the PC4 count going up,
    gave its count before. Retracting it gives the first answers back, exactly, so asking
    again averages nothing away."""
    netbeheerder = auth_headers("netbeheerder", ["contributor"])
    worlds = nested_worlds(api, netbeheerder)
    _clearly_wrong(add_and_retract(api, auth_headers("riec", ["requester"]), netbeheerder,
                                   worlds))


def test_a_category_with_and_without_a_filter_does_not_subtract(
    api: TestClient, auth_headers: Headers
) -> None:
    """All energy signals of an area minus those of the last thirty days were the older
    ones, exactly; now the two counts carry noise of their own."""
    rng = random.Random(51)
    worlds, signals = [], []
    for w in range(WORLDS):
        world = World(str(3200 + w), (rng.randint(5, 12), rng.randint(1, 4)))
        signals += [energy_signal(w, 0, i, world.pc4 + "AB") for i in range(world.counts[0])]
        signals += [energy_signal(w, 1, i, world.pc4 + "AB", days=60)
                    for i in range(world.counts[1])]
        worlds.append(world)
    submit(api, auth_headers("netbeheerder", ["contributor"]), signals)
    riec = auth_headers("riec", ["requester"])
    outcome = Outcome()
    for world in worlds:
        recent_only = energy_count(api, riec, world.pc4, purpose=RECENT)
        everything = energy_count(api, riec, world.pc4)
        guess = None
        if recent_only is not None and everything is not None:
            guess = everything - recent_only
        outcome.guessed(guess, world.counts[1])
        found = possible(1, [Seen((0,), recent_only), Seen((0, 1), everything)], 2)
        assert world.counts[1] in found and len(found) > 1, (world, recent_only, everything)
    _clearly_wrong(outcome)


def test_the_same_signals_always_get_the_same_count(
    api: TestClient, auth_headers: Headers, runtime: Runtime
) -> None:
    """Whatever asks for the same set of signals gets the same count: again, at PC4 or PC6,
    or through a rule whose filter keeps them all; the entry holds the published counts
    and nothing else of the noise, and so does the requester's view of it."""
    submit(api, auth_headers("netbeheerder", ["contributor"]),
           [energy_signal(1, 0, i, "3072AB") for i in range(7)])
    riec = auth_headers("riec", ["requester"])
    first = api.post("/v1/area-summaries", headers=riec,
                     json={"purpose": "ondermijningsbeeld", "area": {"postcode": "3072"}})
    assert first.status_code == 200, first.text
    body = first.json()
    (count,) = [c["count"] for c in body["categories"] if c["category"] == CATEGORY]
    assert count is None or 7 - 3 <= count <= 7 + 3
    asked = [energy_count(api, riec, "3072") for _ in range(3)]
    asked += [energy_count(api, riec, area) for area in ("3072AB", "3072 ab")]
    asked.append(energy_count(api, riec, "3072", purpose=RECENT))
    assert asked == [count] * 6
    entry = entry_at(runtime, body["audit_seq"])
    assert entry.items == []
    assert entry.objects == {"area": "3072", "area_level": "pc4",
                             "counts": {c["category"]: c["count"] for c in body["categories"]}}
    own = api.get(f"/v1/audit/entries/{body['audit_seq']}", headers=riec)
    assert own.status_code == 200, own.text
    assert own.json()["entry"]["objects"] == entry.objects
