"""The tamper suite (docs/audit.md, "What tampering is detected"), on SQLite and PostgreSQL.

Each test builds a small fresh log per example, signs a checkpoint (the signer remembers
it outside the database), tampers as a superuser would, and holds live verification to
naming the entry where the log goes wrong. Positions and bytes are drawn by hypothesis;
examples are few because each one is a new database.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from broker.audit.appender import AuditLog
from broker.audit.integrity import LiveReport
from broker.audit.reads import (
    Scope,
    checkpoint_follows,
    consistency,
    inclusion,
    receipt,
)
from broker.audit.signer import CheckpointRefused
from broker.audit.tables import APP_ROLE, INSERT_ONLY
from broker.core import merkle
from broker.core.checkpoint import (
    Checkpoint,
    parse_checkpoint,
    signed_checkpoint,
    verify_receipt,
)
from broker.core.entry import canonical_json
from broker.errors import AuditUnavailable
from broker.keys import KeyRing
from tests.audit.audit_kit import ORIGIN, Databases, LogEnv, draft, fresh_env, make_env

EXAMPLES = settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SIZES = st.integers(min_value=4, max_value=11)
EDITABLE = ("action", "outcome", "purpose", "case_reference", "request_id", "objects")


def codes(report: LiveReport) -> set[str]:
    return {p.code for p in report.problems}


def named_ranges(report: LiveReport) -> list[tuple[int, int]]:
    found = []
    for problem in report.problems:
        for first, last in re.findall(r"seq (\d+)\.\.(\d+)", problem.message):
            found.append((int(first), int(last)))
    return found


def covers(report: LiveReport, seq: int) -> bool:
    return any(first <= seq <= last for first, last in named_ranges(report))


@contextmanager
def fresh(databases: Databases, keys: KeyRing, key_dir: Path, size: int) -> Iterator[LogEnv]:
    """A fresh log of `size` entries with a checkpoint over all of them."""
    with fresh_env(databases, keys, key_dir) as env:
        env.fill(size)
        env.signer.sign()
        assert env.verify().ok
        yield env


def head(note: str) -> Checkpoint:
    """The checkpoint a note signs (its signature was checked where it came from)."""
    return parse_checkpoint(note.split("\n\n")[0] + "\n")


def b64list(hashes: list[str]) -> list[bytes]:
    return [base64.b64decode(h) for h in hashes]


def entry_dict(env: LogEnv, seq: int) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(env.row(seq)[0])
    return value


def edited(entry: dict[str, Any], field: str, value: str) -> dict[str, Any]:
    changed = dict(entry)
    if field == "action":
        changed["action"] = "hit" if entry["action"] != "hit" else "refusal"
    elif field == "outcome":
        changed["outcome"] = "refused" if entry["outcome"] != "refused" else "granted"
    elif field == "objects":
        changed["objects"] = {**entry["objects"], "n": entry["objects"].get("n", 0) + 1}
    else:
        changed[field] = f"{entry[field]}{value}"
    return changed


def set_row(env: LogEnv, seq: int, data: bytes, leaf: bytes | None = None) -> None:
    if leaf is None:
        env.tamper(("UPDATE audit_entry SET bytes = :b WHERE seq = :s", {"b": data, "s": seq}))
    else:
        env.tamper(("UPDATE audit_entry SET bytes = :b, leaf_hash = :l WHERE seq = :s",
                    {"b": data, "l": leaf, "s": seq}))


# --- Entries ---


@EXAMPLES
@given(size=SIZES, data=st.data())
def test_an_edited_field_is_named(
    databases: Databases, keys: KeyRing, key_dir: Path, size: int, data: st.DataObject
) -> None:
    seq = data.draw(st.integers(0, size - 1), label="seq")
    field = data.draw(st.sampled_from(EDITABLE), label="field")
    suffix = data.draw(st.text("abcXYZ019-", min_size=1, max_size=5), label="suffix")
    fix_leaf = data.draw(st.booleans(), label="fix_leaf")
    with fresh(databases, keys, key_dir, size) as env:
        new = canonical_json(edited(entry_dict(env, seq), field, suffix))
        set_row(env, seq, new, merkle.leaf_hash(new) if fix_leaf else None)
        report = env.verify()
        assert not report.ok
        if fix_leaf:
            # The bytes are valid: only the signed root and the stored nodes disagree,
            # which narrows the change to a range, never past it.
            assert "checkpoint_root_mismatch" in codes(report)
            assert covers(report, seq)
            assert report.first_bad_seq is None
        else:
            assert report.first_bad_seq == seq
            assert "leaf_hash_mismatch" in codes(report)


NON_CANONICAL: dict[str, Callable[[dict[str, Any]], bytes]] = {
    "spaces": lambda e: json.dumps(e, sort_keys=True).encode(),
    "key order": lambda e: json.dumps(dict(reversed(list(e.items()))),
                                      separators=(",", ":")).encode(),
    "escaped": lambda e: canonical_json(e).replace(b'"v":1', b'"\\u0076":1'),
    "newline": lambda e: canonical_json(e) + b"\n",
    "number": lambda e: canonical_json(e).replace(b'"v":1', b'"v":1.0'),
}


@EXAMPLES
@given(size=SIZES, data=st.data())
def test_a_non_canonical_re_encoding_is_named(
    databases: Databases, keys: KeyRing, key_dir: Path, size: int, data: st.DataObject
) -> None:
    seq = data.draw(st.integers(0, size - 1), label="seq")
    how = data.draw(st.sampled_from(sorted(NON_CANONICAL)), label="how")
    fix_leaf = data.draw(st.booleans(), label="fix_leaf")
    with fresh(databases, keys, key_dir, size) as env:
        new = NON_CANONICAL[how](entry_dict(env, seq))
        set_row(env, seq, new, merkle.leaf_hash(new) if fix_leaf else None)
        report = env.verify()
        assert report.first_bad_seq == seq
        assert "entry_not_canonical" in codes(report)


@EXAMPLES
@given(size=SIZES, data=st.data())
def test_a_deleted_row_is_named(
    databases: Databases, keys: KeyRing, key_dir: Path, size: int, data: st.DataObject
) -> None:
    seq = data.draw(st.integers(0, size - 1), label="seq")
    with fresh(databases, keys, key_dir, size) as env:
        env.tamper(("DELETE FROM audit_entry WHERE seq = :s", {"s": seq}))
        report = env.verify()
        assert not report.ok
        assert report.first_bad_seq == seq


@EXAMPLES
@given(size=SIZES, data=st.data())
def test_two_reordered_rows_are_named(
    databases: Databases, keys: KeyRing, key_dir: Path, size: int, data: st.DataObject
) -> None:
    first = data.draw(st.integers(0, size - 2), label="first")
    second = data.draw(st.integers(first + 1, size - 1), label="second")
    with fresh(databases, keys, key_dir, size) as env:
        (a_bytes, a_leaf), (b_bytes, b_leaf) = env.row(first), env.row(second)
        sql = "UPDATE audit_entry SET bytes = :b, leaf_hash = :l WHERE seq = :s"
        env.tamper((sql, {"b": b_bytes, "l": b_leaf, "s": first}),
                   (sql, {"b": a_bytes, "l": a_leaf, "s": second}))
        report = env.verify()
        assert report.first_bad_seq == first
        assert "entry_seq_mismatch" in codes(report)


@EXAMPLES
@given(size=SIZES, data=st.data())
def test_a_truncated_tail_is_named(
    databases: Databases, keys: KeyRing, key_dir: Path, size: int, data: st.DataObject
) -> None:
    keep = data.draw(st.integers(0, size - 1), label="keep")
    drop_checkpoints = data.draw(st.booleans(), label="drop_checkpoints")
    with fresh(databases, keys, key_dir, size) as env:
        statements = [("DELETE FROM audit_entry WHERE seq >= :k", {"k": keep})]
        if drop_checkpoints:  # the signer's remembered head still knows the size
            statements.append(("DELETE FROM audit_checkpoint", {}))
        env.tamper(*statements)
        report = env.verify()
        assert report.first_bad_seq == keep
        assert "entries_missing" in codes(report)
        with pytest.raises(CheckpointRefused, match="rolled back or truncated"):
            env.signer.sign()


@EXAMPLES
@given(size=SIZES, data=st.data())
def test_a_forged_row_inserted_in_the_middle_is_named(
    databases: Databases, keys: KeyRing, key_dir: Path, size: int, data: st.DataObject
) -> None:
    at = data.draw(st.integers(0, size - 1), label="at")
    with fresh(databases, keys, key_dir, size) as env:
        # A well-formed entry claiming seq `at`, its leaf hash right; later rows move up.
        forged = edited(entry_dict(env, at), "request_id", "-forged")
        forged["id"] = "ae_forged"
        new = canonical_json(forged)
        shift = [("UPDATE audit_entry SET seq = seq + 1 WHERE seq = :s", {"s": s})
                 for s in range(size - 1, at - 1, -1)]
        insert = (
            "INSERT INTO audit_entry (seq, entry_id, action, org, purpose, time, bytes, "
            "leaf_hash) SELECT :s, 'ae_forged', action, org, purpose, time, :b, :l "
            "FROM audit_entry WHERE seq = :s + 1",
            {"s": at, "b": new, "l": merkle.leaf_hash(new)},
        )
        env.tamper(*shift, insert)
        report = env.verify()
        assert report.first_bad_seq == at
        assert "entry_displaced" in codes(report)


FORGERIES = ("garbage", "replay", "wrong_leaf", "wrong_origin", "no_nodes")


@EXAMPLES
@given(size=SIZES, data=st.data())
def test_a_row_appended_behind_the_appenders_back_is_named(
    databases: Databases, keys: KeyRing, key_dir: Path, size: int, data: st.DataObject
) -> None:
    """A row written straight into the table: whatever the forger gets wrong names it,
    and the appender neither overwrites it nor builds on a bad one. (A perfect forgery
    at an even position completes no node and is indistinguishable from an append:
    nothing but a secret could tell, and it is not yet covered by any checkpoint.)"""
    kind = data.draw(st.sampled_from(FORGERIES), label="kind")
    noise = data.draw(st.binary(min_size=1, max_size=40), label="noise")
    with fresh(databases, keys, key_dir, size) as env:
        seq = size
        model = entry_dict(env, size - 1)
        model.update(seq=seq, id="ae_forged", request_id="req-forged")
        if kind == "wrong_origin":
            model["origin"] = "other.example/audit"
        good = canonical_json(model)
        rows = {
            "garbage": (noise, merkle.leaf_hash(noise)),
            "replay": env.row(data.draw(st.integers(0, size - 1), label="replayed")),
            "wrong_leaf": (good, merkle.leaf_hash(good + noise)),
            "wrong_origin": (good, merkle.leaf_hash(good)),
            "no_nodes": (good, merkle.leaf_hash(good)),
        }
        if kind == "no_nodes" and seq % 2 == 0:
            # Make the forged row complete a node: append one honest entry first.
            env.fill(1, start=100)
            seq += 1
            model.update(seq=seq)
            good = canonical_json(model)
            rows["no_nodes"] = (good, merkle.leaf_hash(good))
        forged_bytes, forged_leaf = rows[kind]
        env.tamper((
            "INSERT INTO audit_entry (seq, entry_id, action, org, purpose, time, bytes, "
            "leaf_hash) SELECT :s, 'ae_forged', action, org, purpose, time, :b, :l "
            "FROM audit_entry WHERE seq = 0",
            {"s": seq, "b": forged_bytes, "l": forged_leaf},
        ))
        report = env.verify()
        assert report.first_bad_seq == seq
        # The appender re-checks rows it did not write and will not build on a bad one:
        # it fails closed (and says so through `healthy`) instead of overwriting it.
        with pytest.raises(AuditUnavailable):
            env.log.record(draft(500))
        assert not env.log.healthy
        assert env.scalar("SELECT max(seq) FROM audit_entry") == seq


# --- Whole-log rewrites and rollbacks ---


def rehash(env: LogEnv, seq: int, new: bytes) -> list[tuple[str, dict[str, Any]]]:
    """Statements replacing entry `seq` and every tree node, self-consistently."""
    with env.engine.connect() as conn:
        leaves = [bytes(r[0]) for r in conn.execute(
            text("SELECT leaf_hash FROM audit_entry ORDER BY seq"))]
    leaves[seq] = merkle.leaf_hash(new)
    tree = merkle.CompactRange()
    nodes = [node for leaf in leaves for node in tree.append(leaf)]
    statements: list[tuple[str, dict[str, Any]]] = [
        ("UPDATE audit_entry SET bytes = :b, leaf_hash = :l WHERE seq = :s",
         {"b": new, "l": leaves[seq], "s": seq}),
        ("DELETE FROM audit_node", {}),
    ]
    statements += [("INSERT INTO audit_node (level, idx, hash) VALUES (:v, :i, :h)",
                    {"v": level, "i": index, "h": hashed}) for level, index, hashed in nodes]
    return statements


@EXAMPLES
@given(size=SIZES, data=st.data())
def test_a_self_consistent_rehashed_fork_is_caught_against_an_older_checkpoint(
    databases: Databases, keys: KeyRing, key_dir: Path, size: int, data: st.DataObject
) -> None:
    seq = data.draw(st.integers(0, size - 1), label="seq")
    drop_checkpoints = data.draw(st.booleans(), label="drop_checkpoints")
    with fresh(databases, keys, key_dir, size) as env:
        seen = head(env.signer.sign().note)
        new = canonical_json(edited(entry_dict(env, seq), "purpose", "-fork"))
        statements = rehash(env, seq, new)
        if drop_checkpoints:
            statements.append(("DELETE FROM audit_checkpoint", {}))
        env.tamper(*statements)
        report = env.verify()
        assert not report.ok
        assert "checkpoint_root_mismatch" in codes(report) or "checkpoint_fork" in codes(report)
        assert "node_mismatch" not in codes(report)  # the fork is self-consistent
        if "checkpoint_root_mismatch" in codes(report):
            assert covers(report, seq)
        with pytest.raises(CheckpointRefused, match="differs|rewritten"):
            env.signer.sign()
        # A partner holding the older checkpoint sees the fork in what the forked log
        # serves next (a restarted appender builds on the forged nodes).
        restarted = AuditLog(env.engine, keys, env.settings, signer=env.signer)
        restarted.record(draft(200))
        forked_root = merkle.root_from_leaf_hashes([env.row(s)[1] for s in range(size + 1)])
        served = Checkpoint(ORIGIN, size + 1, forked_root)
        proof = b64list(consistency(env.engine, seen.size, size + 1)["hashes"])
        assert checkpoint_follows(seen, served, proof) is not None
        assert checkpoint_follows(seen, Checkpoint(ORIGIN, size, forked_root), []) is not None


@EXAMPLES
@given(size=SIZES, data=st.data())
def test_a_rollback_to_an_older_copy_is_refused_by_the_signer_and_reported(
    databases: Databases, keys: KeyRing, key_dir: Path, size: int, data: st.DataObject,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    more = data.draw(st.integers(1, 6), label="more")
    state_dir = tmp_path_factory.mktemp("rollback")
    url = databases.create()
    env = make_env(url, keys, key_dir, state_dir)
    try:
        env.fill(size)
        env.signer.sign()
        env.engine.dispose()  # PostgreSQL copies only a database nobody is connected to
        backup = databases.create(template=url)
        env.fill(more, start=size)
        env.signer.sign()
        env.engine.dispose()
        restored = make_env(backup, keys, key_dir, state_dir)
        try:
            with pytest.raises(CheckpointRefused, match="rolled back"):
                restored.signer.sign()
            report = restored.verify()
            assert report.first_bad_seq == size
            assert "entries_missing" in codes(report)
            # Appending on the restored copy re-uses lost positions: still refused.
            restored.fill(more + 1, start=500)
            with pytest.raises(CheckpointRefused, match="rewritten"):
                restored.signer.sign()
            assert not restored.verify().ok
        finally:
            restored.engine.dispose()
            databases.drop(backup)
    finally:
        env.engine.dispose()
        databases.drop(url)


# --- Checkpoints ---


def insert_note(env: LogEnv, note: str, size: int, root: bytes) -> None:
    env.tamper((
        "INSERT INTO audit_checkpoint (size, root_hash, time, note) "
        "SELECT :n, :r, time, :t FROM audit_checkpoint ORDER BY id LIMIT 1",
        {"n": size, "r": root, "t": note},
    ))


@EXAMPLES
@given(size=SIZES, data=st.data())
def test_a_replayed_old_checkpoint_is_an_alarm(
    databases: Databases, keys: KeyRing, key_dir: Path, size: int, data: st.DataObject
) -> None:
    early = data.draw(st.integers(1, size - 1), label="early")
    with fresh_env(databases, keys, key_dir) as env:
        env.fill(early)
        old = env.signer.sign()
        env.fill(size - early, start=early)
        latest = env.signer.sign()
        insert_note(env, old.note, old.size, old.root)  # served as the newest now
        report = env.verify()
        assert "checkpoint_replayed" in codes(report)
        assert "older" in (checkpoint_follows(head(latest.note), head(old.note), []) or "")


@EXAMPLES
@given(size=SIZES, fake_root=st.binary(min_size=32, max_size=32))
def test_two_roots_for_one_size_are_an_alarm(
    databases: Databases, keys: KeyRing, key_dir: Path, size: int, fake_root: bytes
) -> None:
    with fresh(databases, keys, key_dir, size) as env:
        real = env.signer.sign()
        if fake_root == real.root:
            return
        # Only the log's own key can sign this: a misbehaving or compromised log.
        note = signed_checkpoint(ORIGIN, size, fake_root, ORIGIN,
                                 keys.active_checkpoint.private_key)
        insert_note(env, note, size, fake_root)
        assert "checkpoint_fork" in codes(env.verify())
        assert "two different roots" in (
            checkpoint_follows(head(real.note), head(note), []) or "")


@EXAMPLES
@given(size=SIZES, which=st.sampled_from(["origin", "key"]), seed=st.binary(min_size=32,
                                                                             max_size=32))
def test_a_checkpoint_of_another_origin_or_key_is_rejected(
    databases: Databases, keys: KeyRing, key_dir: Path, size: int, which: str, seed: bytes
) -> None:
    with fresh(databases, keys, key_dir, size) as env:
        real = env.signer.sign()
        if which == "origin":
            note = signed_checkpoint("other.example/audit", size, real.root, ORIGIN,
                                     keys.active_checkpoint.private_key)
            expected = "checkpoint_origin"
        else:
            stranger = Ed25519PrivateKey.from_private_bytes(seed)
            note = signed_checkpoint(ORIGIN, size, real.root, ORIGIN, stranger)
            expected = "checkpoint_invalid"
        insert_note(env, note, size, real.root)
        assert expected in codes(env.verify())


# --- Proofs ---


def corrupt(hashes: list[bytes], how: str, where: int, bit: int) -> list[bytes]:
    changed = list(hashes)
    if how == "flip" and changed:
        target = changed[where % len(changed)]
        index = bit // 8 % 32
        changed[where % len(changed)] = (target[:index] + bytes([target[index] ^ (1 << bit % 8)])
                                         + target[index + 1 :])
    elif how == "drop" and changed:
        del changed[where % len(changed)]
    elif how == "extra":
        changed.insert(where % (len(changed) + 1), bytes(32))
    elif how == "swap" and len(changed) > 1 and changed[0] != changed[-1]:
        changed[0], changed[-1] = changed[-1], changed[0]
    else:
        changed.append(bytes([bit % 256]) * 32)
    return changed


@EXAMPLES
@given(
    size=SIZES, data=st.data(), how=st.sampled_from(["flip", "drop", "extra", "swap"]),
    where=st.integers(0, 10), bit=st.integers(0, 255),
)
def test_corrupted_proofs_and_receipts_do_not_verify(
    databases: Databases, keys: KeyRing, key_dir: Path, size: int, data: st.DataObject,
    how: str, where: int, bit: int,
) -> None:
    seq = data.draw(st.integers(0, size - 1), label="seq")
    older = data.draw(st.integers(1, size - 1), label="older")
    with fresh(databases, keys, key_dir, size) as env:
        checkpoint = env.signer.sign()
        old_root = merkle.root_from_leaf_hashes([env.row(s)[1] for s in range(older)])
        leaf = env.row(seq)[1]
        path = b64list(inclusion(env.engine, seq, size)["hashes"])
        assert merkle.verify_inclusion(seq, size, leaf, path, checkpoint.root)
        assert not merkle.verify_inclusion(
            seq, size, leaf, corrupt(path, how, where, bit), checkpoint.root)
        span = b64list(consistency(env.engine, older, size)["hashes"])
        assert merkle.verify_consistency(older, size, old_root, checkpoint.root, span)
        assert not merkle.verify_consistency(
            older, size, old_root, checkpoint.root, corrupt(span, how, where, bit))
        text_receipt = receipt(env.engine, env.signer, Scope.everything(), seq)
        entry = env.row(seq)[0]
        verifier = env.signer.verifier()
        assert verify_receipt(text_receipt, entry, verifier, ORIGIN)
        lines = text_receipt.split("\n")
        proof_lines = list(range(2, lines.index("")))
        if proof_lines:
            target = proof_lines[where % len(proof_lines)]
            flipped = corrupt([base64.b64decode(lines[target])], "flip", 0, bit)[0]
            lines[target] = base64.b64encode(flipped).decode()
        else:
            lines[1] = f"index {seq + 1}"
        assert not verify_receipt("\n".join(lines), entry, verifier, ORIGIN)
        # A corrupted stored node: the proofs served from it no longer verify, and live
        # verification names the node.
        level = data.draw(st.integers(1, (size - 1).bit_length() - 1), label="level")
        env.tamper(("UPDATE audit_node SET hash = :h WHERE level = :v AND idx = 0",
                    {"h": bytes([bit]) * 32, "v": level}))
        assert "node_mismatch" in codes(env.verify())
        right = 2**level  # the first leaf whose proof holds node (level, 0)
        served = b64list(inclusion(env.engine, right, size)["hashes"])
        assert not merkle.verify_inclusion(
            right, size, env.row(right)[1], served, checkpoint.root)


@EXAMPLES
@given(exponent=st.integers(2, 4), data=st.data())
def test_a_leaf_cannot_pose_as_an_inner_node(
    databases: Databases, keys: KeyRing, key_dir: Path, exponent: int, data: st.DataObject
) -> None:
    """RFC 9162's 0x00/0x01 prefixes: the 64 bytes under an inner node, offered as an
    entry, hash to something else, so no proof makes them a leaf of the tree."""
    size = 2**exponent
    index = data.draw(st.integers(0, size // 2 - 1), label="index")
    with fresh(databases, keys, key_dir, size) as env:
        checkpoint = env.signer.sign()
        left, right = env.row(2 * index)[1], env.row(2 * index + 1)[1]
        node = merkle.node_hash(left, right)
        upper = b64list(inclusion(env.engine, 2 * index, size)["hashes"])[1:]
        # Without the prefixes the inner node would verify as leaf `index` of a tree of
        # size/2 with the same root: that is the attack the prefixes stop.
        assert merkle.verify_inclusion(index, size // 2, node, upper, checkpoint.root)
        assert not merkle.verify_inclusion(
            index, size // 2, merkle.leaf_hash(left + right), upper, checkpoint.root)
        # Stored as an entry in place of its two children, the verifier names it.
        env.tamper(
            ("DELETE FROM audit_entry WHERE seq = :s", {"s": 2 * index + 1}),
            ("UPDATE audit_entry SET bytes = :b, leaf_hash = :l WHERE seq = :s",
             {"b": left + right, "l": node, "s": 2 * index}),
        )
        report = env.verify()
        assert report.first_bad_seq == 2 * index
        assert {"leaf_hash_mismatch", "entry_not_canonical"} <= codes(report)


# --- The application's own connection ---


def execute_as(env: LogEnv, role: str | None, sql: str, params: dict[str, Any]) -> None:
    with env.engine.connect() as conn, conn.begin():
        if role:
            conn.execute(text(f"SET LOCAL ROLE {role}"))
        conn.execute(text(sql), params)


@EXAMPLES
@given(size=SIZES, data=st.data())
def test_the_applications_connection_cannot_change_the_log(
    databases: Databases, keys: KeyRing, key_dir: Path, size: int, data: st.DataObject
) -> None:
    seq = data.draw(st.integers(0, size - 1), label="seq")
    noise = data.draw(st.binary(min_size=1, max_size=64), label="noise")
    table = data.draw(st.sampled_from(INSERT_ONLY), label="table")
    with fresh(databases, keys, key_dir, size) as env:
        before = env.row(seq)
        changes: dict[str, list[tuple[str, dict[str, Any]]]] = {
            "audit_entry": [("UPDATE audit_entry SET bytes = :b WHERE seq = :s",
                             {"b": noise, "s": seq}),
                            ("DELETE FROM audit_entry WHERE seq = :s", {"s": seq})],
            "audit_node": [("UPDATE audit_node SET hash = :b", {"b": noise}),
                           ("DELETE FROM audit_node", {})],
            "audit_checkpoint": [("UPDATE audit_checkpoint SET note = 'x'", {}),
                                 ("DELETE FROM audit_checkpoint", {})],
            "audit_entry_org": [("UPDATE audit_entry_org SET org = 'x'", {}),
                                ("DELETE FROM audit_entry_org WHERE seq = :s", {"s": seq})],
        }
        statements = changes[table]
        if env.postgres:
            statements.append((f"TRUNCATE {table}", {}))
        roles = [None, APP_ROLE] if env.postgres else [None]
        for role in roles:
            for sql, params in statements:
                with pytest.raises(DBAPIError):
                    execute_as(env, role, sql, params)
        assert env.row(seq) == before
        assert env.verify().ok
