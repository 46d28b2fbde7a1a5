"""Signed checkpoints and receipts: C2SP signed-note, tlog-checkpoint and tlog-proof, Ed25519.

A checkpoint body is ``origin\\nsize\\nbase64(root)\\n`` (c2sp.org/tlog-checkpoint); the log
signs it as a note (c2sp.org/signed-note): the body, a blank line, then one line per
signature, ``— <key name> base64(key id[4] || signature)``. The key id is the first four
bytes of SHA-256(name || 0x0A || 0x01 || public key). Keys travel as Go `note` strings:
``name+hex(key id)+base64(0x01 || public key)`` for verifiers, with a ``PRIVATE+KEY+``
prefix and the 32-byte seed for signers.

A receipt (c2sp.org/tlog-proof) bundles an entry's index, its inclusion proof and the
signed checkpoint, so whoever holds it can check offline, with only the log's verifier
key, that the entry is in the log.

Every parse is strict (canonical base64, decimal without leading zeros, no control
characters) and fails with `CheckpointInvalid`, a `ValueError`: this module stays free of
the HTTP error family, and the service that calls it decides what a bad note means to
its caller. `verify_receipt` answers a plain bool.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from broker.core import merkle

ED25519 = 0x01
"""The signed-note signature type byte of Ed25519."""

EM_DASH = "\u2014"
RECEIPT_HEADER = "c2sp.org/tlog-proof@v1"
MAX_SIGNATURES = 100  # the Go implementation's bound on signature lines
MAX_PROOF_HASHES = 64  # a proof in a tree of fewer than 2**64 leaves
MAX_TREE_SIZE = 2**64 - 1

_DECIMAL = re.compile(r"0|[1-9][0-9]{0,19}")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")


class CheckpointInvalid(ValueError):
    """A note, key, checkpoint or receipt that is malformed, unsigned or wrongly signed."""


class ReceiptInvalid(CheckpointInvalid):
    """A receipt (tlog-proof) that does not parse."""


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode_strict(text: str, what: str) -> bytes:
    """Standard base64, padded and canonical: one text per byte string."""
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise CheckpointInvalid(f"{what} is not base64") from None
    if _b64encode(data) != text:
        raise CheckpointInvalid(f"{what} is not canonical base64")
    return data


def _decimal(text: str, what: str) -> int:
    if not _DECIMAL.fullmatch(text) or int(text) > MAX_TREE_SIZE:
        raise CheckpointInvalid(f"{what} is not a decimal without leading zeros")
    return int(text)


def is_valid_key_name(name: str) -> bool:
    """signed-note: a key name is non-empty, without Unicode spaces or '+'."""
    return bool(name) and "+" not in name and not any(c.isspace() for c in name)


def require_name(name: str) -> None:
    if not is_valid_key_name(name):
        raise CheckpointInvalid("key name must be non-empty, without spaces or '+'")


# --- Keys ---


def key_id(name: str, public_key: bytes, kind: int = ED25519) -> bytes:
    """First 4 bytes of SHA-256(name || 0x0A || kind || public key): names key and algorithm
    (0x01 an Ed25519 note signature; 0x04 a cosignature/v1, `broker.core.cosignature`)."""
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([kind]) + public_key)
    return digest.digest()[:4]


def public_key_bytes(private_key: Ed25519PrivateKey) -> bytes:
    """The raw 32-byte Ed25519 public key of a private key."""
    return private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True, slots=True)
class Verifier:
    """A trusted Ed25519 note key: its name, key id and raw public key."""

    name: str
    key_id: bytes
    public_key: bytes
    _key: Ed25519PublicKey = field(repr=False, compare=False)

    @classmethod
    def from_public_key(cls, name: str, public_key: bytes) -> Verifier:
        require_name(name)
        if len(public_key) != 32:
            raise CheckpointInvalid("an Ed25519 public key is 32 bytes")
        key = Ed25519PublicKey.from_public_bytes(public_key)
        return cls(name, key_id(name, public_key), public_key, key)

    @classmethod
    def for_private_key(cls, name: str, private_key: Ed25519PrivateKey) -> Verifier:
        """The verifier matching a signing key."""
        return cls.from_public_key(name, public_key_bytes(private_key))

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Does `signature` (without key id) sign `message` under this key?"""
        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def __str__(self) -> str:
        return verifier_key(self.name, self.public_key)


