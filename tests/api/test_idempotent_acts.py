"""`Idempotency-Key` on the audited creating POSTs (disclosures, hits, area summaries,
re-identification requests): a retry with the same key and body gets the first answer,
`audit_seq` included, and adds no audit entry; another body is 409; the first answer is
stored in the entry's own transaction. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text, update

from broker.auth.actors import system_actor
from broker.clock import utcnow
from broker.runtime import Runtime
from broker.services.idempotency import MARK, RECORD, SIGNAL
from broker.services.retention import run_retention
from tests.api.disclosure_kit import BAG_ID, BSN, POSTCODE, drugs, energy, entry_at, log_size
from tests.audit.audit_kit import inserts_refused

Headers = Callable[..., dict[str, str]]

ACTS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    # route: (path, body, the same body changed)
    "disclosure": ("/v1/disclosures",
                   {"purpose": "integrale-controle", "case_reference": "ZAAK-1",
                    "query": {"subject": {"bsn": BSN}}},
                   {"purpose": "integrale-controle", "case_reference": "ZAAK-2",
                    "query": {"subject": {"bsn": BSN}}}),
    "hit": ("/v1/hits",
            {"purpose": "integrale-controle", "case_reference": "ZAAK-1",
             "subject": {"bag_id": BAG_ID}},
            {"purpose": "integrale-controle", "case_reference": "ZAAK-1",
             "subject": {"bsn": BSN}}),
    "area_summary": ("/v1/area-summaries",
                     {"purpose": "integrale-controle", "case_reference": "ZAAK-1",
                      "area": {"postcode": POSTCODE[:4]}},
                     {"purpose": "integrale-controle", "case_reference": "ZAAK-1",
                      "area": {"postcode": POSTCODE}}),
}


@pytest.fixture
def signals(api: TestClient, auth_headers: Headers) -> None:
    for org, signal in (("politie", drugs()), ("netbeheerder", energy())):
        made = api.post("/v1/signals", json=signal, headers=auth_headers(org, ["contributor"]))
        assert made.status_code == 201, made.text


def acts(runtime: Runtime, since: int, action: str) -> list[Any]:
    return [e for e in (entry_at(runtime, s) for s in range(since, log_size(runtime)))
            if e.action == action]


@pytest.mark.parametrize("action", sorted(ACTS))
def test_a_retry_gets_the_first_answer_and_no_second_entry(
    api: TestClient, auth_headers: Headers, runtime: Runtime, signals: None, action: str
) -> None:
    path, body, other = ACTS[action]
    gemeente = {**auth_headers("gemeente", ["requester"]), "Idempotency-Key": f"k-{action}"}
    start = log_size(runtime)
    first = api.post(path, json=body, headers=gemeente)
    assert first.status_code == 200, first.text
    again = api.post(path, json=body, headers=gemeente)
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    (entry,) = acts(runtime, start, action)
    assert entry.seq == first.json()["audit_seq"]
    assert entry.objects[MARK].startswith("idr_")
    size = log_size(runtime)
    conflict = api.post(path, json=other, headers=gemeente)
    assert conflict.status_code == 409, conflict.text
    assert conflict.headers["content-type"] == "application/problem+json"
    assert log_size(runtime) == size
    # without a key, or with another key, each call is its own act
    plain = {k: v for k, v in gemeente.items() if k != "Idempotency-Key"}
    assert api.post(path, json=body, headers=plain).json()["audit_seq"] > entry.seq
    fresh = api.post(path, json=body, headers={**gemeente, "Idempotency-Key": "k-other"})
    assert fresh.json()["audit_seq"] > entry.seq
    assert len(acts(runtime, start, action)) == 3


def test_a_key_belongs_to_its_client(
    api: TestClient, auth_headers: Headers, runtime: Runtime, signals: None
) -> None:
    path, body, _ = ACTS["disclosure"]
    one = api.post(path, json=body, headers={**auth_headers("gemeente", ["requester"]),
                                             "Idempotency-Key": "shared"})
    two = api.post(path, json=body, headers={**auth_headers("gemeente", ["requester"]),
                                             "Idempotency-Key": "shared"})
    assert one.status_code == two.status_code == 200
    assert one.json()["disclosure_id"] != two.json()["disclosure_id"]


def test_the_stored_request_hash_is_keyed(
    api: TestClient, auth_headers: Headers, runtime: Runtime, signals: None
) -> None:
    """A body naming a BSN must not leave an unkeyed (brute-forceable) hash of it."""
    path, body, _ = ACTS["disclosure"]
    headers = {**auth_headers("gemeente", ["requester"]), "Idempotency-Key": "keyed"}
    assert api.post(path, json=body, headers=headers).status_code == 200
    with runtime.engine.connect() as conn:
        (stored,) = conn.execute(text("SELECT request_hash FROM idempotency_record")).scalars()
    dumped = {**body, "confidential_until": None}
    dumped["query"] = {"subject": {"bsn": BSN, "kvk": None, "plate": None, "bag_id": None},
                       "address": None, "area": None, "signals": None, "categories": None}
    plain = json.dumps(dumped, sort_keys=True, separators=(",", ":"))
    assert stored != hashlib.sha256(f"disclosures.create\n{plain}".encode()).hexdigest()
    assert len(stored) == 64


def test_a_refused_append_stores_no_first_answer(
    api: TestClient, auth_headers: Headers, runtime: Runtime, signals: None
) -> None:
    """The record is written in the entry's transaction: when the append fails (503),
    nothing is remembered, and a retry after recovery is answered anew, audited once."""
    path, body, _ = ACTS["hit"]
    headers = {**auth_headers("gemeente", ["requester"]), "Idempotency-Key": "fails-first"}
    with inserts_refused(runtime.engine):
        failed = api.post(path, json=body, headers=headers)
        assert failed.status_code == 503, failed.text
    with runtime.engine.begin() as conn:
        stored = conn.execute(text("SELECT count(*) FROM idempotency_record")).scalar_one()
    assert stored == 0
    start = log_size(runtime)
    retried = api.post(path, json=body, headers=headers)
    assert retried.status_code == 200, retried.text
    assert api.post(path, json=body, headers=headers).json() == retried.json()
    assert len(acts(runtime, start, "hit")) == 1


def test_concurrent_retries_make_one_act(
    api: TestClient, auth_headers: Headers, runtime: Runtime, signals: None
) -> None:
    """Retries racing each other: one entry, and every caller gets the first answer."""
    path, body, _ = ACTS["hit"]
    headers = {**auth_headers("gemeente", ["requester"]), "Idempotency-Key": "race"}
    start = log_size(runtime)
    barrier = threading.Barrier(4)
    answers: list[Any] = []

    def ask() -> None:
        barrier.wait()
        answers.append(api.post(path, json=body, headers=headers))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
    assert all(a.json() == answers[0].json() for a in answers)
    (entry,) = acts(runtime, start, "hit")
    assert entry.seq == answers[0].json()["audit_seq"]


# --- re-identification requests ------------------------------------------------------------


@pytest.fixture
def pseudonymised(api: TestClient, auth_headers: Headers, signals: None) -> dict[str, Any]:
    gemeente = auth_headers("gemeente", ["requester"], acting_user="handhaver-2")
    disclosed = api.post("/v1/disclosures", json=ACTS["disclosure"][1], headers=gemeente).json()
    (signal,) = [s for s in disclosed["signals"] if "subject.bsn" in s["fields"]]
    return {"headers": gemeente, "body": {
        "disclosure_id": disclosed["disclosure_id"], "ref": signal["ref"],
        "field": "subject.bsn", "justification": "Sluiting pand, art. 13b Opiumwet"}}


def test_a_retried_reidentification_request_is_one_request(
    api: TestClient, runtime: Runtime, pseudonymised: dict[str, Any]
) -> None:
    headers = {**pseudonymised["headers"], "Idempotency-Key": "reid-1"}
    start = log_size(runtime)
    first = api.post("/v1/reidentifications", json=pseudonymised["body"], headers=headers)
    assert first.status_code == 202, first.text
    again = api.post("/v1/reidentifications", json=pseudonymised["body"], headers=headers)
    assert again.status_code == 202 and again.json() == first.json()
    assert first.json()["status"] == "pending" and first.json()["audit_seq"] >= start
    shown = api.get(f"/v1/reidentifications/{first.json()['id']}",
                    headers=pseudonymised["headers"]).json()
    assert shown == {k: first.json()[k] for k in shown}
    with runtime.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM reidentification")).scalar_one() == 1
    (entry,) = acts(runtime, start, "reidentification_requested")
    assert entry.seq == first.json()["audit_seq"]
    changed = {**pseudonymised["body"], "justification": "Another reason"}
    assert api.post("/v1/reidentifications", json=changed, headers=headers).status_code == 409


# --- Lifetime and erasure of stored answers ---


def _stored(runtime: Runtime) -> tuple[int, int]:
    with runtime.engine.connect() as conn:
        records = conn.execute(text("SELECT count(*) FROM idempotency_record")).scalar_one()
        mentions = conn.execute(text("SELECT count(*) FROM idempotency_signal")).scalar_one()
    return int(records), int(mentions)


def test_erasing_a_released_signal_deletes_the_stored_answer(
    api: TestClient, auth_headers: Headers, runtime: Runtime
) -> None:
    """A stored disclosure answer holds the released values under the master key, not the
    signal's own: erasure must take it along, or a retry would still hand them out."""
    politie = auth_headers("politie", ["contributor"])
    made = api.post("/v1/signals", json=drugs(), headers=politie).json()
    path, body, _ = ACTS["disclosure"]
    gemeente = {**auth_headers("gemeente", ["requester"]), "Idempotency-Key": "k-erase"}
    first = api.post(path, json=body, headers=gemeente)
    assert first.status_code == 200 and first.json()["signals"], first.text
    assert _stored(runtime) == (1, 1)
    assert api.delete(f"/v1/signals/{made['id']}", headers=politie).status_code == 204
    assert _stored(runtime) == (0, 0)
    again = api.post(path, json=body, headers=gemeente)  # a new request now
    assert again.status_code == 200, again.text
    assert again.json()["disclosure_id"] != first.json()["disclosure_id"]
    assert again.json()["signals"] == []


