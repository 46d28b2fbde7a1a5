"""The key ring: owner-only, refused when missing, short or exposed; rotation adds versions."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from broker.errors import StartupError
from broker.keys import ASYMMETRIC, SYMMETRIC, create_key_ring, load_key_ring, rotate_key


def test_init_creates_every_key_owner_only(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    created = create_key_ring(directory)
    assert sorted(created) == sorted(SYMMETRIC + ASYMMETRIC)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for path in directory.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
    ring = load_key_ring(directory)
    assert all(len(ring.active(name).material) == 32 for name in SYMMETRIC)
    assert ring.describe() == {name: [1] for name in SYMMETRIC + ASYMMETRIC}


def test_init_twice_keeps_existing_keys(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    create_key_ring(directory)
    first = load_key_ring(directory).active("master").material
    assert create_key_ring(directory) == []
    assert load_key_ring(directory).active("master").material == first


def test_missing_ring_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(StartupError, match="broker init"):
        load_key_ring(tmp_path / "absent")


@pytest.mark.parametrize("name", SYMMETRIC + ASYMMETRIC)
def test_missing_key_refuses_to_start(tmp_path: Path, name: str) -> None:
    directory = tmp_path / "keys"
    create_key_ring(directory)
    next(directory.glob(f"{name}.v1.*")).unlink()
    with pytest.raises(StartupError, match=name):
        load_key_ring(directory)


@pytest.mark.parametrize("content", [b"", base64.b64encode(b"x" * 16), b"not base64 !!"])
def test_short_or_empty_key_refuses_to_start(tmp_path: Path, content: bytes) -> None:
    directory = tmp_path / "keys"
    create_key_ring(directory)
    path = directory / "pseudonym.v1.key"
    path.write_bytes(content)
    with pytest.raises(StartupError, match=r"pseudonym\.v1\.key"):
        load_key_ring(directory)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_exposed_key_refuses_to_start(tmp_path: Path, mode: int) -> None:
    directory = tmp_path / "keys"
    create_key_ring(directory)
    os.chmod(directory / "signing.v1.pem", mode)
    with pytest.raises(StartupError, match="readable by others"):
        load_key_ring(directory)


def test_garbage_pem_refuses_to_start(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    create_key_ring(directory)
    (directory / "checkpoint.v1.pem").write_bytes(b"-----BEGIN PRIVATE KEY-----\nAAAA\n")
    with pytest.raises(StartupError, match="checkpoint"):
        load_key_ring(directory)


def test_rotation_adds_a_version_and_keeps_the_old(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    create_key_ring(directory)
    before = load_key_ring(directory)
    assert rotate_key(directory, "signing") == 2
    assert rotate_key(directory, "master") == 2
    after = load_key_ring(directory)
    assert after.active("master").version == 2
    assert after.version("master", 1).material == before.active("master").material
    assert after.active_signing.kid != before.active_signing.kid
    # tokens signed with the previous key stay verifiable until they expire
    assert set(after.verification_keys()) == {before.active_signing.kid, after.active_signing.kid}
    assert rotate_key(directory, "signing") == 3
    assert before.active_signing.kid not in load_key_ring(directory).verification_keys()


def test_blind_index_cannot_be_rotated(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    create_key_ring(directory)
    with pytest.raises(ValueError, match="cannot be rotated"):
        rotate_key(directory, "blind_index")


def test_jwks_has_public_parts_only(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    create_key_ring(directory)
    jwks = load_key_ring(directory).jwks()
    (key,) = jwks["keys"]
    assert set(key) == {"kty", "crv", "x", "y", "kid", "use", "alg"}
    assert key["alg"] == "ES256"
