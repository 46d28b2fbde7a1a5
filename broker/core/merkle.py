"""RFC 9162 (section 2.1) Merkle tree hashes, proofs and compact ranges over SHA-256.

Coordinates. A *perfect subtree* is named by `(level, index)`: level 0 is the leaf
hash of leaf `index`; level L covers leaves `[index * 2**L, (index + 1) * 2**L)`. The
store writes every perfect subtree once, when it completes, so a `NodeSource`
(`nodes(level, index) -> hash`) answers in O(1).

Proofs come in two steps, so that a store can fetch what a proof needs in one query:

1. *Plan*: `inclusion_proof_nodes(index, size)` / `consistency_proof_nodes(m, n)` return
   a `Plan`: one list of coordinates per proof element, in proof order. An element is a
   single perfect subtree, except the one at the ragged right edge of the tree, which is
   the root of a range and is listed as the perfect subtrees that decompose it (left to
   right, largest first). `plan_nodes(plan)` gives the distinct coordinates to fetch.
2. *Fold*: `fold_plan(plan, nodes)` turns a plan into the RFC 9162 list of hashes.

`inclusion_proof` and `consistency_proof` do both with a `NodeSource`; with a batched
`NodesSource`, wrap it first: `prefetch(plan_nodes(plan), fetch)`.

Verification (`verify_inclusion`, `verify_consistency`) follows RFC 9162 sections
2.1.3.2 and 2.1.4.2 literally, checks every length, and never raises: a malformed input
is simply a proof that does not verify.

`CompactRange` is the right frontier of a tree (one hash per set bit of its size): it
appends leaves in O(1) amortised time, names the perfect subtrees each append completes,
and gives the root. The appender and the verifier both build the tree with it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence

HASH_SIZE = 32
EMPTY_ROOT: bytes = hashlib.sha256(b"").digest()

Coord = tuple[int, int]
"""A perfect subtree: (level, index)."""

Plan = list[list[Coord]]
"""A proof plan: per proof element, the perfect subtrees whose fold is that element."""

NodeSource = Callable[[int, int], bytes]
"""Hash of the perfect subtree at (level, index); level 0 is the leaf hash."""

NodesSource = Callable[[Sequence[Coord]], Sequence[bytes]]
"""Batched `NodeSource`: the hashes of the given coordinates, in the same order."""

_sha256 = hashlib.sha256


def leaf_hash(entry: bytes) -> bytes:
    """SHA-256(0x00 || entry): the 0x00 prefix keeps a leaf from posing as an inner node."""
    return _sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return _sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than n (n >= 2): RFC 9162's k."""
    return 1 << ((n - 1).bit_length() - 1)


def root_from_leaf_hashes(leaves: Sequence[bytes]) -> bytes:
    """MTH over already hashed leaves, level by level in O(n).

    Pairing neighbours and carrying an odd last node up unchanged gives the same tree as
    RFC 9162's split at the largest power of two below n.
    """
    if not leaves:
        return EMPTY_ROOT
    level = list(leaves)
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def range_nodes(start: int, end: int) -> list[Coord]:
    """The perfect subtrees (left to right, largest first) whose fold is MTH(D[start:end]).

    The range must be a subtree of some RFC 9162 tree: non-empty, and `start` a multiple
    of the largest power of two not above `end - start`, so each piece is aligned.
    """
    n = end - start
    if start < 0 or n <= 0:
        raise ValueError("empty or negative range")
    if start % (1 << (n.bit_length() - 1)):
        raise ValueError("range is not aligned to a subtree")
    coords: list[Coord] = []
    for level in range(n.bit_length() - 1, -1, -1):
        if n >> level & 1:
            coords.append((level, start >> level))
            start += 1 << level
    return coords


def fold_nodes(coords: Sequence[Coord], nodes: NodeSource) -> bytes:
    """Fold the perfect subtrees of a range right to left into the range's root."""
    level, index = coords[-1]
    acc = nodes(level, index)
    for level, index in reversed(coords[:-1]):
        acc = node_hash(nodes(level, index), acc)
    return acc


