"""A hypothesis state machine over random small packs, random signals and random requests,
through the API: what leaves is exactly what the one matching rule grants, no answer
mentions a signal no rule matches, every answer's audit entry describes exactly what was
released, and the log verifies after every step.

The expected answers come from a model kept here: the rules expanded by hand (as in the
pure policy properties) and the signals as intake stored them. SQLite only: the database
behaviour is covered on both databases by the other API tests.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from broker.audit.compact import released_fields
from broker.auth.actors import system_actor
from broker.core.identifiers import valid_bsn_from
from broker.core.policy import load_pack_from_text, parse_transform
from broker.core.transforms import flatten_signal, pseudonymiser_for, release
from broker.runtime import Runtime
from broker.services import packs as pack_store
from tests.api.disclosure_kit import entry_at, log_size, log_verifies, published_count
from tests.unit.packs import as_files
from tests.unit.test_policy_properties import ORGS, packs, rule_keys

Headers = Callable[..., dict[str, str]]
LEVELS = {"hit": 1, "aggregate": 2, "disclose": 3}
BSNS = [valid_bsn_from(n) for n in (111_000_000, 222_000_000, 333_000_000)]
IDENTIFIERS = {
    "bsn": BSNS,
    "kvk": ["12345678", "87654321"],
    "plate": ["GXR12B", "VLK45T"],
    "bag_id": ["0599010000000001", "0599010000000002"],
}
SUBJECT_ID = {"person": "bsn", "company": "kvk", "vehicle": "plate", "address": "bag_id"}
POSTCODES = ["3072AB", "3072AC", "3073AA"]
ATTRIBUTE_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "number": st.sampled_from([0, 7, 2400, 2400.5, 9999]),
    "integer": st.integers(min_value=0, max_value=50),
    "text": st.sampled_from(["tekst", "Meter verzegeld", "x"]),
    "boolean": st.booleans(),
    "date": st.sampled_from(["2025-01-31", "2026-06-01"]),
}


@pytest.fixture
def db_url(sqlite_url: str) -> str:
    """This module runs on SQLite only."""
    return sqlite_url


@dataclass
class World:
    """What the database holds, as the test knows it; kept across examples (one database)."""

    signals: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> stored answer
    erased: set[str] = field(default_factory=set)
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)  # what the run exercised

    def count(self, what: str, n: int = 1) -> None:
        self.counts[what] = self.counts.get(what, 0) + n


def _level(access: str) -> int:
    return LEVELS[access]


def _releases_something(generated: tuple[dict[str, Any], Any]) -> bool:
    """Packs with a `disclose` rule: the others only refuse (which the asker draws also
    exercise, asking for purposes no rule names)."""
    return any(r["access"] == "disclose" for r in generated[0]["rules"])


class DisclosureMachine(RuleBasedStateMachine):
    """The machine; `bind` gives it the test's app, runtime, client factory and world."""

    api: ClassVar[TestClient]
    runtime: ClassVar[Runtime]
    auth_headers: ClassVar[Headers]
    world: ClassVar[World]

    @classmethod
    def bind(cls, api: TestClient, runtime: Runtime, auth_headers: Headers,
             world: World) -> type[DisclosureMachine]:
        return type("BoundDisclosureMachine", (cls,), {
            "api": api, "runtime": runtime, "auth_headers": staticmethod(auth_headers),
            "world": world})

    def __init__(self) -> None:
        super().__init__()
        self.data: dict[str, Any] = {}
        self.owner: dict[tuple[str, ...], dict[str, Any]] = {}
        # This example's own signals: what draws may depend on (the world outlives
        # examples, and hypothesis replays an example's draws exactly).
        self.mine: list[str] = []

    # --- the pack ---

    @initialize(generated=packs().filter(_releases_something), data=st.data())
    def load_pack(self, generated: tuple[dict[str, Any], Any], data: st.DataObject) -> None:
        self.data = generated[0]
        pack = load_pack_from_text(as_files(self.data))
        pack_store.activate(self.runtime, pack, actor=system_actor("test"))
        self.owner = {key: r for r in self.data["rules"]
                      for key in rule_keys(r, self.data["categories"])}
        for org in ORGS:
            if org not in self.world.headers:
                self.world.headers[org] = self.auth_headers(
                    org, ["contributor", "requester"])
        for _ in range(data.draw(st.integers(0, 3))):
            self.submit_signal(data)

    def rule_for(self, org: str, purpose: str, signal: dict[str, Any]
                 ) -> dict[str, Any] | None:
        key = (org, purpose, signal["category"], signal["source"], signal["legal_basis"])
        return self.owner.get(key)

    def allowed(self, org: str, purpose: str) -> bool:
        return any(k[0] == org and k[1] == purpose for k in self.owner)

    def live(self) -> list[dict[str, Any]]:
        return [s for i, s in self.world.signals.items() if i not in self.world.erased]

    def my_live(self) -> list[dict[str, Any]]:
        return [self.world.signals[i] for i in self.mine if i not in self.world.erased]

    # --- acts ---

    @rule(data=st.data())
    def submit(self, data: st.DataObject) -> None:
        self.submit_signal(data)

    def submit_signal(self, data: st.DataObject) -> None:
        categories = self.data["categories"]
        covered = sorted(k for k, r in self.owner.items() if r["access"] == "disclose") \
            or sorted(self.owner)
        aim = data.draw(st.integers(0, 3)) > 0
        if covered and aim:
            # Half the signals fall under some rule, or most runs would release nothing.
            _, _, category_id, org, basis = data.draw(st.sampled_from(covered))
        else:
            category_id = data.draw(st.sampled_from(sorted(categories)))
            org = data.draw(st.sampled_from(categories[category_id]["contributors"]))
            basis = data.draw(st.sampled_from(categories[category_id]["legal_bases"]))
        category = categories[category_id]
        subject_type = category["subject_types"][0]
        kind = SUBJECT_ID[subject_type]
        subject: dict[str, Any] = {"type": subject_type,
                                   kind: data.draw(st.sampled_from(IDENTIFIERS[kind]))}
        if subject_type == "person" and data.draw(st.booleans()):
            subject["birthdate"] = "1984-05-17"
        body = {
            "category": category_id,
            "legal_basis": basis,
            "subject": subject,
            "location": {"postcode": data.draw(st.sampled_from(POSTCODES)),
                         "house_number": data.draw(st.integers(1, 3))},
            "observed_at": (datetime.now(UTC) - timedelta(
                days=data.draw(st.integers(0, 30)))).isoformat(),
            "description": data.draw(st.sampled_from([None, "vrije tekst"])),
            "attributes": {name: data.draw(ATTRIBUTE_VALUES[spec["type"]])
                           for name, spec in category["attributes"].items()},
        }
        answer = self.api.post("/v1/signals", json=body, headers=self.world.headers[org])
        assert answer.status_code == 201, answer.text
        self.world.signals[answer.json()["id"]] = answer.json()
        self.mine.append(answer.json()["id"])
        self.world.count("signals")

    @rule(data=st.data())
    def erase_signal(self, data: st.DataObject) -> None:
        live = self.my_live()
        if not live:
            return
        signal = data.draw(st.sampled_from(live))
        answer = self.api.delete(f"/v1/signals/{signal['id']}",
                            headers=self.world.headers[signal["source"]])
        assert answer.status_code == 204
        self.world.erased.add(signal["id"])

    def draw_asker(self, data: st.DataObject) -> tuple[str, str]:
        """Mostly an (organisation, purpose) some rule names for a stored signal, or for
        anything; sometimes any at all."""
        stored = {(s["category"], s["source"], s["legal_basis"]) for s in self.my_live()}
        relevant = sorted({k[:2] for k in self.owner if k[2:] in stored})
        named = sorted({k[:2] for k in self.owner})
        choice = data.draw(st.integers(0, 3))
        if relevant and choice >= 2:
            org, purpose = data.draw(st.sampled_from(relevant))
            return org, purpose
        if named and choice == 1:
            org, purpose = data.draw(st.sampled_from(named))
            return org, purpose
        return (data.draw(st.sampled_from(ORGS)),
                data.draw(st.sampled_from(sorted(self.data["purposes"]))))

    @rule(data=st.data())
    def disclose(self, data: st.DataObject) -> None:
        targets = [(s, k) for s in self.my_live() for k, r in self.owner.items()
                   if r["access"] == "disclose"
                   and k[2:] == (s["category"], s["source"], s["legal_basis"])]
        aim = data.draw(st.booleans())
        if targets and aim:
            # Aim at a signal some rule releases: the interesting case, and a rare one.
            target, key = data.draw(st.sampled_from(targets))
            org, purpose = key[0], key[1]
            query, matches = self.draw_query(data, target)
        else:
            org, purpose = self.draw_asker(data)
            query, matches = self.draw_query(data)
        answer = self.api.post("/v1/disclosures", headers=self.world.headers[org], json={
            "purpose": purpose, "case_reference": "Z-1", "query": query})
        if not self.allowed(org, purpose):
            assert answer.status_code == 403, answer.text
            self.world.count("refused")
            return
        assert answer.status_code == 200, answer.text
        self.check_disclosure(org, purpose, matches, answer.json(), answer.text)
        self.world.count("disclosures")
        self.world.count("released", len(answer.json()["signals"]))

    def draw_query(self, data: st.DataObject, target: dict[str, Any] | None = None
                   ) -> tuple[dict[str, Any], Callable[[dict[str, Any]], bool]]:
        """A query and the model's test of which signals it names; with a `target`,
        one that names that signal."""
        how = data.draw(st.sampled_from(["subject", "pc6", "pc4", "signals"]))
        if how == "subject":
            if target is None:
                kind, value = self.draw_identifier(data)
            else:
                kind = SUBJECT_ID[target["subject"]["type"]]
                value = target["subject"][kind]
            return ({"subject": {kind: value}},
                    lambda s: bool(s["subject"].get(kind) == value))
        if how in ("pc6", "pc4"):
            postcode = (target["location"]["postcode"] if target
                        else data.draw(st.sampled_from(POSTCODES)))
            area = postcode if how == "pc6" else postcode[:4]
            return ({"area": {"postcode": area}},
                    lambda s: bool(s["location"]["postcode"].startswith(area)))
        ids = [*self.mine, "sig_none"]
        chosen = data.draw(st.lists(st.sampled_from(ids), min_size=1, max_size=4))
        if target:
            chosen.append(target["id"])
        return {"signals": chosen}, lambda s: s["id"] in chosen

    def draw_identifier(self, data: st.DataObject) -> tuple[str, str]:
        """Mostly the identifier of a stored signal, sometimes any of the pool."""
        live = self.my_live()
        pick = data.draw(st.booleans())
        if live and pick:
            subject = data.draw(st.sampled_from(live))["subject"]
            kind = SUBJECT_ID[subject["type"]]
            return kind, str(subject[kind])
        kind = data.draw(st.sampled_from(sorted(IDENTIFIERS)))
        return kind, data.draw(st.sampled_from(IDENTIFIERS[kind]))

    def check_disclosure(self, org: str, purpose: str,
                         matches: Callable[[dict[str, Any]], bool],
                         body: dict[str, Any], text: str) -> None:
        key = self.runtime.keys.active("pseudonym").material
        bound = pseudonymiser_for(key, org, purpose)
        expected: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        for signal in self.live():
            found = self.rule_for(org, purpose, signal)
            if matches(signal) and found and found["access"] == "disclose":
                expected[bound.signal_ref(signal["id"])] = (signal, found)
        got = {s["ref"]: s for s in body["signals"]}
        assert set(got) == set(expected)
        # No signal the policy does not release to this request is hinted at.
        for signal_id in self.world.signals:
            if bound.signal_ref(signal_id) not in expected:
                assert bound.signal_ref(signal_id) not in text
            assert signal_id not in text
        entry = entry_at(self.runtime, body["audit_seq"])
        assert entry.action == "disclosure" and entry.purpose == purpose
        assert entry.policy is not None and entry.policy.hash == body["policy_hash"]
        assert body["policy_hash"] == self.runtime.policy.pack.hash
        items = {i.signal_id: i for i in entry.items}
        assert set(items) == {s["id"] for s, _ in expected.values()}
        for ref, (signal, found) in expected.items():
            fields = {p: parse_transform(t) for p, t in found.get("fields", {}).items()}
            flat = flatten_signal(signal)
            want = release(fields, flat, recipient=org, purpose=purpose,
                           pseudonym_key=key, today=datetime.now(UTC).date())
            released = got[ref]
            assert released["rule"] == found["id"] == items[signal["id"]].rule
            assert released["fields"] == want
            assert set(want) <= set(fields)  # only paths the one rule names
            assert released_fields(items[signal["id"]].model_dump(), entry.objects) == {
                p: fields[p].as_data() for p in want}
            assert (released["category"], released["source"], released["legal_basis"]) \
                == (signal["category"], signal["source"], signal["legal_basis"])

    @rule(data=st.data())
    def ask_for_a_purpose_no_rule_names(self, data: st.DataObject) -> None:
        named = {k[:2] for k in self.owner}
        unnamed = sorted(p for p in itertools.product(ORGS, sorted(self.data["purposes"]))
                         if p not in named)
        if not unnamed:
            return
        org, purpose = data.draw(st.sampled_from(unnamed))
        answer = self.api.post("/v1/disclosures", headers=self.world.headers[org], json={
            "purpose": purpose, "query": {"area": {"postcode": "3072"}}})
        assert answer.status_code == 403, answer.text
        assert answer.json()["code"] == "policy_refused"
        refusal = entry_at(self.runtime, log_size(self.runtime) - 1)
        assert (refusal.action, refusal.reason, refusal.actor.org, refusal.purpose) == (
            "refusal", "purpose_not_allowed", org, purpose)
        self.world.count("refused")

    @rule(data=st.data())
    def check_hit(self, data: st.DataObject) -> None:
        org, purpose = self.draw_asker(data)
        kind, value = self.draw_identifier(data)
        answer = self.api.post("/v1/hits", headers=self.world.headers[org], json={
            "purpose": purpose, "subject": {kind: value}})
        if not self.allowed(org, purpose):
            assert answer.status_code == 403
            return
        assert answer.status_code == 200, answer.text
        counted = [s for s in self.live() if s["subject"].get(kind) == value
                   and self.rule_for(org, purpose, s) is not None]
        body = answer.json()
        self.world.count("hits", body["hit"])
        assert body["hit"] is bool(counted)
        assert body["sources"] == sorted({s["source"] for s in counted})
        entry = entry_at(self.runtime, body["audit_seq"])
        assert entry.action == "hit"
        assert sorted(i.signal_id for i in entry.items) == sorted(s["id"] for s in counted)
        assert all(i.fields == {} for i in entry.items)

    @rule(data=st.data())
    def summarise(self, data: st.DataObject) -> None:
        org, purpose = self.draw_asker(data)
        postcode = data.draw(st.sampled_from(POSTCODES))
        area = postcode[:4] if data.draw(st.booleans()) else postcode
        answer = self.api.post("/v1/area-summaries", headers=self.world.headers[org], json={
            "purpose": purpose, "area": {"postcode": area}})
        if not self.allowed(org, purpose):
            assert answer.status_code == 403
            return
        assert answer.status_code == 200, answer.text
        aggregate = {k[2] for k, r in self.owner.items()
                     if k[:2] == (org, purpose) and _level(r["access"]) >= 2}
        cells: dict[str, list[str]] = {category: [] for category in aggregate}
        for s in self.live():
            found = self.rule_for(org, purpose, s)
            if (s["location"]["postcode"].startswith(area) and found
                    and _level(found["access"]) >= 2):
                cells[s["category"]].append(s["id"])
        # Each cell as the cell key method publishes exactly its granted signals.
        shown = {c: published_count(self.runtime, ids) for c, ids in cells.items()}
        expected = [{"category": c, "count": n, "suppressed": n is None}
                    for c, n in sorted(shown.items())]
        assert answer.json()["categories"] == expected

    @invariant()
    def log_verifies(self) -> None:
        assert log_verifies(self.runtime)



