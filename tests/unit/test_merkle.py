"""The RFC 9162 Merkle core against published vectors and a naive reference of the RFC."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.core import merkle
from broker.core.merkle import (
    EMPTY_ROOT,
    CompactRange,
    Coord,
    consistency_proof,
    consistency_proof_nodes,
    inclusion_proof,
    inclusion_proof_nodes,
    leaf_hash,
    node_hash,
    plan_nodes,
    prefetch,
    range_nodes,
    root,
    root_from_leaf_hashes,
    source_from_mapping,
    subtree_root,
    verify_consistency,
    verify_inclusion,
)

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "vectors" / "merkle_rfc6962.json").read_text()
)
LEAVES = [bytes.fromhex(h) for h in VECTORS["leaves_hex"]]
ROOTS = [bytes.fromhex(h) for h in [VECTORS["empty_root"], *VECTORS["roots_by_size"]]]
SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


# --- The naive reference: RFC 9162 section 2.1, written straight from the text. ---


def ref_mth(data: Sequence[bytes]) -> bytes:
    n = len(data)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + data[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + ref_mth(data[:k]) + ref_mth(data[k:])).digest()


def ref_path(m: int, data: Sequence[bytes]) -> list[bytes]:
    n = len(data)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return ref_path(m, data[:k]) + [ref_mth(data[k:])]
    return ref_path(m - k, data[k:]) + [ref_mth(data[:k])]


def ref_subproof(m: int, data: Sequence[bytes], complete: bool) -> list[bytes]:
    n = len(data)
    if m == n:
        return [] if complete else [ref_mth(data)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return ref_subproof(m, data[:k], complete) + [ref_mth(data[k:])]
    return ref_subproof(m - k, data[k:], False) + [ref_mth(data[:k])]


def ref_proof(m: int, data: Sequence[bytes]) -> list[bytes]:
    return ref_subproof(m, data, True) if 0 < m < len(data) else []


# --- Helpers ---


def build_store(data: Sequence[bytes]) -> tuple[dict[Coord, bytes], CompactRange]:
    """The store the appender keeps: every leaf hash and every completed perfect subtree."""
    store: dict[Coord, bytes] = {}
    tree = CompactRange()
    for i, entry in enumerate(data):
        h = leaf_hash(entry)
        store[(0, i)] = h
        for level, index, node in tree.append(h):
            assert (level, index) not in store
            store[(level, index)] = node
    return store, tree


def hx(values: Sequence[str]) -> list[bytes]:
    return [bytes.fromhex(v) for v in values]


STORE, _ = build_store(LEAVES)
NODES = source_from_mapping(STORE)

# Distinct leaves, so that a corrupted proof can never be a genuine proof of another leaf.
leaf_data = st.lists(st.binary(max_size=8), min_size=1, max_size=70, unique=True)


# --- Known answers ---


def test_leaf_and_node_hash_domains() -> None:
    assert leaf_hash(b"") == bytes.fromhex(VECTORS["roots_by_size"][0])
    assert EMPTY_ROOT == hashlib.sha256(b"").digest() == ROOTS[0]
    left, right = leaf_hash(LEAVES[0]), leaf_hash(LEAVES[1])
    assert node_hash(left, right) == ROOTS[2]
    assert leaf_hash(left + right) != node_hash(left, right)


def test_node_hashes_of_every_perfect_subtree() -> None:
    for level, row in enumerate(VECTORS["node_hashes_by_level"]):
        for index, expected in enumerate(row):
            assert STORE[(level, index)].hex() == expected


@pytest.mark.parametrize("size", range(9))
def test_roots_of_every_prefix(size: int) -> None:
    assert root_from_leaf_hashes([leaf_hash(x) for x in LEAVES[:size]]) == ROOTS[size]
    assert root(size, NODES) == ROOTS[size]
    assert CompactRange.from_nodes(size, NODES).root() == ROOTS[size]
    tree = CompactRange()
    for entry in LEAVES[:size]:
        tree.append(leaf_hash(entry))
    assert tree.root() == ROOTS[size]


def test_compact_range_matches_published_frontiers() -> None:
    frontier = [[], [(0, 0)], [(1, 0)], [(1, 0), (0, 2)], [(2, 0)], [(2, 0), (0, 4)]]
    frontier += [[(2, 0), (1, 2)], [(2, 0), (1, 2), (0, 6)], [(3, 0)]]
    for size, coords in enumerate(frontier):
        assert CompactRange.from_nodes(size, NODES).hashes == [STORE[c] for c in coords]


@pytest.mark.parametrize("case", VECTORS["inclusion"], ids=lambda c: f"{c['index']}-{c['size']}")
def test_inclusion_vectors(case: dict[str, Any]) -> None:
    index, size, proof = case["index"], case["size"], hx(case["proof"])
    assert inclusion_proof(index, size, NODES) == proof
    assert verify_inclusion(index, size, leaf_hash(LEAVES[index]), proof, ROOTS[size])


@pytest.mark.parametrize("case", VECTORS["consistency"], ids=lambda c: f"{c['m']}-{c['n']}")
def test_consistency_vectors(case: dict[str, Any]) -> None:
    m, n, proof = case["m"], case["n"], hx(case["proof"])
    assert consistency_proof(m, n, NODES) == proof
    assert verify_consistency(m, n, ROOTS[m], ROOTS[n], proof)


# --- Corrupted proofs fail (the probes of transparency-dev/merkle's verifier tests) ---


def inclusion_probes(
    index: int, size: int, leaf: bytes, proof: list[bytes], top: bytes
) -> list[tuple[str, tuple[Any, ...]]]:
    probes: list[tuple[str, tuple[Any, ...]]] = [
        ("index - 1", (index - 1, size, leaf, proof, top)),
        ("index + 1", (index + 1, size, leaf, proof, top)),
        ("index ^ 2", (index ^ 2, size, leaf, proof, top)),
        ("size * 2", (index, size * 2, leaf, proof, top)),
        ("size // 2", (index, size // 2, leaf, proof, top)),
        ("wrong leaf", (index, size, leaf_hash(b"WrongLeaf"), proof, top)),
        ("short leaf", (index, size, b"WrongLeaf", proof, top)),
        ("empty root", (index, size, leaf, proof, EMPTY_ROOT)),
        ("random root", (index, size, leaf, proof, SOME_HASH)),
        ("trailing garbage", (index, size, leaf, [*proof, b""], top)),
        ("trailing root", (index, size, leaf, [*proof, top], top)),
        ("preceding garbage", (index, size, leaf, [b"", *proof], top)),
        ("preceding root", (index, size, leaf, [top, *proof], top)),
    ]
    for i in range(len(proof)):
        flipped = [*proof]
        flipped[i] = bytes([flipped[i][0] ^ 8]) + flipped[i][1:]
        probes.append((f"flipped proof[{i}]", (index, size, leaf, flipped, top)))
    if proof:
        probes.append(("removed last", (index, size, leaf, proof[:-1], top)))
    if len(proof) > 1:
        probes.append(("inserted", (index, size, leaf, [proof[0], SOME_HASH, *proof[1:]], top)))
    return probes


@pytest.mark.parametrize("case", VECTORS["inclusion"], ids=lambda c: f"{c['index']}-{c['size']}")
def test_corrupted_inclusion_proofs_fail(case: dict[str, Any]) -> None:
    index, size, proof = case["index"], case["size"], hx(case["proof"])
    leaf = leaf_hash(LEAVES[index])
    passed = [
        desc
        for desc, args in inclusion_probes(index, size, leaf, proof, ROOTS[size])
        if verify_inclusion(*args)
    ]
    assert passed == []


@pytest.mark.parametrize(
    "case", [c for c in VECTORS["consistency"] if c["proof"]], ids=lambda c: f"{c['m']}-{c['n']}"
)
def test_corrupted_consistency_proofs_fail(case: dict[str, Any]) -> None:
    m, n, proof = case["m"], case["n"], hx(case["proof"])
    r1, r2 = ROOTS[m], ROOTS[n]
    probes: list[tuple[str, tuple[Any, ...]]] = [
        ("m - 1", (m - 1, n, r1, r2, proof)),
        ("m + 1", (m + 1, n, r1, r2, proof)),
        ("m ^ 2", (m ^ 2, n, r1, r2, proof)),
        ("n * 2", (m, n * 2, r1, r2, proof)),
        ("n // 2", (m, n // 2, r1, r2, proof)),
        ("wrong root1", (m, n, b"WrongRoot", r2, proof)),
        ("wrong root2", (m, n, r1, SOME_HASH, proof)),
        ("swapped roots", (m, n, r2, r1, proof)),
        ("empty proof", (m, n, r1, r2, [])),
        ("trailing garbage", (m, n, r1, r2, [*proof, b""])),
        ("trailing root1", (m, n, r1, r2, [*proof, r1])),
        ("trailing root2", (m, n, r1, r2, [*proof, r2])),
        ("preceding garbage", (m, n, r1, r2, [b"", *proof])),
        ("preceding root1", (m, n, r1, r2, [r1, *proof])),
        ("preceding root2", (m, n, r1, r2, [r2, *proof])),
        ("preceding proof[0]", (m, n, r1, r2, [proof[0], *proof])),
        ("truncated", (m, n, r1, r2, proof[:-1])),
    ]
    for i in range(len(proof)):
        flipped = [*proof]
        flipped[i] = bytes([flipped[i][0] ^ 16]) + flipped[i][1:]
        probes.append((f"flipped proof[{i}]", (m, n, r1, r2, flipped)))
    assert [desc for desc, args in probes if verify_consistency(*args)] == []


def test_consistency_edge_cases() -> None:
    r1 = ROOTS[1]
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert verify_consistency(0, 5, EMPTY_ROOT, ROOTS[5], [])
    assert verify_consistency(1, 1, r1, r1, [])
    assert not verify_consistency(0, 5, SOME_HASH, ROOTS[5], [])
    assert not verify_consistency(1, 1, r1, ROOTS[2], [])
    assert not verify_consistency(1, 0, r1, EMPTY_ROOT, [])
    assert not verify_consistency(2, 1, ROOTS[2], r1, [])
    assert not verify_consistency(1, 2, r1, ROOTS[2], [])
    assert not verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT])
    assert not verify_consistency(0, 1, EMPTY_ROOT, r1, [EMPTY_ROOT])
    assert not verify_consistency(1, 1, r1, r1, [EMPTY_ROOT])


def test_inclusion_edge_cases() -> None:
    leaf = leaf_hash(b"data")
    assert verify_inclusion(0, 1, leaf, [], leaf)
    assert not verify_inclusion(0, 1, leaf, [], b"")
    assert not verify_inclusion(0, 1, b"", [], leaf)
    for index, size in [(0, 0), (1, 0), (2, 1), (1, 1)]:
        assert not verify_inclusion(index, size, SOME_HASH, [], EMPTY_ROOT)
        assert not verify_inclusion(index, size, SOME_HASH, [], SOME_HASH)


def test_a_leaf_posing_as_an_inner_node_fails() -> None:
    # The level-1 node over leaves 0 and 1 presented as leaf 0 of the 4-leaf tree with a
    # one-element proof: the hashes chain to the root, but the signed size fixes the depth.
    inner = STORE[(1, 0)]
    assert not verify_inclusion(0, 4, inner, [STORE[(1, 1)]], ROOTS[4])
    assert not verify_inclusion(1, 4, inner, [STORE[(1, 1)]], ROOTS[4])
    # An entry whose bytes are two hashes does not collide with their inner node.
    forged = leaf_hash(STORE[(0, 0)] + STORE[(0, 1)])
    assert forged != inner
    assert not verify_inclusion(0, 4, forged, [STORE[(1, 1)]], ROOTS[4])
    assert not verify_inclusion(0, 1, forged, [], ROOTS[2])


@pytest.mark.parametrize(
    "args",
    [
        (-1, 8, EMPTY_ROOT, [], EMPTY_ROOT),
        (0, -8, EMPTY_ROOT, [], EMPTY_ROOT),
        (True, 8, EMPTY_ROOT, [], EMPTY_ROOT),
        ("0", 8, EMPTY_ROOT, [], EMPTY_ROOT),
        (0, 8, "not bytes", [], EMPTY_ROOT),
        (0, 8, EMPTY_ROOT, b"a proof as bytes", EMPTY_ROOT),
        (0, 8, EMPTY_ROOT, None, EMPTY_ROOT),
        (0, 8, EMPTY_ROOT, [None], EMPTY_ROOT),
        (0, 8, EMPTY_ROOT, ["x" * 32], EMPTY_ROOT),
        (0, 8, EMPTY_ROOT, [], None),
    ],
)
def test_malformed_input_is_rejected_without_raising(args: tuple[Any, ...]) -> None:
    assert verify_inclusion(*args) is False
    assert verify_consistency(args[0], args[1], args[2], args[4], args[3]) is False


# --- Plans, ranges and batched sources ---


def test_range_nodes_decomposes_the_ragged_edge() -> None:
    assert range_nodes(0, 7) == [(2, 0), (1, 2), (0, 6)]
    assert range_nodes(4, 7) == [(1, 2), (0, 6)]
    assert range_nodes(8, 9) == [(0, 8)]
    assert subtree_root(4, 7, NODES) == ref_mth(LEAVES[4:7])
    for start, end in [(1, 3), (2, 6), (3, 3), (5, 4), (-2, 0)]:
        with pytest.raises(ValueError):  # noqa: PT011
            range_nodes(start, end)


def test_plans_reject_impossible_requests() -> None:
    for index, size in [(0, 0), (5, 5), (-1, 3)]:
        with pytest.raises(ValueError, match="outside"):
            inclusion_proof_nodes(index, size)
    with pytest.raises(ValueError, match="order"):
        consistency_proof_nodes(5, 4)
    with pytest.raises(ValueError, match="negative"):
        root(-1, NODES)


def test_one_batched_read_serves_a_whole_proof() -> None:
    calls: list[Sequence[Coord]] = []

    def fetch(coords: Sequence[Coord]) -> list[bytes]:
        calls.append(coords)
        return [STORE[c] for c in coords]

    plan = consistency_proof_nodes(3, 7)
    coords = plan_nodes(plan)
    assert len(coords) == len(set(coords))
    assert merkle.fold_plan(plan, prefetch(coords, fetch)) == ref_proof(3, LEAVES[:7])
    assert len(calls) == 1


def test_prefetch_rejects_a_short_answer() -> None:
    with pytest.raises(ValueError, match="wrong number"):
        prefetch([(0, 0), (0, 1)], lambda coords: [STORE[(0, 0)]])


def test_compact_range_validates_its_input() -> None:
    with pytest.raises(ValueError, match="set bit"):
        CompactRange(3, [EMPTY_ROOT])
    with pytest.raises(ValueError, match="32-byte"):
        CompactRange(1, [b"short"])
    with pytest.raises(ValueError, match="leaf hash"):
        CompactRange().append(b"entry bytes, not a hash")
    tree = CompactRange(1, [EMPTY_ROOT])
    twin = tree.copy()
    twin.append(EMPTY_ROOT)
    assert (tree.size, twin.size) == (1, 2)


# --- Properties against the naive reference ---


@settings(max_examples=150, deadline=None)
@given(leaf_data)
def test_every_root_and_stored_node_equals_the_reference(data: list[bytes]) -> None:
    store, tree = build_store(data)
    nodes = source_from_mapping(store)
    assert root_from_leaf_hashes([leaf_hash(x) for x in data]) == ref_mth(data)
    assert tree.root() == ref_mth(data)
    for (level, index), node in store.items():
        assert node == ref_mth(data[index << level : (index + 1) << level])
    # Exactly the perfect subtrees exist: 2n - popcount(n) of them, leaves included.
    assert len(store) == 2 * len(data) - len(data).bit_count()
    for size in range(len(data) + 1):
        expected = ref_mth(data[:size])
        assert root(size, nodes) == expected
        rebuilt = CompactRange.from_nodes(size, nodes)
        assert rebuilt.root() == expected


@settings(max_examples=150, deadline=None)
@given(leaf_data, st.data())
def test_compact_range_append_equals_reference_at_every_size(
    data: list[bytes], pick: st.DataObject
) -> None:
    store, _ = build_store(data)
    nodes = source_from_mapping(store)
    start = pick.draw(st.integers(0, len(data)))
    tree = CompactRange.from_nodes(start, nodes)
    for size in range(start, len(data)):
        completed = tree.append(leaf_hash(data[size]))
        assert all(store[(level, index)] == h for level, index, h in completed)
        assert all(level >= 1 for level, _, _ in completed)
        assert tree.root() == ref_mth(data[: size + 1])
        assert tree.size == size + 1


@settings(max_examples=200, deadline=None)
@given(leaf_data, st.data())
def test_inclusion_proofs_equal_reference_and_verify(
    data: list[bytes], pick: st.DataObject
) -> None:
    store, _ = build_store(data)
    nodes = source_from_mapping(store)
    size = pick.draw(st.integers(1, len(data)))
    index = pick.draw(st.integers(0, size - 1))
    proof = inclusion_proof(index, size, nodes)
    assert proof == ref_path(index, data[:size])
    top = ref_mth(data[:size])
    leaf = leaf_hash(data[index])
    assert verify_inclusion(index, size, leaf, proof, top)
    assert not verify_inclusion(index, size, leaf_hash(data[index] + b"x"), proof, top)
    for desc, args in inclusion_probes(index, size, leaf, proof, top):
        assert not verify_inclusion(*args), desc


@settings(max_examples=200, deadline=None)
@given(leaf_data, st.data())
def test_consistency_proofs_equal_reference_and_verify(
    data: list[bytes], pick: st.DataObject
) -> None:
    store, _ = build_store(data)
    nodes = source_from_mapping(store)
    n = pick.draw(st.integers(1, len(data)))
    m = pick.draw(st.integers(0, n))
    proof = consistency_proof(m, n, nodes)
    assert proof == ref_proof(m, data[:n])
    r1, r2 = ref_mth(data[:m]), ref_mth(data[:n])
    assert verify_consistency(m, n, r1, r2, proof)
    if proof:
        i = pick.draw(st.integers(0, len(proof) - 1))
        at = pick.draw(st.integers(0, 31))
        flipped = [*proof]
        flipped[i] = flipped[i][:at] + bytes([flipped[i][at] ^ 1]) + flipped[i][at + 1 :]
        assert not verify_consistency(m, n, r1, r2, flipped)
        assert not verify_consistency(m, n, r1, r2, proof[:i] + proof[i + 1 :])
        assert not verify_consistency(m, n, r1, r2, [*proof, SOME_HASH])
        assert not verify_consistency(m, n, r1, r2, proof[:i] + [SOME_HASH] + proof[i:])


@settings(max_examples=100, deadline=None)
@given(leaf_data, st.data())
def test_a_forked_tree_is_not_consistent(data: list[bytes], pick: st.DataObject) -> None:
    n = pick.draw(st.integers(1, len(data)))
    m = pick.draw(st.integers(1, n))
    changed = pick.draw(st.integers(0, m - 1))
    fork = [*data]
    fork[changed] = fork[changed] + b"\xff"
    store, _ = build_store(fork)
    proof = consistency_proof(m, n, source_from_mapping(store))
    assert not verify_consistency(m, n, ref_mth(data[:m]), ref_mth(fork[:n]), proof)
