"""The one subject report (`broker.services.subject_report`): found by blind-index token,
narrowed to the subject's own items, confidential entries withheld; an address without BAG id is a
subject too; the officer's pages give the same facts as the API. SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from broker.auth.actors import system_actor
from broker.core.identifiers import valid_bsn_from
from broker.errors import ValidationFailed
from broker.officer import subjects
from broker.runtime import Runtime
from broker.schemas.disclosures import SubjectQuery
from broker.services import subject_report
from broker.services.candidates import subject_token
from tests.api.disclosure_kit import POSTCODE, energy, entry_at, log_size
from tests.audit.audit_kit import draft

Headers = Callable[..., dict[str, str]]
ADDRESS = {"postcode": "3072 ab", "house_number": 14, "house_letter": "b"}


def test_the_report_finds_a_subjects_entries_by_token(runtime: Runtime) -> None:
    bsn, other = valid_bsn_from(123_456_000), valid_bsn_from(123_457_000)
    token = subject_token(runtime.keys, SubjectQuery(bsn=bsn), ("body",))
    seen = draft(1, org="gemeente", source="politie")
    seen["items"][0]["subjects"] = [token]
    seen["items"].append({**draft(9)["items"][0], "signal_id": "sig_other",
                          "subjects": [subject_token(runtime.keys, SubjectQuery(bsn=other),
                                                     ("body",))]})
    runtime.audit.record(seen)
    until = (date.today() + timedelta(days=30)).isoformat()
    runtime.audit.record({**draft(2, org="belastingdienst"), "confidential_until": until},
                         subjects=[token])
    runtime.audit.record(draft(3, org="riec"),
                         subjects=[subject_token(runtime.keys, SubjectQuery(bsn=other),
                                                 ("body",))])
    actor = system_actor("test")
    report = subject_report.subject_report(runtime, actor, SubjectQuery(bsn=bsn),
                                           request_id=None)
    assert report["subject_type"] == "bsn" and report["withheld"] == 1
    (act,) = report["items"]
    assert (act["recipient"], act["purpose"], act["action"]) == (
        "gemeente", "integrale-controle", "disclosure")
    assert [i["rule"] for i in act["items"]] == ["r1"]  # not the other person's item
    for wrong in ({"bsn": "123456789"}, {"kvk": "1234"}):
        with pytest.raises(ValidationFailed) as refused:
            subject_report.subject_report(runtime, actor, SubjectQuery(**wrong), request_id=None)
        assert wrong.popitem()[1] not in str(refused.value.errors)


def address_signal(number: int = 14, letter: str | None = "B") -> dict[str, Any]:
    """An energy signal about an address without BAG id (postcode, number, letter)."""
    signal = energy(number=number)
    signal["subject"] = {"type": "address"}
    if letter:
        signal["location"]["house_letter"] = letter
    return signal


def test_a_report_for_an_address_without_bag_id(
    api: TestClient, auth_headers: Headers, runtime: Runtime
) -> None:
    netbeheerder = auth_headers("netbeheerder", ["contributor"])
    for signal in (address_signal(), address_signal(number=16)):
        assert api.post("/v1/signals", json=signal, headers=netbeheerder).status_code == 201
    gemeente = auth_headers("gemeente", ["requester"])
    body = {"purpose": "integrale-controle", "case_reference": "ZAAK-31",
            "query": {"area": {"postcode": POSTCODE}}}
    disclosed = api.post("/v1/disclosures", json=body, headers=gemeente)
    assert len(disclosed.json()["signals"]) == 2
    officer = auth_headers("riec", ["privacy_officer"])
    answer = api.post("/v1/audit/subject-report", json={"address": ADDRESS}, headers=officer)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["subject_type"] == "address" and result["withheld"] == 0
    (act,) = result["items"]
    assert (act["action"], act["recipient"], act["seq"]) == (
        "disclosure", "gemeente", disclosed.json()["audit_seq"])
    (item,) = act["items"]  # number 16 is another address: not in this report
    assert item["rule"] == "gemeente-energie-integrale-controle"
    assert item["fields"]["location.house_number"] == "reveal"
    read = entry_at(runtime, log_size(runtime) - 1)
    assert (read.objects["read"], read.objects["subject_type"]) == ("subject_report", "address")
    assert len(read.objects["subject_tags"]) == 1  # the look-up is tagged with the address
    assert "3072" not in str(read.model_dump())
    # the officer's page gives the same facts
    page = subjects.report(runtime, system_actor("test"), "address", "3072 AB 14b",
                           request_id=None)
    assert [(r.action, r.recipient, r.purpose) for r in page.rows] == [
        ("disclosure", "gemeente", "integrale-controle")]
    assert dict(page.rows[0].fields) == item["fields"]


@pytest.mark.parametrize("body", [
    {"address": {"postcode": "30720", "house_number": 14}},
    {"address": {"postcode": "3072AB"}},
    {"address": ADDRESS, "subject": {"bsn": "111222333"}},
    {},
])
def test_a_bad_subject_is_422_without_echo(
    api: TestClient, auth_headers: Headers, body: dict[str, Any]
) -> None:
    officer = auth_headers("riec", ["privacy_officer"])
    answer = api.post("/v1/audit/subject-report", json=body, headers=officer)
    assert answer.status_code == 422, answer.text
    assert "30720" not in answer.text and "111222333" not in answer.text