def test_released_iff_granted_and_audited_exactly(
    api: TestClient, runtime: Runtime, auth_headers: Headers
) -> None:
    world = World()
    machine = DisclosureMachine.bind(api, runtime, auth_headers, world)
    run_state_machine_as_test(machine, settings=settings(
        max_examples=20, stateful_step_count=20, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
    # The run must have exercised the interesting paths, or it proved little.
    assert world.counts.get("released", 0) >= 3, world.counts
    assert world.counts.get("refused", 0) >= 1 and world.counts.get("hits", 0) >= 1, world.counts


def test_the_model_expands_rules_like_the_pack() -> None:
    """The machine's oracle and the compiled pack agree on a fixed small pack."""
    data: dict[str, Any] = {
        "pack": "klein", "version": "1",
        "organisations": {o: {"name": o} for o in ORGS}, "groups": {"g": list(ORGS)},
        "legal_bases": {"l-een": {"title": "l"}}, "purposes": {"p-een": {"title": "p"}},
        "categories": {"c-een": {"title": "c", "subject_types": ["person"],
                                 "contributors": ["a", "b"], "legal_bases": ["l-een"],
                                 "retention_days": 30}},
        "rules": [{"id": "r-een", "description": "d", "recipients": ["g"],
                   "purposes": ["p-een"], "categories": ["c-een"], "sources": ["a"],
                   "access": "hit"}],
    }
    compiled = pack_store.live(load_pack_from_text(as_files(data))).compiled
    owner = {k: r for r in data["rules"] for k in rule_keys(r, data["categories"])}
    now = datetime.now(UTC)
    for key in itertools.product(ORGS, ["p-een"], ["c-een"], ["a", "b"], ["l-een"]):
        decided = compiled.decide(*key, now, now)
        assert (decided.id if decided else None) == (owner[key]["id"] if key in owner else None)
