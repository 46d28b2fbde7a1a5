"""Who decides a re-identification: the privacy officer of the organisation whose signal it
is, or the covenant's officer the pack names, never another organisation's; and what each
officer sees of the requests. Four eyes within the deciding organisation.

Runs on SQLite and PostgreSQL (the `db_url`-parametrised fixtures), with the demo pack
copied so that each test names the covenant's officer it needs (`covenant_officer`).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from broker.app import create_app
from broker.models import reidentification
from broker.officer.i18n import Translator
from broker.runtime import Runtime
from broker.settings import Settings
from tests.api.disclosure_kit import BSN, OTHER_BSN, brp, drugs, entries_since, log_size
from tests.conftest import DEMO_PACK
from tests.e2e.officer_app import with_officer_pages
from tests.officer_kit import csrf_of

Headers = Callable[..., dict[str, str]]
NAMED_IN_THE_DEMO_PACK = "covenant_privacy_officer: riec\n"
NOT_THE_DECIDER = ("Only the privacy officer of the organisation whose signal it is, or the "
                   "covenant's, decides on its re-identification.")


@pytest.fixture
def covenant_officer() -> str | None:
    """The organisation the pack names as the covenant's officer (None: it names none)."""
    return None


@pytest.fixture
def settings(db_url: str, key_dir: Path, tmp_path: Path,
             covenant_officer: str | None) -> Settings:
    pack = tmp_path / "pack"
    shutil.copytree(DEMO_PACK, pack)
    text = (pack / "pack.yaml").read_text(encoding="utf-8")
    assert NAMED_IN_THE_DEMO_PACK in text
    named = f"covenant_privacy_officer: {covenant_officer}\n" if covenant_officer else ""
    (pack / "pack.yaml").write_text(text.replace(NAMED_IN_THE_DEMO_PACK, named),
                                    encoding="utf-8")
    return Settings(database_url=db_url, key_dir=key_dir, policy_dir=pack,
                    checkpoint_every_seconds=3600)


@pytest.fixture
def officers(auth_headers: Headers) -> dict[str, dict[str, str]]:
    """A privacy officer (a system client, with its person) of each organisation."""
    return {org: auth_headers(org, ["privacy_officer"], acting_user=f"fg-{org}")
            for org in ("politie", "gemeente", "belastingdienst", "riec")}


@pytest.fixture
def pending(api: TestClient, auth_headers: Headers) -> dict[str, str]:
    """Two pending requests: `gemeente_asks` (the gemeente re-identifies a BSN of the
    police's signal) and `politie_asks` (the police one of the gemeente's signal)."""
    politie = auth_headers("politie", ["contributor", "requester"], acting_user="agent-7")
    gemeente = auth_headers("gemeente", ["contributor", "requester"], acting_user="handhaver-2")
    assert api.post("/v1/signals", json=drugs(), headers=politie).status_code == 201
    assert api.post("/v1/signals", json=brp(bsn=OTHER_BSN), headers=gemeente).status_code == 201
    made = {}
    for name, asker, bsn, rule in (
        ("gemeente_asks", gemeente, BSN, "gemeente-drugs-handhaving"),
        ("politie_asks", politie, OTHER_BSN, "politie-brp-integrale-controle"),
    ):
        disclosed = api.post("/v1/disclosures", headers=asker, json={
            "purpose": "integrale-controle", "case_reference": "ZAAK-77",
            "query": {"subject": {"bsn": bsn}}})
        assert disclosed.status_code == 200, disclosed.text
        (signal,) = [s for s in disclosed.json()["signals"] if s["rule"] == rule]
        asked = api.post("/v1/reidentifications", headers=asker, json={
            "disclosure_id": disclosed.json()["disclosure_id"], "ref": signal["ref"],
            "field": "subject.bsn", "justification": "Aanschrijven voor de sluiting"})
        assert asked.status_code == 202, asked.text
        made[name] = asked.json()["id"]
    return made


def decide(api: TestClient, headers: dict[str, str], rid: str, approve: bool = True) -> Any:
    return api.post(f"/v1/reidentifications/{rid}/decision",
                    json={"approve": approve, "reason": "Noodzakelijk en proportioneel"},
                    headers=headers)


