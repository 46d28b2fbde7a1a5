"""What the README's tour of `sluis` leans on, against a served broker: an export older
than the checkpoint the client remembers is no alarm (the log grew since), a receipt the
caller is shown redacted is explained rather than suggested, and the example meter readings
import as the netbeheerder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.e2e.conftest import REPO, ServedBroker, SluisRunner, client_env

EXAMPLE = REPO / "clients" / "examples" / "meter-readings.csv"


def _json(result: Any) -> Any:
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def _alarms(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "ALARM" in line]


def test_an_export_older_than_the_remembered_checkpoint_is_not_a_rollback(
    run_sluis: SluisRunner, sluis_broker: ServedBroker, tmp_path: Path
) -> None:
    officer = client_env(tmp_path / "officer", sluis_broker.url,
                         sluis_broker.client("Functionaris"), acting_user=None)
    path = tmp_path / "audit-2026-11.jsonl"
    assert run_sluis(officer, "audit", "export", str(path)).returncode == 0
    exported = _json(run_sluis(officer, "audit", "verify", "--file", str(path),
                               "--json"))["checkpoint_size"]
    for _ in range(3):  # the log grows (audit reads are audited acts) ...
        _json(run_sluis(officer, "audit", "entries", "--limit", "1", "--json"))
    newest = _json(run_sluis(officer, "audit", "entries", "--limit", "1", "--json"))
    # ... and a receipt of its newest entry has the broker sign a checkpoint covering it,
    # which the client remembers
    receipt = run_sluis(officer, "audit", "receipt", str(newest["items"][0]["seq"]))
    assert receipt.returncode == 0, receipt.stderr
    remembered = _json(run_sluis(officer, "audit", "remembered", "--json"))["size"]
    assert remembered > exported

    result = run_sluis(officer, "audit", "verify", "--file", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert _alarms(result.stderr) == [] and "VERIFICATION FAILED" not in result.stdout
    assert "the broker now shows" not in result.stdout + result.stderr
    assert (f"history: older than the checkpoint of {remembered} entries this client saw on "
            in result.stdout)
    assert "the broker's consistency proof from it to that checkpoint verifies" in result.stdout
    state = _json(run_sluis(officer, "audit", "remembered", "--json"))
    assert state["size"] == remembered and not state.get("conflicts")

    # without a client to ask for the proof, the file is verified and said not compared
    offline = {k: v for k, v in officer.items()
               if k not in ("SLUIS_CLIENT_ID", "SLUIS_CLIENT_SECRET")}
    alone = run_sluis(offline, "audit", "verify", "--file", str(path))
    assert alone.returncode == 0, alone.stdout + alone.stderr
    assert _alarms(alone.stderr) == []
    assert "not compared with it (no client to ask the broker for a proof)" in alone.stdout


def test_a_disclosure_shown_redacted_is_not_offered_as_a_receipt_to_check(
    run_sluis: SluisRunner, sluis_broker: ServedBroker, tmp_path: Path
) -> None:
    netbeheerder = client_env(tmp_path / "nb", sluis_broker.url,
                              sluis_broker.client("Netbeheerder"))
    gemeente = client_env(tmp_path / "gemeente", sluis_broker.url,
                          sluis_broker.client("Gemeente"))
    submitted = run_sluis(netbeheerder, "signals", "submit", "--category", "energie-afwijking",
                          "--legal-basis", "elektriciteitswet-levering", "--bag-id",
                          "0599010000000776", "--postcode", "3072AD", "--house-number", "77",
                          "--attr", "kwh_per_month=2400", "--attr", "meter_seal_broken=true")
    assert submitted.returncode == 0, submitted.stderr
    disclosed = run_sluis(gemeente, "disclose", "--purpose", "integrale-controle", "--case",
                          "ZAAK-2026-0042", "--address", "3072AD", "77")
    assert disclosed.returncode == 0, disclosed.stderr
    seq = disclosed.stdout.split("(audit entry ", 1)[1].split(",", 1)[0]
    assert "keep a receipt" not in disclosed.stdout
    assert (f"audit entry {seq} names other organisations' signals, so it is shown to you "
            "redacted and you cannot check its receipt yourself") in disclosed.stdout

    saved = tmp_path / f"receipt-{seq}.txt"
    receipt = run_sluis(gemeente, "audit", "receipt", seq, "--save", str(saved))
    assert receipt.returncode == 1 and "so it was not checked" in receipt.stdout
    assert saved.exists() and not Path(f"{saved}.entry").exists()
    check = run_sluis(gemeente, "audit", "check-receipt", str(saved))
    assert check.returncode == 1
    assert check.stderr.startswith(f"sluis: no entry beside the receipt ({saved}.entry)")
    assert len(check.stderr.splitlines()) == 1 and "Traceback" not in check.stderr


def test_a_disclosure_shown_whole_suggests_a_receipt_that_checks(
    run_sluis: SluisRunner, sluis_broker: ServedBroker, tmp_path: Path
) -> None:
    gemeente = client_env(tmp_path / "gemeente", sluis_broker.url,
                          sluis_broker.client("Gemeente"))
    disclosed = run_sluis(gemeente, "disclose", "--purpose", "integrale-controle", "--case",
                          "ZAAK-2026-0042", "--address", "3072AD", "99")  # nobody lives here
    assert disclosed.returncode == 0, disclosed.stderr
    assert "0 signals released" in disclosed.stdout
    seq = disclosed.stdout.split("(audit entry ", 1)[1].split(",", 1)[0]
    suggested = f"sluis audit receipt {seq} --save receipt-{seq}.txt"
    assert f"keep a receipt: {suggested}" in disclosed.stdout
    receipt = run_sluis(gemeente, *suggested.split()[1:], cwd=tmp_path)
    assert receipt.returncode == 0, receipt.stdout + receipt.stderr
    check = run_sluis(gemeente, "audit", "check-receipt", f"receipt-{seq}.txt", cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith(f"receipt ok: entry {seq} is in ")


def test_the_example_meter_readings_import_as_the_netbeheerder(
    run_sluis: SluisRunner, sluis_broker: ServedBroker, tmp_path: Path
) -> None:
    netbeheerder = client_env(tmp_path / "nb", sluis_broker.url,
                              sluis_broker.client("Netbeheerder"))
    first = _json(run_sluis(netbeheerder, "signals", "import", str(EXAMPLE), "--json"))
    assert (first["signals"], first["stored"], first["already_there"]) == (5, 5, 0)
    again = _json(run_sluis(netbeheerder, "signals", "import", str(EXAMPLE), "--json"))
    assert (again["stored"], again["already_there"]) == (0, 5)
    shown = _json(run_sluis(netbeheerder, "signals", "show", first["ids"][0], "--json"))
    assert shown["subject"] == {"type": "address", "bag_id": "0599010000000005"}
    assert shown["attributes"]["meter_seal_broken"] is True
    helped = run_sluis(netbeheerder, "signals", "import", "--help")
    assert "subject.bag_id" in helped.stdout


def test_sluis_config_says_why_the_file_gave_nothing(
    run_sluis: SluisRunner, tmp_path: Path
) -> None:
    config = tmp_path / "sluis.ini"
    config.write_text("[gemeente]\nurl = http://127.0.0.1:9\n")
    config.chmod(0o600)
    env = {**client_env(tmp_path / "home", "http://127.0.0.1:9"), "SLUIS_CONFIG": str(config)}
    del env["SLUIS_URL"]
    shown = run_sluis(env, "config")
    assert shown.returncode == 0, shown.stderr
    assert (f"nothing from it: {config} has no section [default] (its profiles: gemeente; "
            "pick one with --profile NAME or SLUIS_PROFILE)") in shown.stdout
    picked = run_sluis(env, "--profile", "gemeente", "config")
    assert picked.returncode == 0 and "nothing from it" not in picked.stdout
    assert "config file [gemeente]" in picked.stdout
