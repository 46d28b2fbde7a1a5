"""A team member's and a privacy officer's first hour with `sluis`, against a served broker:
a refused key sign-in names the audience the broker expects, `purposes` tells the ones the
caller's organisation may ask from the rest, `explain` answers per legal basis, a re-import
says what was new, and a subject report shows what it withheld."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.conftest import SCRIPT, ServedBroker, SluisRunner, client_env, run_broker

CASE = "ZAAK-2026-0077"
BSN = "270000033"  # passes the eleven test; no demo signal is about it


def energy_signal(number: int) -> dict[str, Any]:
    return {
        "category": "energie-afwijking",
        "legal_basis": "elektriciteitswet-levering",
        "subject": {"type": "address", "bag_id": f"0599010007{number:06d}"},
        "location": {"postcode": "3072AB", "house_number": 1 + number % 90},
        "observed_at": "2026-11-20T09:00:00+01:00",
        "attributes": {"kwh_per_month": 2400 + number, "meter_seal_broken": True},
    }


def member(tmp_path: Path, broker: ServedBroker, name: str) -> dict[str, str]:
    return client_env(tmp_path / name.split()[0].lower(), broker.url, broker.client(name))


def tables(stdout: str) -> list[list[str]]:
    """The ids in each table of the output (the first word of each row under a header)."""
    found: list[list[str]] = []
    for line in stdout.splitlines():
        if line.split()[:1] == ["ID"]:
            found.append([])
        elif found and line.strip() and not line.startswith(("(", "not for")):
            found[-1].append(line.split()[0])
    return found


# --- 4. key sign-in ---


def test_a_refused_key_sign_in_names_the_audience_expected_and_sent(
    sluis_broker: ServedBroker, tmp_path: Path
) -> None:
    env = client_env(tmp_path / "home", sluis_broker.url)
    key = tmp_path / "home" / "key.pem"
    made = subprocess.run([sys.executable, str(SCRIPT), "key", "new", str(key)], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert made.returncode == 0, made.stderr
    (tmp_path / "key.jwk").write_text(made.stdout)
    created = json.loads(run_broker(sluis_broker.env, "clients", "create", "--org", "gemeente",
                                    "--name", "Gemeente (sleutel)", "--roles", "requester",
                                    "--jwk", str(tmp_path / "key.jwk"), "--json").stdout)
    env.update({"SLUIS_CLIENT_ID": created["client_id"], "SLUIS_PRIVATE_KEY_FILE": str(key),
                "SLUIS_TOKEN_AUDIENCE": "https://sluis.example/oauth/token"})
    login = subprocess.run([sys.executable, str(SCRIPT), "login"], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=60, check=False)
    assert login.returncode == 1
    assert login.stderr.splitlines() == [
        "sluis: 401 invalid_client: Client authentication failed. A client assertion must "
        "be signed with ES256 by the client's registered key, have aud "
        f"{sluis_broker.url}/oauth/token, and expire within 300 seconds. This assertion had "
        "aud https://sluis.example/oauth/token; if the broker expects another, set "
        "token_audience (SLUIS_TOKEN_AUDIENCE) to it; else check the client id and key."]
    del env["SLUIS_TOKEN_AUDIENCE"]
    again = subprocess.run([sys.executable, str(SCRIPT), "login", "--json"], env=env,
                           cwd=tmp_path, capture_output=True, text=True, timeout=60,
                           check=False)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["org"] == "gemeente"


# --- 7. purposes ---


def test_purposes_sets_the_ones_the_organisation_may_ask_apart(
    run_sluis: SluisRunner, sluis_broker: ServedBroker, tmp_path: Path
) -> None:
    netbeheerder = member(tmp_path, sluis_broker, "Netbeheerder")
    shown = run_sluis(netbeheerder, "purposes")
    assert shown.returncode == 0, shown.stderr
    mine, others = tables(shown.stdout)
    assert mine == ["energiefraude"]  # netbeheerder-hennep-energiefraude, its only rule
    assert "integrale-controle" in others and "energiefraude" not in others
    assert len(mine) + len(others) == 9
    assert ("not for netbeheerder (no rule grants them; asking is refused and logged "
            "against you):") in shown.stdout.splitlines()
    gemeente = member(tmp_path, sluis_broker, "Gemeente")
    as_json = json.loads(run_sluis(gemeente, "purposes", "--json").stdout)
    assert as_json["org"] == "gemeente"
    assert {p["id"] for p in as_json["items"] if p["may_ask"]} == {
        "integrale-controle", "gemeentelijke-handhaving", "woonfraude", "bibob-toets",
        "openbare-orde"}
    # What it lists as not askable is what the broker refuses.
    refused = run_sluis(netbeheerder, "hit", "--purpose", "integrale-controle", "--case", CASE,
                        "--bsn", BSN)
    assert refused.returncode == 1 and refused.stderr.startswith("sluis: 403 ")


# --- 10. explain ---


def test_explain_without_a_legal_basis_answers_per_basis(
    run_sluis: SluisRunner, sluis_broker: ServedBroker, tmp_path: Path
) -> None:
    gemeente = member(tmp_path, sluis_broker, "Gemeente")
    asked = ["explain", "--recipient", "gemeente", "--purpose", "integrale-controle",
             "--category", "drugsgerelateerde-melding", "--source", "politie"]
    shown = run_sluis(gemeente, *asked)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[:2] == ["legal basis wpg-art-16:",
                         "  access: disclose by rule gemeente-drugs-handhaving"]
    assert ["subject.bsn", "pseudonymise"] in [line.split() for line in lines]
    assert lines[-5:] == ["legal basis wpg-art-19:",
                          "  access: none (no rule grants this; nothing would be disclosed)",
                          "",
                          "legal basis wpg-art-20:",
                          "  access: none (no rule grants this; nothing would be disclosed)"]
    as_json = json.loads(run_sluis(gemeente, *asked, "--json").stdout)
    assert [(a["legal_basis"], a["access"], a.get("rule")) for a in as_json["items"]] == [
        ("wpg-art-16", "disclose", "gemeente-drugs-handhaving"),
        ("wpg-art-19", "none", None), ("wpg-art-20", "none", None)]
    one = run_sluis(gemeente, *asked, "--legal-basis", "wpg-art-19", "--json")
    assert json.loads(one.stdout) == {"access": "none"}


# --- 9. re-import ---


def test_a_re_import_says_how_many_were_new_and_how_many_already_there(
    run_sluis: SluisRunner, sluis_broker: ServedBroker, tmp_path: Path
) -> None:
    netbeheerder = member(tmp_path, sluis_broker, "Netbeheerder")
    first_half = tmp_path / "first.jsonl"
    first_half.write_text("".join(json.dumps(energy_signal(i)) + "\n" for i in range(5)))
    whole = tmp_path / "whole.jsonl"
    whole.write_text("".join(json.dumps(energy_signal(i)) + "\n" for i in range(12)))
    first = run_sluis(netbeheerder, "signals", "import", str(first_half), "--batch-size", "5")
    assert first.returncode == 0, first.stderr
    assert first.stdout == "sent 5 signals in 1 batch: 5 new signals\n"
    # The broker's Date header counts whole seconds: a replay is told from a signal stored
    # by this request once its first answer is older than that.
    time.sleep(2.5)
    more = run_sluis(netbeheerder, "signals", "import", str(whole), "--batch-size", "5",
                     "--json")
    assert more.returncode == 0, more.stderr
    report = json.loads(more.stdout)
    assert {k: report[k] for k in ("stored", "already_there", "signals", "batches")} == {
        "stored": 7, "already_there": 5, "signals": 12, "batches": 3}
    time.sleep(2.5)
    again = run_sluis(netbeheerder, "signals", "import", str(whole), "--batch-size", "5")
    assert again.returncode == 0, again.stderr
    assert again.stdout == "sent 12 signals in 3 batches: 0 new signals, 12 already there\n"


# --- 8. withheld entries of a subject report ---


def _token(broker: ServedBroker, client: dict[str, Any]) -> dict[str, str]:
    answer = httpx.post(f"{broker.url}/oauth/token", data={
        "grant_type": "client_credentials", "client_id": client["client_id"],
        "client_secret": client["client_secret"]}, timeout=30)
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}",
            "X-Acting-User": "emp-1"}


def test_the_subject_report_prints_what_it_withheld(
    run_sluis: SluisRunner, sluis_broker: ServedBroker, tmp_path: Path
) -> None:
    police = _token(sluis_broker, sluis_broker.client("Politie basisteam"))
    signal = {
        "category": "drugsgerelateerde-melding", "legal_basis": "wpg-art-16",
        "subject": {"type": "person", "bsn": BSN},
        "location": {"postcode": "3072AB", "house_number": 40},
        "observed_at": "2026-11-20T09:00:00+01:00",
        "attributes": {"soort": "handel", "ernst": "midden", "registratienummer": "PL-9"},
    }
    stored = httpx.post(f"{sluis_broker.url}/v1/signals", json=signal, headers=police,
                        timeout=30)
    assert stored.status_code == 201, stored.text
    officer = client_env(tmp_path / "officer", sluis_broker.url,
                         sluis_broker.client("Functionaris gegevensbescherming"),
                         acting_user=None)
    before = run_sluis(officer, "audit", "report", "--bsn", BSN)
    assert before.stdout == "nothing was disclosed about this subject\n", before.stderr
    municipality = _token(sluis_broker, sluis_broker.client("Gemeente"))
    until = (date.today() + timedelta(days=90)).isoformat()
    disclosed = httpx.post(f"{sluis_broker.url}/v1/disclosures", headers=municipality,
                           timeout=30, json={
                               "purpose": "integrale-controle", "case_reference": CASE,
                               "query": {"subject": {"type": "person", "bsn": BSN}},
                               "confidential_until": until})
    assert disclosed.status_code == 200, disclosed.text
    assert len(disclosed.json()["signals"]) == 1
    shown = run_sluis(officer, "audit", "report", "--bsn", BSN)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines() == [
        "no entry may be shown yet",
        "withheld: 1 entry still confidential, left out (for you, not for the data subject)"]
    as_json = json.loads(run_sluis(officer, "audit", "report", "--bsn", BSN, "--json").stdout)
    assert (as_json["items"], as_json["withheld"]) == ([], 1)

