"""One broker on two nodes (docs/operations.md): two `broker serve` processes over one
PostgreSQL, each with its own working folder and only the key-encryption key file copied,
through real HTTP.

Concurrent load on both leaves a log that verifies without a gap; a client polling both
never sees a checkpoint smaller than one it saw; a token of one node works at the other;
a key rotated on one node is used by the other within seconds; a node started with
another policy folder does not change the live pack; killing the signing node moves
signing to the other.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.api.disclosure_kit import OTHER_BSN, drugs
from tests.api.test_live_pack import other_pack
from tests.security.conftest import ServedBroker, broker_env

CASE = "ZAAK-2026-0101"


@dataclass
class Deployment:
    a: ServedBroker
    b: ServedBroker


@pytest.fixture
def deployment(postgres_url: str, tmp_path: Path) -> Iterator[Deployment]:
    nodes = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir(mode=0o700)
        env = broker_env(folder, postgres_url)
        env.update({"BROKER_CHECKPOINT_EVERY_ENTRIES": "10",
                    "BROKER_CHECKPOINT_EVERY_SECONDS": "1",
                    "BROKER_AUDIT_CHECK_SECONDS": "0.5",
                    "BROKER_FISHING_SUBJECTS_PER_HOUR": "100000",
                    "BROKER_REQUEST_RATE_PER_MINUTE": "100000",
                    "BROKER_RELEASE_BUDGET_PER_HOUR": "100000"})
        nodes.append(ServedBroker(folder, env))
    a, b = nodes
    a.command("init")
    a.start()
    # The second node: the database URL and a copy of the key-encryption key file, and a
    # policy folder of its own that holds another pack.
    (b.directory / "keys").mkdir(mode=0o700)
    shutil.copyfile(a.directory / "keys" / "kek", b.directory / "keys" / "kek")
    (b.directory / "keys" / "kek").chmod(0o600)
    b.env["BROKER_POLICY_DIR"] = str(other_pack(b.directory))
    b.command("init")
    try:
        yield Deployment(a, b)
    finally:
        for node in nodes:
            node.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
            "X-Acting-User": "rechercheur-1"}


def leads(node: ServedBroker) -> bool:
    """Whether the node's log says it took the signer's role."""
    assert node.log_path is not None
    return '"event":"signer_leader"' in node.log_path.read_text(errors="replace")


def within(seconds: float, condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.1)


def post(node: ServedBroker, path: str, headers: dict[str, str], body: Any) -> Any:
    answer = node.call("POST", path, json.dumps(body).encode(), headers)
    assert answer.status in (200, 201), answer.body
    return answer.json()


def pseudonym(node: ServedBroker, headers: dict[str, str]) -> str:
    body = post(node, "/v1/disclosures", headers, {
        "purpose": "integrale-controle", "case_reference": CASE,
        "query": {"subject": {"bsn": drugs()["subject"]["bsn"]}}})
    (item,) = body["signals"]
    value: str = item["fields"]["subject.bsn"]
    return value


def test_two_nodes_behave_as_one(deployment: Deployment) -> None:
    a, b = deployment.a, deployment.b
    politie = bearer(a.token(*a.client("politie", "contributor")))
    post(a, "/v1/signals", politie, drugs())  # the one signal about BSN the gemeente asks
    within(10, lambda: leads(a))  # the first node to sign takes the role
    b.start()
    # The live pack is the database's, whatever b's folder holds.
    hashes = {node.call("GET", "/v1/policy", headers=bearer(node.token(
        *node.client("riec", "requester")))).json()["hash"] for node in (a, b)}
    assert len(hashes) == 1
    # One token, both nodes: the signing key is shared.
    gemeente = bearer(a.token(*a.client("gemeente", "requester")))
    assert b.call("GET", "/v1/purposes", headers=politie).status == 200

    # Load on both, and a client polling both for checkpoints.
    sizes: list[int] = []
    stop = threading.Event()
    reader = bearer(b.token(*b.client("riec", "requester")))

    def poll() -> None:
        nodes = (a, b)
        turn = 0
        while not stop.is_set():
            answer = nodes[turn % 2].call("GET", "/v1/audit/checkpoint", headers=reader)
            if answer.status == 200:
                sizes.append(int(answer.json()["size"]))
            turn += 1
            time.sleep(0.05)

    def load(node: ServedBroker, start: int) -> None:
        for number in range(start, start + 40):
            post(node, "/v1/signals", politie, drugs(bsn=OTHER_BSN, number=number))

    poller = threading.Thread(target=poll)
    writers = [threading.Thread(target=load, args=(node, start))
               for node, start in ((a, 1), (b, 100))]
    poller.start()
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    time.sleep(2.5)  # a checkpoint by time covers the last entries
    stop.set()
    poller.join()
    assert sizes and sizes == sorted(sizes), "a checkpoint smaller than one seen before"
    verified = json.loads(a.command("audit", "verify", "--json").stdout)
    assert verified["ok"] is True and verified["problems"] == []

    # A pseudonym key rotated on a is b's within seconds: both answer the same pseudonym.
    before = pseudonym(a, gemeente)
    assert pseudonym(b, gemeente) == before
    a.command("keys", "rotate", "pseudonym")
    within(5, lambda: pseudonym(a, gemeente) == pseudonym(b, gemeente) != before)

    # The signing node dies; the other signs from then on.
    assert leads(a) and not leads(b)
    size_then = int(b.call("GET", "/v1/audit/checkpoint", headers=reader).json()["size"])
    a.kill()
    for number in range(200, 215):
        post(b, "/v1/signals", politie, drugs(bsn=OTHER_BSN, number=number))
    within(15, lambda: int(b.call("GET", "/v1/audit/checkpoint",
                                  headers=reader).json()["size"]) > size_then + 15)
    assert leads(b)
    verified = json.loads(b.command("audit", "verify", "--json").stdout)
    assert verified["ok"] is True