def verifier_key(name: str, public_key: bytes, kind: int = ED25519) -> str:
    """The verifier key string ``name+hex8(key id)+base64(kind || public key)``."""
    require_name(name)
    kid = key_id(name, public_key, kind).hex()
    return f"{name}+{kid}+{_b64encode(bytes([kind]) + public_key)}"


def signer_key(name: str, private_key: Ed25519PrivateKey, kind: int = ED25519) -> str:
    """The Go `note` signer key string ``PRIVATE+KEY+name+hex8(key id)+base64(kind || seed)``.

    It holds the private key: for key files and tests, never for logs or answers.
    """
    require_name(name)
    seed = private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    kid = key_id(name, public_key_bytes(private_key), kind).hex()
    return f"PRIVATE+KEY+{name}+{kid}+{_b64encode(bytes([kind]) + seed)}"


def split_key(text: str, parts: int) -> list[str]:
    pieces = text.split("+", parts - 1)
    if len(pieces) != parts:
        raise CheckpointInvalid("malformed key string")
    return pieces


def key_material(name: str, kid_hex: str, material_b64: str, kind: int = ED25519) -> bytes:
    """The 32 key bytes of a key string's parts, checked to be an Ed25519 key of `kind`."""
    require_name(name)
    if not re.fullmatch(r"[0-9a-f]{8}", kid_hex):
        raise CheckpointInvalid("malformed key id")
    material = b64decode_strict(material_b64, "key")
    if len(material) != 33 or material[0] != kind:
        raise CheckpointInvalid("not an Ed25519 note key" if kind == ED25519 else
                                f"not an Ed25519 key of type 0x{kind:02x}")
    return material[1:]


def parse_verifier_key(text: str) -> Verifier:
    """Parse a verifier key string; the key id must match name and key."""
    name, kid_hex, material_b64 = split_key(text, 3)
    verifier = Verifier.from_public_key(name, key_material(name, kid_hex, material_b64))
    if verifier.key_id.hex() != kid_hex:
        raise CheckpointInvalid("key id does not match the key")
    return verifier


def parse_signer_key(text: str) -> tuple[str, Ed25519PrivateKey]:
    """Parse a signer key string into its name and private key; the key id must match."""
    private, key, name, kid_hex, material_b64 = split_key(text, 5)
    if (private, key) != ("PRIVATE", "KEY"):
        raise CheckpointInvalid("malformed signer key")
    private_key = Ed25519PrivateKey.from_private_bytes(key_material(name, kid_hex, material_b64))
    if key_id(name, public_key_bytes(private_key)).hex() != kid_hex:
        raise CheckpointInvalid("key id does not match the key")
    return name, private_key


# --- Notes ---


def _check_text(text: str) -> bytes:
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        raise CheckpointInvalid("note is not valid UTF-8") from None
    if _CONTROL.search(text):
        raise CheckpointInvalid("note contains control characters")
    return data


def sign_note(body: str, name: str, private_key: Ed25519PrivateKey) -> str:
    """Sign `body` (which ends in a newline) as a note with one Ed25519 signature."""
    require_name(name)
    message = _check_text(body)
    if not body.endswith("\n"):
        raise CheckpointInvalid("note text must end with a newline")
    kid = key_id(name, public_key_bytes(private_key))
    signature = _b64encode(kid + private_key.sign(message))
    return f"{body}\n{EM_DASH} {name} {signature}\n"


def _as_list(verifiers: Verifier | Iterable[Verifier]) -> list[Verifier]:
    return [verifiers] if isinstance(verifiers, Verifier) else list(verifiers)


