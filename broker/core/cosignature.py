"""Witness cosignatures: C2SP tlog-cosignature v1 with Ed25519 (signature type 0x04).

A cosignature is a note signature line on a checkpoint, ``— <name> base64(key id[4] ||
timestamp[8] || signature[64])``: the key id is the first four bytes of SHA-256(name ||
0x0A || 0x04 || public key), the timestamp the big-endian POSIX seconds of signing, and the
signature an Ed25519 signature of ``cosignature/v1\\ntime <timestamp>\\n`` followed by the
whole checkpoint body. Its meaning: as of that time, this is the largest tree of the origin
the cosigner has seen consistently grow.

Cosigner keys travel as signed-note verifier keys (vkeys) with type byte 0x04,
``name+hex8(key id)+base64(0x04 || public key)``; the witness keeps its private key as
``PRIVATE+KEY+name+hex8(key id)+base64(0x04 || seed)``, the Go `note` layout with the same
type byte. Since the signed message does not name the cosigner, one key serves one cosigner.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from broker.core.checkpoint import (
    EM_DASH,
    CheckpointInvalid,
    b64decode_strict,
    is_valid_key_name,
    key_id,
    key_material,
    public_key_bytes,
    require_name,
    signer_key,
    split_key,
    verifier_key,
)

COSIGNATURE_V1 = 0x04
"""The signed-note signature type byte of an Ed25519 cosignature/v1."""

HEADER = "cosignature/v1"
MAX_TIMESTAMP = 2**63 - 1
SIGNATURE_SIZE = 4 + 8 + 64


def _require_body(body: str) -> bytes:
    if not body.endswith("\n") or "\n\n" in body:
        raise CheckpointInvalid("a checkpoint body is non-empty lines, each ending in a newline")
    return body.encode("utf-8")


def _require_timestamp(timestamp: int) -> None:
    if isinstance(timestamp, bool) or not 0 <= timestamp <= MAX_TIMESTAMP:
        raise CheckpointInvalid("timestamp out of range")


def cosigner_key_id(name: str, public_key: bytes) -> bytes:
    """First 4 bytes of SHA-256(name || 0x0A || 0x04 || public key)."""
    return key_id(name, public_key, COSIGNATURE_V1)


def signed_message(body: str, timestamp: int) -> bytes:
    """What a cosignature signs: the header line, the time line, then the checkpoint body."""
    _require_timestamp(timestamp)
    return f"{HEADER}\ntime {timestamp}\n".encode("ascii") + _require_body(body)


@dataclass(frozen=True, slots=True)
class Cosignature:
    """One verified cosignature: who signed, with which key id, and when (POSIX seconds)."""

    name: str
    key_id: bytes
    timestamp: int
    signature: bytes

    def line(self) -> str:
        """The note signature line, newline included."""
        raw = self.key_id + struct.pack(">Q", self.timestamp) + self.signature
        return f"{EM_DASH} {self.name} {base64.b64encode(raw).decode('ascii')}\n"


@dataclass(frozen=True, slots=True)
class Cosigner:
    """A cosigner's public side: name, key id and raw Ed25519 public key."""

    name: str
    key_id: bytes
    public_key: bytes
    _key: Ed25519PublicKey = field(repr=False, compare=False)

    @classmethod
    def from_public_key(cls, name: str, public_key: bytes) -> Cosigner:
        require_name(name)
        if len(public_key) != 32:
            raise CheckpointInvalid("an Ed25519 public key is 32 bytes")
        key = Ed25519PublicKey.from_public_bytes(public_key)
        return cls(name, cosigner_key_id(name, public_key), public_key, key)

    def verify(self, body: str, cosignature: Cosignature) -> bool:
        """Does `cosignature` cosign the checkpoint `body` under this key?"""
        if (cosignature.name, cosignature.key_id) != (self.name, self.key_id):
            return False
        try:
            message = signed_message(body, cosignature.timestamp)
            self._key.verify(cosignature.signature, message)
        except (InvalidSignature, CheckpointInvalid):
            return False
        return True

    def __str__(self) -> str:
        return cosigner_vkey(self.name, self.public_key)


