"""Nothing beyond the rule (docs/security.md rows 47-49), through real HTTP against `broker
serve` on the demo pack, on SQLite and PostgreSQL.

1. Per-purpose refs cannot be joined through the requester's own audit entries: the
   entries show the refs the answers gave, never the signal's id.
2. A hit-only recipient reads in its own entry only what its answer said: yes, and the
   sources named.
3. A source the rule hides is not named by what surrounds it: not by the answer's legal
   basis or rule, not by the requester's entry, not by `GET /v1/policy`, not by the dry
   run asked source by source.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from broker.core.identifiers import valid_bsn_from
from tests.api.disclosure_kit import BAG_ID, drugs, hennep
from tests.security.conftest import Answer, ServedBroker, broker_env


class Partner:
    """A client of one organisation on the served broker, with a fresh token."""

    def __init__(self, broker: ServedBroker, org: str, roles: str) -> None:
        self.broker = broker
        client_id, secret = broker.client(org, roles)
        self.headers = {"Authorization": f"Bearer {broker.token(client_id, secret)}",
                        "X-Acting-User": f"{org}-medewerker"}

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Answer:
        headers = dict(self.headers)
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body).encode()
        return self.broker.call(method, path, data, headers)

    def ok(self, method: str, path: str, body: dict[str, Any] | None = None,
           status: int = 200) -> Any:
        answer = self.call(method, path, body)
        assert answer.status == status, answer.body
        return answer.json()


@pytest.fixture
def broker(db_url: str, tmp_path: Path) -> Iterator[ServedBroker]:
    """`broker serve` over the test's database (SQLite or PostgreSQL) and the demo pack;
    SQLite in a file of its own that `broker init` makes (owner only)."""
    database = None if db_url.startswith("sqlite") else db_url
    served = ServedBroker(tmp_path / "broker", broker_env(tmp_path / "broker", database))
    served.directory.mkdir()
    served.command("init")
    served.start()
    try:
        yield served
    finally:
        served.stop()


def everything_read(partner: Partner, seq: int, action: str) -> str:
    """What the partner can read of one act's entry: the entry, its place in the list and
    its receipt, as one text."""
    entry = partner.ok("GET", f"/v1/audit/entries/{seq}")
    page = partner.ok("GET", f"/v1/audit/entries?action={action}&limit=1000")
    (listed,) = [i for i in page["items"] if i["seq"] == seq]
    assert listed == entry["entry"]
    receipt = partner.call("GET", f"/v1/audit/entries/{seq}/receipt")
    assert receipt.status == 200 and receipt.body.decode().split("\n")[1] == f"index {seq}"
    return json.dumps(entry) + receipt.body.decode()


def test_refs_of_two_purposes_do_not_join_through_the_own_entries(broker: ServedBroker) -> None:
    """Finding 1: the gemeente asks the same question under two purposes; its two entries
    show the two refs its answers gave, not the one signal id that would join them."""
    politie = Partner(broker, "politie", "contributor")
    bsn = valid_bsn_from(471_100_000)
    signal_id = politie.ok("POST", "/v1/signals", drugs(bsn=bsn), status=201)["id"]
    gemeente = Partner(broker, "gemeente", "requester")
    answers = [gemeente.ok("POST", "/v1/disclosures", {
        "purpose": purpose, "case_reference": "ZAAK-2026-0471",
        "query": {"subject": {"bsn": bsn}}})
        for purpose in ("integrale-controle", "gemeentelijke-handhaving")]
    refs = [a["signals"][0]["ref"] for a in answers]
    assert refs[0] != refs[1] and all(len(a["signals"]) == 1 for a in answers)
    for answer, ref in zip(answers, refs, strict=True):
        seq = answer["audit_seq"]
        body = gemeente.ok("GET", f"/v1/audit/entries/{seq}")
        assert body["redacted"] is True and body["entry_b64"] is None
        assert body["leaf_hash"] is None and "id" not in body["entry"]
        (item,) = body["entry"]["items"]
        assert item == {
            "ref": ref, "rule": "gemeente-drugs-handhaving",
            "legal_basis": "wpg-art-16", "category": "drugsgerelateerde-melding",
            "source": "politie", "fields": item["fields"]}
        assert set(item["fields"]) == set(answer["signals"][0]["fields"])
        assert signal_id not in everything_read(gemeente, seq, "disclosure")
        assert refs[1 - refs.index(ref)] not in everything_read(gemeente, seq, "disclosure")
    # the source keeps its own signal's id, and the privacy officer sees every entry whole
    seen = politie.ok("GET", f"/v1/audit/entries/{answers[0]['audit_seq']}")["entry"]
    assert [i["signal_id"] for i in seen["items"]] == [signal_id]
    officer = Partner(broker, "riec", "privacy_officer")
    for answer in answers:
        whole = officer.ok("GET", f"/v1/audit/entries/{answer['audit_seq']}")
        assert whole["redacted"] is False
        assert [i["signal_id"] for i in whole["entry"]["items"]] == [signal_id]


def test_a_hit_entry_shows_its_requester_only_the_hit_and_its_sources(
    broker: ServedBroker
) -> None:
    """Finding 2: after `hit: true, sources: [politie]` the Belastingdienst's own entry names
    no signal, category, legal basis or number of signals."""
    politie = Partner(broker, "politie", "contributor")
    bsn = valid_bsn_from(472_200_000)
    ids = [politie.ok("POST", "/v1/signals", drugs(bsn=bsn, basis="wpg-art-20"),
                      status=201)["id"] for _ in range(2)]
    belasting = Partner(broker, "belastingdienst", "requester")
    hit = belasting.ok("POST", "/v1/hits", {"purpose": "fiscale-handhaving",
                                            "case_reference": "FH-2026-12",
                                            "subject": {"bsn": bsn}})
    assert (hit["hit"], hit["sources"]) == (True, ["politie"])
    seq = hit["audit_seq"]
    body = belasting.ok("GET", f"/v1/audit/entries/{seq}")
    assert body["redacted"] is True and body["entry_b64"] is None
    assert body["entry"]["items"] == []
    assert body["entry"]["objects"] == {"hit": True, "sources": ["politie"]}
    text = everything_read(belasting, seq, "hit")
    for content in (*ids, "drugsgerelateerde-melding", "wpg-art-20",
                    "belastingdienst-criminele-signalen-hit"):
        assert content not in text
    # a miss stays whole: there is nothing in it to withhold
    miss = belasting.ok("POST", "/v1/hits", {"purpose": "fiscale-handhaving",
                                             "case_reference": "FH-2026-13",
                                             "subject": {"bsn": valid_bsn_from(472_300_000)}})
    missed = belasting.ok("GET", f"/v1/audit/entries/{miss['audit_seq']}")
    assert missed["redacted"] is False and missed["entry"]["objects"]["hit"] is False
    # the source sees its own two signals' items in the entry
    seen = politie.ok("GET", f"/v1/audit/entries/{seq}")["entry"]
    assert sorted(i["signal_id"] for i in seen["items"]) == sorted(ids)


def test_a_hidden_source_is_not_named_by_what_surrounds_it(broker: ServedBroker) -> None:
    """Finding 3: netbeheerder-hennep-energiefraude hides the politie; neither the answer
    (legal basis wpg-art-19, a rule of one source), nor the netbeheerder's entry, nor
    `GET /v1/policy`, nor the dry run names it."""
    politie = Partner(broker, "politie", "contributor")
    bag_id = BAG_ID[:-4] + "4730"
    politie.ok("POST", "/v1/signals", hennep(bag_id=bag_id, basis="wpg-art-19"), status=201)
    netbeheerder = Partner(broker, "netbeheerder", "requester")
    answer = netbeheerder.call("POST", "/v1/disclosures", {
        "purpose": "energiefraude", "case_reference": "EF-2026-4730",
        "query": {"subject": {"bag_id": bag_id}}})
    assert answer.status == 200, answer.body
    (signal,) = answer.json()["signals"]
    assert set(signal) == {"ref", "category", "fields"}
    assert signal["category"] == "hennepteelt-vermoeden"
    seq = answer.json()["audit_seq"]
    (item,) = netbeheerder.ok("GET", f"/v1/audit/entries/{seq}")["entry"]["items"]
    assert (item["ref"], item.get("source"), item.get("rule"), item.get("legal_basis")) == (
        signal["ref"], None, None, None)
    assert set(item) == {"ref", "category", "fields"}
    text = answer.body.decode() + everything_read(netbeheerder, seq, "disclosure")
    for name in ("politie", "wpg-art-19", "netbeheerder-hennep-energiefraude"):
        assert name not in text
    # the policy it may read lists the rule, without the source it hides
    rules = {r["id"]: r for r in netbeheerder.ok("GET", "/v1/policy")["rules"]}
    assert "sources" not in rules["netbeheerder-hennep-energiefraude"]
    assert rules["netbeheerder-hennep-energiefraude"]["reveal_source"] is False
    officer = Partner(broker, "riec", "privacy_officer")
    all_rules = {r["id"]: r for r in officer.ok("GET", "/v1/policy")["rules"]}
    assert all_rules["netbeheerder-hennep-energiefraude"]["sources"] == ["politie"]
    # the dry run gives the same refusal whichever source is asked about
    asked = [netbeheerder.call("POST", "/v1/policy/explain", {
        "recipient": "netbeheerder", "purpose": "energiefraude",
        "category": "hennepteelt-vermoeden", "source": source})
        for source in ("politie", "gemeente", "netbeheerder")]
    assert {a.status for a in asked} == {403}
    assert {a.headers["content-type"] for a in asked} == {"application/problem+json"}
    assert len({json.dumps({k: v for k, v in a.json().items() if k != "instance"})
                for a in asked}) == 1
    explained = officer.ok("POST", "/v1/policy/explain", {
        "recipient": "netbeheerder", "purpose": "energiefraude",
        "category": "hennepteelt-vermoeden", "source": "politie"})
    assert explained["rule"] == "netbeheerder-hennep-energiefraude"
