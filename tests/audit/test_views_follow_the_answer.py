"""Everything a partner reads about its own act is a function of the act's answer
(docs/security.md rows 47-49): for random packs, signals and requests, the requester's
entry (read alone and in the list), its receipt and the errors around it are exactly what
an oracle computes from the answer (and the rules `GET /v1/policy` shows it), and no
signal id appears in any of it. Two stores that differ only in what the partner may not
see therefore give equal views. Through the API, on SQLite and PostgreSQL.

The organisation `a` asks; `b` and `c` contribute. Legal bases `l-b` and `l-c` are their
own (one possible source each), `l-bc` both may use.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.auth.actors import system_actor
from broker.core.policy import load_pack_from_text
from broker.core.policy.concealment import concealment
from broker.runtime import Runtime
from broker.services import packs as pack_store
from tests.unit.packs import as_files

Headers = Callable[..., dict[str, str]]
ASKER = "a"
CONTRIBUTORS = {"c-b": ["b"], "c-c": ["c"], "c-bc": ["b", "c"]}
BASES = {"c-b": ["l-b", "l-bc"], "c-c": ["l-c"], "c-bc": ["l-bc"]}
BASIS_SOURCES = {basis: {o for c, orgs in CONTRIBUTORS.items() if basis in BASES[c]
                         for o in orgs} for basis in ("l-b", "l-c", "l-bc")}
"""Who may carry each basis: `l-b` the b alone, `l-c` the c alone, `l-bc` both."""
PURPOSES = ("p-een", "p-twee")
TRANSFORMS: dict[str, list[Any]] = {
    "location.postcode": ["reveal", "redact", {"generalise": "pc4"}],
    "location.house_number": ["reveal", "pseudonymise"],
    "observed_at": ["reveal", {"generalise": "month"}],
    "description": ["redact", "pseudonymise"],
    "subject.bag_id": ["reveal", "pseudonymise"],
}
EXAMPLES = 25


def catalogue() -> dict[str, Any]:
    return {
        "pack": "gevolgd", "version": "1",
        "organisations": {o: {"name": f"Organisatie {o.upper()}"} for o in "abcd"},
        "legal_bases": {b: {"title": b} for b in BASIS_SOURCES},
        "purposes": {p: {"title": p} for p in PURPOSES},
        "categories": {c: {"title": c, "subject_types": ["address"], "contributors": orgs,
                           "legal_bases": BASES[c], "retention_days": 365}
                       for c, orgs in CONTRIBUTORS.items()},
        "rules": [],
    }


@st.composite
def rules(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Rules for `a`, per category and purpose: none, one for every source, or one per
    source; each hit or disclose, showing or hiding its source."""
    made: list[dict[str, Any]] = []
    for category, purpose in itertools.product(CONTRIBUTORS, PURPOSES):
        shape = draw(st.sampled_from(["none", "all", "each"]))
        groups: dict[str, list[list[str] | None]] = {
            "none": [], "all": [None], "each": [[s] for s in CONTRIBUTORS[category]]}
        for sources in groups[shape]:
            rule: dict[str, Any] = {
                "id": f"r-{len(made)}", "description": "gegenereerd", "recipients": [ASKER],
                "purposes": [purpose], "categories": [category],
                "access": draw(st.sampled_from(["hit", "disclose"])),
                "reveal_source": draw(st.booleans())}
            if sources is not None:
                rule["sources"] = sources
            if rule["access"] == "disclose":
                paths = draw(st.lists(st.sampled_from(sorted(TRANSFORMS)), min_size=1,
                                      unique=True))
                rule["fields"] = {p: draw(st.sampled_from(TRANSFORMS[p])) for p in paths}
            made.append(rule)
    return made


signals = st.lists(st.sampled_from(sorted(
    (category, source, basis) for category, orgs in CONTRIBUTORS.items()
    for source in orgs for basis in BASES[category])), min_size=1, max_size=4)


def concealed_fields(rule: dict[str, Any], signal: tuple[str, str, str]) -> set[str]:
    """What the answer item must leave out under `rule` (the oracle's own reading)."""
    if rule["reveal_source"]:
        return set()
    category, _, basis = signal
    out = {"source"}
    if len(BASIS_SOURCES[basis]) == 1:
        out.add("legal_basis")
    if len(set(rule.get("sources") or CONTRIBUTORS[category]) & set(CONTRIBUTORS[category])) == 1:
        out.add("rule")
    return out


