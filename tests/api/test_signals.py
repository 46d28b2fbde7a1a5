"""Signal intake, reads, retraction: validation, isolation, idempotency, encryption at rest."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from broker import cursors
from broker.models import signal
from broker.runtime import Runtime
from broker.services import retention

Headers = Callable[..., dict[str, str]]
BSN = "111222333"
NAME = "Jorien Zandvliet"


def energy_signal(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "category": "energie-afwijking",
        "legal_basis": "elektriciteitswet-levering",
        "subject": {"type": "address", "bag_id": "0363010000000001"},
        "location": {
            "postcode": "1012 ab",
            "house_number": 12,
            "street": "Lindengracht",
            "city": "Amsterdam",
        },
        "observed_at": "2026-11-20T09:00:00+01:00",
        "description": "Meter seal broken, consumption tripled",
        "attributes": {"kwh_per_month": 2400, "meter_seal_broken": True},
    }
    body.update(changes)
    return body


def person_signal(bsn: str = BSN) -> dict[str, Any]:
    return {
        "category": "drugsgerelateerde-melding",
        "legal_basis": "wpg-art-16",
        "subject": {"type": "person", "bsn": bsn, "name": NAME, "birthdate": "1990-04-02"},
        "location": {"postcode": "1012AB", "house_number": 14},
        "observed_at": "2026-11-21T22:15:00+01:00",
        "description": "Seen handing over packages",
        "attributes": {"soort": "handel", "ernst": "midden"},
    }


def vehicle_signal(plate: str) -> dict[str, Any]:
    return {
        "category": "voertuig-op-naam-bedrijf",
        "legal_basis": "wpg-art-19",
        "subject": {"type": "vehicle", "plate": plate},
        "observed_at": "2026-11-21T22:15:00+01:00",
        "attributes": {
            "voertuigklasse": "personenauto",
            "cataloguswaarde": 98000,
            "aantal_waarnemingen": 4,
        },
    }


def count_signals(runtime: Runtime) -> int:
    with runtime.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(signal)).scalar_one())


def audit_size(runtime: Runtime) -> int:
    with runtime.engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM audit_entry")).scalar_one())


@pytest.fixture
def netbeheerder(auth_headers: Headers) -> dict[str, str]:
    return auth_headers("netbeheerder", ["contributor"])


@pytest.fixture
def politie(auth_headers: Headers) -> dict[str, str]:
    return auth_headers("politie", ["contributor"])


def test_create_returns_the_stored_signal(
    api: TestClient, netbeheerder: dict[str, str], runtime: Runtime
) -> None:
    before = audit_size(runtime)
    answer = api.post("/v1/signals", json=energy_signal(), headers=netbeheerder)
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["id"].startswith("sig_")
    assert body["source"] == "netbeheerder"
    assert body["location"]["postcode"] == "1012AB"
    assert body["attributes"] == {"kwh_per_month": 2400, "meter_seal_broken": True}
    received = datetime.fromisoformat(body["received_at"])
    retention = datetime.fromisoformat(body["retention_until"])
    days = runtime.policy.pack.retention_days("energie-afwijking")
    assert abs(retention - received - timedelta(days=days)) < timedelta(seconds=1)
    assert api.get(f"/v1/signals/{body['id']}", headers=netbeheerder).json() == body
    assert audit_size(runtime) == before + 1


def test_plate_is_normalised(api: TestClient, politie: dict[str, str]) -> None:
    answer = api.post("/v1/signals", json=vehicle_signal("gx-r12-b"), headers=politie)
    assert answer.status_code == 201, answer.text
    assert answer.json()["subject"]["plate"] == "GXR12B"


def _mutate(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    body = copy.deepcopy(body)
    *parents, last = path.split(".")
    target = body
    for part in parents:
        target = target[part]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return body


BAD_ENERGY = [
    ("category", "onbekende-categorie", ["body", "category"]),
    ("legal_basis", "wpg-art-16", ["body", "legal_basis"]),
    ("subject.type", "person", ["body", "subject", "type"]),
    ("subject.bag_id", "12345", ["body", "subject", "bag_id"]),
    ("location.postcode", "0123AB", ["body", "location", "postcode"]),
    ("location.postcode", "1234SA", ["body", "location", "postcode"]),
    ("location.house_number", "12", ["body", "location", "house_number"]),
    ("attributes.kwh_per_month", KeyError, ["body", "attributes", "kwh_per_month"]),
    ("attributes.kwh_per_month", "veel", ["body", "attributes", "kwh_per_month"]),
    ("attributes.kwh_per_month", -5, ["body", "attributes", "kwh_per_month"]),
    ("attributes.meter_seal_broken", 1, ["body", "attributes", "meter_seal_broken"]),
    ("attributes.onbekend", True, ["body", "attributes", "onbekend"]),
    ("observed_at", "2026-11-20T09:00:00", ["body", "observed_at"]),
    ("observed_at", "2099-01-01T00:00:00+00:00", ["body", "observed_at"]),
    ("extra_field", "x", ["body", "extra_field"]),
]


@pytest.mark.parametrize(
    ("path", "value", "loc"), BAD_ENERGY, ids=[f"{p}={v!r}" for p, v, _ in BAD_ENERGY]
)
def test_each_validation_rule_refuses_and_stores_nothing(
    api: TestClient,
    netbeheerder: dict[str, str],
    runtime: Runtime,
    path: str,
    value: Any,
    loc: list[str],
) -> None:
    before = audit_size(runtime)
    answer = api.post(
        "/v1/signals", json=_mutate(energy_signal(), path, value), headers=netbeheerder
    )
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["status"] == 422
    assert loc in [error["loc"] for error in problem["errors"]]
    assert count_signals(runtime) == 0
    assert audit_size(runtime) == before


@pytest.mark.parametrize("bsn", ["111222334", "12345678", "1112223333", "000000000", "11122233a"])
def test_bad_bsn_is_refused_without_echo(
    api: TestClient, politie: dict[str, str], runtime: Runtime, bsn: str
) -> None:
    answer = api.post("/v1/signals", json=person_signal(bsn), headers=politie)
    assert answer.status_code == 422
    assert bsn not in answer.text
    assert NAME not in answer.text
    assert ["body", "subject", "bsn"] in [e["loc"] for e in answer.json()["errors"]]
    assert count_signals(runtime) == 0


def test_unknown_attribute_named_like_a_bsn_is_not_echoed(
    api: TestClient, netbeheerder: dict[str, str]
) -> None:
    body = _mutate(energy_signal(), f"attributes.{BSN}", True)
    answer = api.post("/v1/signals", json=body, headers=netbeheerder)
    assert answer.status_code == 422
    assert BSN not in answer.text


def test_a_partner_may_not_contribute_another_category(
    api: TestClient, politie: dict[str, str], runtime: Runtime
) -> None:
    answer = api.post("/v1/signals", json=energy_signal(), headers=politie)
    assert answer.status_code == 422
    assert ["body", "category"] in [e["loc"] for e in answer.json()["errors"]]
    assert count_signals(runtime) == 0


def test_identifier_of_another_subject_type_is_refused(
    api: TestClient, politie: dict[str, str]
) -> None:
    body = person_signal()
    body["subject"]["kvk"] = "12345678"
    answer = api.post("/v1/signals", json=body, headers=politie)
    assert answer.status_code == 422
    assert ["body", "subject", "kvk"] in [e["loc"] for e in answer.json()["errors"]]


def test_batch_is_all_or_nothing_and_names_each_failing_index(
    api: TestClient, netbeheerder: dict[str, str], runtime: Runtime
) -> None:
    bad = energy_signal(legal_basis="wpg-art-16")
    batch = {"signals": [energy_signal(), bad, energy_signal(), bad]}
    answer = api.post("/v1/signals/batch", json=batch, headers=netbeheerder)
    assert answer.status_code == 422
    indexes = {e["loc"][2] for e in answer.json()["errors"]}
    assert indexes == {1, 3}
    assert count_signals(runtime) == 0
    good = api.post(
        "/v1/signals/batch", json={"signals": [energy_signal()] * 3}, headers=netbeheerder
    )
    assert good.status_code == 201, good.text
    assert len({s["id"] for s in good.json()["signals"]}) == 3
    assert count_signals(runtime) == 3


def test_batch_limit(api: TestClient, netbeheerder: dict[str, str]) -> None:
    answer = api.post("/v1/signals/batch", json={"signals": []}, headers=netbeheerder)
    assert answer.status_code == 422


def test_idempotent_retry_returns_the_first_answer(
    api: TestClient, netbeheerder: dict[str, str], runtime: Runtime
) -> None:
    headers = {**netbeheerder, "Idempotency-Key": "intake-0001"}
    first = api.post("/v1/signals", json=energy_signal(), headers=headers)
    again = api.post("/v1/signals", json=energy_signal(), headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert count_signals(runtime) == 1
    other = api.post("/v1/signals", json=energy_signal(description="anders"), headers=headers)
    assert other.status_code == 409
    assert count_signals(runtime) == 1
    fresh = api.post(
        "/v1/signals",
        json=energy_signal(),
        headers={**netbeheerder, "Idempotency-Key": "intake-0002"},
    )
    assert fresh.status_code == 201
    assert fresh.json()["id"] != first.json()["id"]


def test_idempotent_batch(api: TestClient, netbeheerder: dict[str, str], runtime: Runtime) -> None:
    headers = {**netbeheerder, "Idempotency-Key": "batch-1"}
    batch = {"signals": [energy_signal(), energy_signal()]}
    first = api.post("/v1/signals/batch", json=batch, headers=headers)
    again = api.post("/v1/signals/batch", json=batch, headers=headers)
    assert first.json() == again.json()
    assert count_signals(runtime) == 2


def test_reads_are_limited_to_the_own_organisation(
    api: TestClient, netbeheerder: dict[str, str], politie: dict[str, str]
) -> None:
    created = api.post("/v1/signals", json=energy_signal(), headers=netbeheerder).json()
    api.post("/v1/signals", json=person_signal(), headers=politie)
    foreign = api.get(f"/v1/signals/{created['id']}", headers=politie)
    assert foreign.status_code == 404
    assert foreign.json()["status"] == 404
    listed = api.get("/v1/signals", headers=politie).json()
    assert [s["category"] for s in listed["items"]] == ["drugsgerelateerde-melding"]
    assert api.delete(f"/v1/signals/{created['id']}", headers=politie).status_code == 404
    assert api.get(f"/v1/signals/{created['id']}", headers=netbeheerder).status_code == 200


def test_list_pages_with_a_cursor(api: TestClient, netbeheerder: dict[str, str]) -> None:
    created = api.post(
        "/v1/signals/batch", json={"signals": [energy_signal()] * 5}, headers=netbeheerder
    ).json()["signals"]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = api.get("/v1/signals", params=params, headers=netbeheerder).json()
        assert len(page["items"]) <= 2
        seen += [s["id"] for s in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(s["id"] for s in created)
    bad = api.get("/v1/signals", params={"cursor": "bm9uc2Vuc2U"}, headers=netbeheerder)
    assert bad.status_code == 422
    # Another list's cursor is not this list's.
    foreign = cursors.encode(retention.CURSOR_PREFIX, datetime.now(UTC), created[0]["id"])
    assert api.get("/v1/signals", params={"cursor": foreign},
                   headers=netbeheerder).status_code == 422
    assert api.get("/v1/signals", params={"limit": 1001}, headers=netbeheerder).status_code == 422
    assert api.get(
        "/v1/signals",
        params={"category": "energie-afwijking", "since": "2000-01-01T00:00:00Z"},
        headers=netbeheerder,
    ).json()["items"]


def test_retraction_shreds_the_payload(
    api: TestClient, netbeheerder: dict[str, str], runtime: Runtime
) -> None:
    created = api.post("/v1/signals", json=energy_signal(), headers=netbeheerder).json()
    before = audit_size(runtime)
    assert api.delete(f"/v1/signals/{created['id']}", headers=netbeheerder).status_code == 204
    assert api.get(f"/v1/signals/{created['id']}", headers=netbeheerder).status_code == 404
    assert api.delete(f"/v1/signals/{created['id']}", headers=netbeheerder).status_code == 404
    with runtime.engine.connect() as conn:
        row = conn.execute(
            select(signal).where(
                signal.c.id == created["id"]
            )
        ).one()  # type: ignore[attr-defined]
        tokens = conn.execute(
            text("SELECT count(*) FROM signal_index WHERE signal_id = :i"), {"i": created["id"]}
        ).scalar_one()
    assert row.wrapped_key is None and row.ciphertext is None and row.erased_at is not None
    assert tokens == 0
    assert audit_size(runtime) == before + 1


def test_roles_and_acting_user(api: TestClient, auth_headers: Headers) -> None:
    requester = auth_headers("gemeente", ["requester"])
    assert api.post("/v1/signals", json=energy_signal(), headers=requester).status_code == 403
    admin = auth_headers("riec", ["admin"], kind="personal", acting_user=None)
    assert api.get("/v1/signals", headers=admin).status_code == 403
    assert api.get("/v1/signals").status_code == 401
    no_person = auth_headers("netbeheerder", ["contributor"], acting_user=None)
    answer = api.post("/v1/signals", json=energy_signal(), headers=no_person)
    assert answer.status_code == 400
    personal = auth_headers("netbeheerder", ["contributor"], kind="personal", acting_user=None)
    assert api.post("/v1/signals", json=energy_signal(), headers=personal).status_code == 201


def _database_bytes(runtime: Runtime) -> bytes:
    url = str(runtime.engine.url)
    if url.startswith("sqlite"):
        path = Path(runtime.engine.url.database or "")
        runtime.engine.dispose()
        return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    chunks = []
    with runtime.engine.connect() as conn:
        tables = (
            conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
            .scalars()
            .all()
        )
        for table in tables:
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):  # noqa: S608
                for value in row:
                    chunks.append(
                        bytes(value)
                        if isinstance(value, bytes | memoryview)
                        else str(value).encode()
                    )
    return b"\n".join(chunks)


def test_database_holds_no_clear_identifier_or_text(
    api: TestClient, politie: dict[str, str], netbeheerder: dict[str, str], runtime: Runtime
) -> None:
    assert api.post("/v1/signals", json=person_signal(), headers=politie).status_code == 201
    assert api.post("/v1/signals", json=energy_signal(), headers=netbeheerder).status_code == 201
    assert (
        api.post("/v1/signals", json=vehicle_signal("GXR12B"), headers=politie).status_code == 201
    )
    raw = _database_bytes(runtime)
    for secret in (
        BSN,
        NAME,
        "Lindengracht",
        "0363010000000001",
        "1012AB",
        "GXR12B",
        "Seen handing over packages",
        "Meter seal broken",
    ):
        assert secret.encode() not in raw, secret


def test_observed_at_keeps_its_offset(api: TestClient, netbeheerder: dict[str, str]) -> None:
    moment = datetime(2026, 11, 1, 8, 30, tzinfo=UTC).isoformat()
    answer = api.post("/v1/signals", json=energy_signal(observed_at=moment), headers=netbeheerder)
    assert datetime.fromisoformat(answer.json()["observed_at"]) == datetime.fromisoformat(moment)
