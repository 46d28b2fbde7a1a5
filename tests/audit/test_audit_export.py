"""The export: verifiable offline with only the checkpoint key, and every byte counts."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.audit.export import export_lines, verify_export_file
from broker.audit.reads import verifier_key_text
from broker.cli import main
from broker.core.checkpoint import Verifier, parse_verifier_key
from tests.audit.audit_kit import ORIGIN, LogEnv

MakeLog = Callable[..., LogEnv]


def exported(env: LogEnv) -> bytes:
    return "".join(export_lines(env.engine, env.signer)).encode("ascii")


def test_an_export_verifies_offline_with_only_the_checkpoint_key(make_log: MakeLog) -> None:
    env = make_log()
    env.fill(13)
    data = exported(env)
    lines = data.splitlines(keepends=True)
    assert len(lines) == 14
    trailer = json.loads(lines[-1])
    assert set(trailer) == {"origin", "size", "root_hash", "key_id", "signature", "note"}
    assert trailer["size"] == 13
    verifier = parse_verifier_key(verifier_key_text(env.signer))  # all a partner needs
    report = verify_export_file(lines, verifier)
    assert report.ok, report.problems
    assert report.size == 13
    stranger = Verifier.for_private_key(ORIGIN, Ed25519PrivateKey.generate())
    assert not verify_export_file(lines, stranger).ok


def test_an_export_signs_a_checkpoint_covering_it(make_log: MakeLog) -> None:
    env = make_log()
    env.fill(3)
    env.signer.sign()
    env.fill(2, start=3)
    trailer = json.loads(exported(env).splitlines()[-1])
    assert trailer["size"] == 5


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, str]:
    """One export of a small SQLite log, and its verifier key string."""
    from broker.db import make_engine
    from broker.keys import create_key_ring, load_key_ring
    from broker.migrate import upgrade
    from tests.audit.audit_kit import make_env

    directory = tmp_path_factory.mktemp("export")
    create_key_ring(directory / "keys")
    url = f"sqlite:///{directory / 'log.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    env = make_env(url, load_key_ring(directory / "keys"), directory / "keys", directory)
    try:
        env.fill(6)
        return exported(env), verifier_key_text(env.signer)
    finally:
        env.engine.dispose()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(position=st.integers(min_value=0), change=st.integers(min_value=1, max_value=255))
def test_changing_any_byte_of_an_export_fails_verification(
    sample: tuple[bytes, str], position: int, change: int
) -> None:
    data, key = sample
    at = position % len(data)
    tampered = data[:at] + bytes([data[at] ^ change]) + data[at + 1 :]
    report = verify_export_file(tampered.splitlines(keepends=True), parse_verifier_key(key))
    assert not report.ok


def test_dropping_or_adding_a_line_fails_verification(sample: tuple[bytes, str]) -> None:
    data, key = sample
    lines = data.splitlines(keepends=True)
    verifier = parse_verifier_key(key)
    for index in range(len(lines)):
        assert not verify_export_file(lines[:index] + lines[index + 1 :], verifier).ok
    assert not verify_export_file([*lines[:2], lines[1], *lines[2:]], verifier).ok


def test_the_command_verifies_an_export_file(
    sample: tuple[bytes, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, key = sample
    good, bad = tmp_path / "good.jsonl", tmp_path / "bad.jsonl"
    good.write_bytes(data)
    bad.write_bytes(data.replace(b'"seq":2', b'"seq":3', 1))
    key_file = tmp_path / "key.txt"
    key_file.write_text(key + "\n")
    assert main(["audit", "verify", str(good), "--key", key]) == 0
    assert "export: OK, 6 entries" in capsys.readouterr().out
    assert main(["audit", "verify", str(bad), "--key", f"@{key_file}", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    assert report["first_bad_seq"] == 2
    assert main(["audit", "verify", str(good), "--key", "not-a-key"]) == 2
    assert main(["audit", "verify", str(tmp_path / "missing.jsonl"), "--key", key]) == 2
