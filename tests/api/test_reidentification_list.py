"""`GET /v1/reidentifications`: the privacy officer's list of requests (pending ones to
decide), newest first, paged by cursor, never a value; the read is audited. SQLite and
PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from broker.runtime import Runtime
from tests.api.disclosure_kit import BSN, OTHER_BSN, drugs, entry_at, log_size

Headers = Callable[..., dict[str, str]]
LISTED = {"id", "status", "requested_at", "org", "purpose", "disclosure_id", "ref", "field",
          "justification", "reason", "decided_at", "revealed_at"}


@pytest.fixture
def asked(api: TestClient, auth_headers: Headers) -> dict[str, Any]:
    """Three requests of the gemeente, about three pseudonymised BSNs."""
    politie = auth_headers("politie", ["contributor"])
    for bsn in (BSN, OTHER_BSN, "100000009"):
        assert api.post("/v1/signals", json=drugs(bsn=bsn), headers=politie).status_code == 201
    gemeente = auth_headers("gemeente", ["requester"], acting_user="handhaver-2")
    body = {"purpose": "integrale-controle", "case_reference": "ZAAK-5",
            "query": {"area": {"postcode": "3072AB"}}}
    disclosed = api.post("/v1/disclosures", json=body, headers=gemeente).json()
    ids = []
    for number, signal in enumerate(disclosed["signals"]):
        made = api.post("/v1/reidentifications", headers=gemeente, json={
            "disclosure_id": disclosed["disclosure_id"], "ref": signal["ref"],
            "field": "subject.bsn", "justification": f"Sluiting pand {number}"})
        assert made.status_code == 202, made.text
        ids.append(made.json()["id"])
    return {"ids": ids, "gemeente": gemeente, "disclosure_id": disclosed["disclosure_id"]}


def test_the_officer_lists_pending_requests_page_by_page(
    api: TestClient, auth_headers: Headers, runtime: Runtime, asked: dict[str, Any]
) -> None:
    officer = auth_headers("riec", ["privacy_officer"], acting_user="fg-1")
    decided = api.post(f"/v1/reidentifications/{asked['ids'][0]}/decision", headers=officer,
                       json={"approve": False, "reason": "Niet proportioneel"})
    assert decided.status_code == 200, decided.text
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"status": "pending", "limit": 1}
        if cursor:
            params["cursor"] = cursor
        before = log_size(runtime)
        page = api.get("/v1/reidentifications", params=params, headers=officer)
        assert page.status_code == 200, page.text
        read = entry_at(runtime, before)
        assert (read.action, read.objects) == (
            "audit_read", {"read": "reidentifications", "status": "pending"})
        seen += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert [i["id"] for i in seen] == list(reversed(asked["ids"][1:]))  # newest first
    for item in seen:
        assert set(item) == LISTED
        assert (item["status"], item["org"], item["purpose"], item["field"]) == (
            "pending", "gemeente", "integrale-controle", "subject.bsn")
        assert item["disclosure_id"] == asked["disclosure_id"]
        assert item["justification"].startswith("Sluiting pand")
        assert BSN not in str(item) and OTHER_BSN not in str(item)
    everything = api.get("/v1/reidentifications", headers=officer).json()
    assert {i["id"] for i in everything["items"]} == set(asked["ids"])
    refused = next(i for i in everything["items"] if i["id"] == asked["ids"][0])
    assert (refused["status"], refused["reason"]) == ("refused", "Niet proportioneel")
    assert everything["next_cursor"] is None


def test_only_privacy_officers_list_and_bad_parameters_are_422(
    api: TestClient, auth_headers: Headers, runtime: Runtime, asked: dict[str, Any]
) -> None:
    assert api.get("/v1/reidentifications", headers=asked["gemeente"]).status_code == 403
    officer = auth_headers("riec", ["privacy_officer"])
    size = log_size(runtime)
    for params in ({"status": "open"}, {"limit": 0}, {"limit": 1001},
                   {"cursor": "bm90LWEtY3Vyc29y"}, {"cursor": "%%%"}):
        answer = api.get("/v1/reidentifications", params=params, headers=officer)
        assert answer.status_code == 422, (params, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
    assert log_size(runtime) == size  # nothing read, nothing recorded
