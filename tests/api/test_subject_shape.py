"""One shape for a subject: a disclosure query and a hit check take the subject object a
signal takes (`{"type": "person", "bsn": ...}`), the type implied by the identifier or
checked against it, and a 422 says what is expected.

Runs on SQLite and PostgreSQL (the `db_url`-parametrised fixtures).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from broker.runtime import Runtime
from tests.api.disclosure_kit import BAG_ID, BSN, drugs, energy, log_size

Headers = Callable[..., dict[str, str]]
CASE = "ZAAK-2026-0042"
EXPECTED = ('expected {"type": "person", "bsn": ...}, {"type": "company", "kvk": ...}, '
            '{"type": "vehicle", "plate": ...} or {"type": "address", "bag_id": ...} '
            '(type optional)')


def disclose(api: TestClient, headers: dict[str, str], subject: dict[str, Any]) -> Any:
    return api.post("/v1/disclosures", headers=headers, json={
        "purpose": "integrale-controle", "case_reference": CASE,
        "query": {"subject": subject}})


def hit(api: TestClient, headers: dict[str, str], subject: dict[str, Any]) -> Any:
    return api.post("/v1/hits", headers=headers, json={
        "purpose": "fiscale-handhaving", "case_reference": "FH-1", "subject": subject})


def test_a_disclosure_query_takes_the_subject_a_signal_took(
    api: TestClient, submit: Any, auth_headers: Headers
) -> None:
    signal = drugs()
    signal_id = submit("politie", signal)
    gemeente = auth_headers("gemeente", ["requester"], acting_user="handhaver-2")
    typed = disclose(api, gemeente, {"type": "person", "bsn": BSN})
    bare = disclose(api, gemeente, {"bsn": BSN})
    assert typed.status_code == 200, typed.text
    assert bare.status_code == 200, bare.text
    assert len(typed.json()["signals"]) == 1
    assert typed.json()["signals"][0]["category"] == "drugsgerelateerde-melding"
    assert ([s["fields"] for s in typed.json()["signals"]]
            == [s["fields"] for s in bare.json()["signals"]])
    assert signal_id not in typed.text


def test_a_hit_check_takes_the_subject_a_signal_took(
    api: TestClient, submit: Any, auth_headers: Headers
) -> None:
    submit("netbeheerder", energy())
    belastingdienst = auth_headers("belastingdienst", ["requester"])
    answer = hit(api, belastingdienst, {"type": "address", "bag_id": BAG_ID})
    assert answer.status_code == 200, answer.text
    assert (answer.json()["hit"], answer.json()["sources"]) == (True, ["netbeheerder"])


@pytest.mark.parametrize(
    ("subject", "msg"),
    [
        ({"type": "company", "bsn": BSN},
         f"a company subject is named by its kvk, not by bsn; {EXPECTED}"),
        ({"type": "address"}, f"name exactly one of bsn, kvk, plate or bag_id; {EXPECTED}"),
        ({"type": "person", "bsn": BSN, "name": "Sem de Vries"},
         "a subject is found by its identifier only, not by name or birthdate; "
         f"{EXPECTED}"),
    ],
)
def test_a_subject_that_does_not_fit_is_422_saying_what_is_expected(
    api: TestClient, auth_headers: Headers, runtime: Runtime,
    subject: dict[str, Any], msg: str,
) -> None:
    gemeente = auth_headers("gemeente", ["requester"], acting_user="handhaver-2")
    before = log_size(runtime)
    answer = disclose(api, gemeente, subject)
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"] == [{"loc": ["body", "query", "subject"], "msg": msg}]
    assert BSN not in answer.text and "Sem de Vries" not in answer.text
    assert log_size(runtime) == before
    belastingdienst = auth_headers("belastingdienst", ["requester"])
    checked = hit(api, belastingdienst, subject)
    assert checked.status_code == 422, checked.text
    assert checked.json()["errors"] == [{"loc": ["body", "subject"], "msg": msg}]


def test_an_unknown_type_names_the_four(api: TestClient, auth_headers: Headers) -> None:
    gemeente = auth_headers("gemeente", ["requester"], acting_user="handhaver-2")
    answer = disclose(api, gemeente, {"type": "dog", "bsn": BSN})
    assert answer.status_code == 422
    ((error),) = answer.json()["errors"]
    assert error["loc"] == ["body", "query", "subject", "type"]
    assert error["msg"] == "Input should be 'person', 'company', 'address' or 'vehicle'"
