"""The area team's week on the demo pack, through real HTTP (uvicorn on loopback).

The netbeheerder and the politie submit signals about the street; the gemeente asks for
its joint inspection and gets exactly its rules' fields; the Belastingdienst's hit check
answers without content; the RIEC's area summary suppresses small counts; the gemeente
re-identifies a pseudonym after a privacy officer approves, once; the subject report
shows all of it; and the audit log verifies.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from broker.core.identifiers import valid_bsn_from
from broker.core.policy import load_pack
from tests.e2e.serving import free_port, serving

REPO = Path(__file__).resolve().parents[2]
PACK = REPO / "policies" / "ondermijning"
TARGET_BAG = "0599010000000012"
RESIDENT = valid_bsn_from(456_700_000)
CASE = "ZAAK-2026-0042"


def broker(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "broker", *args], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


@dataclass
class Broker:
    url: str
    env: dict[str, str]

    def client(self, org: str, roles: str, kind: str = "system") -> dict[str, str]:
        made = json.loads(broker(self.env, "clients", "create", "--org", org, "--name",
                                 f"{org} {roles}", "--roles", roles, "--kind", kind, "--json"))
        token = httpx.post(self.url + "/oauth/token", data={
            "grant_type": "client_credentials", "client_id": made["client_id"],
            "client_secret": made["client_secret"]}, timeout=10)
        assert token.status_code == 200, token.text
        return {"Authorization": f"Bearer {token.json()['access_token']}"}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Broker]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    env.update({
        "BROKER_DATABASE_URL": f"sqlite:///{tmp_path / 'broker.db'}",
        "BROKER_KEY_DIR": str(tmp_path / "keys"),
        "BROKER_POLICY_DIR": str(PACK),
        "BROKER_ISSUER": f"http://127.0.0.1:{port}",
    })
    broker(env, "init")
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "broker", "serve", "--port", str(port), "--workers", "1"]
    with serving(command, env, url, tmp_path / "serve.log"):
        yield Broker(url, env)


def days_ago(n: int) -> str:
    return (datetime.now(UTC) - timedelta(days=n)).isoformat()


def energy(number: int, kwh: int) -> dict[str, Any]:
    return {
        "category": "energie-afwijking", "legal_basis": "elektriciteitswet-levering",
        "subject": {"type": "address", "bag_id": f"0599010000{number:06d}"},
        "location": {"postcode": "3072AB" if number <= 12 else "3072AC",
                     "house_number": number, "street": "Kanaalstraat", "city": "Zuidhaven"},
        "observed_at": days_ago(number % 5 + 1), "description": "Verbruik verdrievoudigd",
        "attributes": {"kwh_per_month": kwh, "meter_seal_broken": number == 12},
    }


def hennep(basis: str, number: int = 12) -> dict[str, Any]:
    return {
        "category": "hennepteelt-vermoeden", "legal_basis": basis,
        "subject": {"type": "address", "bag_id": f"0599010000{number:06d}"},
        "location": {"postcode": "3072AB", "house_number": number, "street": "Kanaalstraat"},
        "observed_at": days_ago(2), "description": "Warmtebeeld: zolder veel te warm",
        "attributes": {"bron": "warmtebeeld", "geschat_aantal_planten": 350,
                       "ontmanteld": False},
    }


def drugs() -> dict[str, Any]:
    return {
        "category": "drugsgerelateerde-melding", "legal_basis": "wpg-art-16",
        "subject": {"type": "person", "bsn": RESIDENT, "name": "Daan Bakker",
                    "birthdate": "1988-03-14"},
        "location": {"postcode": "3072AB", "house_number": 12},
        "observed_at": days_ago(1), "description": "Aanloop en overdrachten",
        "attributes": {"soort": "handel", "ernst": "hoog", "registratienummer": "PL1300-77"},
    }


def rule_fields(rule_id: str) -> set[str]:
    rule = next(r for r in load_pack(PACK).rules if r.id == rule_id)
    return set(rule.fields)


def test_the_area_teams_week(served: Broker) -> None:
    url = served.url
    net = {**served.client("netbeheerder", "contributor"), "X-Acting-User": "monteur-3"}
    politie = {**served.client("politie", "contributor"), "X-Acting-User": "agent-7"}
    gemeente = {**served.client("gemeente", "requester"), "X-Acting-User": "handhaver-2"}
    fiscus = {**served.client("belastingdienst", "requester"), "X-Acting-User": "inspecteur-1"}
    riec = served.client("riec", "requester", kind="personal")
    officer = served.client("riec", "privacy_officer", kind="personal")
    with httpx.Client(base_url=url, timeout=10) as http:
        # Monday: signals about the street.
        for number in range(10, 16):
            assert http.post("/v1/signals", json=energy(number, 2100 + number * 10),
                             headers=net).status_code == 201
        for body in (hennep("wpg-art-16"), drugs(), hennep("wpg-art-20", 13),
                     hennep("wpg-art-20", 14)):
            assert http.post("/v1/signals", json=body, headers=politie).status_code == 201

        # Tuesday: the gemeente prepares its joint inspection of number 12.
        asked = http.post("/v1/disclosures", headers=gemeente, json={
            "purpose": "integrale-controle", "case_reference": CASE,
            "query": {"address": {"postcode": "3072 ab", "house_number": 12}}})
        assert asked.status_code == 200, asked.text
        disclosure = asked.json()
        released = {s["rule"]: s for s in disclosure["signals"]}
        assert set(released) == {"gemeente-energie-integrale-controle",
                                 "gemeente-hennep-handhaving", "gemeente-drugs-handhaving"}
        for rule_id, signal in released.items():
            assert set(signal["fields"]) <= rule_fields(rule_id)
        assert set(released["gemeente-energie-integrale-controle"]["fields"]) == \
            rule_fields("gemeente-energie-integrale-controle")
        assert released["gemeente-energie-integrale-controle"]["fields"][
            "attributes.kwh_per_month"] == {"gte": 2000, "lt": 2500}
        person = released["gemeente-drugs-handhaving"]
        assert person["fields"]["subject.bsn"].startswith("ps_")
        assert RESIDENT not in asked.text and "Daan" not in asked.text
        assert "PL1300" not in asked.text and "Warmtebeeld" not in asked.text

        # The Belastingdienst only learns that there is something, and from whom.
        hit = http.post("/v1/hits", headers=fiscus, json={
            "purpose": "fiscale-handhaving", "case_reference": "FH-2026-9",
            "subject": {"bag_id": TARGET_BAG}})
        assert hit.status_code == 200, hit.text
        assert (hit.json()["hit"], hit.json()["sources"]) == (True, ["netbeheerder"])
        assert "kwh" not in hit.text and "3072" not in hit.text

        # The RIEC sees the area in numbers; small counts stay hidden.
        area = http.post("/v1/area-summaries", headers=riec, json={
            "purpose": "ondermijningsbeeld", "area": {"postcode": "3072"}})
        assert area.status_code == 200, area.text
        counts = {c["category"]: c for c in area.json()["categories"]}
        # Six signals, with the cell key method's noise of at most three either way: shown
        # when the noisy count reaches the rule's five, and the same count when asked again.
        energie = counts["energie-afwijking"]
        assert energie["suppressed"] is (energie["count"] is None)
        assert energie["count"] is None or 5 <= energie["count"] <= 9
        again = http.post("/v1/area-summaries", headers=riec, json={
            "purpose": "ondermijningsbeeld", "area": {"postcode": "3072"}})
        assert {c["category"]: c for c in again.json()["categories"]} == counts
        assert counts["hennepteelt-vermoeden"] == {"category": "hennepteelt-vermoeden",
                                                   "count": None, "suppressed": True}

        # Wednesday: the mayor's closure needs the person behind the pseudonym.
        request = http.post("/v1/reidentifications", headers=gemeente, json={
            "disclosure_id": disclosure["disclosure_id"], "ref": person["ref"],
            "field": "subject.bsn", "justification": "Sluiting woning, art. 13b Opiumwet"})
        assert request.status_code == 202, request.text
        rid = request.json()["id"]
        decided = http.post(f"/v1/reidentifications/{rid}/decision", headers=officer,
                            json={"approve": True, "reason": "Noodzakelijk voor de sluiting"})
        assert decided.status_code == 200 and decided.json()["status"] == "approved"
        first = http.get(f"/v1/reidentifications/{rid}", headers=gemeente).json()
        assert (first["status"], first["value"]) == ("approved", RESIDENT)
        again = http.get(f"/v1/reidentifications/{rid}", headers=gemeente).json()
        assert again["status"] == "revealed" and "value" not in again

        # Friday: the resident asks what happened with their data.
        report = http.post("/v1/audit/subject-report", headers=officer,
                           json={"subject": {"bsn": RESIDENT}})
        assert report.status_code == 200, report.text
        acts = [(a["action"], a["recipient"], a["purpose"]) for a in report.json()["items"]]
        assert acts == [
            ("disclosure", "gemeente", "integrale-controle"),
            ("reidentification_requested", "gemeente", "integrale-controle"),
            ("reidentification_decided", "gemeente", "integrale-controle"),
            ("reidentification_revealed", "gemeente", "integrale-controle"),
        ]
        (item,) = report.json()["items"][0]["items"]
        assert item["rule"] == "gemeente-drugs-handhaving"
        assert item["fields"]["subject.bsn"] == "pseudonymise"
        assert RESIDENT not in report.text
        building = http.post("/v1/audit/subject-report", headers=officer,
                             json={"subject": {"bag_id": TARGET_BAG}}).json()
        assert [a["action"] for a in building["items"]] == ["disclosure", "hit"]
        assert {i["rule"] for i in building["items"][0]["items"]} == {
            "gemeente-energie-integrale-controle", "gemeente-hennep-handhaving"}

        # And the log is intact.
        verified = http.get("/v1/audit/verify", headers=officer)
        assert verified.status_code == 200
        assert verified.json()["ok"] is True and verified.json()["problems"] == []
