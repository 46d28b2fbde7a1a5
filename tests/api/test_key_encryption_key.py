"""One key ring for all nodes, and erasure that holds in backups (docs/operations.md,
"Keys"): a node needs the database and a copy of the key-encryption key file; a KEK
rotation keeps nodes with the old file working until the old KEK is retired; a copy of
the database taken before an erasure cannot read the erased signal once the KEK in force
then is retired, not even with the live database's ring beside it."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from broker.auth.actors import system_actor
from broker.db import make_engine
from broker.errors import StartupError
from broker.models import signal
from broker.runtime import Runtime, open_runtime
from broker.sealing import KeyVersionMissing, Unreadable, unseal
from broker.services import keyring, rotation
from broker.settings import Settings
from tests.api.disclosure_kit import drugs

Headers = Callable[..., dict[str, str]]


def second_node(settings: Settings, tmp_path: Path, kek: Path | None) -> Settings:
    """Another node's settings: its own (empty) key folder, and `kek` as its KEK file."""
    folder = tmp_path / "node-b"
    folder.mkdir(mode=0o700, exist_ok=True)
    copied = None
    if kek is not None:
        copied = folder / "kek"
        shutil.copyfile(kek, copied)
        copied.chmod(0o600)
    return settings.model_copy(update={"key_dir": folder / "keys", "kek_file": copied})


def test_a_second_node_needs_the_database_and_a_copy_of_the_kek_file(
    settings: Settings, runtime: Runtime, tmp_path: Path
) -> None:
    with pytest.raises(StartupError, match="key-encryption key file"):
        open_runtime(second_node(settings, tmp_path, None))
    other = open_runtime(second_node(settings, tmp_path, keyring.kek_path(settings)))
    try:
        for name in ("master", "pseudonym", "blind_index", "audit_tag"):
            assert other.keys.active(name).material == runtime.keys.active(name).material
        assert other.keys.active_signing.kid == runtime.keys.active_signing.kid
        # A rotation on one node is the other's at its next look.
        rotation.rotate(runtime, "pseudonym", actor=system_actor("test"), request_id=None)
        assert rotation.follow_keys(other) is True
        assert other.keys.active("pseudonym").material == runtime.keys.active("pseudonym").material
    finally:
        other.close()


def test_a_kek_rotation_keeps_the_old_file_working_until_it_is_retired(
    settings: Settings, runtime: Runtime, tmp_path: Path
) -> None:
    old_file = tmp_path / "old-kek"
    shutil.copyfile(keyring.kek_path(settings), old_file)
    old_file.chmod(0o600)
    rotation.rotate_kek(runtime, actor=system_actor("test"))
    assert len(keyring.read_keks(keyring.kek_path(settings))) == 2
    stale = open_runtime(second_node(settings, tmp_path, old_file))
    stale.close()  # the old KEK still reads every version until it is retired
    figures = rotation.retire_kek(runtime, actor=system_actor("test"))
    assert figures["keks_retired"] == 1 and figures["master_versions_destroyed"] == 1
    assert len(keyring.read_keks(keyring.kek_path(settings))) == 1
    with pytest.raises(StartupError):
        open_runtime(second_node(settings, tmp_path, old_file))
    current = open_runtime(second_node(settings, tmp_path, keyring.kek_path(settings)))
    current.close()


def _row(url: str, signal_id: str) -> Any:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(signal).where(signal.c.id == signal_id)).one()
    finally:
        engine.dispose()


def _backup(url: str, target: Path) -> str:
    source = sqlite3.connect(url.removeprefix("sqlite:///"))
    copy = sqlite3.connect(target)
    try:
        source.backup(copy)
    finally:
        copy.close()
        source.close()
    return f"sqlite:///{target}"


def test_a_backup_before_an_erasure_cannot_read_the_signal_once_its_kek_is_retired(
    api: TestClient, runtime: Runtime, settings: Settings, tmp_path: Path,
    auth_headers: Headers,
) -> None:
    if not settings.database_url.startswith("sqlite"):
        pytest.skip("the backup is a copy of the SQLite file; the keys work alike on both")
    politie = auth_headers("politie", ["contributor"])
    kept = api.post("/v1/signals", headers=politie, json=drugs(number=1)).json()["id"]
    erased = api.post("/v1/signals", headers=politie, json=drugs(number=2)).json()["id"]
    backup = _backup(settings.database_url, tmp_path / "backup.db")
    assert api.delete(f"/v1/signals/{erased}", headers=politie).status_code == 204
    row = _row(backup, erased)
    keks = keyring.kek_path(settings)
    # Before the routine, the backup and the KEK file read the erased signal.
    ring_then = keyring.load(make_engine(backup), keyring.read_keks(keks)).ring
    assert b"handel" in unseal(ring_then, row.key_version, row.wrapped_key, row.ciphertext,
                               erased.encode())
    rotation.rotate_kek(runtime, actor=system_actor("test"))
    rotation.retire_kek(runtime, actor=system_actor("test"))
    # After it: the backup's ring does not open under the KEK file in force ...
    with pytest.raises(StartupError):
        keyring.load(make_engine(backup), keyring.read_keks(keks))
    # ... and the live ring no longer holds the master version the backup needs.
    with pytest.raises((KeyVersionMissing, Unreadable)):
        unseal(runtime.keys, row.key_version, row.wrapped_key, row.ciphertext, erased.encode())
    # The live signals were wrapped anew and read as before.
    assert api.get(f"/v1/signals/{kept}", headers=politie).status_code == 200
    assert _row(settings.database_url, kept).key_version == 2
    assert runtime.keys.active("master").version == 2


def test_a_version_only_an_old_kek_wraps_stops_the_retirement(
    settings: Settings, runtime: Runtime, tmp_path: Path
) -> None:
    """A node still holding only the old KEK file rotated a key after the KEK rotation:
    retiring the old KEK would lose that version, so nothing is retired."""
    old_file = tmp_path / "old-kek"
    shutil.copyfile(keyring.kek_path(settings), old_file)
    old_file.chmod(0o600)
    rotation.rotate_kek(runtime, actor=system_actor("test"))
    stale = open_runtime(second_node(settings, tmp_path, old_file))
    try:
        rotation.rotate(stale, "pseudonym", actor=system_actor("test"), request_id=None)
    finally:
        stale.close()
    with pytest.raises(ValueError, match=r"pseudonym\.v2"):
        rotation.retire_kek(runtime, actor=system_actor("test"))
    assert len(keyring.read_keks(keyring.kek_path(settings))) == 2  # nothing retired
