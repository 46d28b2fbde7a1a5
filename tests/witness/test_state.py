"""The witness's SQLite state: what it records, what it keeps as evidence, and its lock."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broker.core.checkpoint import checkpoint_body, sign_note
from broker.core.cosignature import verify_cosignatures
from broker.core.witness import Refusal
from broker.witness import Witness, WitnessState, follow
from tests.witness_kit import ORIGIN, TestLog, body

LOG = TestLog(30)
NOW = 1_767_225_600.0


def make_witness(folder: Path) -> Witness:
    key = Ed25519PrivateKey.from_private_bytes(b"\x11" * 32)
    return Witness("witness.test/w1", key, follow([LOG.vkey]), WitnessState(folder),
                   clock=lambda: NOW)


def refused(witness: Witness, request: bytes) -> Refusal:
    with pytest.raises(Refusal) as caught:
        witness.add_checkpoint(request)
    return caught.value


def test_a_cosigned_checkpoint_is_recorded_with_its_cosignature(tmp_path: Path) -> None:
    witness = make_witness(tmp_path)
    line = witness.add_checkpoint(LOG.request(0, 10))
    latest = witness.latest(ORIGIN)
    assert latest is not None
    assert (latest.origin, latest.size, latest.root) == (ORIGIN, 10, LOG.root(10))
    assert latest.note == LOG.checkpoint(10) + line
    [cosignature] = verify_cosignatures(latest.note, [witness.cosigner])
    assert cosignature.timestamp == int(NOW)
    witness.add_checkpoint(LOG.request(10, 30))
    assert witness.latest(ORIGIN).size == 30  # type: ignore[union-attr]
    assert witness.latest("other.example") is None


def test_signed_refusals_are_kept_once_with_a_count(tmp_path: Path) -> None:
    witness = make_witness(tmp_path)
    witness.add_checkpoint(LOG.request(0, 10))
    bad_proof = LOG.request(10, 30, proof=LOG.proof(9, 30))
    assert refused(witness, bad_proof).status == 422
    assert refused(witness, bad_proof).status == 422
    assert refused(witness, LOG.request(0, 30)).status == 409
    [proof, stale] = WitnessState(tmp_path).refusals()
    assert (proof.origin, proof.reason, proof.status, proof.times) == (
        ORIGIN, "bad_proof", 422, 2)
    assert proof.request == bad_proof
    assert (stale.reason, stale.status, stale.times) == ("old_size_stale", 409, 1)


def test_requests_nobody_trusted_signed_are_not_kept(tmp_path: Path) -> None:
    witness = make_witness(tmp_path)
    stranger = TestLog(5, origin="stranger.example")
    intruder = Ed25519PrivateKey.from_private_bytes(b"\x09" * 32)
    assert refused(witness, stranger.request(0, 5)).status == 404
    assert refused(witness, body(0, [], LOG.checkpoint(5, key=intruder))).status == 403
    assert refused(witness, b"old 0\n").status == 400
    assert WitnessState(tmp_path).refusals() == []
    assert witness.latest(ORIGIN) is None


def test_the_check_reads_the_state_only_once_it_holds_the_write_lock(tmp_path: Path) -> None:
    witness = make_witness(tmp_path)
    witness.add_checkpoint(LOG.request(0, 10))
    # Another writer (a second witness process on the same folder) holds the lock and
    # moves the size to 20; a request from 10 must wait for it and then be stale.
    other = sqlite3.connect(tmp_path / "witness.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("UPDATE checkpoints SET size = 20, root = ? WHERE origin = ?",
                  (LOG.root(20), ORIGIN))
    outcome: list[object] = []

    def submit() -> None:
        try:
            outcome.append(witness.add_checkpoint(LOG.request(10, 30)))
        except Refusal as refusal:
            outcome.append(refusal)

    thread = threading.Thread(target=submit)
    thread.start()
    time.sleep(0.5)
    assert outcome == []  # waiting for the lock, not judging a stale read
    other.execute("COMMIT")
    other.close()
    thread.join(timeout=15)
    [answer] = outcome
    assert isinstance(answer, Refusal)
    assert (answer.status, answer.latest_size) == (409, 20)
    assert witness.latest(ORIGIN).size == 20  # type: ignore[union-attr]


def test_a_log_may_be_followed_under_another_origin(tmp_path: Path) -> None:
    logs = follow([f"{LOG.vkey} elsewhere.example/log"])
    assert [(o, [v.name for v in vs]) for o, vs in logs.items()] == [
        ("elsewhere.example/log", [ORIGIN])]
    # LOG's key (named after its own origin) signs checkpoints of the other origin.
    note = sign_note(checkpoint_body("elsewhere.example/log", 3, LOG.root(3)), ORIGIN, LOG.key)
    key = Ed25519PrivateKey.from_private_bytes(b"\x11" * 32)
    witness = Witness("witness.test/w1", key, logs, WitnessState(tmp_path))
    assert witness.add_checkpoint(body(0, [], note)).startswith("— witness.test/w1 ")
    assert refused(witness, LOG.request(0, 3)).status == 404
