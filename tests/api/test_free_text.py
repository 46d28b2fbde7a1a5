"""Free text holds no control characters (finding: a company name holding `ESC[2J`, an
OSC title and `CR LF sluis: audit verify OK` cleared a team member's screen and printed a
forged line). Every free-text field of a request refuses C0 controls but newline, DEL and
C1 controls, and names refuse newline too: a 422 at the field, without the value, and
nothing stored. SQLite and PostgreSQL.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.auth.clients import create_client
from broker.errors import ValidationFailed
from broker.runtime import Runtime
from tests.api.disclosure_kit import drugs, energy, fiscal, log_size

Headers = Callable[..., dict[str, str]]
MARK = "Kapsalon"
CONTROLS = ["\x1b[2J", "\x1b]0;pwned\x07", "\r", "\t", "\x7f", "\x9b", "\x85", "\x00"]
"""ESC (erase screen), OSC (window title, ended by BEL), CR, tab, DEL, C1 CSI, C1 NEL, NUL."""
REFUSED = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")

# (signal, path to the field, whether a newline is fine there)
FIELDS = [
    (fiscal, ("subject", "name"), False),
    (energy, ("location", "street"), False),
    (energy, ("location", "city"), False),
    (energy, ("location", "addition"), False),
    (drugs, ("description",), True),
    (drugs, ("attributes", "registratienummer"), True),
]


def with_text(make: Callable[[], dict[str, Any]], path: tuple[str, ...], text: str
              ) -> dict[str, Any]:
    body = copy.deepcopy(make())
    target = body
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = text
    return body


def source_of(make: Callable[[], dict[str, Any]]) -> str:
    return {fiscal: "belastingdienst", energy: "netbeheerder", drugs: "politie"}[make]


def refused_at(answer: Any, loc: list[Any], text: str) -> None:
    assert answer.status_code == 422, answer.text
    problem = answer.json()
    assert [e["loc"] for e in problem["errors"]] == [loc], problem
    assert "control characters" in problem["errors"][0]["msg"]
    assert MARK not in answer.text and text not in answer.text


@pytest.mark.parametrize(("make", "path", "newline"), FIELDS,
                         ids=[".".join(f[1]) for f in FIELDS])
def test_a_control_character_in_free_text_is_422_at_the_field_and_stores_nothing(
    api: TestClient, auth_headers: Headers, runtime: Runtime, make: Callable[[], dict[str, Any]],
    path: tuple[str, ...], newline: bool,
) -> None:
    headers = auth_headers(source_of(make), ["contributor"])
    size = log_size(runtime)
    for control in CONTROLS:
        text = f"{MARK[:4]}{control}{MARK[4:8]}"[:10]  # fits the shortest field (addition)
        one = api.post("/v1/signals", json=with_text(make, path, text), headers=headers)
        batch = api.post("/v1/signals/batch", headers=headers, json={
            "signals": [make(), with_text(make, path, text)]})
        if control == "\x00":  # the JSON parser refuses NUL before any field is looked at
            assert (one.status_code, batch.status_code) == (422, 422)
            assert text not in one.text + batch.text
        else:
            refused_at(one, ["body", *path], text)
            refused_at(batch, ["body", "signals", 1, *path], text)
    assert log_size(runtime) == size  # nothing stored, nothing audited
    assert api.get("/v1/signals", headers=headers).json()["items"] == []


@pytest.mark.parametrize(("make", "path", "newline"), FIELDS,
                         ids=[".".join(f[1]) for f in FIELDS])
def test_a_newline_is_text_in_a_description_but_not_in_a_name(
    api: TestClient, auth_headers: Headers, make: Callable[[], dict[str, Any]],
    path: tuple[str, ...], newline: bool,
) -> None:
    headers = auth_headers(source_of(make), ["contributor"])
    text = "Kap\nsalon"
    answer = api.post("/v1/signals", json=with_text(make, path, text), headers=headers)
    if not newline:
        refused_at(answer, ["body", *path], text)
        assert "line breaks" in answer.json()["errors"][0]["msg"]
        return
    assert answer.status_code == 201, answer.text
    stored = api.get(f"/v1/signals/{answer.json()['id']}", headers=headers).json()
    field = stored
    for part in path:
        field = field[part]
    assert field == text


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=12))
def test_a_description_is_taken_exactly_when_it_holds_no_control_but_newline(
    api: TestClient, auth_headers: Headers, text: str
) -> None:
    headers = auth_headers("politie", ["contributor"])
    answer = api.post("/v1/signals", json={**drugs(), "description": text}, headers=headers)
    if REFUSED.search(text):
        assert answer.status_code == 422, answer.text
        if "\x00" not in text:
            assert [e["loc"] for e in answer.json()["errors"]] == [["body", "description"]]
    else:
        assert answer.status_code == 201, answer.text
        assert answer.json()["description"] == text


@pytest.mark.parametrize("control", ["\x1b[2J", "\r\n sluis: ok", "\x9b1m", "\x7f"], ids=repr)
def test_justifications_reasons_and_client_names_refuse_control_characters(
    api: TestClient, auth_headers: Headers, runtime: Runtime, control: str
) -> None:
    requester, officer, admin = (auth_headers("gemeente", ["requester"]),
                                 auth_headers("riec", ["privacy_officer"]),
                                 auth_headers("riec", ["admin"]))
    size = log_size(runtime)
    asked = api.post("/v1/reidentifications", headers=requester,
                     json={"disclosure_id": "dsc_aaaa", "ref": "sg_" + "a" * 26,
                           "field": "subject.bsn", "justification": f"{MARK}{control}"})
    refused_at(asked, ["body", "justification"], control)
    decided = api.post("/v1/reidentifications/rid_x/decision", headers=officer,
                       json={"approve": True, "reason": f"{MARK}{control}"})
    refused_at(decided, ["body", "reason"], control)
    client = api.post("/v1/admin/clients", headers=admin,
                      json={"org": "gemeente", "name": f"{MARK}{control}",
                            "roles": ["requester"]})
    refused_at(client, ["body", "name"], control)
    with pytest.raises(ValidationFailed) as refused:  # `broker clients create --name`
        create_client(runtime, org="gemeente", name=f"{MARK}{control}", roles=["requester"])
    assert [p.loc[-1] for p in refused.value.errors] == ["name"]
    assert log_size(runtime) == size


def test_a_multi_line_justification_and_reason_are_taken(
    api: TestClient, auth_headers: Headers
) -> None:
    answer = api.post("/v1/reidentifications/rid_x/decision",
                      headers=auth_headers("riec", ["privacy_officer"]),
                      json={"approve": True, "reason": "Noodzakelijk.\nProportioneel."})
    assert answer.status_code == 404, answer.text  # past validation: no such request