def expected_items(answer: dict[str, Any], shown: dict[str, dict[str, Any]]
                   ) -> list[dict[str, Any]]:
    """The requester's entry items, computed from the answer and the rules it may read:
    what the answer said of each signal, and no more (the fields each item released, read
    through `objects.rule_fields` as docs/audit.md says)."""
    items = []
    for signal in answer["signals"]:
        rule = signal.get("rule")
        item = {"ref": signal["ref"], "category": signal["category"],
                "fields": ({p: shown[rule]["fields"][p] for p in signal["fields"]} if rule
                           else dict.fromkeys(signal["fields"]))}
        item.update({k: signal[k] for k in ("rule", "legal_basis", "source") if k in signal})
        items.append(item)
    return items


def resolved(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """The entry's items, each with its fields: its own, else its rule's in `rule_fields`."""
    table = entry["objects"].get("rule_fields") or {}
    return [{**item, "fields": item["fields"] or table.get(item.get("rule"), {})}
            for item in entry["items"]]


class Example:
    """One example's partner reads, against the test's app."""

    def __init__(self, api: TestClient, headers: dict[str, dict[str, str]]) -> None:
        self.api, self.headers = api, headers

    def get(self, path: str, org: str = ASKER) -> Any:
        answer = self.api.get(path, headers=self.headers[org])
        assert answer.status_code == 200, answer.text
        return answer.json()

    def read_all(self, seq: int, action: str) -> tuple[dict[str, Any], str]:
        """(the entry as read alone, the text of everything read about it)."""
        body = self.get(f"/v1/audit/entries/{seq}")
        page = self.get(f"/v1/audit/entries?action={action}&limit=5")
        (listed,) = [i for i in page["items"] if i["seq"] == seq]
        assert listed == body["entry"]
        receipt = self.api.get(f"/v1/audit/entries/{seq}/receipt", headers=self.headers[ASKER])
        assert receipt.status_code == 200
        assert receipt.text.split("\n")[1] == f"index {seq}"
        return body, json.dumps(body) + json.dumps(page) + receipt.text

    def check_shape(self, body: dict[str, Any], withheld: bool) -> None:
        assert body["redacted"] is withheld
        assert (body["entry_b64"] is None, body["leaf_hash"] is None) == (withheld, withheld)
        assert ("id" not in body["entry"]) is withheld


def test_what_a_partner_reads_of_its_act_is_a_function_of_its_answer(
    api: TestClient, runtime: Runtime, auth_headers: Headers
) -> None:
    base = catalogue()
    pack_store.activate(runtime, load_pack_from_text(as_files(base)), actor=system_actor("t"))
    headers = {org: auth_headers(org, ["contributor", "requester"]) for org in "abc"}
    example = Example(api, headers)
    counter = itertools.count(1)
    seen = {"disclosed": 0, "concealed": 0, "hits": 0, "refused": 0}

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    @given(generated=rules(), stored=signals, purpose=st.sampled_from(PURPOSES))
    def check(generated: list[dict[str, Any]], stored: list[tuple[str, str, str]],
              purpose: str) -> None:
        pack = load_pack_from_text(as_files({**base, "rules": generated}))
        pack_store.activate(runtime, pack, actor=system_actor("t"))
        bag_id = f"0599010{next(counter):09d}"
        ids = []
        for category, source, basis in stored:
            submitted = {"category": category, "legal_basis": basis,
                         "subject": {"type": "address", "bag_id": bag_id},
                         "location": {"postcode": "3072AB", "house_number": 7},
                         "observed_at": (datetime.now(UTC) - timedelta(days=3)).isoformat(),
                         "description": "waarneming"}
            answer = api.post("/v1/signals", json=submitted, headers=headers[source])
            assert answer.status_code == 201, answer.text
            ids.append(answer.json()["id"])
        ask = {"purpose": purpose, "case_reference": "Z-1"}
        disclosed = api.post("/v1/disclosures", headers=headers[ASKER],
                             json={**ask, "query": {"subject": {"bag_id": bag_id}}})
        if not any(purpose in r["purposes"] for r in generated):
            # refused: the error is all it learns, the same whatever the store holds
            assert disclosed.status_code == 403
            assert disclosed.json()["code"] == "policy_refused"
            seen["refused"] += 1
            return
        assert disclosed.status_code == 200, disclosed.text
        answer = disclosed.json()
        shown = {r["id"]: r for r in example.get("/v1/policy")["rules"]}
        for rule in generated:  # the policy it reads never names a source a rule hides
            assert ("sources" in shown[rule["id"]]) == ("sources" in rule
                                                        and rule["reveal_source"])
        # the entry, its listing and its receipt: the answer's words, and no signal id
        body, text = example.read_all(answer["audit_seq"], "disclosure")
        example.check_shape(body, bool(answer["signals"]))
        entry = body["entry"]
        assert resolved(entry) == expected_items(answer, shown)
        assert (entry["actor"]["org"], entry["purpose"], entry["action"],
                entry["case_reference"]) == (
            ASKER, purpose, "disclosure", "Z-1")
        objects = {k: v for k, v in entry["objects"].items()
                   if k not in ("pseudonym_key", "rule_fields", "subject_tags")}
        assert objects == {"disclosure_id": answer["disclosure_id"], "query": "subject",
                           "released": len(answer["signals"])}
        assert set(entry["objects"].get("rule_fields") or {}) <= {
            s.get("rule") for s in answer["signals"]}
        assert all(i not in text for i in ids)
        seen["disclosed"] += bool(answer["signals"])
        # every answer item leaves out exactly what names its hidden source
        decided = {(c, s, b): owner_rule for owner_rule in generated
                   for (c, s, b) in stored
                   if purpose in owner_rule["purposes"] and c in owner_rule["categories"]
                   and s in (owner_rule.get("sources") or CONTRIBUTORS[c])
                   and owner_rule["access"] == "disclose"}
        expected_keys = sorted(
            sorted({"ref", "category", "fields", "source", "legal_basis", "rule"}
                   - concealed_fields(rule, signal))
            for signal in stored for rule in [decided.get(signal)] if rule is not None)
        assert sorted(sorted(s) for s in answer["signals"]) == expected_keys
        seen["concealed"] += sum("source" not in s for s in answer["signals"])
        # a hit: yes or no and the sources named, nothing of the signals behind it
        hit = api.post("/v1/hits", headers=headers[ASKER],
                       json={**ask, "subject": {"bag_id": bag_id}})
        assert hit.status_code == 200, hit.text
        said = hit.json()
        body, text = example.read_all(said["audit_seq"], "hit")
        example.check_shape(body, said["hit"])
        shown_objects = {k: v for k, v in body["entry"]["objects"].items()
                         if k != "subject_tags"}
        assert body["entry"]["items"] == []
        assert shown_objects == ({"hit": True, "sources": said["sources"]} if said["hit"]
                                 else {"hit": False})
        assert all(i not in text for i in ids)
        seen["hits"] += said["hit"]
        # an entry not its own is the same 404 as one that does not exist
        if ids:
            created = [i["seq"] for i in example.get(
                "/v1/audit/entries?action=signal_created&limit=5", org="b")["items"]]
            for seq in created[:1]:
                theirs = api.get(f"/v1/audit/entries/{seq}", headers=headers[ASKER])
                none = api.get("/v1/audit/entries/900000000", headers=headers[ASKER])
                assert theirs.status_code == none.status_code == 404
                assert ({k: v for k, v in theirs.json().items() if k != "instance"}
                        == {k: v for k, v in none.json().items() if k != "instance"})

    check()
    # the run must have met the interesting cases, or it proved little
    assert seen["disclosed"] >= 2 and seen["concealed"] >= 1 and seen["hits"] >= 1, seen


def test_the_oracle_reads_hidden_rules_as_the_pack_does() -> None:
    """The oracle's reading of what an answer leaves out agrees with the pack's own."""
    pack = load_pack_from_text(as_files({**catalogue(), "rules": [
        {"id": "r-0", "description": "d", "recipients": [ASKER], "purposes": ["p-een"],
         "categories": ["c-bc"], "sources": ["b"], "access": "hit", "reveal_source": False},
        {"id": "r-1", "description": "d", "recipients": [ASKER], "purposes": ["p-twee"],
         "categories": ["c-bc"], "access": "hit", "reveal_source": False},
        {"id": "r-2", "description": "d", "recipients": [ASKER], "purposes": ["p-een"],
         "categories": ["c-b"], "access": "hit", "reveal_source": False}]}))
    concealed = concealment(pack)
    assert concealed.telling_bases == {b for b, orgs in BASIS_SOURCES.items() if len(orgs) == 1}
    assert concealed.anonymous == {"r-0", "r-2"}
    assert concealed_fields(pack.rules[0].model_dump(), ("c-bc", "b", "l-bc")) == {
        "source", "rule"}
    assert concealed_fields(pack.rules[1].model_dump(), ("c-bc", "b", "l-bc")) == {"source"}
    assert concealed_fields(pack.rules[2].model_dump(), ("c-b", "b", "l-b")) == {
        "source", "rule", "legal_basis"}
