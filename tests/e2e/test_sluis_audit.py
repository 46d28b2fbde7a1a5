"""The privacy officer's side of `sluis`, against a served broker: checkpoints checked against
the broker's key and against the one the client remembers, receipts, exports verified offline,
and the loud alarm when the broker shows a log that contradicts what the client saw."""

from __future__ import annotations

import base64
import hashlib
import json
import stat
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import (
    ServedBroker,
    SluisRunner,
    client_env,
    run_broker,
    served_broker_in,
)

pytestmark = pytest.mark.usefixtures("needs_audit_api")


@pytest.fixture
def needs_audit_api(sluis_broker: ServedBroker) -> None:
    if "/v1/audit/checkpoint" not in sluis_broker.paths():
        pytest.skip("the broker does not serve the audit API yet")


@pytest.fixture
def officer(tmp_path: Path, sluis_broker: ServedBroker) -> dict[str, str]:
    return client_env(tmp_path / "officer", sluis_broker.url,
                      sluis_broker.client("Functionaris"), acting_user=None)


def state_file(env: dict[str, str]) -> Path:
    (path,) = (Path(env["XDG_DATA_HOME"]) / "sluis" / "checkpoints").glob("*.json")
    return path


def edit_state(env: dict[str, str], **changes: Any) -> dict[str, Any]:
    path = state_file(env)
    state: dict[str, Any] = json.loads(path.read_text())
    state.update(changes)
    path.write_text(json.dumps(state))
    return state


def alarm_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "ALARM" in line]


def test_verify_remembers_the_checkpoint_then_checks_consistency(
    run_sluis: SluisRunner, officer: dict[str, str]
) -> None:
    first = run_sluis(officer, "audit", "verify")
    assert first.returncode == 0, first.stderr
    assert "signature ok" in first.stdout and "first checkpoint seen" in first.stdout
    assert "the broker's full self-check: ok" in first.stdout
    state = json.loads(state_file(officer).read_text())
    assert stat.S_IMODE(state_file(officer).stat().st_mode) == 0o600
    # An export signs a checkpoint of the grown log: the next verify proves it extends the
    # remembered one with a consistency proof, and moves the memory forward.
    assert run_sluis(officer, "audit", "export", str(Path(officer["HOME"]) / "x.jsonl"),
                     "--no-verify").returncode == 0
    second = run_sluis(officer, "audit", "verify", "--json")
    assert second.returncode == 0, second.stderr
    report = json.loads(second.stdout)
    assert report["ok"] and report["signature_ok"] and report["consistent"]
    assert report["history"].startswith(f"consistent with the checkpoint of {state['size']} ")
    assert json.loads(state_file(officer).read_text())["size"] == report["size"] > state["size"]


def test_a_partner_verifies_checkpoints_without_the_full_self_check(
    run_sluis: SluisRunner, sluis_broker: ServedBroker, tmp_path: Path
) -> None:
    env = client_env(tmp_path / "home", sluis_broker.url, sluis_broker.client("Netbeheerder"))
    result = run_sluis(env, "audit", "verify")
    assert result.returncode == 0, result.stderr
    assert "needs the privacy_officer role: skipped" in result.stdout


def test_entries_and_one_entry_with_its_leaf_hash(run_sluis: SluisRunner,
                                                  officer: dict[str, str]) -> None:
    listed = run_sluis(officer, "audit", "entries", "--action", "client_created", "--json")
    assert listed.returncode == 0, listed.stderr
    items = json.loads(listed.stdout)["items"]
    assert items and {e["action"] for e in items} == {"client_created"}
    table = run_sluis(officer, "audit", "entries", "--limit", "3")
    assert table.stdout.splitlines()[0].split() == ["SEQ", "TIME", "ACTION", "OUTCOME", "ORG",
                                                    "PURPOSE", "ITEMS"]
    seq = items[-1]["seq"]
    shown = run_sluis(officer, "audit", "entry", str(seq))
    assert shown.returncode == 0
    assert "action                  client_created" in shown.stdout
    assert "(recomputed from the entry's bytes: matches)" in shown.stdout
    missing = run_sluis(officer, "audit", "entry", "999999999")
    assert missing.returncode == 1 and missing.stderr.startswith("sluis: 404 Not found")


