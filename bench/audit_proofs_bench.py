"""Audit log proofs and verification at a million entries.

Setup builds an in-memory node store (every perfect subtree, packed per level, as the
store table holds them) for N realistic canonical entries. Then it times inclusion and
consistency proofs (plan + fold from the store, and RFC 9162 verification) over random
positions, and a full `verify_log` of the N entries streamed from memory.

The same proofs are then served from a SQLite database holding that log (entries and
nodes written straight into the broker's migrated schema), through the API's own
`broker.audit.reads` calls: what a partner's proof request costs, reads included.

Run: .venv/bin/python bench/audit_proofs_bench.py [--entries N] [--proofs P] [--no-store]
Targets: a proof under 5 ms; verifying 1,000,000 entries under 10 s.
"""

from __future__ import annotations

import argparse
import base64
import os
import platform
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broker.core import merkle
from broker.core.checkpoint import Verifier, open_checkpoint, signed_checkpoint
from broker.core.entry import (
    Actor,
    Entry,
    Item,
    PolicyRef,
    canonical_json,
    decode_entry,
    encode_entry,
    is_canonical,
)
from broker.core.verify import verify_log
from broker.db import make_engine
from broker.migrate import upgrade

ORIGIN = "sluis.example/audit"
HASH = merkle.HASH_SIZE


def _template(entry: Entry) -> tuple[bytes, bytes]:
    """Canonical bytes of `entry` split around its seq, for fast realistic variants."""
    data = encode_entry(entry)
    marker = b'"seq":%d,' % entry.seq
    head, tail = data.split(marker)
    return head + b'"seq":', b"," + tail


def templates() -> list[tuple[bytes, bytes]]:
    """A hit, a refusal and a one-signal disclosure, with the shape the broker writes."""
    actor = Actor(client="cl_7f3a9c", org="gemeente", roles=["requester"], acting_user_tag="Yq3K")
    common = {
        "origin": ORIGIN,
        "id": "aud_01JD8X4Q",
        "seq": 123456789,
        "time": "2026-11-28T10:00:00.123Z",
        "actor": actor,
        "purpose": "integrale-controle",
        "case_reference": "ZAAK-2026-0042",
        "policy": PolicyRef(pack="demo", hash="sha256:9f86d081884c7d65"),
        "request_id": "req_5f2b9e",
    }
    item = Item(
        signal_id="sg_01JD8X",
        rule="gemeente-energie",
        legal_basis="elektriciteitswet-levering",
        category="energie-afwijking",
        source="netbeheerder",
        fields={"location.postcode": "reveal", "observed_at": {"generalise": "month"}},
        subject_tags=["kq9X2bWc7rT1"],
    )
    return [
        _template(Entry(action="hit", outcome="granted", **common)),  # type: ignore[arg-type]
        _template(
            Entry(action="refusal", outcome="refused", reason="no_rule", **common)  # type: ignore[arg-type]
        ),
        _template(Entry(action="disclosure", outcome="granted", items=[item], **common)),  # type: ignore[arg-type]
    ]


def entry_at(shapes: list[tuple[bytes, bytes]], seq: int) -> bytes:
    head, tail = shapes[seq % 5 % 3]  # 2 hits, 2 refusals, 1 disclosure in 5
    return head + str(seq).encode() + tail


class NodeStore:
    """Every perfect subtree of the tree, one packed bytearray per level."""

    def __init__(self) -> None:
        self.levels: list[bytearray] = [bytearray()]

    def put(self, level: int, index: int, node: bytes) -> None:
        while len(self.levels) <= level:
            self.levels.append(bytearray())
        assert len(self.levels[level]) == index * HASH
        self.levels[level] += node

    def get(self, level: int, index: int) -> bytes:
        return bytes(self.levels[level][index * HASH : (index + 1) * HASH])

    def leaf(self, index: int) -> bytes:
        return self.get(0, index)


def build(n: int, shapes: list[tuple[bytes, bytes]]) -> NodeStore:
    store = NodeStore()
    tree = merkle.CompactRange()
    for seq in range(n):
        leaf = merkle.leaf_hash(entry_at(shapes, seq))
        store.put(0, seq, leaf)
        for level, index, node in tree.append(leaf):
            store.put(level, index, node)
    return store


def ms(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) * 1e3, p99 * 1e3


