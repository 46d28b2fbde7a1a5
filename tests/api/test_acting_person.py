"""The acting person in the audit log: a keyed tag per organisation, and a personal client
that acts as itself only.

Runs on SQLite and PostgreSQL (the `db_url`-parametrised fixtures).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from broker.auth.actors import person_tag
from broker.keys import KeyRing, create_key_ring, load_key_ring
from broker.runtime import Runtime
from tests.api.disclosure_kit import BSN, drugs, entries_since, log_size

Headers = Callable[..., dict[str, str]]
Credentials = Callable[..., tuple[str, str]]
HIT = {"purpose": "integrale-controle", "case_reference": "ZAAK-77", "subject": {"bsn": BSN}}
PEOPLE = st.from_regex(r"[A-Za-z0-9._@-]{1,64}", fullmatch=True)
ORGS = st.from_regex(r"[a-z][a-z0-9]{0,11}", fullmatch=True)


def tag_of_the_last_act(runtime: Runtime, before: int) -> str | None:
    *_, entry = entries_since(runtime, before)
    return entry.actor.acting_user_tag


def test_one_id_in_two_organisations_is_two_people(
    api: TestClient, auth_headers: Headers, runtime: Runtime
) -> None:
    """`emp-42` of the police and `emp-42` of the gemeente get different tags; `emp-42` of
    the gemeente through two of its clients gets one."""
    politie = auth_headers("politie", ["contributor"], acting_user="emp-42")
    gemeente = auth_headers("gemeente", ["requester"], acting_user="emp-42")
    gemeente_again = auth_headers("gemeente", ["requester"], acting_user="emp-42")
    before = log_size(runtime)
    assert api.post("/v1/signals", json=drugs(), headers=politie).status_code == 201
    police_tag = tag_of_the_last_act(runtime, before)
    tags = []
    for headers in (gemeente, gemeente_again):
        before = log_size(runtime)
        assert api.post("/v1/hits", json=HIT, headers=headers).status_code == 200
        tags.append(tag_of_the_last_act(runtime, before))
    assert tags[0] == tags[1] == person_tag(runtime.keys, "gemeente", "emp-42")
    assert police_tag == person_tag(runtime.keys, "politie", "emp-42")
    assert police_tag != tags[0]


def test_a_personal_client_acts_as_itself_only(
    api: TestClient, credentials: Credentials, runtime: Runtime
) -> None:
    """A personal client naming another person is 403 on every route and nothing is
    recorded; without the header, or naming itself, its acts carry its own tag."""
    client_id, secret = credentials("gemeente", ["requester"], "personal")
    token = api.post("/oauth/token", data={"grant_type": "client_credentials",
                                           "client_id": client_id,
                                           "client_secret": secret}).json()["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    before = log_size(runtime)
    for method, path, body in (("POST", "/v1/hits", HIT),
                               ("POST", "/v1/disclosures", {**HIT, "query": HIT["subject"]}),
                               ("GET", "/v1/reidentifications/rid_x", None),
                               ("GET", "/v1/organisations", None)):
        refused = api.request(method, path, json=body,
                              headers={**bearer, "X-Acting-User": "emp-42"})
        assert refused.status_code == 403, (path, refused.text)
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["code"] == "forbidden"
        assert refused.json()["detail"] == ("A personal client acts as itself: leave out "
                                            "X-Acting-User.")
    assert log_size(runtime) == before
    own = person_tag(runtime.keys, "gemeente", client_id)
    for headers in (bearer, {**bearer, "X-Acting-User": client_id}):
        before = log_size(runtime)
        assert api.post("/v1/hits", json=HIT, headers=headers).status_code == 200
        assert tag_of_the_last_act(runtime, before) == own


@pytest.fixture(scope="module")
def ring(tmp_path_factory: pytest.TempPathFactory) -> KeyRing:
    directory: Path = tmp_path_factory.mktemp("ring") / "keys"
    create_key_ring(directory)
    return load_key_ring(directory)


@given(person=PEOPLE, first=ORGS, second=ORGS)
def test_a_tag_names_one_person_of_one_organisation(
    ring: KeyRing, person: str, first: str, second: str
) -> None:
    same = person_tag(ring, first, person) == person_tag(ring, second, person)
    assert same == (first == second)
    assert person_tag(ring, first, person) == person_tag(ring, first, person)


@given(first=PEOPLE, second=PEOPLE, org=ORGS)
def test_two_people_of_one_organisation_have_two_tags(
    ring: KeyRing, first: str, second: str, org: str
) -> None:
    assert (person_tag(ring, org, first) == person_tag(ring, org, second)) == (first == second)
