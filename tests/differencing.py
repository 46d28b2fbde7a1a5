"""The differencing attacker of the area-summary tests: what a partner who knows the
perturbation table (it is public) can conclude from published counts, and the worlds and
attacks the API and end-to-end tests play (over a test client or real HTTP alike).

A world is split into disjoint atoms (the signals of one postcode, or of one age) whose
true counts the attacker wants; each published count it saw covers some atoms, plus the
signals it added itself. `possible` gives every value of one atom that the table allows
together with all other atoms: the attacker is certain only when one value is left.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from broker.core import cellkey
from tests.api.disclosure_kit import energy, recent

THRESHOLD = 5
"""`min_count` of the demo pack's area-summary rules."""
BOUND = 40
"""The largest atom count the attacker considers when nothing it saw bounds an atom."""
CATEGORY = "energie-afwijking"
WORLDS = 30


@dataclass(frozen=True, slots=True)
class Seen:
    """One published count: the atoms it covers, the attacker's own signals in it, and the
    count as shown (None when suppressed)."""

    atoms: tuple[int, ...]
    shown: int | None
    added: int = 0


def could_show(true: int, shown: int | None, threshold: int = THRESHOLD) -> bool:
    """Whether the table lets a cell of `true` signals be answered `shown`."""
    if true == 0:  # zero stays zero, and zero is suppressed
        return shown is None
    noises = cellkey.row(true)
    if shown is None:
        return any(true + noise < threshold for noise in noises)
    return shown >= threshold and shown - true in noises


def possible(target: int, seen: Sequence[Seen], atoms: int,
             threshold: int = THRESHOLD) -> set[int]:
    """The values of atom `target` that agree with every published count seen."""
    ranges = []
    for atom in range(atoms):
        alone = [s for s in seen if s.atoms == (atom,)]
        ranges.append([x for x in range(BOUND + 1)
                       if all(could_show(x + s.added, s.shown, threshold) for s in alone)])
    joint = [s for s in seen if len(s.atoms) > 1]
    found: set[int] = set()
    for values in itertools.product(*ranges):
        if values[target] in found:
            continue
        if all(could_show(sum(values[a] for a in s.atoms) + s.added, s.shown, threshold)
               for s in joint):
            found.add(values[target])
    return found


# --- worlds through the API -----------------------------------------------------------------


@dataclass(frozen=True)
class World:
    """One PC4 area: its number and the true counts of the cells the test put in it."""

    pc4: str
    counts: tuple[int, ...]

    def pc6(self, cell: int) -> str:
        return self.pc4 + ("AB", "AC", "AD")[cell]


def energy_signal(world: int, cell: int, number: int, postcode: str, days: int = 3
                  ) -> dict[str, Any]:
    signal = energy(bag_id=f"0599{world:04d}{cell}{number:07d}", number=number + 1,
                    postcode=postcode)
    signal["observed_at"] = recent(days)
    return signal


def submit(http: httpx.Client, headers: dict[str, str], signals: list[dict[str, Any]]
           ) -> list[str]:
    answer = http.post("/v1/signals/batch", json={"signals": signals}, headers=headers)
    assert answer.status_code == 201, answer.text
    return [s["id"] for s in answer.json()["signals"]]


def energy_count(http: httpx.Client, headers: dict[str, str], area: str,
                 purpose: str = "ondermijningsbeeld") -> int | None:
    """The energy count of one area summary, as published."""
    answer = http.post("/v1/area-summaries", json={"purpose": purpose,
                                                   "area": {"postcode": area}},
                       headers=headers)
    assert answer.status_code == 200, answer.text
    (found,) = [c for c in answer.json()["categories"] if c["category"] == CATEGORY]
    assert found["suppressed"] is (found["count"] is None)
    count: int | None = found["count"]
    assert count is None or count >= THRESHOLD
    return count


def nested_worlds(http: httpx.Client, netbeheerder: dict[str, str]) -> list[World]:
    """Thirty PC4 areas with 5-12 energy signals at AB and at AC, and 1-4 at AD."""
    rng = random.Random(50)
    worlds, signals = [], []
    for w in range(WORLDS):
        world = World(str(3100 + w), (rng.randint(5, 12), rng.randint(5, 12),
                                      rng.randint(1, 4)))
        for cell, n in enumerate(world.counts):
            signals += [energy_signal(w, cell, i, world.pc6(cell)) for i in range(n)]
        worlds.append(world)
    submit(http, netbeheerder, signals)
    return worlds


@dataclass
class Outcome:
    """How an attack went: the worlds where it could subtract, those where it was wrong,
    and the shown counts that differed from the true ones."""

    made: int = 0
    wrong: int = 0
    perturbed: int = 0

    def guessed(self, guess: int | None, true: int) -> None:
        if guess is not None:
            self.made += 1
            self.wrong += guess != true


def subtract_nested(http: httpx.Client, riec: dict[str, str], worlds: list[World]
                    ) -> Outcome:
    """PC4 minus its shown PC6s for the suppressed one; asserts that the table always
    leaves more than one count possible for it."""
    outcome = Outcome()
    for world in worlds:
        seen = [Seen((cell,), energy_count(http, riec, world.pc6(cell))) for cell in range(3)]
        seen.append(Seen((0, 1, 2), energy_count(http, riec, world.pc4)))
        ab, ac, ad, pc4 = (s.shown for s in seen)
        guess = None
        if ad is None and ab is not None and ac is not None and pc4 is not None:
            guess = pc4 - ab - ac
        outcome.guessed(guess, world.counts[2])
        outcome.perturbed += sum(s.shown is not None and s.shown != world.counts[s.atoms[0]]
                                 for s in seen[:3])
        found = possible(2, seen, 3)
        assert world.counts[2] in found and len(found) > 1, (world, seen)
    return outcome


def add_and_retract(http: httpx.Client, riec: dict[str, str], netbeheerder: dict[str, str],
                    worlds: list[World]) -> Outcome:
    """One signal added at the suppressed PC6 of each world, the counts asked again, and
    the signal retracted: the first answers must come back exactly, and the table must
    leave more than one count possible for the cell before."""
    outcome = Outcome()
    for w, world in enumerate(worlds):
        areas = [world.pc6(0), world.pc6(1), world.pc6(2), world.pc4]
        before = [energy_count(http, riec, area) for area in areas]
        (added,) = submit(http, netbeheerder, [energy_signal(w, 9, 0, world.pc6(2))])
        ad_after = energy_count(http, riec, world.pc6(2))
        pc4_after = energy_count(http, riec, world.pc4)
        retracted = http.delete(f"/v1/signals/{added}", headers=netbeheerder)
        assert retracted.status_code == 204, retracted.text
        assert [energy_count(http, riec, area) for area in areas] == before
        ab, ac, ad, pc4 = before
        guess = None
        if ad is None and ad_after is not None:  # it appeared: it held the threshold less one
            guess = THRESHOLD - 1
        elif ab is not None and ac is not None and pc4_after is not None:
            guess = pc4_after - 1 - ab - ac
        outcome.guessed(guess, world.counts[2])
        seen = [Seen((0,), ab), Seen((1,), ac), Seen((2,), ad), Seen((0, 1, 2), pc4),
                Seen((2,), ad_after, added=1), Seen((0, 1, 2), pc4_after, added=1)]
        found = possible(2, seen, 3)
        assert world.counts[2] in found and len(found) > 1, (world, seen)
    return outcome