def time_proofs(
    count: int,
    pick: Callable[[random.Random], tuple[int, int]],
    make: Callable[[int, int], list[bytes]],
    check: Callable[[int, int, list[bytes]], bool],
) -> tuple[list[float], list[float]]:
    rng = random.Random(2026)
    gen, ver = [], []
    for _ in range(count):
        a, b = pick(rng)
        t0 = time.perf_counter()
        proof = make(a, b)
        t1 = time.perf_counter()
        ok = check(a, b, proof)
        t2 = time.perf_counter()
        assert ok, (a, b)
        gen.append(t1 - t0)
        ver.append(t2 - t1)
    return gen, ver


def stored_proofs(
    store: NodeStore, shapes: list[tuple[bytes, bytes]], n: int, count: int,
    root_at: Callable[[int], bytes],
) -> list[tuple[str, float, float]]:
    """(proof, median ms, p99 ms) of proofs served from a SQLite log of `n` entries."""
    from broker.audit import reads

    with tempfile.TemporaryDirectory(prefix="proofs-bench-") as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'log.db'}")
        try:
            upgrade(engine)
            t0 = time.perf_counter()
            raw = engine.raw_connection()
            try:
                cursor = raw.cursor()
                cursor.execute("BEGIN")
                cursor.executemany(
                    "INSERT INTO audit_entry (seq, entry_id, action, org, purpose, time, bytes,"
                    " leaf_hash) VALUES (?, ?, 'hit', NULL, NULL, '2026-11-28 10:00:00.000000',"
                    " ?, ?)",
                    [(seq, f"e{seq}", entry_at(shapes, seq), store.leaf(seq))
                     for seq in range(n)])
                cursor.executemany(
                    "INSERT INTO audit_node (level, idx, hash) VALUES (?, ?, ?)",
                    [(level, index, store.get(level, index))
                     for level in range(1, len(store.levels))
                     for index in range(len(store.levels[level]) // HASH)])
                cursor.execute("COMMIT")
            finally:
                raw.close()
            print(f"setup: SQLite log of {n:,} entries written in {time.perf_counter() - t0:.1f} s")
            rng = random.Random(2027)
            inclusion, consistency = [], []
            for _ in range(count):
                size = rng.randint(1, n)
                index = rng.randrange(size)
                t0 = time.perf_counter()
                proof = reads.inclusion(engine, index, size)
                inclusion.append(time.perf_counter() - t0)
                hashes = [base64.b64decode(h) for h in proof["hashes"]]
                assert merkle.verify_inclusion(index, size, store.leaf(index), hashes,
                                               root_at(size))
                second = rng.randint(2, n)
                first = rng.randint(1, second - 1)
                t0 = time.perf_counter()
                proof = reads.consistency(engine, first, second)
                consistency.append(time.perf_counter() - t0)
                hashes = [base64.b64decode(h) for h in proof["hashes"]]
                assert merkle.verify_consistency(first, second, root_at(first),
                                                 root_at(second), hashes)
        finally:
            engine.dispose()
    return [("inclusion", *ms(inclusion)), ("consistency", *ms(consistency))]


def report_memory(
    inclusion: tuple[list[float], list[float]], consistency: tuple[list[float], list[float]]
) -> float:
    """Print the in-memory proofs' figures; the worst p99 of generating and verifying."""
    worst = 0.0
    for name, (gen, ver) in (("inclusion", inclusion), ("consistency", consistency)):
        both = [a + b for a, b in zip(gen, ver, strict=True)]
        (g50, g99), (v50, v99), (b50, b99) = ms(gen), ms(ver), ms(both)
        worst = max(worst, b99)
        print(
            f"{name} proof, ms median/p99: generate {g50:.3f}/{g99:.3f}, "
            f"verify {v50:.3f}/{v99:.3f}, both {b50:.3f}/{b99:.3f}"
        )
    return worst


def report_stored(rows: list[tuple[str, float, float]]) -> float:
    """Print the stored proofs' figures; the worst p99."""
    for name, median, p99 in rows:
        print(f"{name} proof from the SQLite log (service call, reads included), "
              f"ms median/p99: {median:.3f}/{p99:.3f}")
    return max(p99 for _, _, p99 in rows)


def cpu_name() -> str:
    return next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )


def micro(label: str, fn: Callable[[], object], number: int) -> str:
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    return f"{label}: {(time.perf_counter() - t0) / number * 1e6:.1f} µs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--proofs", type=int, default=1000)
    parser.add_argument("--no-store", action="store_true",
                        help="skip the proofs served from a SQLite log")
    args = parser.parse_args()
    n = args.entries

    print(f"date: {datetime.now(UTC):%Y-%m-%d}")
    print(f"machine: nproc {os.cpu_count()}, {cpu_name()}, Python {platform.python_version()}")

    shapes = templates()
    sizes = [len(entry_at(shapes, 10**6 + i)) for i in range(5)]
    print(f"entry sizes (bytes): {sizes}, mean {statistics.mean(sizes):.0f}")

    t0 = time.perf_counter()
    store = build(n, shapes)
    print(f"setup: node store of {n:,} entries built in {time.perf_counter() - t0:.2f} s")
    nodes = store.get
    roots: dict[int, bytes] = {}

    def root_at(size: int) -> bytes:
        if size not in roots:
            roots[size] = merkle.root(size, nodes)
        return roots[size]

    def pick_inclusion(rng: random.Random) -> tuple[int, int]:
        size = rng.randint(1, n)
        index = rng.randrange(size)
        root_at(size)
        return index, size

    def pick_consistency(rng: random.Random) -> tuple[int, int]:
        second = rng.randint(2, n)
        first = rng.randint(1, second - 1)
        root_at(first), root_at(second)
        return first, second

    inclusion = time_proofs(
        args.proofs,
        pick_inclusion,
        lambda i, size: merkle.inclusion_proof(i, size, nodes),
        lambda i, size, p: merkle.verify_inclusion(i, size, store.leaf(i), p, root_at(size)),
    )
    consistency = time_proofs(
        args.proofs,
        pick_consistency,
        lambda m, k: merkle.consistency_proof(m, k, nodes),
        lambda m, k, p: merkle.verify_consistency(m, k, root_at(m), root_at(k), p),
    )
    worst = report_memory(inclusion, consistency)

    if not args.no_store:
        worst = max(worst, report_stored(stored_proofs(store, shapes, n, args.proofs, root_at)))

    key = Ed25519PrivateKey.from_private_bytes(bytes(32))
    verifier = Verifier.for_private_key(ORIGIN, key)
    step = max(1, n // 100)
    checkpoints = [
        signed_checkpoint(ORIGIN, size, root_at(size), ORIGIN, key)
        for size in range(step, n + 1, step)
    ]

    def rows() -> Iterator[tuple[int, bytes, bytes]]:
        leaves = store.levels[0]
        for seq in range(n):
            yield seq, entry_at(shapes, seq), bytes(leaves[seq * HASH : (seq + 1) * HASH])

    t0 = time.perf_counter()
    for _ in rows():
        pass
    feed = time.perf_counter() - t0
    t0 = time.perf_counter()
    report = verify_log(rows(), checkpoints, verifier, ORIGIN)
    total = time.perf_counter() - t0
    assert report.ok, report.problems[:3]
    assert report.size == n
    assert report.root == root_at(n)
    net = (total - feed) / n * 1e6
    print(
        f"verify_log of {n:,} entries and {len(checkpoints)} checkpoints: {total:.2f} s "
        f"(of which {feed:.2f} s producing the rows; {net:.2f} µs an entry net)"
    )

    sample = entry_at(shapes, 424242 - 424242 % 5 + 4)
    entry = decode_entry(sample)
    value = entry.model_dump(mode="json")
    note = checkpoints[-1]
    print("per entry, for the appender and API:")
    for line in (
        micro("encode_entry (rfc8785)", lambda: encode_entry(entry), 2000),
        micro("canonical_json (C encoder)", lambda: canonical_json(value), 2000),
        micro("decode_entry (parse, validate, re-encode)", lambda: decode_entry(sample), 2000),
        micro("is_canonical", lambda: is_canonical(sample), 20000),
        micro("leaf_hash", lambda: merkle.leaf_hash(sample), 20000),
        micro(
            "signed_checkpoint", lambda: signed_checkpoint(ORIGIN, n, root_at(n), ORIGIN, key), 500
        ),
        micro("open_checkpoint", lambda: open_checkpoint(note, verifier, ORIGIN), 500),
    ):
        print(f"  {line}")
    per_million = total * 1_000_000 / n
    print(
        f"targets: proof < 5 ms: {'met' if worst < 5 else 'MISSED'} (worst p99 {worst:.3f} ms); "
        f"verify 1M < 10 s: {'met' if per_million < 10 else 'MISSED'} ({per_million:.2f} s)"
    )


if __name__ == "__main__":
    main()
