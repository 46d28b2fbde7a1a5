"""The database's pack is the live pack (docs/operations.md "One live pack"): a process
opened over a database that has one serves it, whatever its own policy folder holds, and
records nothing; only an explicit load changes it, naming the right previous pack."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select

from broker.auth.actors import system_actor
from broker.models import policy_load
from broker.runtime import open_runtime
from broker.services import packs
from broker.settings import Settings
from tests.conftest import DEMO_PACK


def other_pack(tmp_path: Path) -> Path:
    """The demo pack under another version: another hash."""
    folder = tmp_path / "other-pack"
    shutil.copytree(DEMO_PACK, folder)
    manifest = folder / "pack.yaml"
    manifest.write_text(manifest.read_text().replace('version: "2026.11.1"',
                                                     'version: "2099.1.1"'))
    return folder


def loads(settings: Settings) -> list[str]:
    runtime = open_runtime(settings)
    try:
        with runtime.engine.connect() as conn:
            return [row[0] for row in conn.execute(
                select(policy_load.c.hash).order_by(policy_load.c.id))]
    finally:
        runtime.close()


def test_a_process_with_another_folder_follows_the_database(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = open_runtime(settings)
    demo = first.policy.pack.hash
    first.close()
    elsewhere = settings.model_copy(update={"policy_dir": other_pack(tmp_path)})
    with caplog.at_level(logging.INFO, logger="broker.runtime"):
        second = open_runtime(elsewhere)
    try:
        assert second.policy.pack.hash == demo
        assert [r.__dict__.get("event") for r in caplog.records
                if r.name == "broker.runtime"] == ["policy_folder_differs"]
        with second.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(policy_load)).scalar() == 1
        # Only an explicit load changes the live pack, and it names the one it replaces.
        new, previous = packs.reload_from_dir(second, None, actor=system_actor("cli"))
        assert previous == demo and new != demo
    finally:
        second.close()
    # The demo folder's process now serves the loaded pack, and records nothing either.
    assert loads(settings) == [demo, new]
    runtime = open_runtime(settings)
    try:
        assert runtime.policy.pack.hash == new
    finally:
        runtime.close()


def test_a_folder_that_does_not_load_does_not_stop_a_process_that_follows_the_database(
    settings: Settings, tmp_path: Path
) -> None:
    open_runtime(settings).close()
    broken = other_pack(tmp_path)
    (broken / "rules.yaml").write_text("rules: [")
    runtime = open_runtime(settings.model_copy(update={"policy_dir": broken}))
    try:
        assert runtime.policy.pack.name == "ondermijning"
    finally:
        runtime.close()
