"""Envelope encryption and blind index tokens."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.keys import KeyRing, create_key_ring, load_key_ring, rotate_key
from broker.sealing import Unreadable, blind_token, seal, unseal


@pytest.fixture(scope="module")
def ring(tmp_path_factory: pytest.TempPathFactory) -> KeyRing:
    directory = tmp_path_factory.mktemp("ring") / "keys"
    create_key_ring(directory)
    return load_key_ring(directory)


@settings(max_examples=50, deadline=None)
@given(data=st.binary(max_size=2000), aad=st.binary(min_size=1, max_size=40))
def test_seal_round_trips(ring: KeyRing, data: bytes, aad: bytes) -> None:
    sealed = seal(ring.active("master"), data, aad)
    assert len(data) < 8 or data not in sealed.ciphertext
    assert unseal(ring, sealed.key_version, sealed.wrapped_key, sealed.ciphertext, aad) == data


def test_destroyed_key_is_unreadable(ring: KeyRing) -> None:
    sealed = seal(ring.active("master"), b"payload", b"sig_1")
    with pytest.raises(Unreadable):
        unseal(ring, sealed.key_version, None, sealed.ciphertext, b"sig_1")


def test_ciphertext_is_bound_to_its_record(ring: KeyRing) -> None:
    sealed = seal(ring.active("master"), b"payload", b"sig_1")
    with pytest.raises(Unreadable):
        unseal(ring, sealed.key_version, sealed.wrapped_key, sealed.ciphertext, b"sig_2")


def test_flipped_byte_is_unreadable(ring: KeyRing) -> None:
    sealed = seal(ring.active("master"), b"payload", b"sig_1")
    broken = bytes([sealed.ciphertext[0] ^ 1]) + sealed.ciphertext[1:]
    with pytest.raises(Unreadable):
        unseal(ring, sealed.key_version, sealed.wrapped_key, broken, b"sig_1")


def test_old_master_version_still_opens(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    create_key_ring(directory)
    old = load_key_ring(directory)
    sealed = seal(old.active("master"), b"payload", b"id")
    rotate_key(directory, "master")
    new = load_key_ring(directory)
    assert new.active("master").version == 2
    assert (
        unseal(new, sealed.key_version, sealed.wrapped_key, sealed.ciphertext, b"id") == b"payload"
    )


def test_blind_tokens_are_keyed_and_kind_separated(ring: KeyRing, tmp_path: Path) -> None:
    key = ring.active("blind_index")
    token = blind_token(key, "bsn", "111222333")
    assert len(token) == 32
    assert token == blind_token(key, "bsn", "111222333")
    assert token != blind_token(key, "kvk", "111222333")
    other_dir = tmp_path / "other"
    create_key_ring(other_dir)
    assert token != blind_token(load_key_ring(other_dir).active("blind_index"), "bsn", "111222333")