def test_receipt_is_checked_and_kept_for_offline_evidence(
    run_sluis: SluisRunner, officer: dict[str, str], tmp_path: Path
) -> None:
    saved = tmp_path / "receipt-0.txt"
    result = run_sluis(officer, "audit", "receipt", "0", "--save", str(saved))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("entry 0 is in the log: inclusion proof ok")
    assert saved.read_text().startswith("c2sp.org/tlog-proof@v1\nindex 0\n")
    offline = run_sluis(officer, "audit", "check-receipt", str(saved))
    assert offline.returncode == 0 and offline.stdout.startswith("receipt ok: entry 0")
    entry = saved.with_name(saved.name + ".entry")
    entry.write_bytes(entry.read_bytes().replace(b'"seq":0', b'"seq":1'))
    forged = run_sluis(officer, "audit", "check-receipt", str(saved))
    assert forged.returncode == 1
    assert forged.stderr == ("sluis: the inclusion proof of entry 0 does not verify against the "
                             "receipt's checkpoint\n")


def _export(run_sluis: SluisRunner, env: dict[str, str], path: Path) -> list[dict[str, Any]]:
    result = run_sluis(env, "audit", "export", str(path))
    assert result.returncode == 0, result.stderr
    assert "verified: every leaf hash, the root and the signature match" in result.stdout
    return [json.loads(line) for line in path.read_text().splitlines()]