def _signature_lines(block: str) -> list[tuple[str, bytes, bytes]]:
    """Parse the signature block into (name, key id, signature) triples."""
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise CheckpointInvalid("too many signatures")
    parsed = []
    for line in lines:
        prefix, _, rest = line.partition(" ")
        name, _, sig_b64 = rest.partition(" ")
        if prefix != EM_DASH or not is_valid_key_name(name) or not sig_b64:
            raise CheckpointInvalid("malformed signature line")
        raw = b64decode_strict(sig_b64, "signature")
        if len(raw) < 5:
            raise CheckpointInvalid("signature too short")
        parsed.append((name, raw[:4], raw[4:]))
    return parsed


def open_note(note: str | bytes, verifier: Verifier | Iterable[Verifier]) -> str:
    """Check a signed note against trusted keys and return its text (the signed body).

    As signed-note requires: signatures by unknown keys are ignored; a signature by a
    known key (same name and key id) that fails to verify rejects the note; a note that no
    known key signed is rejected.
    """
    if isinstance(note, bytes):
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError:
            raise CheckpointInvalid("note is not valid UTF-8") from None
    _check_text(note)
    split = note.rfind("\n\n")
    if split < 0:
        raise CheckpointInvalid("note has no signature block")
    text, block = note[: split + 1], note[split + 2 :]
    if not block.endswith("\n"):
        raise CheckpointInvalid("note must end with a newline")
    known = {(v.name, v.key_id): v for v in _as_list(verifier)}
    message = text.encode("utf-8")
    verified = False
    for name, kid, signature in _signature_lines(block):
        key = known.get((name, kid))
        if key is None:
            continue
        if not key.verify(message, signature):
            raise CheckpointInvalid(f"invalid signature for key {name}+{kid.hex()}")
        verified = True
    if not verified:
        raise CheckpointInvalid("note has no signature by a trusted key")
    return text


# --- Checkpoints ---


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A log's signed statement: the tree of `size` leaves from `origin` has root `root`."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def body(self) -> str:
        """The note text of this checkpoint."""
        for line in self.extensions:
            if not line or "\n" in line:
                raise CheckpointInvalid("extension lines are non-empty single lines")
        head = checkpoint_body(self.origin, self.size, self.root)
        return head + "".join(f"{line}\n" for line in self.extensions)


def checkpoint_body(origin: str, size: int, root: bytes) -> str:
    """``origin\\nsize\\nbase64(root)\\n`` (c2sp.org/tlog-checkpoint)."""
    if not origin or "\n" in origin:
        raise CheckpointInvalid("origin must be one non-empty line")
    if isinstance(size, bool) or not 0 <= size <= MAX_TREE_SIZE:
        raise CheckpointInvalid("tree size out of range")
    if len(root) != merkle.HASH_SIZE:
        raise CheckpointInvalid("root hash must be 32 bytes")
    return f"{origin}\n{size}\n{_b64encode(root)}\n"


def parse_checkpoint(body: str) -> Checkpoint:
    """Parse a checkpoint note text (already opened: this checks no signature)."""
    if not body.endswith("\n"):
        raise CheckpointInvalid("checkpoint must end with a newline")
    lines = body[:-1].split("\n")
    if len(lines) < 3 or not all(lines):
        raise CheckpointInvalid("checkpoint needs origin, size and root on non-empty lines")
    root = b64decode_strict(lines[2], "root hash")
    if len(root) != merkle.HASH_SIZE:
        raise CheckpointInvalid("root hash must be 32 bytes")
    return Checkpoint(lines[0], _decimal(lines[1], "tree size"), root, tuple(lines[3:]))


def signed_checkpoint(
    origin: str, size: int, root: bytes, name: str, private_key: Ed25519PrivateKey
) -> str:
    """The checkpoint (origin, size, root) as a note signed by `name`."""
    return sign_note(checkpoint_body(origin, size, root), name, private_key)