def status_of(runtime: Runtime, rid: str) -> str:
    with runtime.engine.connect() as conn:
        found: str = conn.execute(select(reidentification.c.status)
                                  .where(reidentification.c.id == rid)).scalar_one()
    return found


def test_only_the_officer_of_the_signals_organisation_decides(
    api: TestClient, auth_headers: Headers, officers: dict[str, dict[str, str]],
    pending: dict[str, str], runtime: Runtime,
) -> None:
    """The gemeente asks about the police's signal: the gemeente's own officer (the
    requester's organisation), the Belastingdienst's and the RIEC's (not named by this
    pack) are refused, each refusal recorded; the police's officer decides."""
    rid = pending["gemeente_asks"]
    for org, status in (("gemeente", 403), ("belastingdienst", 404), ("riec", 404)):
        before = log_size(runtime)
        refused = decide(api, officers[org], rid)
        assert refused.status_code == status, (org, refused.text)
        body = refused.json()
        if status == 403:
            assert (body["code"], body["detail"]) == ("forbidden", NOT_THE_DECIDER)
        else:  # not even a request this officer sees
            assert (body["code"], body["detail"]) == ("not_found",
                                                      "No such re-identification request.")
        (entry,) = entries_since(runtime, before)
        assert (entry.action, entry.outcome, entry.reason) == (
            "reidentification_decided", "refused", "not_the_deciding_officer")
        assert entry.actor.org == org and entry.objects["recipient"] == "gemeente"
        assert [item.source for item in entry.items] == ["politie"]
        assert status_of(runtime, rid) == "pending"
    approved = decide(api, officers["politie"], rid)
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "approved"
    gemeente = auth_headers("gemeente", ["requester"], acting_user="handhaver-2")
    revealed = api.get(f"/v1/reidentifications/{rid}", headers=gemeente)
    assert (revealed.json()["status"], revealed.json()["value"]) == ("approved", BSN)


def test_the_requesters_officer_does_not_decide_on_anothers_signal(
    api: TestClient, officers: dict[str, dict[str, str]], pending: dict[str, str],
    runtime: Runtime,
) -> None:
    """The police ask about the gemeente's signal: the police's officer is refused, the
    gemeente's decides."""
    rid = pending["politie_asks"]
    refused = decide(api, officers["politie"], rid)
    assert refused.status_code == 403
    assert refused.json()["detail"] == NOT_THE_DECIDER
    assert status_of(runtime, rid) == "pending"
    decided = decide(api, officers["gemeente"], rid, approve=False)
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "refused"


@pytest.mark.parametrize("covenant_officer", ["riec"])
def test_the_covenants_officer_decides_too(
    api: TestClient, officers: dict[str, dict[str, str]], pending: dict[str, str],
    runtime: Runtime,
) -> None:
    """A pack naming the RIEC as the covenant's officer lets it decide on any signal; the
    Belastingdienst's officer still decides nothing."""
    assert decide(api, officers["belastingdienst"], pending["gemeente_asks"]).status_code \
        == 404
    for name in ("gemeente_asks", "politie_asks"):
        decided = decide(api, officers["riec"], pending[name])
        assert decided.status_code == 200, decided.text
        assert status_of(runtime, pending[name]) == "approved"


def listed(api: TestClient, headers: dict[str, str], **query: str) -> set[str]:
    answer = api.get("/v1/reidentifications", headers=headers, params=query)
    assert answer.status_code == 200, answer.text
    return {item["id"] for item in answer.json()["items"]}


@pytest.mark.parametrize("covenant_officer", [None, "riec"])
def test_an_officer_sees_the_requests_it_decides_and_its_organisations_own(
    api: TestClient, officers: dict[str, dict[str, str]], pending: dict[str, str],
    covenant_officer: str | None,
) -> None:
    both = {pending["gemeente_asks"], pending["politie_asks"]}
    expected = {
        "politie": both,  # one on its signal, one its own
        "gemeente": both,
        "belastingdienst": set(),
        "riec": both if covenant_officer == "riec" else set(),
    }
    for org, seen in expected.items():
        assert listed(api, officers[org]) == seen, org
        assert listed(api, officers[org], status="pending") == seen, org
        for rid in both:
            answer = api.get(f"/v1/reidentifications/{rid}", headers=officers[org])
            assert answer.status_code == (200 if rid in seen else 404), (org, rid)
            if rid in seen:
                assert "value" not in answer.json()


