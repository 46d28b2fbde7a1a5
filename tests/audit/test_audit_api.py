"""The audit API against the app: who sees what, every read recorded, proofs that verify,
bad parameters as 422 problems, and a failing log answering 503 with nothing disclosed."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from broker.api.routes import audit as audit_api
from broker.app import create_app
from broker.audit.export import verify_export_file
from broker.core import merkle
from broker.core.checkpoint import open_checkpoint, parse_verifier_key, verify_receipt
from broker.runtime import Runtime
from broker.settings import Settings
from tests.audit.audit_kit import draft, inserts_refused

Headers = Callable[..., dict[str, str]]


@pytest.fixture
def client(settings: Settings, runtime: Runtime, api: TestClient) -> Iterator[TestClient]:
    """The app with the audit router (added here until the router list carries it)."""
    app = create_app(settings, runtime=runtime)
    if not any(getattr(r, "path", "").startswith("/v1/audit") for r in app.routes):
        app.include_router(audit_api.router)
    with TestClient(app) as made:
        yield made


def real_draft(number: int, runtime: Runtime, *, org: str, source: str,
               rule: str) -> dict[str, Any]:
    """A disclosure draft decided under the live pack by one of its rules (a partner's view
    depends on the rule's `reveal_source`)."""
    made = draft(number, org=org, source=source)
    made["policy"] = {"pack": runtime.policy.pack.name, "hash": runtime.policy.pack.hash}
    made["items"][0]["rule"] = rule
    return made


@pytest.fixture
def seeded(runtime: Runtime) -> dict[str, int]:
    """Acts of three organisations: gemeente asks about politie's signal, politie about
    its own, belastingdienst about netbeheerder's."""
    return {
        "gemeente_asks_politie": runtime.audit.record(real_draft(
            1, runtime, org="gemeente", source="politie", rule="gemeente-hennep-handhaving")).seq,
        "politie_asks_politie": runtime.audit.record(draft(2, org="politie",
                                                           source="politie")).seq,
        "belasting_asks_net": runtime.audit.record(draft(3, org="belastingdienst",
                                                         source="netbeheerder")).seq,
    }


def reads(runtime: Runtime) -> list[dict[str, Any]]:
    with runtime.engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT bytes FROM audit_entry WHERE action = 'audit_read' ORDER BY seq")).scalars()
        return [json.loads(row) for row in rows]


def all_items(client: TestClient, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        answer = client.get("/v1/audit/entries", headers=headers, params=query)
        assert answer.status_code == 200, answer.text
        items += answer.json()["items"]
        cursor = answer.json()["next_cursor"]
        if cursor is None:
            return items


def test_the_privacy_officer_sees_every_entry_and_the_read_is_recorded(
    client: TestClient, runtime: Runtime, auth_headers: Headers, seeded: dict[str, int]
) -> None:
    officer = auth_headers("riec", ["privacy_officer"])
    items = all_items(client, officer, action="disclosure", limit=1)
    assert [i["seq"] for i in items] == sorted(seeded.values(), reverse=True)
    first = items[-1]
    assert (first["actor"]["org"], first["purpose"], first["items"][0]["source"]) == (
        "gemeente", "integrale-controle", "politie")
    assert first["actor"]["client"] == "cl_gemeente"
    assert "subject_tags" in first["items"][0]
    recorded = reads(runtime)
    assert len(recorded) == 3  # one per page
    assert recorded[0]["actor"]["org"] == "riec"
    assert recorded[0]["objects"] == {"read": "entries", "action": "disclosure"}


def test_partners_see_their_own_acts_and_acts_on_their_own_signals(
    client: TestClient, auth_headers: Headers, seeded: dict[str, int]
) -> None:
    politie = auth_headers("politie", ["contributor"])
    seen = {i["seq"] for i in all_items(client, politie, action="disclosure")}
    assert seen == {seeded["gemeente_asks_politie"], seeded["politie_asks_politie"]}
    gemeente = auth_headers("gemeente", ["requester"])
    seen = {i["seq"] for i in all_items(client, gemeente, action="disclosure")}
    assert seen == {seeded["gemeente_asks_politie"]}
    hidden = seeded["belasting_asks_net"]
    for path in (f"/v1/audit/entries/{hidden}", f"/v1/audit/entries/{hidden}/receipt"):
        answer = client.get(path, headers=gemeente)
        assert answer.status_code == 404
        assert answer.headers["content-type"] == "application/problem+json"


def test_clients_without_a_reading_role_are_refused(
    client: TestClient, auth_headers: Headers, seeded: dict[str, int]
) -> None:
    admin = auth_headers("gemeente", ["admin"])
    assert client.get("/v1/audit/entries", headers=admin).status_code == 403
    requester = auth_headers("gemeente", ["requester"])
    for path in ("/v1/audit/verify", "/v1/audit/export"):
        assert client.get(path, headers=requester).status_code == 403
    assert client.get("/v1/audit/entries").status_code == 401


def test_an_entry_comes_with_its_bytes_and_leaf_hash(
    client: TestClient, auth_headers: Headers, seeded: dict[str, int]
) -> None:
    seq = seeded["politie_asks_politie"]
    answer = client.get(f"/v1/audit/entries/{seq}", headers=auth_headers("politie",
                                                                         ["requester"]))
    assert answer.status_code == 200
    body = answer.json()
    data = base64.b64decode(body["entry_b64"])
    assert base64.b64decode(body["leaf_hash"]) == merkle.leaf_hash(data)
    assert json.loads(data)["seq"] == seq == body["entry"]["seq"]


def test_a_receipt_verifies_offline_with_the_public_checkpoint_key(
    client: TestClient, auth_headers: Headers, seeded: dict[str, int], runtime: Runtime
) -> None:
    key = client.get("/v1/audit/checkpoint-key")  # no token
    assert key.status_code == 200
    verifier = parse_verifier_key(key.text)
    headers = auth_headers("politie", ["requester"])
    seq = seeded["politie_asks_politie"]  # a view that withholds nothing comes with bytes
    receipt = client.get(f"/v1/audit/entries/{seq}/receipt", headers=headers)
    assert receipt.status_code == 200
    assert receipt.headers["content-type"].startswith("text/plain")
    data = base64.b64decode(client.get(f"/v1/audit/entries/{seq}", headers=headers)
                            .json()["entry_b64"])
    origin = runtime.settings.audit_origin
    assert verify_receipt(receipt.text, data, verifier, origin)
    assert not verify_receipt(receipt.text, data + b" ", verifier, origin)


def test_checkpoint_and_proofs_verify_against_each_other(
    client: TestClient, auth_headers: Headers, seeded: dict[str, int], runtime: Runtime
) -> None:
    headers = auth_headers("gemeente", ["requester"])
    verifier = parse_verifier_key(client.get("/v1/audit/checkpoint-key").text)
    body = client.get("/v1/audit/checkpoint", headers=headers).json()
    checkpoint = open_checkpoint(body["note"], verifier, runtime.settings.audit_origin)
    assert (body["size"], base64.b64decode(body["root_hash"])) == (checkpoint.size,
                                                                    checkpoint.root)
    assert body["key_id"] == verifier.key_id.hex()
    size, root = checkpoint.size, checkpoint.root
    seq = seeded["politie_asks_politie"]
    own = auth_headers("politie", ["requester"])  # its view withholds nothing: a leaf hash
    leaf = base64.b64decode(client.get(f"/v1/audit/entries/{seq}", headers=own)
                            .json()["leaf_hash"])
    proof = client.get("/v1/audit/proofs/inclusion", headers=headers,
                       params={"seq": seq, "size": size}).json()
    assert (proof["leaf_index"], proof["tree_size"]) == (seq, size)
    hashes = [base64.b64decode(h) for h in proof["hashes"]]
    assert merkle.verify_inclusion(seq, size, leaf, hashes, root)
    later = client.get("/v1/audit/checkpoint", headers=headers).json()  # the log grew
    runtime.audit.signer.sign()
    newer = client.get("/v1/audit/checkpoint", headers=headers).json()
    assert newer["size"] > later["size"] >= size
    span = client.get("/v1/audit/proofs/consistency", headers=headers,
                      params={"from": size, "to": newer["size"]}).json()
    assert (span["from"], span["to"]) == (size, newer["size"])
    assert merkle.verify_consistency(size, newer["size"], root,
                                     base64.b64decode(newer["root_hash"]),
                                     [base64.b64decode(h) for h in span["hashes"]])


def test_live_verify_and_export_for_the_privacy_officer(
    client: TestClient, auth_headers: Headers, seeded: dict[str, int]
) -> None:
    officer = auth_headers("riec", ["privacy_officer"])
    report = client.get("/v1/audit/verify", headers=officer).json()
    assert report["ok"] is True
    assert report["problems"] == []
    answer = client.get("/v1/audit/export", headers=officer)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/jsonl")
    verifier = parse_verifier_key(client.get("/v1/audit/checkpoint-key").text)
    result = verify_export_file(answer.content.splitlines(keepends=True), verifier)
    assert result.ok, result.problems
    assert result.size >= report["size"]


BAD = [
    ("/v1/audit/entries", {"limit": 0}),
    ("/v1/audit/entries", {"limit": 1001}),
    ("/v1/audit/entries", {"limit": "many"}),
    ("/v1/audit/entries", {"action": "drop table"}),
    ("/v1/audit/entries", {"org": "' OR 1=1 --"}),
    ("/v1/audit/entries", {"purpose": "x" * 65}),
    ("/v1/audit/entries", {"since": "2026-11-28T10:00:00"}),
    ("/v1/audit/entries", {"until": "yesterday"}),
    ("/v1/audit/entries", {"cursor": "not-a-cursor"}),
    ("/v1/audit/entries/-1", {}),
    ("/v1/audit/entries/99999999999999999999", {}),
    ("/v1/audit/entries/abc/receipt", {}),
    ("/v1/audit/proofs/inclusion", {"seq": 5, "size": 5}),
    ("/v1/audit/proofs/inclusion", {"seq": 0, "size": 10**6}),
    ("/v1/audit/proofs/inclusion", {"seq": 0}),
    ("/v1/audit/proofs/consistency", {"from": 3, "to": 2}),
    ("/v1/audit/proofs/consistency", {"from": 1, "to": 10**6}),
    ("/v1/audit/proofs/consistency", {"from": -1, "to": 2}),
]


@pytest.mark.parametrize(("path", "params"), BAD)
def test_bad_parameters_are_422_problems(
    client: TestClient, auth_headers: Headers, seeded: dict[str, int], path: str,
    params: dict[str, Any],
) -> None:
    answer = client.get(path, headers=auth_headers("riec", ["privacy_officer"]), params=params)
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert answer.headers["content-type"] == "application/problem+json"
    assert body["status"] == 422
    assert body["errors"]


def test_an_entry_that_does_not_exist_is_404(
    client: TestClient, auth_headers: Headers, seeded: dict[str, int]
) -> None:
    answer = client.get("/v1/audit/entries/100000", headers=auth_headers("riec",
                                                                        ["privacy_officer"]))
    assert answer.status_code == 404


def test_when_the_read_cannot_be_recorded_nothing_is_disclosed(
    client: TestClient, auth_headers: Headers, seeded: dict[str, int], runtime: Runtime
) -> None:
    officer = auth_headers("riec", ["privacy_officer"])
    with inserts_refused(runtime.engine):
        for path in ("/v1/audit/entries",
                     f"/v1/audit/entries/{seeded['gemeente_asks_politie']}",
                     "/v1/audit/export"):
            answer = client.get(path, headers=officer)
            assert answer.status_code == 503
            assert answer.json()["code"] == "audit_unavailable"
            assert "items" not in answer.json()
            assert "entry_b64" not in answer.json()


def test_a_nul_in_the_query_is_refused_as_a_problem(
    client: TestClient, auth_headers: Headers, seeded: dict[str, int]
) -> None:
    answer = client.get("/v1/audit/entries", params={"cursor": "\u0000"},
                        headers=auth_headers("riec", ["privacy_officer"]))
    assert answer.status_code in (400, 422), answer.text
    assert answer.headers["content-type"] == "application/problem+json"