def _write(path: Path, lines: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_export_is_verified_offline_and_a_change_is_found(
    run_sluis: SluisRunner, officer: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "audit.jsonl"
    lines = _export(run_sluis, officer, path)
    again = run_sluis(officer, "audit", "verify", "--file", str(path), "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["ok"]
    # An edited entry whose leaf hash was left alone is named.
    entry = json.loads(base64.b64decode(lines[2]["entry_b64"]))
    entry["outcome"] = "refused"
    edited = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()
    _write(path, [*lines[:2], {**lines[2], "entry_b64": base64.b64encode(edited).decode()},
                  *lines[3:]])
    result = run_sluis(officer, "audit", "verify", "--file", str(path))
    assert result.returncode == 1
    assert "first bad entry: seq 2" in result.stdout and "VERIFICATION FAILED" in result.stdout
    # With its leaf hash fixed up too, the root gives it away.
    leaf = base64.b64encode(hashlib.sha256(b"\x00" + edited).digest()).decode()
    _write(path, [*lines[:2], {**lines[2], "entry_b64": base64.b64encode(edited).decode(),
                               "leaf_hash": leaf}, *lines[3:]])
    fixed = run_sluis(officer, "audit", "verify", "--file", str(path))
    assert fixed.returncode == 1 and "is not the checkpoint's root" in fixed.stdout
    # A dropped entry is named too.
    _write(path, [*lines[:4], *lines[5:]])
    dropped = json.loads(run_sluis(officer, "audit", "verify", "--file", str(path),
                                   "--json").stdout)
    assert not dropped["ok"] and dropped["first_bad_seq"] == 4


def test_an_export_checked_against_another_key_fails(
    run_sluis: SluisRunner, officer: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "audit.jsonl"
    _export(run_sluis, officer, path)
    stranger = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
    result = run_sluis(officer, "audit", "verify", "--file", str(path), "--key", stranger)
    assert result.returncode == 1
    assert "checkpoint: the note is not signed by a trusted key" in result.stdout


def test_a_pinned_checkpoint_key_is_enforced(
    run_sluis: SluisRunner, officer: dict[str, str]
) -> None:
    pinned = {**officer, "SLUIS_CHECKPOINT_KEY":
              "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"}
    refused = run_sluis(pinned, "audit", "checkpoint")
    assert refused.returncode == 1
    assert refused.stderr.startswith("sluis: the note is not signed by a trusted key")
    assert run_sluis(officer, "audit", "checkpoint").returncode == 0  # remembers the key
    real = run_sluis(officer, "audit", "remembered", "--json")
    (verifier,) = json.loads(real.stdout)["checkpoint_keys"]
    good = run_sluis({**officer, "SLUIS_CHECKPOINT_KEY": verifier}, "audit", "checkpoint")
    assert good.returncode == 0 and "signature ok" in good.stdout


@pytest.mark.parametrize("tamper", ["larger", "fork", "rewritten"])
def test_a_log_contradicting_the_remembered_checkpoint_raises_the_alarm(
    run_sluis: SluisRunner, officer: dict[str, str], tamper: str
) -> None:
    assert run_sluis(officer, "audit", "verify").returncode == 0
    state = json.loads(state_file(officer).read_text())
    other_root = base64.b64encode(hashlib.sha256(b"another history").digest()).decode()
    if tamper == "larger":
        state = edit_state(officer, size=state["size"] + 1000)
        reason = "shows a smaller tree than a checkpoint already seen"
    elif tamper == "fork":
        state = edit_state(officer, root_hash=other_root)
        reason = "shows two roots for one size"
    else:  # a smaller remembered tree whose root the broker's log does not extend
        state = edit_state(officer, size=state["size"] - 1, root_hash=other_root)
        reason = "is not an extension of a checkpoint already seen"
    result = run_sluis(officer, "audit", "verify")
    assert result.returncode == 1
    assert alarm_lines(result.stderr) == [f"sluis: ALARM: the audit log of {officer['SLUIS_URL']} "
                                          f"{reason}."]
    assert f"saw a signed checkpoint of {state['size']} entries" in result.stderr
    assert "VERIFICATION FAILED" in result.stdout
    kept = json.loads(state_file(officer).read_text())
    assert (kept["size"], kept["root_hash"]) == (state["size"], state["root_hash"])
    assert kept["conflicts"][-1]["reason"] == reason
    # Every command that sees a checkpoint raises it too.
    receipt = run_sluis(officer, "audit", "receipt", "0")
    assert receipt.returncode == 1 and alarm_lines(receipt.stderr)
    remembered = run_sluis(officer, "audit", "remembered")
    assert "CONFLICT" in remembered.stdout and reason in remembered.stdout


def test_an_export_the_remembered_checkpoint_does_not_extend_raises_the_alarm(
    run_sluis: SluisRunner, officer: dict[str, str], tmp_path: Path
) -> None:
    """A remembered checkpoint five entries past the export, with the export's root: the
    broker's consistency proof from the export to it cannot verify. (An export merely older
    than the remembered checkpoint is no alarm: tests/e2e/test_sluis_tour.py.)"""
    path = tmp_path / "audit.jsonl"
    _export(run_sluis, officer, path)
    for _ in range(6):  # the live log reaches the remembered size (audit reads are audited)
        assert run_sluis(officer, "audit", "entries", "--limit", "1").returncode == 0
    state = json.loads(state_file(officer).read_text())
    edit_state(officer, size=state["size"] + 5)
    result = run_sluis(officer, "audit", "verify", "--file", str(path))
    assert result.returncode == 1 and alarm_lines(result.stderr)


def test_a_remembered_checkpoint_open_to_others_is_refused(
    run_sluis: SluisRunner, officer: dict[str, str]
) -> None:
    assert run_sluis(officer, "audit", "verify").returncode == 0
    state_file(officer).chmod(0o644)
    result = run_sluis(officer, "audit", "verify")
    assert result.returncode == 1 and "readable by others" in result.stderr


def test_a_fresh_broker_at_the_same_address_is_caught(
    run_sluis: SluisRunner, tmp_path: Path
) -> None:
    """The broker's database is replaced by a fresh one (and a new key) behind the same URL."""
    with served_broker_in(tmp_path / "first") as first:
        env = client_env(tmp_path / "officer", first.url, first.client("Functionaris"),
                         acting_user=None)
        for _ in range(3):
            assert run_sluis(env, "audit", "entries", "--limit", "1").returncode == 0
        assert run_sluis(env, "audit", "export", str(tmp_path / "a.jsonl")).returncode == 0
        seen = json.loads(state_file(env).read_text())
    with served_broker_in(tmp_path / "second", port=first.port, seed=False) as second:
        officer = json.loads(run_broker(second.env, "clients", "create", "--org", "riec",
                                        "--name", "FG", "--kind", "personal", "--roles",
                                        "privacy_officer", "--json").stdout)
        env.update(SLUIS_CLIENT_ID=officer["client_id"],
                   SLUIS_CLIENT_SECRET=officer["client_secret"])
        result = run_sluis(env, "audit", "verify")
    assert result.returncode == 1
    assert "the broker's checkpoint key changed" in result.stderr
    assert alarm_lines(result.stderr) == [f"sluis: ALARM: the audit log of {first.url} shows a "
                                          "smaller tree than a checkpoint already seen."]
    assert json.loads(state_file(env).read_text())["size"] == seen["size"]
