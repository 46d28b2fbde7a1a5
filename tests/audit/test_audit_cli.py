"""`broker audit verify` (live) and `broker audit checkpoint`, with settings from the env."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from broker.audit.signer import STATE_FILE
from broker.cli import main
from broker.core.checkpoint import open_checkpoint
from tests.audit.audit_kit import ORIGIN, LogEnv

MakeLog = Callable[..., LogEnv]


@pytest.fixture
def env(make_log: MakeLog, key_dir: Path, monkeypatch: pytest.MonkeyPatch) -> LogEnv:
    made = make_log(state="keys")  # the default state file: <key_dir>/checkpoint-signer.json
    assert made.signer.state_path == key_dir / STATE_FILE
    monkeypatch.setenv("BROKER_DATABASE_URL", made.url)
    monkeypatch.setenv("BROKER_KEY_DIR", str(key_dir))
    monkeypatch.setenv("BROKER_AUDIT_ORIGIN", ORIGIN)
    monkeypatch.setenv("BROKER_CHECKPOINT_KEY_NAME", ORIGIN)
    made.fill(5)
    return made


def test_checkpoint_signs_now_and_verify_checks_the_live_log(
    env: LogEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "checkpoint"]) == 0
    note = capsys.readouterr().out
    assert open_checkpoint(note, env.signer.verifier(), ORIGIN).size == 5
    assert main(["audit", "verify"]) == 0
    assert "audit log: OK, 5 entries" in capsys.readouterr().out
    env.tamper(("DELETE FROM audit_entry WHERE seq IN (2, 4)", {}))
    assert main(["audit", "verify", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert (report["ok"], report["first_bad_seq"]) == (False, 2)
    assert main(["audit", "checkpoint"]) == 1  # a log shorter than one signed is not signed
    assert "rolled back or truncated" in capsys.readouterr().err


def test_usage_errors_exit_2(env: LogEnv, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "verify", "--key", "x"]) == 2
    with pytest.raises(SystemExit) as exited:
        main(["audit", "verify", "a", "b"])
    assert exited.value.code == 2
