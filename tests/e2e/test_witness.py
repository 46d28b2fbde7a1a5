"""A witness as a partner runs it: `broker witness init`, then `broker witness serve` on loopback.

Each test submits to its own log (one origin each), so they share one served witness and
still start from nothing. Cosignatures are checked here from the spec's layout with the
`cryptography` primitives, not with the witness's own code.
"""

from __future__ import annotations

import base64
import hashlib
import os
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tests.e2e.serving import REPO, free_port, serving
from tests.witness_kit import TestLog, body

NAME = "witness.partner.example/w1"
LOGS = {name: TestLog(64, origin=f"{name}.example/audit", seed=seed)
        for seed, name in enumerate(["good", "errors", "fork", "race", "monitor"], start=1)}


def environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("BROKER_", "SLUIS_"))}


def broker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "broker", *args], env=environment(),
                          cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          check=False)


@dataclass
class ServedWitness:
    url: str
    vkey: str
    state: Path

    def add(self, request: bytes) -> httpx.Response:
        return httpx.post(self.url + "/add-checkpoint", content=request, timeout=30)


@pytest.fixture(scope="module")
def witness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedWitness]:
    state = tmp_path_factory.mktemp("witness") / "state"
    init = broker("witness", "init", "--name", NAME, "--state", str(state))
    assert init.returncode == 0, init.stderr
    port = free_port()
    command = [sys.executable, "-m", "broker", "witness", "serve", "--state", str(state),
               "--host", "127.0.0.1", "--port", str(port)]
    for log in LOGS.values():
        command += ["--log", log.vkey]
    url = f"http://127.0.0.1:{port}"
    with serving(command, environment(), url, state.parent / "witness.log"):
        yield ServedWitness(url, init.stdout.strip(), state)


def verify_cosignature(vkey: str, checkpoint_note: str, line: str) -> int:
    """Check one cosignature line from tlog-cosignature's text; return its timestamp."""
    name, kid_hex, material = vkey.split("+", 2)
    raw_key = base64.b64decode(material)
    assert raw_key[0] == 0x04 and len(raw_key) == 33
    public = raw_key[1:]
    assert hashlib.sha256(name.encode() + b"\n\x04" + public).digest()[:4].hex() == kid_hex
    dash, signer, signature_b64 = line.rstrip("\n").split(" ")
    assert (dash, signer) == ("\u2014", name)
    raw = base64.b64decode(signature_b64)
    assert len(raw) == 4 + 8 + 64 and raw[:4].hex() == kid_hex
    timestamp = int.from_bytes(raw[4:12], "big")
    text = checkpoint_note.partition("\n\n")[0] + "\n"
    message = f"cosignature/v1\ntime {timestamp}\n{text}".encode()
    Ed25519PublicKey.from_public_bytes(public).verify(raw[12:], message)  # raises if bad
    return timestamp


def test_init_makes_an_owner_only_key_and_prints_its_vkey(witness: ServedWitness) -> None:
    assert stat.S_IMODE(witness.state.stat().st_mode) == 0o700
    key_file = witness.state / "witness.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert witness.vkey.startswith(NAME + "+")
    assert base64.b64decode(witness.vkey.split("+", 2)[2])[0] == 0x04
    again = broker("witness", "init", "--name", NAME, "--state", str(witness.state))
    assert again.returncode == 1
    assert "exists" in again.stderr
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_a_good_checkpoint_is_cosigned_and_extended_with_a_proof(
        witness: ServedWitness) -> None:
    log = LOGS["good"]
    first = witness.add(log.request(0, 10))
    assert first.status_code == 200
    assert first.text.count("\n") == 1 and first.text.startswith(f"\u2014 {NAME} ")
    assert verify_cosignature(witness.vkey, log.checkpoint(10), first.text) > 1_700_000_000
    grown = witness.add(log.request(10, 37))
    assert grown.status_code == 200
    verify_cosignature(witness.vkey, log.checkpoint(37), grown.text)
    same = witness.add(log.request(37, 37))
    assert same.status_code == 200
    verify_cosignature(witness.vkey, log.checkpoint(37), same.text)
    with pytest.raises(InvalidSignature):
        verify_cosignature(witness.vkey, log.checkpoint(36), grown.text)


def test_every_refusal_of_the_spec_has_its_status(witness: ServedWitness) -> None:
    log = LOGS["errors"]
    assert witness.add(log.request(0, 20)).status_code == 200
    unknown = TestLog(20, origin="unknown.example/audit", seed=40)
    assert witness.add(unknown.request(0, 20)).status_code == 404
    intruder = Ed25519PrivateKey.from_private_bytes(b"\x2a" * 32)
    forged = witness.add(body(20, log.proof(20, 30), log.checkpoint(30, key=intruder)))
    assert forged.status_code == 403
    above = witness.add(body(31, [], log.checkpoint(30)))
    assert above.status_code == 400
    stale = witness.add(log.request(10, 30))
    assert stale.status_code == 409
    assert stale.headers["content-type"] == "text/x.tlog.size"
    assert stale.text == "20\n"
    unseen = witness.add(log.request(0, 30))
    assert (unseen.status_code, unseen.text) == (409, "20\n")
    bad_proof = witness.add(log.request(20, 30, proof=log.proof(19, 30)))
    assert bad_proof.status_code == 422
    assert witness.add(b"old 20\n").status_code == 400
    assert witness.add(b"old 20\n\nnot a checkpoint\n").status_code == 400
    # None of these moved the witness: the real proof from 20 still is the only way on.
    assert witness.add(log.request(20, 30)).status_code == 200