def test_a_replay_never_answers_with_an_erased_signal(
    api: TestClient, auth_headers: Headers, runtime: Runtime
) -> None:
    """Second guard: a record that still names an erased signal is refused, not replayed."""
    politie = auth_headers("politie", ["contributor"])
    made = api.post("/v1/signals", json=drugs(), headers=politie).json()
    path, body, _ = ACTS["disclosure"]
    gemeente = {**auth_headers("gemeente", ["requester"]), "Idempotency-Key": "k-guard"}
    assert api.post(path, json=body, headers=gemeente).status_code == 200
    with runtime.engine.begin() as conn:  # erased behind the service's back
        conn.execute(update(SIGNAL).where(SIGNAL.c.id == made["id"])
                     .values(erased_at=utcnow(), wrapped_key=None, ciphertext=None))
    again = api.post(path, json=body, headers=gemeente)
    assert again.status_code == 409, again.text
    assert again.headers["content-type"] == "application/problem+json"
    assert BSN not in again.text


def test_an_expired_answer_is_not_replayed_and_the_retention_run_deletes_it(
    api: TestClient, auth_headers: Headers, runtime: Runtime, signals: None
) -> None:
    path, body, _ = ACTS["disclosure"]
    gemeente = {**auth_headers("gemeente", ["requester"]), "Idempotency-Key": "k-old"}
    first = api.post(path, json=body, headers=gemeente).json()
    assert api.post(path, json=body, headers=gemeente).json() == first  # within its life
    other = {**gemeente, "Idempotency-Key": "k-other"}
    api.post(path, json=body, headers=other)
    hours = runtime.settings.idempotency_ttl_hours + 1
    aged = update(RECORD).where(RECORD.c.key == "k-old").values(
        created_at=utcnow() - timedelta(hours=hours))
    with runtime.engine.begin() as conn:  # the first record is now past its lifetime
        conn.execute(aged)
    again = api.post(path, json=body, headers=gemeente)  # a new request, not a replay
    assert again.status_code == 200, again.text
    assert again.json()["disclosure_id"] != first["disclosure_id"]
    assert again.json()["audit_seq"] > first["audit_seq"]
    assert _stored(runtime)[0] == 2  # the new answer replaced the expired one
    with runtime.engine.begin() as conn:
        conn.execute(aged)
    run = run_retention(runtime, system_actor("test"))
    assert run.answers_deleted == 1
    with runtime.engine.connect() as conn:
        keys = conn.execute(text("SELECT key FROM idempotency_record")).scalars().all()
    assert keys == ["k-other"]


def test_erasing_a_signal_deletes_the_stored_answer_of_its_creation(
    api: TestClient, auth_headers: Headers, runtime: Runtime
) -> None:
    politie = {**auth_headers("politie", ["contributor"]), "Idempotency-Key": "k-create"}
    made = api.post("/v1/signals", json=drugs(), headers=politie)
    assert made.status_code == 201, made.text
    assert _stored(runtime) == (1, 1)
    signal_id = made.json()["id"]
    assert api.delete(f"/v1/signals/{signal_id}", headers=politie).status_code == 204
    assert _stored(runtime) == (0, 0)
    again = api.post("/v1/signals", json=drugs(), headers=politie)  # a new request now
    assert again.status_code == 201 and again.json()["id"] != signal_id
