"""Who decides a re-identification, through real HTTP (uvicorn on loopback), on SQLite and
PostgreSQL, with the demo pack as an operator serves it: the officer of the organisation
whose signal it is decides, or the RIEC's for the covenant; the requester's own officer and
any other organisation's are refused. A personal client cannot act as another person.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.disclosure_kit import BSN, OTHER_BSN, brp, drugs
from tests.e2e.served import Served, database_for, served_broker

NOT_THE_DECIDER = ("Only the privacy officer of the organisation whose signal it is, or the "
                   "covenant's, decides on its re-identification.")


@pytest.fixture(params=["sqlite", "postgresql"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    with served_broker(tmp_path, database_for(request, tmp_path)) as broker:
        yield broker


def ask(http: httpx.Client, asker: dict[str, str], bsn: str, rule: str) -> str:
    disclosed = http.post("/v1/disclosures", headers=asker, json={
        "purpose": "integrale-controle", "case_reference": "ZAAK-2026-0042",
        "query": {"subject": {"bsn": bsn}}})
    assert disclosed.status_code == 200, disclosed.text
    (signal,) = [s for s in disclosed.json()["signals"] if s["rule"] == rule]
    asked = http.post("/v1/reidentifications", headers=asker, json={
        "disclosure_id": disclosed.json()["disclosure_id"], "ref": signal["ref"],
        "field": "subject.bsn", "justification": "Aanschrijven voor de sluiting"})
    assert asked.status_code == 202, asked.text
    rid: str = asked.json()["id"]
    return rid


def decide(http: httpx.Client, officer: dict[str, str], rid: str) -> httpx.Response:
    return http.post(f"/v1/reidentifications/{rid}/decision", headers=officer,
                     json={"approve": True, "reason": "Noodzakelijk en proportioneel"})


def test_the_signals_organisation_decides_and_nobody_else(served: Served) -> None:
    politie = served.client("politie", "contributor,requester", "agent-7")
    gemeente = served.client("gemeente", "contributor,requester", "handhaver-2")
    officers = {org: served.client(org, "privacy_officer", f"fg-{org}")
                for org in ("politie", "gemeente", "belastingdienst")}
    riec = served.client("riec", "privacy_officer", None, kind="personal")
    with httpx.Client(base_url=served.url, timeout=10) as http:
        assert http.post("/v1/signals", json=drugs(), headers=politie).status_code == 201
        assert http.post("/v1/signals", json=brp(bsn=OTHER_BSN),
                         headers=gemeente).status_code == 201
        on_police = ask(http, gemeente, BSN, "gemeente-drugs-handhaving")
        on_gemeente = ask(http, politie, OTHER_BSN, "politie-brp-integrale-controle")

        # The requester's own officer, and the police's on the gemeente's signal: 403.
        for officer, rid in ((officers["gemeente"], on_police),
                             (officers["politie"], on_gemeente)):
            refused = decide(http, officer, rid)
            assert refused.status_code == 403
            assert refused.json()["code"] == "forbidden"
            assert refused.json()["detail"] == NOT_THE_DECIDER
        # An officer of neither organisation does not even see the requests.
        for rid in (on_police, on_gemeente):
            assert decide(http, officers["belastingdienst"], rid).status_code == 404
            assert http.get(f"/v1/reidentifications/{rid}",
                            headers=officers["belastingdienst"]).status_code == 404
        listed = http.get("/v1/reidentifications", headers=officers["belastingdienst"])
        assert listed.json()["items"] == []
        nothing = http.get(f"/v1/reidentifications/{on_police}", headers=gemeente)
        assert nothing.json()["status"] == "pending" and "value" not in nothing.json()

        assert decide(http, officers["politie"], on_police).status_code == 200
        revealed = http.get(f"/v1/reidentifications/{on_police}", headers=gemeente)
        assert (revealed.json()["status"], revealed.json()["value"]) == ("approved", BSN)
        # The demo pack names the RIEC's officer for the covenant.
        assert decide(http, riec, on_gemeente).status_code == 200

        entries = http.get("/v1/audit/entries", headers=riec,
                           params={"action": "reidentification_decided"}).json()["items"]
        refusals = sorted((e["actor"]["org"], e["reason"]) for e in entries
                          if e["outcome"] == "refused")
        assert refusals == [("belastingdienst", "not_the_deciding_officer")] * 2 + [
            ("gemeente", "not_the_deciding_officer"), ("politie", "not_the_deciding_officer")]


def test_a_personal_client_cannot_act_as_another_person(served: Served) -> None:
    personal = served.client("gemeente", "requester", None, kind="personal")
    with httpx.Client(base_url=served.url, timeout=10) as http:
        hit = {"purpose": "integrale-controle", "case_reference": "ZAAK-2026-0042",
               "subject": {"bsn": BSN}}
        refused = http.post("/v1/hits", json=hit, headers={**personal, "X-Acting-User": "emp-42"})
        assert refused.status_code == 403
        assert refused.json()["detail"] == ("A personal client acts as itself: leave out "
                                            "X-Acting-User.")
        assert http.post("/v1/hits", json=hit, headers=personal).status_code == 200