def subtree_root(start: int, end: int, nodes: NodeSource) -> bytes:
    """MTH(D[start:end]) from stored perfect subtrees, in O(log n) lookups."""
    return fold_nodes(range_nodes(start, end), nodes)


def root_nodes(size: int) -> list[Coord]:
    """The perfect subtrees whose fold is the root of a tree of `size` (empty for 0)."""
    return range_nodes(0, size) if size else []


def root(size: int, nodes: NodeSource) -> bytes:
    """The root of the tree of the first `size` leaves."""
    if size < 0:
        raise ValueError("negative tree size")
    return subtree_root(0, size, nodes) if size else EMPTY_ROOT


def inclusion_proof_nodes(index: int, size: int) -> Plan:
    """Plan of PATH(index, D[size]) (RFC 9162 2.1.3.1), the leaf's sibling first."""
    if not 0 <= index < size:
        raise ValueError("leaf index outside the tree")
    plan: Plan = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            plan.append(range_nodes(start + k, end))
            end = start + k
        else:
            plan.append(range_nodes(start, start + k))
            start += k
    plan.reverse()
    return plan


def consistency_proof_nodes(m: int, n: int) -> Plan:
    """Plan of PROOF(m, D[n]) (RFC 9162 2.1.4.1); empty when m is 0 or m == n."""
    if not 0 <= m <= n:
        raise ValueError("consistency sizes out of order")
    plan: Plan = []
    if m in (0, n):
        return plan
    start, end, first, complete = 0, n, m, True
    while end - start != first:
        k = _split(end - start)
        if first <= k:
            plan.append(range_nodes(start + k, end))
            end = start + k
        else:
            plan.append(range_nodes(start, start + k))
            start += k
            first -= k
            complete = False
    if not complete:
        # SUBPROOF(m, D[m], false) = MTH(D[m]): the old tree was not a left subtree.
        plan.append(range_nodes(start, end))
    plan.reverse()
    return plan


def plan_nodes(plan: Plan) -> list[Coord]:
    """The distinct coordinates a plan needs, in first-use order (for one batched read)."""
    return list(dict.fromkeys(coord for element in plan for coord in element))


def fold_plan(plan: Plan, nodes: NodeSource) -> list[bytes]:
    """The proof hashes of a plan."""
    return [fold_nodes(element, nodes) for element in plan]


def source_from_mapping(hashes: Mapping[Coord, bytes]) -> NodeSource:
    """A `NodeSource` over a mapping (level, index) -> hash; KeyError if one is missing."""

    def lookup(level: int, index: int) -> bytes:
        return hashes[(level, index)]

    return lookup


def prefetch(coords: Sequence[Coord], fetch: NodesSource) -> NodeSource:
    """Fetch all `coords` with one call of a batched source; serve lookups from the result."""
    got = fetch(coords)
    if len(got) != len(coords):
        raise ValueError("batched node source returned the wrong number of hashes")
    return source_from_mapping(dict(zip(coords, got, strict=True)))


def inclusion_proof(index: int, size: int, nodes: NodeSource) -> list[bytes]:
    """The RFC 9162 inclusion proof of leaf `index` in the tree of `size`."""
    return fold_plan(inclusion_proof_nodes(index, size), nodes)


def consistency_proof(m: int, n: int, nodes: NodeSource) -> list[bytes]:
    """The RFC 9162 consistency proof from the tree of size m to the tree of size n."""
    return fold_plan(consistency_proof_nodes(m, n), nodes)


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == HASH_SIZE


