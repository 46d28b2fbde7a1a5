"""What a privacy officer needs in the first hour, through the ASGI app: the overview's
alerts (and their count in `/metrics`), a re-identification's context, the log searched by
employee id (the search audited), the subject report's identical rows grouped, and the
pack's own titles on the policy page."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from broker.audit import reads
from broker.audit.drafts import draft
from broker.auth.actors import client_actor, person_tag
from broker.runtime import Runtime
from broker.settings import Settings
from tests.api import test_officer_pages as officer_pages
from tests.api.disclosure_kit import BSN
from tests.api.test_officer_pages import last_entry, seqs_on, text_of
from tests.officer_kit import CASE, DRUGS_RULE, Scenario, csrf_of

METRICS_TOKEN = "m" * 40
# The officer pages' fixtures: an app with the pages, an officer signed in, a day of work.
pages = officer_pages.pages
officer_login = officer_pages.officer_login
signed_in = officer_pages.signed_in
scenario = officer_pages.scenario


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The suite's settings with `/metrics` on."""
    return settings.model_copy(update={"metrics_token": SecretStr(METRICS_TOKEN)})


def record_alerts(runtime: Runtime) -> list[int]:
    """A fishing alert, a refused policy reload and a spent release budget, as the services
    record them: their seqs, oldest first."""
    actor = client_actor(runtime.keys, client_id="cl_politie", org="politie",
                         roles=("requester",), acting_user="emp-9")
    seqs = []
    for entry in (
        draft("alert", actor, outcome="refused", reason="too_many_subjects",
              objects={"distinct_subjects_per_hour": 200}),
        draft("refusal", actor, outcome="refused", reason="policy_pack_invalid",
              objects={"request": "policy_reload", "problems": 2}),
        draft("alert", actor, outcome="refused", reason="too_many_signals",
              objects={"released_signals_per_hour": 1000}),
    ):
        runtime.audit.record(entry)
        seqs.append(last_entry(runtime)["seq"])
    return seqs


def test_the_overview_lists_alerts_newest_first_linked_and_metrics_count_them(
    signed_in: TestClient, runtime: Runtime, scenario: Callable[..., Scenario]
) -> None:
    scenario()  # a refusal of a purpose is no alert
    quiet = signed_in.get("/officer/")
    assert 'id="no-alerts"' in quiet.text
    fishing, reload, lockout = record_alerts(runtime)
    page = signed_in.get("/officer/")
    panel = page.text.split('id="alerts-panel"')[1].split("</section>")[0]
    assert re.findall(r'href="/officer/log/(\d+)"', panel) == [
        str(lockout), str(reload), str(fishing)]
    words = text_of(panel)
    for label in ("Vrijgavelimiet bereikt", "Herladen van het beleid geweigerd",
                  "mogelijk vissen"):
        assert label in words
    assert runtime.policy.pack.organisations["politie"].name in words
    metrics = signed_in.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert metrics.status_code == 200
    counted = dict(re.findall(r'^sluis_audit_alerts_total\{kind="(\w+)"\} (\d+)$',
                              metrics.text, re.M))
    assert counted == {"fishing": "1", "lockout": "1", "policy_reload": "1"}


def test_the_reidentification_page_gives_the_disclosures_context(
    signed_in: TestClient, runtime: Runtime, scenario: Callable[..., Scenario]
) -> None:
    done = scenario()
    page = signed_in.get(f"/officer/reidentifications/{done.reidentification_id}")
    assert page.status_code == 200
    pack = runtime.policy.pack

    def shown(ident: str) -> str:
        return text_of(shown_html(page.text, ident))

    assert shown("reid-case") == CASE
    assert shown("reid-category") == pack.categories["drugsgerelateerde-melding"].title
    assert shown("reid-source") == pack.organisations["politie"].name
    assert shown("reid-rule") == DRUGS_RULE
    assert f'href="/officer/log/{done.disclosure_seq}"' in shown_html(page.text, "reid-entry")