@pytest.mark.parametrize("covenant_officer", ["gemeente"])
def test_four_eyes_within_the_deciding_organisation(
    api: TestClient, auth_headers: Headers, officers: dict[str, dict[str, str]],
    pending: dict[str, str], runtime: Runtime,
) -> None:
    """With the gemeente's officer deciding for the covenant, the gemeente's requesting
    person may not decide its own request through another client; a colleague may."""
    rid = pending["gemeente_asks"]
    same_person = auth_headers("gemeente", ["privacy_officer"], acting_user="handhaver-2")
    before = log_size(runtime)
    refused = decide(api, same_person, rid)
    assert refused.status_code == 403
    assert refused.json()["detail"] == ("The requester may not decide its own "
                                        "re-identification request.")
    (entry,) = entries_since(runtime, before)
    assert (entry.action, entry.outcome, entry.reason) == ("reidentification_decided",
                                                           "refused", "four_eyes")
    requester = auth_headers("gemeente", ["requester"], acting_user="handhaver-2")
    assert decide(api, requester, rid).status_code == 403  # the role
    assert decide(api, officers["gemeente"], rid).status_code == 200
    assert decide(api, officers["politie"], rid).status_code == 409  # decided


# --- the officer's pages --------------------------------------------------------------


@pytest.fixture
def pages(settings: Settings, runtime: Runtime) -> Iterator[TestClient]:
    app = create_app(settings, runtime=runtime)
    with TestClient(with_officer_pages(app), base_url="https://testserver",
                    follow_redirects=False) as client:
        yield client


def signed_in_as(pages: TestClient, credentials: Callable[..., tuple[str, str]],
                 org: str) -> TestClient:
    client_id, secret = credentials(org, ["privacy_officer"], "personal")
    pages.cookies.clear()
    form = pages.get("/officer/sign-in")
    answer = pages.post("/officer/sign-in", data={
        "client_id": client_id, "client_secret": secret, "csrf": csrf_of(form.text)})
    assert answer.status_code == 303, answer.text
    return pages


def post_decision(pages: TestClient, rid: str, page: str) -> Any:
    return pages.post(f"/officer/reidentifications/{rid}/decision", data={
        "decision": "approve", "reason": "Noodzakelijk", "csrf": csrf_of(page)})


def test_the_officers_pages_decide_as_the_api_does(
    pages: TestClient, credentials: Callable[..., tuple[str, str]],
    pending: dict[str, str], runtime: Runtime,
) -> None:
    rid = pending["gemeente_asks"]
    stranger = signed_in_as(pages, credentials, "belastingdienst")
    assert rid not in stranger.get("/officer/reidentifications").text
    assert stranger.get(f"/officer/reidentifications/{rid}").status_code == 404
    overview = stranger.get("/officer/")
    assert post_decision(stranger, rid, overview.text).status_code == 404

    requesters = signed_in_as(pages, credentials, "gemeente")
    assert rid in requesters.get("/officer/reidentifications").text
    page = requesters.get(f"/officer/reidentifications/{rid}")
    assert page.status_code == 200
    assert 'id="reid-not-decider"' in page.text and 'id="decision-form"' not in page.text
    refused = post_decision(requesters, rid, page.text)
    assert refused.status_code == 403
    assert Translator("nl")("reid.not_decider") in refused.text
    assert status_of(runtime, rid) == "pending"

    sources = signed_in_as(pages, credentials, "politie")
    page = sources.get(f"/officer/reidentifications/{rid}")
    assert 'id="decision-form"' in page.text and 'id="reid-not-decider"' not in page.text
    decided = post_decision(sources, rid, page.text)
    assert decided.status_code == 303, decided.text
    assert status_of(runtime, rid) == "approved"
