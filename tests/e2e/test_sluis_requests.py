"""Disclosures, hits, area summaries, re-identification and the subject report through `sluis`,
against a served broker. Each test skips while the broker does not serve its endpoint yet."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from broker.core.identifiers import valid_bsn_from
from tests.e2e.conftest import ServedBroker, SluisRunner, client_env

Needs = Callable[..., None]


@pytest.fixture
def needs(sluis_broker: ServedBroker) -> Needs:
    def check(*paths: str) -> None:
        missing = [p for p in paths if p not in sluis_broker.paths()]
        if missing:
            pytest.skip(f"the broker does not serve {', '.join(missing)} yet")

    return check


@pytest.fixture
def people(tmp_path: Path, sluis_broker: ServedBroker) -> dict[str, dict[str, str]]:
    """Everyone's environment, each with its own home (token cache, checkpoints)."""
    def env(name: str, prefix: str, acting: str | None) -> dict[str, str]:
        return client_env(tmp_path / name, sluis_broker.url, sluis_broker.client(prefix),
                          acting_user=acting)

    return {
        "netbeheerder": env("net", "Netbeheerder", "monteur-3"),
        "politie": env("politie", "Politie", "agent-7"),
        "gemeente": env("gemeente", "Gemeente", "handhaver-2"),
        "riec": env("riec", "RIEC analist", None),
        "officer": env("officer", "Functionaris", None),
    }


def submit(run_sluis: SluisRunner, env: dict[str, str], *args: str) -> dict[str, Any]:
    result = run_sluis(env, "signals", "submit", *args, "--json")
    assert result.returncode == 0, result.stderr
    signal: dict[str, Any] = json.loads(result.stdout)
    return signal


def test_disclosure_about_an_address_and_its_receipt(
    run_sluis: SluisRunner, people: dict[str, dict[str, str]], needs: Needs
) -> None:
    needs("/v1/disclosures")
    bag_id = "0599010000000888"
    submit(run_sluis, people["netbeheerder"], "--category", "energie-afwijking",
           "--legal-basis", "elektriciteitswet-levering", "--bag-id", bag_id,
           "--postcode", "3072AD", "--house-number", "88", "--attr", "kwh_per_month=2300",
           "--attr", "meter_seal_broken=true")
    result = run_sluis(people["gemeente"], "disclose", "--purpose", "integrale-controle",
                       "--case", "ZAAK-2026-0042", "--bag-id", bag_id, "--json")
    assert result.returncode == 0, result.stderr
    disclosure = json.loads(result.stdout)
    energy = [s for s in disclosure["signals"] if s["category"] == "energie-afwijking"]
    assert energy and energy[0]["rule"] == "gemeente-energie-integrale-controle"
    assert energy[0]["fields"]["location.postcode"] == "3072AD"
    table = run_sluis(people["gemeente"], "disclose", "--purpose", "integrale-controle",
                      "--case", "ZAAK-2026-0042", "--address", "3072AD", "88")
    assert table.returncode == 0 and "rule gemeente-energie-integrale-controle" in table.stdout
    assert "attributes.kwh_per_month" in table.stdout
    # the entry names the netbeheerder's signal: the gemeente reads it redacted (the refs its
    # answer gave, not the signal's id), so its receipt is for the privacy officer to check
    receipt = run_sluis(people["gemeente"], "audit", "receipt", str(disclosure["audit_seq"]))
    assert receipt.returncode == 1 and "cannot be checked here" in receipt.stdout
    whole = run_sluis(people["officer"], "audit", "receipt", str(disclosure["audit_seq"]))
    assert whole.returncode == 0, whole.stderr
    assert "inclusion proof ok" in whole.stdout


