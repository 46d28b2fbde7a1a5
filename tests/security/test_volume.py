"""One client cannot fill the disk or flood the log with large answers (docs/security.md
row 52): a disclosure answer is one page, each page is its own request and entry, the
signals released count against a budget per client and per acting person, area and id
queries count the subjects they release, and a full page's entry stays small.

Runs on SQLite and PostgreSQL, against the app (tests/e2e/test_volume_http.py holds the
same over real HTTP, with other partners asking meanwhile).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from broker.core.entry import entry_json
from broker.core.identifiers import valid_bsn_from
from broker.core.policy import load_pack
from broker.models import disclosure_pseudonym
from broker.runtime import Runtime
from broker.settings import Settings
from tests.api.disclosure_kit import drugs, entries_since, entry_at, log_size, log_verifies
from tests.conftest import DEMO_PACK

Headers = Callable[..., dict[str, str]]
CASE = "ZAAK-2026-0099"
DRUGS_RULE = "gemeente-drugs-handhaving"
TIGHT = {"disclosure_page_size": 10, "release_budget_per_hour": 1000,
         "fishing_subjects_per_hour": 1000}


@pytest.fixture
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """The shared settings with small pages and budgets (a test's own, given as param)."""
    return settings.model_copy(update={**TIGHT, **getattr(request, "param", {})})


def tight(**changes: int) -> Any:
    return pytest.mark.parametrize("settings", [changes], indirect=True)


def people(count: int, start: int = 456_000_000) -> list[str]:
    found: list[str] = []
    n = start
    while len(found) < count:
        bsn = valid_bsn_from(n)
        found.append(bsn)
        n = int(bsn) + 1
    return found


def street(api: TestClient, auth_headers: Headers, count: int,
           postcode: str = "3072AB") -> list[str]:
    """`count` drug reports about as many people in the area; their signal ids."""
    politie = auth_headers("politie", ["contributor"])
    bodies = [drugs(bsn=bsn, number=n + 1, postcode=postcode)
              for n, bsn in enumerate(people(count))]
    answer = api.post("/v1/signals/batch", json={"signals": bodies}, headers=politie)
    assert answer.status_code == 201, answer.text
    return [s["id"] for s in answer.json()["signals"]]


def disclose(api: TestClient, headers: dict[str, str], query: dict[str, Any],
             page: str | None = None, purpose: str = "integrale-controle") -> Any:
    body: dict[str, Any] = {"purpose": purpose, "case_reference": CASE, "query": query}
    if page is not None:
        body["page"] = page
    return api.post("/v1/disclosures", json=body, headers=headers)


AREA = {"area": {"postcode": "3072"}}


@tight()
def test_an_area_disclosure_comes_in_pages_each_its_own_request_and_entry(
    api: TestClient, auth_headers: Headers, runtime: Runtime
) -> None:
    street(api, auth_headers, 25)
    gemeente = auth_headers("gemeente", ["requester"])
    before = log_size(runtime)
    pages, page = [], None
    while True:
        answer = disclose(api, gemeente, AREA, page)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        pages.append(body)
        page = body["next_page"]
        assert body["truncated"] is (page is not None)
        if page is None:
            break
    assert [len(p["signals"]) for p in pages] == [10, 10, 5]
    refs = [s["ref"] for p in pages for s in p["signals"]]
    assert len(set(refs)) == 25  # every signal once, none twice
    entries = entries_since(runtime, before)
    assert [e.action for e in entries] == ["disclosure"] * 3
    assert [e.seq for e in entries] == [p["audit_seq"] for p in pages]
    assert [e.objects["released"] for e in entries] == [10, 10, 5]
    assert [(e.objects.get("continued"), e.objects.get("more")) for e in entries] == [
        (None, True), (True, True), (True, None)]
    with runtime.engine.connect() as conn:
        rows = dict(conn.execute(
            select(disclosure_pseudonym.c.disclosure_id, func.count())
            .group_by(disclosure_pseudonym.c.disclosure_id)).all())
    assert {rows[p["disclosure_id"]] for p in pages[:2]} == {10}  # one pseudonym per signal
    assert log_verifies(runtime)


@tight(disclosure_page_size=4)
def test_pages_hold_every_signal_once_when_times_tie_and_signals_go(
    api: TestClient, auth_headers: Headers, runtime: Runtime
) -> None:
    """Observed at the same moment, pages continue by id; a signal retracted after its page
    is not shown again, one retracted before its page not at all."""
    politie = auth_headers("politie", ["contributor"])
    bodies = [drugs(bsn=bsn, number=n + 1) for n, bsn in enumerate(people(13))]
    for body in bodies:
        body["observed_at"] = bodies[0]["observed_at"]
    answer = api.post("/v1/signals/batch", json={"signals": bodies}, headers=politie)
    assert answer.status_code == 201, answer.text
    ids = sorted(s["id"] for s in answer.json()["signals"])  # the order of a tie
    gemeente = auth_headers("gemeente", ["requester"])
    seen: list[list[str]] = []
    page = None
    while True:
        body = disclose(api, gemeente, AREA, page).json()
        entry = entry_at(runtime, body["audit_seq"])
        seen.append([item.signal_id for item in entry.items])
        if len(seen) == 1:  # one shown already and one still to come are retracted
            for gone in (ids[0], ids[9]):
                assert api.delete(f"/v1/signals/{gone}", headers=politie).status_code == 204
        page = body["next_page"]
        if page is None:
            break
    assert seen == [ids[0:4], ids[4:8], [ids[8], *ids[10:13]]]


@tight()
def test_a_page_token_continues_only_its_own_query(
    api: TestClient, auth_headers: Headers, runtime: Runtime
) -> None:
    street(api, auth_headers, 12)
    gemeente = auth_headers("gemeente", ["requester"])
    token = disclose(api, gemeente, AREA).json()["next_page"]
    assert isinstance(token, str) and token.startswith("p1.")
    colleague = auth_headers("gemeente", ["requester"], acting_user="emp-2")
    politie = auth_headers("politie", ["requester"])
    before = log_size(runtime)
    damaged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    for headers, query, page, purpose in (
        (gemeente, {"area": {"postcode": "3072AB"}}, token, "integrale-controle"),
        (gemeente, {**AREA, "categories": ["drugsgerelateerde-melding"]}, token,
         "integrale-controle"),
        (gemeente, AREA, token, "gemeentelijke-handhaving"),
        (colleague, AREA, damaged, "integrale-controle"),
        (gemeente, AREA, "p1.1." + "A" * 60, "integrale-controle"),
        (politie, AREA, token, "integrale-controle"),
    ):
        answer = disclose(api, headers, query, page, purpose)
        assert answer.status_code == 422, answer.text
        assert answer.json()["errors"] == [{"loc": ["body", "page"],
                                            "msg": "not a page of this query"}]
    assert log_size(runtime) == before  # nothing recorded, nothing released
    answer = disclose(api, gemeente, AREA, token)
    assert answer.status_code == 200 and len(answer.json()["signals"]) == 2


@tight(release_budget_per_hour=25)
def test_the_release_budget_holds_per_client_and_per_person(
    api: TestClient, auth_headers: Headers, runtime: Runtime
) -> None:
    street(api, auth_headers, 40)
    first = auth_headers("gemeente", ["requester"])  # acting person emp-1
    released, page = [], None
    for _ in range(3):
        body = disclose(api, first, AREA, page).json()
        released.append(len(body["signals"]))
        page = body["next_page"]
    assert released == [10, 10, 5]  # the last page ends where the budget does
    assert page is not None
    before = log_size(runtime)
    over = disclose(api, first, AREA, page)
    assert over.status_code == 429 and over.json()["code"] == "rate_limited"
    assert "signals released" in over.json()["detail"]
    assert 3000 < int(over.headers["retry-after"]) <= 3600
    (alert,) = entries_since(runtime, before)
    assert (alert.action, alert.outcome, alert.reason) == ("alert", "refused",
                                                           "too_many_signals")
    assert alert.objects == {"released_signals_per_hour": 25} and alert.items == []
    assert disclose(api, first, AREA).status_code == 429  # from the start too
    assert log_size(runtime) == before + 1  # one alert per episode
    # The same person through another client of the organisation: the person's budget.
    assert disclose(api, auth_headers("gemeente", ["requester"]), AREA).status_code == 429
    # Another person through another client has budgets of its own.
    other = auth_headers("gemeente", ["requester"], acting_user="emp-2")
    assert len(disclose(api, other, AREA).json()["signals"]) == 10
    # A hit check releases no signal: the spent budget does not stop it.
    hit = api.post("/v1/hits", json={"purpose": "integrale-controle", "case_reference": CASE,
                                     "subject": {"bsn": people(1)[0]}}, headers=first)
    assert hit.status_code == 200 and hit.json()["hit"] is True
    assert log_verifies(runtime)


@tight(fishing_subjects_per_hour=3)
def test_area_and_id_queries_count_the_subjects_they_release(
    api: TestClient, auth_headers: Headers, runtime: Runtime
) -> None:
    ids = street(api, auth_headers, 5)
    gemeente = auth_headers("gemeente", ["requester"])
    body = disclose(api, gemeente, AREA).json()
    assert len(body["signals"]) == 3  # the page ends before the fourth person
    before = log_size(runtime)
    over = disclose(api, gemeente, AREA, body["next_page"])
    assert over.status_code == 429 and "distinct subjects" in over.json()["detail"]
    (alert,) = entries_since(runtime, before)
    assert (alert.action, alert.reason) == ("alert", "too_many_subjects")
    # The people already asked about stay allowed: their own signals by id.
    known = disclose(api, gemeente, {"signals": ids[:3]})
    assert known.status_code == 200 and len(known.json()["signals"]) == 3
    assert disclose(api, gemeente, {"signals": ids[3:]}).status_code == 429
    assert log_size(runtime) == before + 2  # the alert and the known ones: no second alert
    # Another client's id query counts the same way.
    other = auth_headers("gemeente", ["requester"], acting_user="emp-2")
    by_id = disclose(api, other, {"signals": ids})
    assert by_id.status_code == 200
    assert len(by_id.json()["signals"]) == 3 and by_id.json()["next_page"] is not None


@tight(fishing_subjects_per_hour=3, release_budget_per_hour=6)
def test_a_page_refused_for_its_subjects_draws_nothing_on_the_budget(
    api: TestClient, auth_headers: Headers
) -> None:
    ids = street(api, auth_headers, 5)
    gemeente = auth_headers("gemeente", ["requester"])
    body = disclose(api, gemeente, AREA).json()
    assert len(body["signals"]) == 3
    assert disclose(api, gemeente, AREA, body["next_page"]).status_code == 429
    # Three of the six left: the refused page gave back what it had taken.
    known = disclose(api, gemeente, {"signals": ids[:3]})
    assert known.status_code == 200 and len(known.json()["signals"]) == 3
    over = disclose(api, gemeente, {"signals": ids[:3]})
    assert over.status_code == 429 and "signals released" in over.json()["detail"]


@tight(disclosure_page_size=100)
def test_a_full_pages_entry_stays_small_and_names_every_field(
    api: TestClient, auth_headers: Headers, runtime: Runtime
) -> None:
    ids = street(api, auth_headers, 130)
    gemeente = auth_headers("gemeente", ["requester"])
    body = disclose(api, gemeente, AREA).json()
    assert len(body["signals"]) == 100 and body["next_page"] is not None
    entry = entry_at(runtime, body["audit_seq"])
    assert len(entry.items) == 100
    # 100 items of a signal id, rule, category, source, basis and subject tag each, and the
    # rule's fields once: about 25 kB (52 kB when every item repeated its fields).
    assert len(entry_json(entry)) < 30_000
    rule = next(r for r in load_pack(DEMO_PACK).rules if r.id == DRUGS_RULE)
    present = {"subject.bsn", "subject.birthdate", "location.postcode",
               "location.house_number", "observed_at", "attributes.soort", "attributes.ernst",
               "attributes.registratienummer"}
    expected = {p: t.as_data() for p, t in rule.fields.items() if p in present}
    # Every reader finds each item's fields: in the entry the requester and the privacy
    # officer read, each item's own or else its rule's in `objects.rule_fields` ...
    officer = auth_headers("riec", ["privacy_officer"])
    for reader in (gemeente, officer):
        shown = api.get(f"/v1/audit/entries/{body['audit_seq']}", headers=reader)
        assert shown.status_code == 200, shown.text
        read = shown.json()["entry"]
        table = read["objects"]["rule_fields"]
        assert [i["fields"] or table[i["rule"]] for i in read["items"]] == [expected] * 100
    assert [i["signal_id"] for i in shown.json()["entry"]["items"]] == ids[:100]
    # ... and the data subject's access report.
    report = api.post("/v1/audit/subject-report", json={"subject": {"bsn": people(1)[0]}},
                      headers=officer)
    assert report.status_code == 200, report.text
    (act,) = [a for a in report.json()["items"] if a["action"] == "disclosure"]
    assert [i["fields"] for i in act["items"]] == [expected]