def test_another_root_for_the_same_size_is_a_409(witness: ServedWitness) -> None:
    log = LOGS["fork"]
    assert witness.add(log.request(0, 16)).status_code == 200
    fork = TestLog(64, origin=log.origin, seed=3, prefix="rewritten")
    forked = witness.add(body(16, [], log.checkpoint(16, root=fork.root(16))))
    assert forked.status_code == 409
    assert forked.headers["content-type"] != "text/x.tlog.size"
    # A fork that grows past the cosigned size cannot prove consistency with it.
    grown = witness.add(body(16, fork.proof(16, 40), log.checkpoint(40, root=fork.root(40))))
    assert grown.status_code == 422


def test_refusals_of_signed_checkpoints_are_kept_as_evidence(witness: ServedWitness) -> None:
    with sqlite3.connect(f"file:{witness.state / 'witness.db'}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT origin, reason, status, request FROM refusals").fetchall()
    kept = {(origin, reason, status) for origin, reason, status, _ in rows}
    assert ("errors.example/audit", "old_size_too_large", 400) in kept
    assert ("errors.example/audit", "old_size_stale", 409) in kept
    assert ("errors.example/audit", "bad_proof", 422) in kept
    assert ("fork.example/audit", "root_conflict", 409) in kept
    assert not any(origin == "unknown.example/audit" for origin, *_ in rows)
    bodies = [request for origin, reason, _, request in rows if reason == "root_conflict"]
    assert bodies[0].startswith(b"old 16\n\nfork.example/audit\n16\n")


def test_concurrent_requests_cannot_roll_the_witness_back(witness: ServedWitness) -> None:
    log = LOGS["race"]
    assert witness.add(log.request(0, 8)).status_code == 200
    for start in (8, 40):
        sizes = range(start + 1, start + 13)  # twelve requests, all from the same old size
        barrier = threading.Barrier(len(sizes))
        answers: dict[int, httpx.Response] = {}

        def submit(size: int, start: int = start, barrier: threading.Barrier = barrier,
                   answers: dict[int, httpx.Response] = answers) -> None:
            request = log.request(start, size)
            with httpx.Client(timeout=30) as client:
                barrier.wait()
                answers[size] = client.post(witness.url + "/add-checkpoint", content=request)

        threads = [threading.Thread(target=submit, args=(size,)) for size in sizes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        won = [size for size, answer in answers.items() if answer.status_code == 200]
        assert len(won) == 1, {s: a.status_code for s, a in answers.items()}
        [winner] = won
        for size, answer in answers.items():
            if size != winner:
                assert (answer.status_code, answer.text) == (409, f"{winner}\n")
        latest = httpx.get(f"{witness.url}/checkpoints/{log.origin}", timeout=30)
        assert latest.text.startswith(f"{log.origin}\n{winner}\n")
        # Move on to the second round's common start from wherever the winner left it.
        if winner != 40 and start == 8:
            assert witness.add(log.request(winner, 40)).status_code == 200


def test_monitors_get_the_latest_cosigned_checkpoint(witness: ServedWitness) -> None:
    log = LOGS["monitor"]
    assert httpx.get(f"{witness.url}/checkpoints/{log.origin}", timeout=30).status_code == 404
    assert witness.add(log.request(0, 5)).status_code == 200
    cosigned = witness.add(log.request(5, 12))
    for path in (log.origin, quote(log.origin, safe="")):
        latest = httpx.get(f"{witness.url}/checkpoints/{path}", timeout=30)
        assert latest.status_code == 200
        assert latest.text == log.checkpoint(12) + cosigned.text
    verify_cosignature(witness.vkey, latest.text, latest.text.splitlines()[-1])


def test_serve_refuses_a_key_others_can_read_and_a_bad_log_key(tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert broker("witness", "init", "--name", NAME, "--state", str(state)).returncode == 0
    log = LOGS["good"]
    bad = broker("witness", "serve", "--state", str(state), "--log", log.vkey[:-4])
    assert bad.returncode == 1 and "--log" in bad.stderr
    (state / "witness.key").chmod(0o644)
    readable = broker("witness", "serve", "--state", str(state), "--log", log.vkey)
    assert readable.returncode == 1 and "chmod 600" in readable.stderr
    name = broker("witness", "init", "--name", "has space", "--state", str(tmp_path / "s2"))
    assert name.returncode == 1
    open_folder = tmp_path / "open"
    open_folder.mkdir(mode=0o755)
    open_folder.chmod(0o755)
    refused = broker("witness", "init", "--name", NAME, "--state", str(open_folder))
    assert refused.returncode == 1 and "chmod 700" in refused.stderr
    assert not (open_folder / "witness.key").exists()