def test_refused_disclosures_are_one_line(
    run_sluis: SluisRunner, people: dict[str, dict[str, str]], needs: Needs
) -> None:
    needs("/v1/disclosures")
    no_case = run_sluis(people["gemeente"], "disclose", "--purpose", "integrale-controle",
                        "--area", "3072")
    assert no_case.returncode == 1 and no_case.stderr.startswith("sluis: 422 ")
    assert "Traceback" not in no_case.stderr
    officer = run_sluis(people["officer"], "disclose", "--purpose", "ondermijningsbeeld",
                        "--area", "3072")
    assert officer.returncode == 1 and officer.stderr.startswith("sluis: 403 ")
    assert len(officer.stderr.splitlines()) == 1


def test_hit_no_hit(run_sluis: SluisRunner, people: dict[str, dict[str, str]],
                    needs: Needs) -> None:
    needs("/v1/hits")
    bag_id = "0599010000000889"
    submit(run_sluis, people["netbeheerder"], "--category", "energie-afwijking",
           "--legal-basis", "elektriciteitswet-levering", "--bag-id", bag_id,
           "--postcode", "3072AD", "--house-number", "89", "--attr", "kwh_per_month=2300",
           "--attr", "meter_seal_broken=false")
    hit = run_sluis(people["gemeente"], "hit", "--purpose", "integrale-controle", "--case",
                    "ZAAK-9", "--bag-id", bag_id)
    assert hit.returncode == 0, hit.stderr
    assert hit.stdout.startswith("hit: yes") and "netbeheerder" in hit.stdout
    miss = run_sluis(people["gemeente"], "hit", "--purpose", "integrale-controle", "--case",
                     "ZAAK-9", "--bag-id", "0599019999999999", "--json")
    assert json.loads(miss.stdout)["hit"] is False


def test_area_summary(run_sluis: SluisRunner, people: dict[str, dict[str, str]],
                      needs: Needs) -> None:
    needs("/v1/area-summaries")
    result = run_sluis(people["riec"], "area", "3072", "--purpose", "ondermijningsbeeld")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "area 3072"
    assert result.stdout.splitlines()[1].split() == ["CATEGORY", "COUNT"]


def test_reidentification_request_decide_fetch_and_subject_report(
    run_sluis: SluisRunner, people: dict[str, dict[str, str]], needs: Needs
) -> None:
    needs("/v1/disclosures", "/v1/reidentifications", "/v1/audit/subject-report")
    bsn = valid_bsn_from(987_650_000)
    submit(run_sluis, people["politie"], "--category", "drugsgerelateerde-melding",
           "--legal-basis", "wpg-art-16", "--bsn", bsn, "--postcode", "3072AD",
           "--house-number", "90", "--attr", "soort=handel", "--attr", "ernst=hoog")
    disclosed = run_sluis(people["gemeente"], "disclose", "--purpose", "integrale-controle",
                          "--case", "ZAAK-77", "--bsn", bsn, "--json")
    assert disclosed.returncode == 0, disclosed.stderr
    disclosure = json.loads(disclosed.stdout)
    (signal,) = [s for s in disclosure["signals"] if s["category"] == "drugsgerelateerde-melding"]
    assert signal["fields"]["subject.bsn"] != bsn  # pseudonymised
    asked = run_sluis(people["gemeente"], "reid", "request", "--disclosure",
                      disclosure["disclosure_id"], "--ref", signal["ref"], "--field",
                      "subject.bsn", "--justification", "Sluiting pand, art. 13b Opiumwet",
                      "--json")
    assert asked.returncode == 0, asked.stderr
    request = json.loads(asked.stdout)
    assert request["status"] == "pending"
    pending = run_sluis(people["officer"], "reid", "list", "--status", "pending", "--all",
                        "--json")
    assert pending.returncode == 0, pending.stderr
    (listed,) = [i for i in json.loads(pending.stdout)["items"] if i["id"] == request["id"]]
    assert (listed["org"], listed["field"]) == ("gemeente", "subject.bsn")
    assert listed["justification"] == "Sluiting pand, art. 13b Opiumwet"
    table = run_sluis(people["officer"], "reid", "list", "--status", "pending")
    assert table.returncode == 0 and request["id"] in table.stdout
    refused = run_sluis(people["gemeente"], "reid", "list")
    assert refused.returncode == 1
    decided = run_sluis(people["officer"], "reid", "decide", request["id"], "--approve",
                        "--reason", "Noodzakelijk en proportioneel")
    assert decided.returncode == 0, decided.stderr
    fetched = json.loads(run_sluis(people["gemeente"], "reid", "fetch", request["id"],
                                   "--json").stdout)
    assert fetched["status"] == "approved" and fetched["value"] == bsn
    again = json.loads(run_sluis(people["gemeente"], "reid", "fetch", request["id"],
                                 "--json").stdout)
    assert again["status"] == "revealed" and "value" not in again
    report = run_sluis(people["officer"], "audit", "report", "--bsn", bsn)
    assert report.returncode == 0, report.stderr
    assert "gemeente" in report.stdout and "integrale-controle" in report.stdout
    assert bsn not in report.stdout