def shown_html(page: str, ident: str) -> str:
    found = re.search(rf'<dd id="{ident}">(.*?)</dd>', page, re.S)
    assert found, ident
    return found.group(1)


def test_the_log_is_searched_by_employee_id_and_the_search_is_audited(
    signed_in: TestClient, runtime: Runtime, scenario: Callable[..., Scenario]
) -> None:
    done = scenario()  # every partner's acts name the employee emp-7
    found = seqs_on(signed_in.get("/officer/log", params={
        "employee": "emp-7", "filtered": "1", "hide_reads": "1"}).text)
    assert done.disclosure_seq in found
    for seq in found:
        entry = reads.get_entry(runtime.engine, reads.Scope.everything(), seq)["entry"]
        actor = entry["actor"]
        assert actor["acting_user_tag"] == person_tag(runtime.keys, actor["org"], "emp-7")
    read = last_entry(runtime)
    assert read["objects"]["read"] == "officer_log"
    tags = read["objects"]["acting_user_tags"]
    assert person_tag(runtime.keys, "gemeente", "emp-7") in tags
    assert "emp-7" not in str(read)  # the log holds the tags searched for, not the id
    # one organisation's employee: that organisation's tag only
    refused = seqs_on(signed_in.get("/officer/log", params={
        "employee": "emp-7", "org": "woningcorporatie", "filtered": "1"}).text)
    assert len(refused) == 1 and refused[0] in found
    assert last_entry(runtime)["objects"]["acting_user_tags"] == [
        person_tag(runtime.keys, "woningcorporatie", "emp-7")]
    assert seqs_on(signed_in.get("/officer/log", params={
        "employee": "emp-8", "filtered": "1"}).text) == []
    assert signed_in.get("/officer/log", params={"employee": "emp 7"}).status_code == 422


def test_identical_rows_of_the_subject_report_are_grouped_with_a_count(
    signed_in: TestClient, scenario: Callable[..., Scenario],
    auth_headers: Callable[..., dict[str, str]],
) -> None:
    done = scenario()
    gemeente = auth_headers("gemeente", ["requester"])
    again = []
    for _ in range(3):
        answer = signed_in.post("/v1/disclosures", headers=gemeente, json={
            "purpose": "integrale-controle", "case_reference": CASE,
            "query": {"subject": {"bsn": BSN}}})
        assert answer.status_code == 200, answer.text
        again.append(answer.json()["audit_seq"])
    form = signed_in.get("/officer/subject")
    page = signed_in.post("/officer/subject", data={
        "kind": "bsn", "value": BSN, "csrf": csrf_of(form.text)})
    assert page.status_code == 200
    rows = re.findall(r'<tr class="subject-group">(.*?)</tr>', page.text, re.S)
    grouped = [row for row in rows if "4×" in row]
    assert len(grouped) == 1  # the four disclosures of one day, recipient and purpose
    detail = re.findall(r'href="/officer/log/(\d+)"', grouped[0])
    assert sorted(map(int, detail)) == sorted([done.disclosure_seq, *again])
    assert "<details" in grouped[0]
    singles = [row for row in rows if row is not grouped[0]]
    assert singles and all(">1</a>" in row for row in singles)  # one click to the entry
    letter = signed_in.post("/officer/subject", data={
        "kind": "bsn", "value": BSN, "letter": "1", "csrf": csrf_of(form.text)})
    assert "4×" in letter.text and "/officer/log/" not in letter.text


def test_the_policy_page_gives_the_packs_titles_of_attributes(
    signed_in: TestClient, runtime: Runtime
) -> None:
    page = signed_in.get("/officer/policy")
    assert page.status_code == 200
    energy = runtime.policy.pack.categories["energie-afwijking"]
    title = energy.attributes["kwh_per_month"].title
    assert title and title in page.text
    assert "kwh per month" not in page.text
