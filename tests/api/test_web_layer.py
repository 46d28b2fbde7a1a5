"""The web layer: problem details, strict JSON, limits, request ids, health, reference data."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from broker.runtime import Runtime
from tests.api.test_signals import BSN, count_signals, energy_signal

Headers = Callable[..., dict[str, str]]


@pytest.fixture
def contributor(auth_headers: Headers) -> dict[str, str]:
    return auth_headers("netbeheerder", ["contributor"])


def _post_raw(
    api: TestClient, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, object]]:
    answer = api.post(
        "/v1/signals", content=body, headers={**headers, "Content-Type": "application/json"}
    )
    assert answer.headers["content-type"] == "application/problem+json", answer.text
    return answer.status_code, answer.json()


def _with(raw_attribute: str) -> bytes:
    body = json.dumps(energy_signal())
    return body.replace('"kwh_per_month": 2400', f'"kwh_per_month": {raw_attribute}').encode()


RAW_CASES = {
    "nan": _with("NaN"),
    "infinity": _with("Infinity"),
    "negative-infinity": _with("-Infinity"),
    "duplicate-key": _with('1, "kwh_per_month": 2'),
    "lone-surrogate": json.dumps(energy_signal(description="\ud800")).encode(),
    "lone-surrogate-with-bad-bsn": json.dumps(
        {**energy_signal(description="\udfff"), "subject": {"type": "person", "bsn": "1"}}
    ).encode(),
    "nul": json.dumps(energy_signal(description="a\u0000b")).encode(),
    "invalid-utf8": json.dumps(energy_signal()).encode().replace(b"Meter", b"\xff\xfeter"),
    "truncated": json.dumps(energy_signal()).encode()[:-5],
    "not-an-object": b"[1, 2, 3]",
    "deep-nesting": b"[" * 100_000 + b"]" * 100_000,
    "empty": b"",
}


@pytest.mark.parametrize("case", sorted(RAW_CASES))
def test_doubtful_json_is_a_clean_4xx(
    api: TestClient, contributor: dict[str, str], runtime: Runtime, case: str
) -> None:
    status, problem = _post_raw(api, RAW_CASES[case], contributor)
    assert status in (400, 422)
    assert problem["status"] == status
    assert set(problem) >= {"type", "title", "status", "detail", "instance"}
    assert count_signals(runtime) == 0


def test_validation_error_does_not_echo_the_body(
    api: TestClient, contributor: dict[str, str]
) -> None:
    body = energy_signal(subject={"type": "address", "bag_id": BSN + "x"}, unknown=BSN)
    answer = api.post("/v1/signals", json=body, headers=contributor)
    assert answer.status_code == 422
    assert BSN not in answer.text
    assert "input" not in answer.text
    problem = answer.json()
    assert problem["errors"] and all(set(e) == {"loc", "msg"} for e in problem["errors"])


def test_oversize_body_is_413_before_parsing(
    api: TestClient, contributor: dict[str, str], runtime: Runtime
) -> None:
    big = b'{"signals": [' + b'{"x": 1},' * 200_000 + b'{"x": 1}]}'
    answer = api.post(
        "/v1/signals/batch",
        content=big,
        headers={**contributor, "Content-Type": "application/json"},
    )
    assert answer.status_code == 413
    assert answer.json()["status"] == 413
    assert count_signals(runtime) == 0


def test_oversize_header_is_431(api: TestClient) -> None:
    answer = api.get("/v1/purposes", headers={"Authorization": "Bearer " + "a" * 9000})
    assert answer.status_code == 431


def test_request_id_is_echoed_or_made(api: TestClient) -> None:
    assert (
        api.get("/healthz", headers={"X-Request-Id": "abc-123"}).headers["x-request-id"]
        == "abc-123"
    )
    made = api.get("/healthz").headers["x-request-id"]
    assert made.startswith("req_")
    odd = api.get("/healthz", headers={"X-Request-Id": "bad id\twith spaces"})
    assert odd.headers["x-request-id"].startswith("req_")


def test_unknown_route_and_method_are_problems(api: TestClient) -> None:
    missing = api.get("/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    wrong = api.put("/healthz")
    assert wrong.status_code == 405
    assert wrong.json()["status"] == 405


def test_health_and_readiness(api: TestClient) -> None:
    assert api.get("/healthz").json() == {"status": "ok"}
    ready = api.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {
        "database": True,
        "migrations": True,
        "policy": True,
        "keys": True,
        "audit": True,
    }


def test_reference_data_serves_the_live_pack(
    api: TestClient, auth_headers: Headers, runtime: Runtime
) -> None:
    headers = auth_headers("gemeente", ["requester"])
    pack = runtime.policy.pack
    organisations = api.get("/v1/organisations", headers=headers).json()["items"]
    assert {o["id"] for o in organisations} == set(pack.organisations)
    politie = next(o for o in organisations if o["id"] == "politie")
    assert "convenant" in politie["groups"]
    purposes = api.get("/v1/purposes", headers=headers).json()["items"]
    controle = next(p for p in purposes if p["id"] == "integrale-controle")
    assert controle["requires_case_reference"] is True
    bases = api.get("/v1/legal-bases", headers=headers).json()["items"]
    assert next(b for b in bases if b["id"] == "wpg-art-16")["criminal_data"] is True
    categories = api.get("/v1/categories", headers=headers).json()["items"]
    energy = next(c for c in categories if c["id"] == "energie-afwijking")
    assert energy["contributors"] == ["netbeheerder"]
    assert energy["attributes"]["kwh_per_month"]["type"] == "number"
    for path in (
        "/v1/organisations",
        "/v1/purposes",
        "/v1/legal-bases",
        "/v1/categories",
        "/v1/policy",
    ):
        assert api.get(path).status_code == 401


def test_policy_shows_partners_only_their_rules(
    api: TestClient, auth_headers: Headers, runtime: Runtime
) -> None:
    pack = runtime.policy.pack
    everything = api.get(
        "/v1/policy",
        headers=auth_headers("riec", ["privacy_officer"], kind="personal", acting_user=None),
    ).json()
    assert everything["hash"] == pack.hash
    assert len(everything["rules"]) == len(pack.rules)
    mine = api.get("/v1/policy", headers=auth_headers("woningcorporatie", ["requester"])).json()
    assert 0 < len(mine["rules"]) < len(pack.rules)
    for rule in mine["rules"]:
        expanded = set().union(*(pack.expand(r) for r in rule["recipients"]))
        sources = set().union(*(pack.expand(s) for s in rule.get("sources") or []))
        if not rule.get("sources"):
            sources = {c for cat in rule["categories"] for c in pack.categories[cat].contributors}
        assert "woningcorporatie" in expanded | sources


def test_explain_is_a_dry_run(api: TestClient, auth_headers: Headers) -> None:
    headers = auth_headers("gemeente", ["requester"])
    granted = api.post(
        "/v1/policy/explain",
        headers=headers,
        json={
            "recipient": "gemeente",
            "purpose": "integrale-controle",
            "category": "energie-afwijking",
            "source": "netbeheerder",
        },
    ).json()
    assert granted["access"] == "disclose"
    assert granted["rule"] == "gemeente-energie-integrale-controle"
    assert granted["fields"]["location.postcode"] == "reveal"
    refused = api.post(
        "/v1/policy/explain",
        headers=headers,
        json={
            "recipient": "belastingdienst",
            "purpose": "integrale-controle",
            "category": "energie-afwijking",
            "source": "netbeheerder",
        },
    ).json()
    assert refused == {"access": "none"}
    bad = api.post("/v1/policy/explain", headers=headers, json={"recipient": "gemeente"})
    assert bad.status_code == 422
