"""Row 34: no answer echoes input or carries a stack trace, SQL or a token.

The recorder in tests/security/conftest.py checks every answer of the whole security
suite when each test ends. Here the check itself is shown to catch each kind of leak,
and the error paths that see personal data (a BSN in a signal, a disclosure query, a
subject report) and a genuine 500 are driven through it. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from broker.runtime import Runtime
from tests.api.disclosure_kit import BSN, drugs
from tests.security.conftest import Exchange, leaks

Headers = Callable[..., dict[str, str]]
TOKEN = (b"eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCJ9."
         b"eyJzdWIiOiJjbF94In0.c2lnbmF0dXJl")
PROBLEM = "application/problem+json"


def exchange(status: int, body: bytes, *, path: str = "/v1/signals", request: bytes = b"",
             content_type: str = PROBLEM, request_json: Any = None) -> Exchange:
    return Exchange("POST", path, request, status, content_type, body, request_json)


def problem(status: int, detail: str = "x") -> bytes:
    return (f'{{"type":"t","title":"t","status":{status},"detail":"{detail}",'
            f'"instance":"/v1/signals"}}').encode()


# --- the check can fail -------------------------------------------------------------------------

@pytest.mark.parametrize(("ex", "kind"), [
    (exchange(401, problem(401, TOKEN.decode())), "a JWT"),
    (exchange(200, b'{"x": "' + TOKEN + b'"}', content_type="application/json"), "a JWT"),
    (exchange(500, problem(500, 'Traceback (most recent call last): File \\"x.py\\"')),
     "a stack trace"),
    (exchange(500, problem(500, "(sqlite3.OperationalError) no such table")), "SQL (sqlite3)"),
    (exchange(500, problem(500, "psycopg.errors.UniqueViolation")), "SQL (psycopg)"),
    (exchange(422, problem(422, "SELECT * FROM signal")), "SQL (SELECT)"),
    (exchange(422, problem(422, "bad bsn 111222333")), "an echoed BSN-like number 111222333"),
    (exchange(422, problem(422, "bad 987654321"), request=b'{"bsn": "987654321"}'),
     "an echoed BSN-like number 987654321"),
    (exchange(422, problem(422, "Sem de Vries uit Zuidhaven"),
              request_json={"subject": {"name": "Sem de Vries uit Zuidhaven"}}),
     "an echoed input value"),
    (exchange(404, b'{"detail": "Not Found"}', content_type="application/json"),
     "an error as application/json, not problem details"),
    (exchange(422, problem(400)), "problem details without the answer's status"),
])
def test_the_leak_check_catches(ex: Exchange, kind: str) -> None:
    assert any(problem.startswith(kind) for problem in leaks(ex)), leaks(ex)


@pytest.mark.parametrize("ex", [
    exchange(200, b'{"access_token": "' + TOKEN + b'"}', path="/oauth/token",
             content_type="application/json"),
    exchange(401, b'{"error": "invalid_client"}', path="/oauth/token",
             content_type="application/json"),
    # A contributor reads back its own signal, BSN and all; a 2xx may echo what was sent.
    exchange(201, b'{"subject": {"bsn": "111222333"}, "description": "SELECT 1"}',
             request=b'{"subject": {"bsn": "111222333"}, "description": "SELECT 1"}',
             content_type="application/json"),
    exchange(422, problem(422, "Field required.")),
])
def test_the_leak_check_lets_pass(ex: Exchange) -> None:
    assert leaks(ex) == []


# --- error paths that hold personal data ------------------------------------------------------

def _assert_clean(answer: Any, status: int, *secrets: str) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith(PROBLEM)
    for secret in secrets:
        assert secret not in answer.text


def test_signal_intake_errors_echo_nothing(api: TestClient, auth_headers: Headers) -> None:
    politie = auth_headers("politie", ["contributor"])
    bad_bsn = drugs(bsn="111222334")  # fails the eleven test
    _assert_clean(api.post("/v1/signals", json=bad_bsn, headers=politie), 422, "111222334")
    keyed = {**drugs(), "attributes": {BSN: "Sem de Vries"}}  # a BSN as a key, a name as value
    answer = api.post("/v1/signals", json=keyed, headers=politie)
    _assert_clean(answer, 422, BSN, "Sem de Vries")
    wrong_category = {**drugs(), "category": "energie-afwijking"}
    _assert_clean(api.post("/v1/signals", json=wrong_category, headers=politie), 422, BSN)
    batch = {"signals": [drugs(), drugs(bsn="123456789"), drugs()]}
    answer = api.post("/v1/signals/batch", json=batch, headers=politie)
    _assert_clean(answer, 422, BSN, "123456789")
    assert any(1 in e["loc"] for e in answer.json()["errors"])
    key = {"Idempotency-Key": "k-1", **politie}
    assert api.post("/v1/signals", json=drugs(), headers=key).status_code == 201
    other = drugs(bsn="123456782")
    _assert_clean(api.post("/v1/signals", json=other, headers=key), 409, "123456782", BSN)


def test_disclosure_errors_echo_nothing(api: TestClient, auth_headers: Headers) -> None:
    gemeente = auth_headers("gemeente", ["requester"])
    query = {"subject": {"bsn": BSN}}
    unknown = {"purpose": "jan-de-vries-" + BSN, "case_reference": "ZAAK-1", "query": query}
    _assert_clean(api.post("/v1/disclosures", json=unknown, headers=gemeente), 422, BSN,
                  "jan-de-vries")
    no_case = {"purpose": "integrale-controle", "query": query}
    _assert_clean(api.post("/v1/disclosures", json=no_case, headers=gemeente), 422, BSN)
    riec = auth_headers("riec", ["requester"])
    refused = {"purpose": "integrale-controle", "case_reference": "ZAAK-1", "query": query}
    _assert_clean(api.post("/v1/disclosures", json=refused, headers=riec), 403, BSN)
    malformed = {**refused, "query": {"subject": {"bsn": "111222334"}}}
    _assert_clean(api.post("/v1/disclosures", json=malformed, headers=gemeente), 422,
                  "111222334")
    hit = {"purpose": "integrale-controle", "case_reference": "ZAAK-1",
           "subject": {"bsn": "11122233X"}}
    _assert_clean(api.post("/v1/hits", json=hit, headers=gemeente), 422, "11122233X")
    officer = auth_headers("riec", ["privacy_officer"], kind="personal", acting_user=None)
    report = {"subject": {"bsn": "111222334"}}
    _assert_clean(api.post("/v1/audit/subject-report", json=report, headers=officer), 422,
                  "111222334")


def test_a_token_in_the_query_string_is_refused_and_not_echoed(
    api: TestClient, auth_headers: Headers
) -> None:
    token = auth_headers("politie", ["contributor"])["Authorization"].split()[1]
    answer = api.get(f"/v1/signals?access_token={token}", headers={"X-Acting-User": "emp-1"})
    _assert_clean(answer, 401, token)


def test_an_unexpected_database_error_is_a_bare_500(
    api: TestClient, auth_headers: Headers, runtime: Runtime
) -> None:
    """A genuine 500 (a table gone under the app) says nothing of the database."""
    politie = auth_headers("politie", ["contributor"])
    plain = TestClient(api.app, raise_server_exceptions=False)
    with runtime.engine.begin() as conn:
        conn.execute(text("ALTER TABLE signal RENAME TO signal_away"))
    try:
        answer = plain.get("/v1/signals", headers=politie)
    finally:
        with runtime.engine.begin() as conn:
            conn.execute(text("ALTER TABLE signal_away RENAME TO signal"))
    _assert_clean(answer, 500, "signal_away", "no such table", "does not exist", "SELECT")
    assert answer.json()["detail"] == "An unexpected error occurred."
    assert api.get("/v1/signals", headers=politie).status_code == 200


def test_instance_does_not_echo_the_path(api: TestClient, auth_headers: Headers) -> None:
    politie = auth_headers("politie", ["contributor"])
    answer = api.get(f"/v1/signals/{BSN}", headers=politie)
    assert answer.status_code == 404
    assert BSN not in answer.text
