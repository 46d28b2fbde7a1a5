"""A verified access token is remembered, but never beyond what a fresh check would allow.

`verify_access_token` skips the signature check for a token it verified before under the
same key ring, audience and issuer; these tests hold the remembered path to the answers
of the full one: expiry, another audience or issuer, and a reloaded key ring.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.auth import tokens
from broker.errors import Unauthorized
from broker.keys import KeyRing, create_key_ring, load_key_ring, rotate_key
from broker.settings import Settings


@pytest.fixture
def ring_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "keys"
    create_key_ring(directory)
    return directory


@pytest.fixture
def base(tmp_path: Path, ring_dir: Path) -> Settings:
    return Settings(database_url=f"sqlite:///{tmp_path / 'b.db'}", key_dir=ring_dir)


def _issue(keys: KeyRing, settings: Settings, now: int) -> str:
    return tokens.issue_access_token(keys, settings, client_id="cl_reuse", org="politie",
                                     roles=frozenset({"requester"}), now=now).token


def test_a_remembered_token_still_expires(ring_dir: Path, base: Settings) -> None:
    keys = load_key_ring(ring_dir)
    now = 1_900_000_000
    token = _issue(keys, base, now)
    assert tokens.verify_access_token(token, keys, base, now=now).client_id == "cl_reuse"
    assert tokens.verify_access_token(token, keys, base, now=now + 60).client_id == "cl_reuse"
    late = now + base.access_token_ttl_seconds + base.token_leeway_seconds + 1
    with pytest.raises(Unauthorized):
        tokens.verify_access_token(token, keys, base, now=late)


def test_a_remembered_token_is_not_valid_for_another_audience_or_issuer(
    ring_dir: Path, base: Settings
) -> None:
    keys = load_key_ring(ring_dir)
    now = 1_900_000_000
    token = _issue(keys, base, now)
    tokens.verify_access_token(token, keys, base, now=now)
    for other in (base.model_copy(update={"audience": "elsewhere"}),
                  base.model_copy(update={"issuer": "https://elsewhere.example"})):
        with pytest.raises(Unauthorized):
            tokens.verify_access_token(token, keys, other, now=now)


def test_a_reloaded_key_ring_checks_the_token_afresh(ring_dir: Path, base: Settings) -> None:
    keys = load_key_ring(ring_dir)
    now = 1_900_000_000
    token = _issue(keys, base, now)
    tokens.verify_access_token(token, keys, base, now=now)
    # Two rotations: the ring keeps the newest two signing keys, so the token's key is gone.
    rotate_key(ring_dir, "signing")
    rotate_key(ring_dir, "signing")
    with pytest.raises(Unauthorized):
        tokens.verify_access_token(token, load_key_ring(ring_dir), base, now=now)