def open_checkpoint(
    note: str | bytes, verifier: Verifier | Iterable[Verifier], origin: str | None = None
) -> Checkpoint:
    """Verify a signed checkpoint note and parse it; with `origin`, it must be that log's."""
    checkpoint = parse_checkpoint(open_note(note, verifier))
    if origin is not None and checkpoint.origin != origin:
        raise CheckpointInvalid("checkpoint is from another log")
    return checkpoint


# --- Receipts (c2sp.org/tlog-proof) ---


@dataclass(frozen=True, slots=True)
class Receipt:
    """A parsed tlog-proof: entry index, inclusion proof and the signed checkpoint note."""

    index: int
    hashes: tuple[bytes, ...]
    checkpoint: str
    extra: bytes | None = None


def format_receipt(
    index: int, proof_hashes: Iterable[bytes], checkpoint_note: str, extra: bytes | None = None
) -> str:
    """The tlog-proof text: header, optional extra, index, proof (one hash a line), checkpoint."""
    if isinstance(index, bool) or not 0 <= index <= MAX_TREE_SIZE:
        raise ReceiptInvalid("index out of range")
    hashes = list(proof_hashes)
    if any(len(h) != merkle.HASH_SIZE for h in hashes):
        raise ReceiptInvalid("proof hashes must be 32 bytes")
    lines = [RECEIPT_HEADER]
    if extra is not None:
        lines.append(f"extra {_b64encode(extra)}")
    lines.append(f"index {index}")
    lines.extend(_b64encode(h) for h in hashes)
    return "\n".join(lines) + "\n\n" + checkpoint_note


def parse_receipt(text: str) -> Receipt:
    """Parse a tlog-proof (checking no signature: see `verify_receipt`)."""
    lines = text.split("\n")
    if lines[0] != RECEIPT_HEADER:
        raise ReceiptInvalid("not a c2sp.org/tlog-proof@v1 receipt")
    at, extra = 1, None
    if len(lines) > at and lines[at].startswith("extra "):
        try:
            extra = b64decode_strict(lines[at].removeprefix("extra "), "extra data")
        except CheckpointInvalid as exc:
            raise ReceiptInvalid(str(exc)) from None
        at += 1
    if len(lines) <= at or not lines[at].startswith("index "):
        raise ReceiptInvalid("receipt has no index line")
    try:
        index = _decimal(lines[at].removeprefix("index "), "index")
        hashes: list[bytes] = []
        at += 1
        while at < len(lines) and lines[at] and len(hashes) <= MAX_PROOF_HASHES:
            hashes.append(b64decode_strict(lines[at], "proof hash"))
            at += 1
    except CheckpointInvalid as exc:
        raise ReceiptInvalid(str(exc)) from None
    if len(hashes) > MAX_PROOF_HASHES or any(len(h) != merkle.HASH_SIZE for h in hashes):
        raise ReceiptInvalid("proof hashes must be at most 64 hashes of 32 bytes")
    checkpoint = "\n".join(lines[at + 1 :])
    if not checkpoint:
        raise ReceiptInvalid("receipt has no checkpoint")
    return Receipt(index, tuple(hashes), checkpoint, extra)


def verify_receipt(
    text: str,
    entry_bytes: bytes,
    verifier: Verifier | Iterable[Verifier],
    origin: str | None = None,
) -> bool:
    """Is `entry_bytes` the entry at the receipt's index in a checkpoint the log signed?"""
    try:
        receipt = parse_receipt(text)
        checkpoint = open_checkpoint(receipt.checkpoint, verifier, origin)
    except (CheckpointInvalid, TypeError, AttributeError):
        return False
    if not isinstance(entry_bytes, bytes):
        return False
    return merkle.verify_inclusion(
        receipt.index,
        checkpoint.size,
        merkle.leaf_hash(entry_bytes),
        list(receipt.hashes),
        checkpoint.root,
    )
