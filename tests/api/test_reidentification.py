"""Re-identification (request, four-eyes decision, one-time reveal) and the subject report.

Runs on SQLite and PostgreSQL (the `db_url`-parametrised fixtures).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from broker.runtime import Runtime
from tests.api.disclosure_kit import (
    BAG_ID,
    BSN,
    drugs,
    energy,
    entries_since,
    entry_at,
    log_size,
    log_verifies,
)

Headers = Callable[..., dict[str, str]]
JUSTIFICATION = "Sluiting pand Kanaalstraat 12, art. 13b Opiumwet; bewoner Sem de Vries"


@pytest.fixture
def people(auth_headers: Headers) -> dict[str, dict[str, str]]:
    return {
        "politie": auth_headers("politie", ["contributor"], acting_user="agent-7"),
        "netbeheerder": auth_headers("netbeheerder", ["contributor"], acting_user="monteur-3"),
        "gemeente": auth_headers("gemeente", ["requester"], acting_user="handhaver-2"),
        "officer": auth_headers("riec", ["privacy_officer"], acting_user="fg-1"),
        "politie-requester": auth_headers("politie", ["requester"], acting_user="rechercheur-1"),
    }


@pytest.fixture
def disclosed(api: TestClient, people: dict[str, dict[str, str]]) -> dict[str, Any]:
    """A drugs signal about BSN, disclosed to the gemeente with the BSN pseudonymised."""
    answer = api.post("/v1/signals", json=drugs(), headers=people["politie"])
    assert answer.status_code == 201
    body = {"purpose": "integrale-controle", "case_reference": "ZAAK-77",
            "query": {"subject": {"bsn": BSN}}}
    disclosure = api.post("/v1/disclosures", json=body, headers=people["gemeente"]).json()
    (signal,) = disclosure["signals"]
    return {"signal_id": answer.json()["id"], "disclosure_id": disclosure["disclosure_id"],
            "ref": signal["ref"], "pseudonym": signal["fields"]["subject.bsn"]}


def ask(api: TestClient, headers: dict[str, str], disclosed: dict[str, Any],
        field: str = "subject.bsn", **changes: Any) -> Any:
    body = {"disclosure_id": disclosed["disclosure_id"], "ref": disclosed["ref"],
            "field": field, "justification": JUSTIFICATION, **changes}
    return api.post("/v1/reidentifications", json=body, headers=headers)


def decide(api: TestClient, headers: dict[str, str], rid: str, approve: bool = True) -> Any:
    return api.post(f"/v1/reidentifications/{rid}/decision",
                    json={"approve": approve, "reason": "Noodzakelijk en proportioneel"},
                    headers=headers)


def test_request_approve_reveal_once(
    api: TestClient, people: dict[str, dict[str, str]], disclosed: dict[str, Any],
    runtime: Runtime,
) -> None:
    start = log_size(runtime)
    asked = ask(api, people["gemeente"], disclosed)
    assert asked.status_code == 202, asked.text
    request = asked.json()
    assert request["status"] == "pending" and request["id"].startswith("rid_")
    assert request["justification"] == JUSTIFICATION
    pending = api.get(f"/v1/reidentifications/{request['id']}", headers=people["gemeente"])
    assert pending.json()["status"] == "pending" and "value" not in pending.json()
    seen_by_officer = api.get(f"/v1/reidentifications/{request['id']}", headers=people["officer"])
    assert seen_by_officer.json()["justification"] == JUSTIFICATION
    decided = decide(api, people["officer"], request["id"])
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "approved" and "value" not in decided.json()
    officer_view = api.get(f"/v1/reidentifications/{request['id']}", headers=people["officer"])
    assert officer_view.json()["status"] == "approved" and "value" not in officer_view.json()
    first = api.get(f"/v1/reidentifications/{request['id']}", headers=people["gemeente"])
    assert first.status_code == 200
    assert (first.json()["status"], first.json()["value"]) == ("approved", BSN)
    again = api.get(f"/v1/reidentifications/{request['id']}", headers=people["gemeente"])
    assert again.json()["status"] == "revealed" and "value" not in again.json()
    entries = entries_since(runtime, start)
    steps = [(e.action, e.outcome) for e in entries if e.action.startswith("reidentification")]
    assert steps == [("reidentification_requested", "granted"),
                     ("reidentification_decided", "granted"),
                     ("reidentification_revealed", "granted")]
    revealed = next(e for e in entries if e.action == "reidentification_revealed")
    (item,) = revealed.items
    assert item.signal_id == disclosed["signal_id"] and item.fields == {"subject.bsn": "reveal"}
    assert item.rule == "gemeente-drugs-handhaving" and len(item.subject_tags) == 1
    dumped = "".join(e.model_dump_json() for e in entries)
    assert "Opiumwet" not in dumped and "proportioneel" not in dumped and BSN not in dumped
    with runtime.engine.connect() as conn:
        stored = conn.execute(text("SELECT ciphertext FROM reidentification")).scalar_one()
    assert b"Opiumwet" not in bytes(stored)
    assert log_verifies(runtime)


def test_only_pseudonymised_fields_of_ones_own_disclosures(
    api: TestClient, people: dict[str, dict[str, str]], disclosed: dict[str, Any],
    runtime: Runtime,
) -> None:
    before = log_size(runtime)
    foreign = ask(api, people["politie-requester"], disclosed)
    assert foreign.status_code == 404
    assert ask(api, people["gemeente"], disclosed, field="location.postcode").status_code == 422
    other_ref = "sg_" + "a" * 26
    assert ask(api, people["gemeente"], disclosed, ref=other_ref).status_code == 422
    unknown = ask(api, people["gemeente"], disclosed, disclosure_id="dsc_" + "b" * 24)
    assert unknown.status_code == 404
    assert log_size(runtime) == before
    assert ask(api, people["officer"], disclosed).status_code == 403  # role


def test_refused_request_reveals_nothing(
    api: TestClient, people: dict[str, dict[str, str]], disclosed: dict[str, Any],
    runtime: Runtime,
) -> None:
    request = ask(api, people["gemeente"], disclosed).json()
    assert decide(api, people["officer"], request["id"], approve=False).json()["status"] == \
        "refused"
    fetched = api.get(f"/v1/reidentifications/{request['id']}", headers=people["gemeente"])
    assert fetched.json()["status"] == "refused" and "value" not in fetched.json()
    assert BSN not in fetched.text
    foreign = api.get(f"/v1/reidentifications/{request['id']}",
                      headers=people["politie-requester"])
    assert foreign.status_code == 404


def test_an_erased_signal_cannot_be_reidentified(
    api: TestClient, people: dict[str, dict[str, str]], disclosed: dict[str, Any],
    runtime: Runtime,
) -> None:
    request = ask(api, people["gemeente"], disclosed).json()
    assert decide(api, people["officer"], request["id"]).status_code == 200
    retracted = api.delete(f"/v1/signals/{disclosed['signal_id']}", headers=people["politie"])
    assert retracted.status_code == 204
    fetched = api.get(f"/v1/reidentifications/{request['id']}", headers=people["gemeente"])
    assert fetched.status_code == 409
    assert fetched.json()["code"] == "signal_erased" and BSN not in fetched.text
    assert ask(api, people["gemeente"], disclosed).status_code == 409
    assert log_verifies(runtime)


# --- the subject report ---------------------------------------------------------------


def report(api: TestClient, headers: dict[str, str], subject: dict[str, str]) -> Any:
    return api.post("/v1/audit/subject-report", json={"subject": subject}, headers=headers)


def test_subject_report_shows_every_act_about_the_subject(
    api: TestClient, auth_headers: Headers, people: dict[str, dict[str, str]],
    disclosed: dict[str, Any], runtime: Runtime,
) -> None:
    request = ask(api, people["gemeente"], disclosed).json()
    decide(api, people["officer"], request["id"])
    api.get(f"/v1/reidentifications/{request['id']}", headers=people["gemeente"])
    # A second person's signal in the same disclosure must not show in BSN's report.
    other = "123456782"
    api.post("/v1/signals", json=drugs(bsn=other), headers=people["politie"])
    body = {"purpose": "integrale-controle", "case_reference": "ZAAK-78",
            "query": {"area": {"postcode": "3072AB"}}}
    both = api.post("/v1/disclosures", json=body, headers=people["gemeente"]).json()
    assert len(both["signals"]) == 2
    answer = report(api, people["officer"], {"bsn": BSN})
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["subject_type"] == "bsn" and result["withheld"] == 0
    actions = [a["action"] for a in result["items"]]
    assert actions == ["disclosure", "reidentification_requested", "reidentification_decided",
                       "reidentification_revealed", "disclosure"]
    first = result["items"][0]
    assert (first["recipient"], first["purpose"]) == ("gemeente", "integrale-controle")
    (item,) = first["items"]
    assert item["rule"] == "gemeente-drugs-handhaving" and item["source"] == "politie"
    assert item["fields"]["subject.bsn"] == "pseudonymise"
    assert all(a["recipient"] == "gemeente" for a in result["items"])
    assert len(result["items"][-1]["items"]) == 1  # only BSN's signal of the area disclosure
    assert BSN not in answer.text and "handhaver" not in answer.text
    assert "ZAAK" not in answer.text and "client" not in answer.text
    # The officer's look-up is itself on record.
    read = entry_at(runtime, log_size(runtime) - 1)
    assert read.action == "audit_read" and read.objects["read"] == "subject_report"


def test_subject_report_withholds_confidential_entries(
    api: TestClient, people: dict[str, dict[str, str]], auth_headers: Headers
) -> None:
    api.post("/v1/signals", json=energy(), headers=people["netbeheerder"])
    until = (date.today() + timedelta(days=30)).isoformat()
    for confidential in (None, until):
        body: dict[str, Any] = {"purpose": "integrale-controle", "case_reference": "ZAAK-9",
                                "query": {"subject": {"bag_id": BAG_ID}}}
        if confidential:
            body["confidential_until"] = confidential
        assert api.post("/v1/disclosures", json=body,
                        headers=people["gemeente"]).status_code == 200
    belastingdienst = auth_headers("belastingdienst", ["requester"])
    hit = api.post("/v1/hits", json={"purpose": "fiscale-handhaving", "case_reference": "F-1",
                                     "subject": {"bag_id": BAG_ID}}, headers=belastingdienst)
    assert hit.json()["hit"] is True
    result = report(api, people["officer"], {"bag_id": BAG_ID}).json()
    assert [a["action"] for a in result["items"]] == ["disclosure", "hit"]
    assert result["withheld"] == 1
    assert result["items"][1]["items"][0]["fields"] == {}


def test_subject_report_is_for_privacy_officers(
    api: TestClient, people: dict[str, dict[str, str]]
) -> None:
    assert report(api, people["gemeente"], {"bsn": BSN}).status_code == 403
    nobody = report(api, people["officer"], {"bsn": "123456782"})
    assert nobody.json() == {"subject_type": "bsn", "items": [], "withheld": 0,
                             "next_cursor": None}
    assert report(api, people["officer"], {"bsn": "111222334"}).status_code == 422