def cosigner_vkey(name: str, public_key: bytes) -> str:
    """The vkey ``name+hex8(key id)+base64(0x04 || public key)``."""
    return verifier_key(name, public_key, COSIGNATURE_V1)


def parse_cosigner_vkey(text: str) -> Cosigner:
    """Parse a type 0x04 vkey; its key id must match its name and key."""
    name, kid_hex, material_b64 = split_key(text, 3)
    cosigner = Cosigner.from_public_key(
        name, key_material(name, kid_hex, material_b64, COSIGNATURE_V1))
    if cosigner.key_id.hex() != kid_hex:
        raise CheckpointInvalid("key id does not match the key")
    return cosigner


def cosigner_private_key(name: str, private_key: Ed25519PrivateKey) -> str:
    """The private key string ``PRIVATE+KEY+name+hex8(key id)+base64(0x04 || seed)``."""
    return signer_key(name, private_key, COSIGNATURE_V1)


def parse_cosigner_private_key(text: str) -> tuple[str, Ed25519PrivateKey]:
    """Parse a cosigner's private key string into its name and key; the key id must match."""
    private, key, name, kid_hex, material_b64 = split_key(text, 5)
    if (private, key) != ("PRIVATE", "KEY"):
        raise CheckpointInvalid("malformed cosigner private key")
    private_key = Ed25519PrivateKey.from_private_bytes(
        key_material(name, kid_hex, material_b64, COSIGNATURE_V1))
    if cosigner_key_id(name, public_key_bytes(private_key)).hex() != kid_hex:
        raise CheckpointInvalid("key id does not match the key")
    return name, private_key


def cosign(body: str, name: str, private_key: Ed25519PrivateKey, timestamp: int) -> Cosignature:
    """Cosign the checkpoint `body` (its note text) as `name` at POSIX time `timestamp`."""
    require_name(name)
    signature = private_key.sign(signed_message(body, timestamp))
    kid = cosigner_key_id(name, public_key_bytes(private_key))
    return Cosignature(name, kid, timestamp, signature)


def parse_cosignature_line(line: str) -> Cosignature:
    """Parse one signature line (without its newline) as a cosignature/v1; checks no signature."""
    prefix, _, rest = line.partition(" ")
    name, _, sig_b64 = rest.partition(" ")
    if prefix != EM_DASH or not is_valid_key_name(name) or not sig_b64:
        raise CheckpointInvalid("malformed signature line")
    raw = b64decode_strict(sig_b64, "signature")
    if len(raw) != SIGNATURE_SIZE:
        raise CheckpointInvalid("a cosignature/v1 is 76 bytes")
    (timestamp,) = struct.unpack(">Q", raw[4:12])
    _require_timestamp(timestamp)
    return Cosignature(name, raw[:4], timestamp, raw[12:])


def verify_cosignatures(note: str, cosigners: Iterable[Cosigner]) -> list[Cosignature]:
    """The cosignatures on a signed note by the given cosigners, each verified.

    Lines by other keys (the log's own, unknown witnesses) are ignored, as signed-note
    asks; a line by a known cosigner that fails to verify rejects the note.
    """
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n"):
        raise CheckpointInvalid("note has no signature block")
    body, block = note[: split + 1], note[split + 2 : -1]
    known = {(c.name, c.key_id): c for c in cosigners}
    names = {name for name, _ in known}
    found: list[Cosignature] = []
    for line in block.split("\n"):
        if line.partition(" ")[2].partition(" ")[0] not in names:
            continue
        try:
            cosignature = parse_cosignature_line(line)
        except CheckpointInvalid:
            continue  # a signature of another type by a key of the same name
        cosigner = known.get((cosignature.name, cosignature.key_id))
        if cosigner is None:
            continue
        if not cosigner.verify(body, cosignature):
            raise CheckpointInvalid(f"invalid cosignature by {cosigner.name}")
        found.append(cosignature)
    return found