def test_an_entry_redacted_for_its_requester(
    run_sluis: SluisRunner, people: dict[str, dict[str, str]], needs: Needs
) -> None:
    """netbeheerder-hennep-energiefraude hides its source: the requester's own entry comes
    redacted (no bytes), so its receipt cannot be checked by the requester."""
    needs("/v1/disclosures", "/v1/audit/entries/{seq}")
    bag_id = "0599010000000919"
    submit(run_sluis, people["politie"], "--category", "hennepteelt-vermoeden",
           "--legal-basis", "wpg-art-19", "--bag-id", bag_id, "--postcode", "3072AD",
           "--house-number", "91", "--attr", "bron=warmtebeeld",
           "--attr", "geschat_aantal_planten=100", "--attr", "ontmanteld=false")
    disclosed = run_sluis(people["netbeheerder"], "disclose", "--purpose", "energiefraude",
                          "--case", "EF-9", "--bag-id", bag_id, "--json")
    assert disclosed.returncode == 0, disclosed.stderr
    seq = str(json.loads(disclosed.stdout)["audit_seq"])
    entry = run_sluis(people["netbeheerder"], "audit", "entry", seq)
    assert entry.returncode == 0, entry.stderr
    assert "redacted" in entry.stdout and "politie" not in entry.stdout
    receipt = run_sluis(people["netbeheerder"], "audit", "receipt", seq)
    assert receipt.returncode == 1 and "cannot be checked here" in receipt.stdout
    whole = run_sluis(people["officer"], "audit", "receipt", seq)
    assert whole.returncode == 0 and "inclusion proof ok" in whole.stdout


def test_a_subject_report_for_an_address_without_bag_id(
    run_sluis: SluisRunner, people: dict[str, dict[str, str]], needs: Needs
) -> None:
    needs("/v1/disclosures", "/v1/audit/subject-report")
    submit(run_sluis, people["netbeheerder"], "--category", "energie-afwijking",
           "--legal-basis", "elektriciteitswet-levering", "--subject-type", "address",
           "--postcode", "3072AE", "--house-number", "7", "--house-letter", "B",
           "--attr", "kwh_per_month=2300", "--attr", "meter_seal_broken=true")
    disclosed = run_sluis(people["gemeente"], "disclose", "--purpose", "integrale-controle",
                          "--case", "ZAAK-8", "--address", "3072AE", "7", "--house-letter", "B")
    assert disclosed.returncode == 0, disclosed.stderr
    report = run_sluis(people["officer"], "audit", "report", "--address", "3072 ae", "7",
                       "--house-letter", "b", "--json")
    assert report.returncode == 0, report.stderr
    result = json.loads(report.stdout)
    assert result["subject_type"] == "address"
    assert [(i["action"], i["recipient"]) for i in result["items"]] == [("disclosure", "gemeente")]
    assert result["items"][0]["items"][0]["rule"] == "gemeente-energie-integrale-controle"
