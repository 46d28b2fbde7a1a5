"""A log for witness tests: a real Merkle tree, its signed checkpoints and add-checkpoint bodies.

Roots and consistency proofs come from `broker.core.merkle`, checkpoints from
`broker.core.checkpoint.signed_checkpoint`, so the witness is fed what a real log sends.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broker.core import merkle
from broker.core.checkpoint import Verifier, signed_checkpoint, verifier_key

ORIGIN = "log.example/audit"


class TestLog:
    """A log of `size` entries (``entry 0``, ``entry 1``, ...) signed by a fixed key."""

    __test__ = False  # not a test class, despite its name

    def __init__(self, size: int, *, origin: str = ORIGIN, seed: int = 1,
                 prefix: str = "entry") -> None:
        self.origin = origin
        self.key = Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)
        self.nodes: dict[merkle.Coord, bytes] = {}
        compact = merkle.CompactRange()
        for index in range(size):
            leaf = merkle.leaf_hash(f"{prefix} {index}".encode())
            self.nodes[(0, index)] = leaf
            for level, node_index, node in compact.append(leaf):
                self.nodes[(level, node_index)] = node
        self.size = size

    @property
    def verifier(self) -> Verifier:
        return Verifier.for_private_key(self.origin, self.key)

    @property
    def vkey(self) -> str:
        return verifier_key(self.origin, self.verifier.public_key)

    def root(self, size: int) -> bytes:
        return merkle.root(size, merkle.source_from_mapping(self.nodes))

    def proof(self, old: int, new: int) -> list[bytes]:
        return merkle.consistency_proof(old, new, merkle.source_from_mapping(self.nodes))

    def checkpoint(self, size: int, *, key: Ed25519PrivateKey | None = None,
                   root: bytes | None = None) -> str:
        """The signed checkpoint note at `size` (another key or root when given)."""
        return signed_checkpoint(self.origin, size, self.root(size) if root is None else root,
                                 self.origin, key or self.key)

    def request(self, old: int, new: int, *, proof: Sequence[bytes] | None = None,
                note: str | None = None) -> bytes:
        """The add-checkpoint body from `old` to `new` with the real proof unless given."""
        hashes = self.proof(old, new) if proof is None else proof
        return body(old, hashes, self.checkpoint(new) if note is None else note)


def body(old: int, proof: Sequence[bytes], note: str) -> bytes:
    """An add-checkpoint body: old size line, proof lines, an empty line, the note."""
    lines = [f"old {old}", *(base64.b64encode(h).decode() for h in proof)]
    return ("\n".join(lines) + "\n\n" + note).encode()
