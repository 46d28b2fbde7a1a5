"""Envelope encryption and blind indexing of personal data at rest.

Each sealed record has its own AES-256-GCM data key, wrapped by the master
key. Destroying the wrapped key (erasure) makes the record unreadable in the
live database at once. A backup taken before still holds the wrapped data key
and the master key version, itself wrapped under the key-encryption key in
force then: the backup stops being readable once that key-encryption key is
retired, and with it the master versions only it could read (docs/operations.md,
"Keys"). Identifiers are findable only through keyed HMAC tokens, never
stored in clear.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from broker.errors import ServiceUnavailable
from broker.keys import KeyRing, SymmetricKey

_log = logging.getLogger("broker.keys")

_NONCE = 12
_WRAP_CONTEXT = b"sluis/data-key/v1\x00"


@dataclass(frozen=True, slots=True)
class Sealed:
    key_version: int
    wrapped_key: bytes
    ciphertext: bytes


class Unreadable(Exception):
    """A sealed record whose key was destroyed, or whose bytes do not authenticate."""


class KeyVersionMissing(ServiceUnavailable):
    """A sealed record under a master key version this node does not hold (its key-
    encryption key file is not current): a loud 503, never a record treated as erased."""

    code = "key_unavailable"
    title = "Key unavailable"


def seal(master: SymmetricKey, plaintext: bytes, aad: bytes) -> Sealed:
    """Encrypt under a fresh data key bound to `aad` (the record's id)."""
    data_key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(_NONCE)
    ciphertext = nonce + AESGCM(data_key).encrypt(nonce, plaintext, aad)
    wrap_nonce = os.urandom(_NONCE)
    wrapped = wrap_nonce + AESGCM(master.material).encrypt(
        wrap_nonce, data_key, _WRAP_CONTEXT + aad
    )
    return Sealed(master.version, wrapped, ciphertext)


def unseal(
    keys: KeyRing, key_version: int, wrapped_key: bytes | None, ciphertext: bytes | None, aad: bytes
) -> bytes:
    """Decrypt a sealed record; `Unreadable` when its key is gone or anything fails to verify."""
    if wrapped_key is None or ciphertext is None:
        raise Unreadable("the record's data key was destroyed")
    try:
        master = keys.version("master", key_version)
    except KeyError:
        _log.error("a sealed record's master key version is not in this node's key ring",
                   extra={"event": "key_unavailable", "key_version": key_version})
        raise KeyVersionMissing(
            "A key this record needs is not available on this node; the operator has been "
            "told.") from None
    try:
        data_key = AESGCM(master.material).decrypt(
            wrapped_key[:_NONCE], wrapped_key[_NONCE:], _WRAP_CONTEXT + aad
        )
        return AESGCM(data_key).decrypt(ciphertext[:_NONCE], ciphertext[_NONCE:], aad)
    except (InvalidTag, ValueError) as exc:
        raise Unreadable("the record does not decrypt") from exc


def rewrap(keys: KeyRing, key_version: int, wrapped_key: bytes, aad: bytes,
           master: SymmetricKey) -> bytes:
    """The record's data key wrapped under `master` instead (its ciphertext unchanged);
    `Unreadable` when the old wrapping does not open."""
    try:
        old = keys.version("master", key_version)
        data_key = AESGCM(old.material).decrypt(wrapped_key[:_NONCE], wrapped_key[_NONCE:],
                                                _WRAP_CONTEXT + aad)
    except (KeyError, InvalidTag, ValueError) as exc:
        raise Unreadable("the record's data key does not open") from exc
    nonce = os.urandom(_NONCE)
    return nonce + AESGCM(master.material).encrypt(nonce, data_key, _WRAP_CONTEXT + aad)


def blind_token(index_key: SymmetricKey, kind: str, normalised: str) -> bytes:
    """The keyed blind-index token of one normalised identifier of a given kind."""
    message = kind.encode() + b"\x1f" + normalised.encode()
    return hmac.new(index_key.material, message, hashlib.sha256).digest()