def _is_size(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _hashes_ok(proof: object) -> bool:
    if isinstance(proof, (bytes, str)) or not isinstance(proof, Sequence):
        return False
    return all(_is_hash(p) for p in proof)


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 2.1.3.2: does `proof` show leaf hash `leaf` at `index` in tree (`size`, `root`)?

    `leaf` is the leaf hash (see `leaf_hash`), not the entry bytes.
    """
    if not (_is_size(index) and _is_size(size) and index < size):
        return False
    if not (_is_hash(leaf) and _is_hash(root) and _hashes_ok(proof)):
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    m: int, n: int, root_m: bytes, root_n: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 2.1.4.2: is the tree (m, root_m) a prefix of the tree (n, root_n)?

    Edge cases (the RFC covers 0 < m < n): for m == n the proof must be empty and the
    roots equal; for m == 0 the proof must be empty and `root_m` the empty-tree root.
    """
    if not (_is_size(m) and _is_size(n) and m <= n):
        return False
    if not (_is_hash(root_m) and _is_hash(root_n) and _hashes_ok(proof)):
        return False
    if m == n:
        return len(proof) == 0 and root_m == root_n
    if m == 0:
        return len(proof) == 0 and root_m == EMPTY_ROOT
    if not proof:
        return False
    path = list(proof)
    if m & (m - 1) == 0:
        path.insert(0, root_m)
    return _consistency_roots(m, n, path) == (root_m, root_n)


def _consistency_roots(m: int, n: int, path: list[bytes]) -> tuple[bytes, bytes] | None:
    """Steps 3-7 of RFC 9162 2.1.4.2: the (first, second) roots a path implies, or None."""
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return (fr, sr) if sn == 0 else None


class CompactRange:
    """The right frontier of a tree: the perfect subtrees of the binary decomposition of size.

    `hashes` runs left to right (largest subtree first), one hash per set bit of `size`.
    """

    __slots__ = ("hashes", "size")

    def __init__(self, size: int = 0, hashes: Iterable[bytes] = ()) -> None:
        hashes = list(hashes)
        if size < 0 or len(hashes) != size.bit_count():
            raise ValueError("a compact range holds one hash per set bit of its size")
        if not all(_is_hash(h) for h in hashes):
            raise ValueError("compact range hashes must be 32-byte hashes")
        self.size = size
        self.hashes = hashes

    @classmethod
    def from_nodes(cls, size: int, nodes: NodeSource) -> CompactRange:
        """Rebuild the frontier of a tree of `size` from stored perfect subtrees."""
        return cls(size, [nodes(level, index) for level, index in root_nodes(size)])

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Append a leaf *hash*; return the perfect subtrees (level >= 1, index, hash) completed.

        The new leaf sits at index `size`; while it (or the subtree it completes) is a
        right child, it merges with the frontier's last hash, its left sibling.
        """
        if not _is_hash(leaf):
            raise ValueError("append takes a 32-byte leaf hash")
        completed: list[tuple[int, int, bytes]] = []
        hashes = self.hashes
        index, level, acc = self.size, 0, leaf
        while index & 1:
            acc = _sha256(b"\x01" + hashes.pop() + acc).digest()
            index >>= 1
            level += 1
            completed.append((level, index, acc))
        hashes.append(acc)
        self.size += 1
        return completed

    def add(self, leaf: bytes) -> None:
        """Append a 32-byte leaf hash, unchecked and without reporting completed subtrees.

        The verifier's hot path: the same merge as `append`, a million times a run.
        """
        hashes = self.hashes
        index, acc = self.size, leaf
        while index & 1:
            acc = _sha256(b"\x01" + hashes.pop() + acc).digest()
            index >>= 1
        hashes.append(acc)
        self.size += 1

    def root(self) -> bytes:
        """The tree root: the frontier folded right to left (EMPTY_ROOT for size 0)."""
        hashes = self.hashes
        if not hashes:
            return EMPTY_ROOT
        acc = hashes[-1]
        for h in reversed(hashes[:-1]):
            acc = node_hash(h, acc)
        return acc

    def copy(self) -> CompactRange:
        """An independent copy (the frontier is mutable)."""
        return CompactRange(self.size, self.hashes)

    def __repr__(self) -> str:
        return f"CompactRange(size={self.size}, hashes=<{len(self.hashes)}>)"
