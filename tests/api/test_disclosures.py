"""POST /v1/disclosures: exactly the rule's fields, nothing unmatched, one audit entry each.

Runs on SQLite and PostgreSQL (the `db_url`-parametrised fixtures).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from broker.runtime import Runtime
from tests.api.disclosure_kit import (
    BAG_ID,
    BSN,
    OTHER_BSN,
    POSTCODE,
    brp,
    drugs,
    energy,
    entries_since,
    entry_at,
    hennep,
    log_size,
    log_verifies,
)

Headers = Callable[..., dict[str, str]]
CASE = "ZAAK-2026-0042"
REF = re.compile(r"^sg_[a-z2-7]{26}$")
PSEUDONYM = re.compile(r"^ps_[a-z2-7]{26}$")


@pytest.fixture
def gemeente(auth_headers: Headers) -> dict[str, str]:
    return auth_headers("gemeente", ["requester"], acting_user="handhaver-2")


def ask(api: TestClient, headers: dict[str, str], query: dict[str, Any],
        purpose: str = "integrale-controle", case: str | None = CASE,
        **extra: Any) -> Any:
    body: dict[str, Any] = {"purpose": purpose, "query": query, **extra}
    if case:
        body["case_reference"] = case
    return api.post("/v1/disclosures", json=body, headers=headers)


def test_gemeente_gets_exactly_its_rules_fields(
    api: TestClient, submit: Any, gemeente: dict[str, str], runtime: Runtime
) -> None:
    power = energy()
    energy_id = submit("netbeheerder", power)
    hemp_id = submit("politie", hennep())
    before = log_size(runtime)
    answer = ask(api, gemeente, {"subject": {"bag_id": BAG_ID}})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["disclosure_id"].startswith("dsc_")
    assert body["purpose"] == "integrale-controle"
    assert body["policy_hash"] == runtime.policy.pack.hash
    by_rule = {s["rule"]: s for s in body["signals"]}
    assert set(by_rule) == {"gemeente-energie-integrale-controle", "gemeente-hennep-handhaving"}
    released = by_rule["gemeente-energie-integrale-controle"]
    assert REF.match(released["ref"])
    assert released["category"] == "energie-afwijking"
    assert released["source"] == "netbeheerder"
    assert released["legal_basis"] == "elektriciteitswet-levering"
    assert released["fields"] == {
        "location.postcode": POSTCODE,
        "location.house_number": 12,
        "observed_at": power["observed_at"][:7],
        "attributes.kwh_per_month": {"gte": 2000, "lt": 2500},
        "attributes.meter_seal_broken": True,
    }
    hemp = by_rule["gemeente-hennep-handhaving"]["fields"]
    assert hemp["attributes.bron"] is None  # redacted: present, withheld
    assert hemp["attributes.geschat_aantal_planten"] == {"gte": 200, "lt": 300}
    assert "description" not in hemp and "location.city" not in hemp
    # One entry, the one the answer names, describing exactly what left.
    assert log_size(runtime) == before + 1
    entry = entry_at(runtime, body["audit_seq"])
    assert entry.action == "disclosure" and entry.outcome == "granted"
    assert entry.purpose == "integrale-controle" and entry.case_reference == CASE
    assert entry.policy is not None and entry.policy.hash == body["policy_hash"]
    assert entry.objects["disclosure_id"] == body["disclosure_id"]
    items = {i.signal_id: i for i in entry.items}
    assert set(items) == {energy_id, hemp_id}
    assert items[energy_id].rule == "gemeente-energie-integrale-controle"
    assert items[energy_id].fields == {
        "location.postcode": "reveal", "location.house_number": "reveal",
        "observed_at": {"generalise": "month"},
        "attributes.kwh_per_month": {"generalise": {"bucket": 500}},
        "attributes.meter_seal_broken": "reveal",
    }
    assert all(len(i.subject_tags) == 1 for i in entry.items)
    assert BAG_ID not in str(entry.model_dump())
    assert log_verifies(runtime)


def test_a_signal_no_rule_matches_is_not_mentioned(
    api: TestClient, submit: Any, gemeente: dict[str, str], runtime: Runtime
) -> None:
    # The gemeente has no rule for hemp signals held under wpg-art-19, nor for old energy data.
    hidden = submit("politie", hennep(basis="wpg-art-19"))
    old = energy()
    old["observed_at"] = (datetime.now(UTC) - timedelta(days=400)).isoformat()
    too_old = submit("netbeheerder", old)
    answer = ask(api, gemeente, {"subject": {"bag_id": BAG_ID}})
    assert answer.status_code == 200
    assert answer.json()["signals"] == []
    assert hidden not in answer.text and too_old not in answer.text
    entry = entry_at(runtime, answer.json()["audit_seq"])
    assert entry.items == [] and entry.objects["released"] == 0
    assert hidden not in entry.model_dump_json() and too_old not in entry.model_dump_json()


def test_an_empty_answer_is_audited_and_tags_the_subject(
    api: TestClient, gemeente: dict[str, str], runtime: Runtime
) -> None:
    before = log_size(runtime)
    answer = ask(api, gemeente, {"subject": {"bsn": OTHER_BSN}})
    assert answer.status_code == 200
    body = answer.json()
    assert body["signals"] == [] and body["audit_seq"] == before
    entry = entry_at(runtime, before)
    assert entry.action == "disclosure" and entry.items == []
    assert len(entry.objects["subject_tags"]) == 1  # type: ignore[arg-type]
    assert OTHER_BSN not in entry.model_dump_json()


def test_queries_by_address_area_and_ids(
    api: TestClient, submit: Any, gemeente: dict[str, str]
) -> None:
    here = submit("netbeheerder", energy(house_letter="b"))
    there = submit("netbeheerder", energy(bag_id="0599010000000013", number=13,
                                          postcode="3072AC"))

    def refs(query: dict[str, Any]) -> int:
        answer = ask(api, gemeente, query)
        assert answer.status_code == 200, answer.text
        return len(answer.json()["signals"])

    assert refs({"address": {"postcode": "3072 ab", "house_number": 12,
                             "house_letter": "B"}}) == 1
    assert refs({"address": {"postcode": "3072AB", "house_number": 12}}) == 0  # letter differs
    assert refs({"area": {"postcode": "3072AB"}}) == 1
    assert refs({"area": {"postcode": "3072"}}) == 2
    assert refs({"area": {"postcode": "3073"}}) == 0
    assert refs({"signals": [here, there, "sig_doesnotexist"]}) == 2


def test_categories_narrow_the_answer(
    api: TestClient, submit: Any, gemeente: dict[str, str], runtime: Runtime
) -> None:
    submit("netbeheerder", energy())
    submit("politie", hennep())
    answer = ask(api, gemeente, {"subject": {"bag_id": BAG_ID},
                                 "categories": ["hennepteelt-vermoeden"]})
    assert answer.status_code == 200
    assert [s["category"] for s in answer.json()["signals"]] == ["hennepteelt-vermoeden"]
    entry = entry_at(runtime, answer.json()["audit_seq"])
    assert entry.objects["categories"] == ["hennepteelt-vermoeden"]
    unknown = ask(api, gemeente, {"subject": {"bag_id": BAG_ID},
                                  "categories": ["energie-afwijking", "bestaat-niet"]})
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["loc"] == ["body", "query", "categories", 1]


def test_hidden_source_is_absent(api: TestClient, submit: Any, auth_headers: Headers) -> None:
    submit("politie", hennep(basis="wpg-art-19"))
    netbeheerder = auth_headers("netbeheerder", ["requester"])
    answer = ask(api, netbeheerder, {"subject": {"bag_id": BAG_ID}}, purpose="energiefraude",
                 case="EF-7")
    assert answer.status_code == 200
    (signal,) = answer.json()["signals"]
    # nor what would name the politie: its own law (wpg-art-19), a rule of one source
    assert set(signal) == {"ref", "category", "fields"}
    assert signal["category"] == "hennepteelt-vermoeden"


def test_unknown_purpose_is_422_generic_and_audited(
    api: TestClient, gemeente: dict[str, str], runtime: Runtime
) -> None:
    before = log_size(runtime)
    answer = ask(api, gemeente, {"subject": {"bsn": BSN}}, purpose="jan-de-vries")
    assert answer.status_code == 422
    assert answer.json()["detail"] == "Unknown purpose."
    assert "jan-de-vries" not in answer.text
    (entry,) = entries_since(runtime, before)
    assert (entry.action, entry.outcome, entry.reason) == ("refusal", "refused",
                                                           "unknown_purpose")
    assert entry.purpose is None and "jan-de-vries" not in entry.model_dump_json()


def test_missing_case_reference_is_422(api: TestClient, gemeente: dict[str, str]) -> None:
    answer = ask(api, gemeente, {"subject": {"bsn": BSN}}, case=None)
    assert answer.status_code == 422
    assert answer.json()["errors"] == [{"loc": ["body", "case_reference"],
                                        "msg": "required for this purpose"}]


def test_purpose_without_a_rule_for_the_caller_is_403_and_audited(
    api: TestClient, auth_headers: Headers, runtime: Runtime
) -> None:
    riec = auth_headers("riec", ["requester"])
    before = log_size(runtime)
    answer = ask(api, riec, {"subject": {"bsn": BSN}})
    assert answer.status_code == 403
    assert answer.json()["code"] == "policy_refused"
    (entry,) = entries_since(runtime, before)
    assert (entry.action, entry.outcome, entry.reason) == ("refusal", "refused",
                                                           "purpose_not_allowed")
    assert entry.purpose == "integrale-controle" and entry.actor.org == "riec"


@pytest.mark.parametrize(
    "query",
    [
        {"subject": {"bsn": "111222334"}},
        {"subject": {"bsn": BSN, "kvk": "12345678"}},
        {"subject": {}},
        {"address": {"postcode": "0123AB", "house_number": 1}},
        {"area": {"postcode": "30"}},
        {"subject": {"bsn": BSN}, "area": {"postcode": "3072"}},
        {"signals": []},
        {"subject": {"bsn": BSN}, "org": "politie"},
    ],
)
def test_malformed_queries_are_422_without_echo(
    api: TestClient, gemeente: dict[str, str], runtime: Runtime, query: dict[str, Any]
) -> None:
    before = log_size(runtime)
    answer = ask(api, gemeente, query)
    assert answer.status_code == 422, answer.text
    assert "111222334" not in answer.text and BSN not in answer.text
    assert log_size(runtime) == before


def test_roles_and_acting_person(api: TestClient, auth_headers: Headers) -> None:
    query = {"subject": {"bsn": BSN}}
    for role in ("contributor", "privacy_officer", "admin"):
        assert ask(api, auth_headers("gemeente", [role]), query).status_code == 403
    nameless = auth_headers("gemeente", ["requester"], acting_user=None)
    assert ask(api, nameless, query).status_code == 400
    personal = auth_headers("gemeente", ["requester"], kind="personal", acting_user=None)
    assert ask(api, personal, query).status_code == 200


def test_pseudonyms_link_within_recipient_and_purpose_only(
    api: TestClient, submit: Any, gemeente: dict[str, str], auth_headers: Headers
) -> None:
    submit("politie", drugs())
    submit("politie", drugs(number=14))
    submit("gemeente", brp())

    def bsn_pseudonyms(headers: dict[str, str], purpose: str) -> list[str]:
        answer = ask(api, headers, {"subject": {"bsn": BSN}}, purpose=purpose)
        assert answer.status_code == 200, answer.text
        found = [s["fields"]["subject.bsn"] for s in answer.json()["signals"]]
        assert all(PSEUDONYM.match(p) for p in found) and BSN not in answer.text
        return found

    control = bsn_pseudonyms(gemeente, "integrale-controle")
    assert len(control) == 2 and control[0] == control[1]  # one person, one pseudonym
    assert bsn_pseudonyms(gemeente, "integrale-controle") == control  # and stable
    enforcement = bsn_pseudonyms(gemeente, "gemeentelijke-handhaving")
    assert len(enforcement) == 2 and not set(enforcement) & set(control)
    police = bsn_pseudonyms(auth_headers("politie", ["requester"]), "integrale-controle")
    assert len(police) == 1 and not set(police) & (set(control) | set(enforcement))


def test_an_erased_signal_is_no_longer_disclosed(
    api: TestClient, submit: Any, gemeente: dict[str, str], auth_headers: Headers
) -> None:
    politie = auth_headers("politie", ["contributor"])
    signal_id = api.post("/v1/signals", json=drugs(), headers=politie).json()["id"]
    assert len(ask(api, gemeente, {"subject": {"bsn": BSN}}).json()["signals"]) == 1
    assert api.delete(f"/v1/signals/{signal_id}", headers=politie).status_code == 204
    assert ask(api, gemeente, {"signals": [signal_id]}).json()["signals"] == []


def test_confidential_until_is_recorded(
    api: TestClient, gemeente: dict[str, str], runtime: Runtime
) -> None:
    until = date.today() + timedelta(days=90)
    answer = ask(api, gemeente, {"subject": {"bsn": BSN}},
                 confidential_until=until.isoformat())
    assert answer.status_code == 200
    assert entry_at(runtime, answer.json()["audit_seq"]).confidential_until == until.isoformat()


def test_a_source_sees_who_received_its_signals(
    api: TestClient, submit: Any, gemeente: dict[str, str], auth_headers: Headers
) -> None:
    energy_id = submit("netbeheerder", energy())
    submit("politie", hennep())
    disclosed = ask(api, gemeente, {"subject": {"bag_id": BAG_ID}}).json()
    source = auth_headers("netbeheerder", ["contributor"])
    page = api.get("/v1/audit/entries", params={"action": "disclosure"}, headers=source)
    assert page.status_code == 200, page.text
    (entry,) = page.json()["items"]
    assert entry["seq"] == disclosed["audit_seq"] and entry["actor"]["org"] == "gemeente"
    assert energy_id in {i["signal_id"] for i in entry["items"]}
    bystander = auth_headers("omgevingsdienst", ["contributor"])
    others = api.get("/v1/audit/entries", params={"action": "disclosure"}, headers=bystander)
    assert others.json()["items"] == []
