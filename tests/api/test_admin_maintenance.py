"""Policy reload, pack history and key rotation through the admin API."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import text

from broker.runtime import Runtime, open_runtime
from broker.services import packs
from broker.settings import Settings
from tests.conftest import DEMO_PACK

Headers = Callable[..., dict[str, str]]


def _entries(runtime: Runtime, action: str) -> int:
    with runtime.engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM audit_entry WHERE action = :a"), {"a": action}
            ).scalar_one()
        )


def _pack_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "pack"
    shutil.copytree(DEMO_PACK, folder)
    return folder


def test_startup_records_the_pack_once(settings: Settings, runtime: Runtime) -> None:
    assert _entries(runtime, "policy_loaded") == 1
    again = open_runtime(settings)
    try:
        assert _entries(again, "policy_loaded") == 1
    finally:
        again.close()


def test_reload_swaps_and_audits(
    api: TestClient, auth_headers: Headers, runtime: Runtime, tmp_path: Path
) -> None:
    folder = _pack_copy(tmp_path)
    object.__setattr__(runtime.settings, "policy_dir", folder)
    pack_file = folder / "pack.yaml"
    pack_file.write_text(pack_file.read_text().replace('version: "', 'version: "reloaded-', 1))
    admin = auth_headers("riec", ["admin"], kind="personal", acting_user=None)
    old_hash = runtime.policy.pack.hash
    answer = api.post("/v1/admin/policy/reload", headers=admin)
    assert answer.status_code == 200, answer.text
    assert answer.json()["previous_hash"] == old_hash
    assert answer.json()["hash"] == runtime.policy.pack.hash != old_hash
    assert _entries(runtime, "policy_loaded") == 2
    with runtime.engine.connect() as conn:
        stored = packs.stored_pack(conn, old_hash)
    assert stored is not None and stored.hash == old_hash


def test_a_broken_pack_is_refused_and_the_live_one_stays(
    api: TestClient, auth_headers: Headers, runtime: Runtime, tmp_path: Path
) -> None:
    folder = _pack_copy(tmp_path)
    object.__setattr__(runtime.settings, "policy_dir", folder)
    (folder / "rules.yaml").write_text("rules: [unclosed\n")
    admin = auth_headers("riec", ["admin"], kind="personal", acting_user=None)
    live = runtime.policy
    answer = api.post("/v1/admin/policy/reload", headers=admin)
    assert answer.status_code == 422
    assert any(error["loc"][0] == "rules.yaml" for error in answer.json()["errors"])
    assert runtime.policy is live
    assert _entries(runtime, "policy_loaded") == 1


def test_other_processes_follow_the_newest_pack(
    settings: Settings, runtime: Runtime, tmp_path: Path
) -> None:
    folder = _pack_copy(tmp_path)
    pack_file = folder / "pack.yaml"
    pack_file.write_text(pack_file.read_text().replace('version: "', 'version: "next-', 1))
    other = open_runtime(settings)
    try:
        packs.reload_from_dir(runtime, folder, actor=packs.system_actor("test"))
        assert other.policy.pack.hash != runtime.policy.pack.hash
        assert packs.follow_once(other) is True
        assert other.policy.pack.hash == runtime.policy.pack.hash
        assert packs.follow_once(other) is False
    finally:
        other.close()


def test_key_rotation_keeps_old_tokens_and_payloads(
    api: TestClient, auth_headers: Headers, runtime: Runtime
) -> None:
    from tests.api.test_signals import energy_signal

    contributor = auth_headers("netbeheerder", ["contributor"])
    created = api.post("/v1/signals", json=energy_signal(), headers=contributor).json()
    admin = auth_headers("riec", ["admin"], kind="personal", acting_user=None)
    for key in ("signing", "master", "pseudonym", "checkpoint"):
        answer = api.post("/v1/admin/keys/rotate", json={"key": key}, headers=admin)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"key": key, "version": 2}
    assert _entries(runtime, "key_rotated") == 4
    # a token signed before the rotation still works; a payload sealed before still opens
    assert api.get(f"/v1/signals/{created['id']}", headers=contributor).status_code == 200
    fresh = auth_headers("netbeheerder", ["contributor"])
    assert api.post("/v1/signals", json=energy_signal(), headers=fresh).status_code == 201
    assert (
        api.post("/v1/admin/keys/rotate", json={"key": "blind_index"}, headers=admin).status_code
        == 422
    )
    assert (
        api.get(
            "/v1/audit/verify",
            headers=auth_headers("riec", ["privacy_officer"], kind="personal", acting_user=None),
        ).json()["ok"]
        is True
    )


def test_retention_shreds_expired_signals(
    api: TestClient, auth_headers: Headers, runtime: Runtime
) -> None:
    from datetime import timedelta

    from broker.auth.actors import system_actor
    from broker.clock import utcnow
    from broker.services import retention
    from tests.api.test_signals import energy_signal

    contributor = auth_headers("netbeheerder", ["contributor"])
    created = api.post("/v1/signals", json=energy_signal(), headers=contributor).json()
    assert retention.run_retention(runtime, system_actor("test")).erased == 0
    later = utcnow() + timedelta(days=400)
    assert retention.run_retention(runtime, system_actor("test"), now=later).erased == 1
    assert api.get(f"/v1/signals/{created['id']}", headers=contributor).status_code == 404
    assert _entries(runtime, "retention_run") == 2
