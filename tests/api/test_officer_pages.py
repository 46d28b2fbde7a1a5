"""The privacy officer's pages through the ASGI app: sign-in, who gets in, CSRF, every
page's content and its audit record, security headers, languages."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from http.cookies import SimpleCookie
from typing import Any

import pytest
from fastapi.testclient import TestClient

from broker import officer
from broker.app import create_app
from broker.audit import reads
from broker.auth.clients import revoke_client
from broker.officer.web import SESSION_COOKIE
from broker.runtime import Runtime
from broker.settings import Settings
from tests.api.disclosure_kit import BSN, drugs
from tests.e2e.officer_app import with_officer_pages
from tests.officer_kit import DRUGS_RULE, Scenario, csrf_of, run_scenario

Credentials = Callable[..., tuple[str, str]]


@pytest.fixture
def pages(settings: Settings, runtime: Runtime) -> Iterator[TestClient]:
    """The broker's app with the officer's pages, over https (the cookies are Secure)."""
    app = create_app(settings, runtime=runtime)
    with TestClient(with_officer_pages(app), base_url="https://testserver",
                    follow_redirects=False) as client:
        yield client


@pytest.fixture
def officer_login(credentials: Credentials) -> tuple[str, str]:
    return credentials("riec", ["privacy_officer"], "personal")


@pytest.fixture
def scenario(pages: TestClient, auth_headers: Callable[..., dict[str, str]]
             ) -> Callable[..., Scenario]:
    """Run the day of work of `officer_kit` through this app's API."""
    made: dict[str, dict[str, str]] = {}

    def headers(org: str) -> dict[str, str]:
        if org not in made:
            made[org] = auth_headers(org, ["contributor", "requester"], acting_user="emp-7")
        return made[org]

    def run(**options: Any) -> Scenario:
        return run_scenario(pages, headers, **options)

    return run


def sign_in(client: TestClient, client_id: str, secret: str) -> Any:
    form = client.get("/officer/sign-in")
    assert form.status_code == 200
    return client.post("/officer/sign-in", data={
        "client_id": client_id, "client_secret": secret, "csrf": csrf_of(form.text)})


@pytest.fixture
def signed_in(pages: TestClient, officer_login: tuple[str, str]) -> TestClient:
    answer = sign_in(pages, *officer_login)
    assert answer.status_code == 303 and answer.headers["location"] == "/officer/"
    return pages


def last_entry(runtime: Runtime) -> dict[str, Any]:
    items, _ = reads.list_entries(runtime.engine, reads.Scope.everything(),
                                  reads.EntryFilter(), limit=1, cursor=None)
    return items[0]


def text_of(page: str) -> str:
    """The visible text of a page, tags dropped and white space folded."""
    return " ".join(re.sub(r"<[^>]+>", " ", page).split())


# --- Who gets in ---


def test_officer_signs_in_and_the_session_cookie_is_locked_down(
    pages: TestClient, officer_login: tuple[str, str]
) -> None:
    answer = sign_in(pages, *officer_login)
    assert answer.status_code == 303
    cookie = next(v for k, v in answer.headers.multi_items()
                  if k == "set-cookie" and v.startswith(SESSION_COOKIE + "="))
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "secure", "path", "max-age"} <= attributes
    assert "samesite=strict" in cookie.lower() and "max-age=900" in cookie.lower()
    overview = pages.get("/officer/")
    assert overview.status_code == 200
    assert '<html lang="nl">' in overview.text and "Overzicht" in overview.text


@pytest.mark.parametrize(("roles", "kind"), [
    (["requester"], "personal"),          # a partner's person
    (["privacy_officer"], "system"),      # an officer role on a system client
    (["admin"], "personal"),
])
def test_other_clients_are_refused_with_a_clear_page_and_the_attempt_is_audited(
    pages: TestClient, runtime: Runtime, credentials: Credentials, roles: list[str], kind: str
) -> None:
    client_id, secret = credentials("riec", roles, kind)
    answer = sign_in(pages, client_id, secret)
    assert answer.status_code == 403
    assert "functionaris gegevensbescherming met een persoonlijke" in answer.text
    assert not any(v.startswith(SESSION_COOKIE + "=") for k, v in answer.headers.multi_items()
                   if k == "set-cookie")
    assert pages.get("/officer/").status_code == 303
    entry = last_entry(runtime)
    assert (entry["action"], entry["outcome"], entry["actor"]["client"]) == (
        "audit_read", "refused", client_id)
    assert entry["reason"] == ("system_client" if kind == "system" else "not_privacy_officer")


def test_a_wrong_secret_gets_a_page_not_a_session(
    pages: TestClient, officer_login: tuple[str, str]
) -> None:
    answer = sign_in(pages, officer_login[0], officer_login[1] + "x")
    assert answer.status_code == 401
    assert "klopt niet" in answer.text
    assert SESSION_COOKIE + "=" not in answer.headers.get("set-cookie", "")


def test_sign_in_without_its_form_token_is_refused(
    pages: TestClient, officer_login: tuple[str, str]
) -> None:
    pages.get("/officer/sign-in")
    answer = pages.post("/officer/sign-in", data={
        "client_id": officer_login[0], "client_secret": officer_login[1]})
    assert answer.status_code == 403
    assert SESSION_COOKIE + "=" not in answer.headers.get("set-cookie", "")


def test_without_a_session_pages_lead_to_sign_in(pages: TestClient) -> None:
    for path in ("/officer/", "/officer/log", "/officer/policy", "/officer/log/0"):
        answer = pages.get(path)
        assert answer.status_code == 303 and answer.headers["location"] == "/officer/sign-in"
    assert pages.post("/officer/subject", data={"value": BSN}).status_code == 401


def with_session(client: TestClient, value: str) -> None:
    """Replace the client's cookies by one session cookie of this value."""
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, value)


PUBLIC_PAGES = {("GET", "/officer/sign-in"), ("GET", "/officer/static/officer.css"),
                ("POST", "/officer/sign-in")}


def test_every_officer_route_but_sign_in_needs_a_session(pages: TestClient) -> None:
    """From the router itself, so a page added later cannot be forgotten."""
    checked = 0
    for route in (r for part in officer.ROUTERS for r in part.routes):
        for method in sorted(getattr(route, "methods", ())):
            key = (method, getattr(route, "path", ""))
            if key in PUBLIC_PAGES:
                continue
            path = re.sub(r"\{seq\}", "0", key[1])
            path = re.sub(r"\{[^}]+\}", "x", path)
            answer = pages.request(method, path, data={"csrf": "x"})
            if method == "GET":
                assert answer.status_code == 303, key
                assert answer.headers["location"] == "/officer/sign-in", key
            else:
                assert answer.status_code == 401, key
            checked += 1
    assert checked >= 9


def test_a_tampered_session_cookie_is_not_a_session(signed_in: TestClient) -> None:
    value = signed_in.cookies[SESSION_COOKIE]
    client_part = value.split(".")[1]
    with_session(signed_in, value.replace(client_part, "cl_" + "b" * 24))
    answer = signed_in.get("/officer/")
    assert answer.status_code == 303 and "expired=1" in answer.headers["location"]


def test_sign_out_ends_the_session_even_for_a_kept_cookie(signed_in: TestClient) -> None:
    kept = signed_in.cookies[SESSION_COOKIE]
    page = signed_in.get("/officer/")
    answer = signed_in.post("/officer/sign-out", data={"csrf": csrf_of(page.text)})
    assert answer.status_code == 303 and "signed_out=1" in answer.headers["location"]
    with_session(signed_in, kept)
    assert signed_in.get("/officer/").status_code == 303


def test_revoking_the_client_ends_its_session(
    signed_in: TestClient, runtime: Runtime, officer_login: tuple[str, str]
) -> None:
    assert signed_in.get("/officer/").status_code == 200
    revoke_client(runtime, officer_login[0])
    assert signed_in.get("/officer/").status_code == 303


# --- CSRF and headers ---


def test_a_form_post_without_or_with_another_sessions_token_is_refused(
    signed_in: TestClient, pages: TestClient, credentials: Credentials
) -> None:
    assert signed_in.post("/officer/subject", data={"kind": "bsn", "value": BSN}
                          ).status_code == 403
    assert signed_in.post("/officer/subject", data={"kind": "bsn", "value": BSN,
                                                   "csrf": "x" * 43}).status_code == 403
    assert signed_in.post("/officer/verify", data={}).status_code == 403
    page = signed_in.get("/officer/subject")
    answer = signed_in.post("/officer/subject", headers={"Origin": "https://evil.example"},
                            data={"kind": "bsn", "value": BSN, "csrf": csrf_of(page.text)})
    assert answer.status_code == 403


def test_pages_carry_the_security_headers(signed_in: TestClient) -> None:
    for path in ("/officer/", "/officer/sign-in", "/officer/static/officer.css"):
        headers = signed_in.get(path).headers
        csp = headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert headers["cache-control"] == "no-store"
        assert headers["x-content-type-options"] == "nosniff"
    assert signed_in.get("/officer/static/officer.css").headers["content-type"].startswith(
        "text/css")


def test_the_pages_are_not_in_the_openapi_document(pages: TestClient) -> None:
    assert not any(p.startswith("/officer") for p in pages.get("/openapi.json").json()["paths"])


# --- What the pages show ---


def seqs_on(page: str) -> list[int]:
    return [int(s) for s in re.findall(r'href="/officer/log/(\d+)"', page)]


def test_overview_counts_acts_and_shares_refused_and_records_the_view(
    signed_in: TestClient, runtime: Runtime, officer_login: tuple[str, str],
    scenario: Callable[..., Scenario],
) -> None:
    done = scenario()
    page = signed_in.get("/officer/")
    assert page.status_code == 200
    entry = last_entry(runtime)
    assert (entry["action"], entry["actor"]["client"]) == ("audit_read", officer_login[0])
    assert entry["objects"] == {"read": "officer_overview"}
    text = text_of(page.text)
    assert "Het logboek is intact" in text
    assert "<svg" in page.text and 'role="img"' in page.text
    pack = runtime.policy.pack
    gemeente = pack.organisations["gemeente"].name
    control = pack.purposes["integrale-controle"].title
    housing = pack.organisations["woningcorporatie"].name
    fiscal = pack.purposes["fiscale-handhaving"].title
    assert f"{gemeente} {control} 2 0 0%" in text
    assert f"{housing} {fiscal} 1 1 100%" in text
    assert f'href="/officer/reidentifications/{done.reidentification_id}"' in page.text


def test_log_filters_by_action_outcome_and_organisation(
    signed_in: TestClient, runtime: Runtime, scenario: Callable[..., Scenario]
) -> None:
    done = scenario()
    refused = seqs_on(signed_in.get("/officer/log", params={
        "outcome": "refused", "filtered": "1", "hide_reads": "1"}).text)
    assert len(refused) == 1
    assert last_entry(runtime)["objects"] == {"read": "officer_log", "outcome": "refused"}
    refusal = reads.get_entry(runtime.engine, reads.Scope.everything(), refused[0])
    assert refusal["entry"]["actor"]["org"] == "woningcorporatie"
    disclosures = seqs_on(signed_in.get("/officer/log", params={
        "action": "disclosure", "outcome": "granted", "filtered": "1"}).text)
    assert disclosures == [done.disclosure_seq]
    by_org = seqs_on(signed_in.get("/officer/log", params={
        "org": "woningcorporatie", "filtered": "1", "hide_reads": "1"}).text)
    assert by_org == refused
    assert signed_in.get("/officer/log", params={"action": "drop table"}).status_code == 422
    assert signed_in.get("/officer/log", params={"since": "gisteren"}).status_code == 422
    future = seqs_on(signed_in.get("/officer/log", params={
        "since": "2999-01-01", "filtered": "1"}).text)
    assert future == []


def test_log_hides_the_officers_own_reads_by_default_and_pages(
    signed_in: TestClient, runtime: Runtime
) -> None:
    for _ in range(3):
        signed_in.get("/officer/policy")
    first = signed_in.get("/officer/log")
    assert "<td>logboek ingezien</td>" not in first.text
    everything = signed_in.get("/officer/log", params={"filtered": "1"})
    assert "<td>logboek ingezien</td>" in everything.text
    seqs = seqs_on(everything.text)
    assert len(seqs) == len(set(seqs)) and seqs == sorted(seqs, reverse=True)


def test_an_entry_shows_its_rule_fields_and_a_verified_proof(
    signed_in: TestClient, runtime: Runtime, scenario: Callable[..., Scenario]
) -> None:
    seq = scenario().disclosure_seq
    page = signed_in.get(f"/officer/log/{seq}")
    assert page.status_code == 200
    text = text_of(page.text)
    assert "Geverifieerd: deze vastlegging staat onveranderd in het logboek." in text
    assert "Hash van de vastlegging klopt: ja" in text
    assert "Handtekening van het controlepunt klopt: ja" in text
    assert "Opnamebewijs (RFC 9162) klopt: ja" in text
    rule = next(r for r in runtime.policy.pack.rules if r.id == DRUGS_RULE)
    assert DRUGS_RULE in text and " ".join(rule.description.split()) in text
    assert "BSN: gepseudonimiseerd" in text and "leeftijdsklasse van 10 jaar" in text
    assert last_entry(runtime)["objects"] == {"read": "officer_entry", "seq": seq}
    assert signed_in.get("/officer/log/999999").status_code == 404


def test_subject_report_page_and_letter_leave_out_confidential_entries(
    signed_in: TestClient, runtime: Runtime, scenario: Callable[..., Scenario]
) -> None:
    scenario()
    form = signed_in.get("/officer/subject")
    page = signed_in.post("/officer/subject", data={
        "kind": "bsn", "value": "111 222 333", "csrf": csrf_of(form.text)})
    assert page.status_code == 200
    result = text_of(page.text).split("Resultaat")[1]
    pack = runtime.policy.pack
    assert pack.organisations["gemeente"].name in result
    assert pack.purposes["integrale-controle"].title in result
    assert "emp-7" not in page.text and "handhaver" not in page.text
    assert BSN not in page.text and "111 222 333" not in page.text
    read = last_entry(runtime)
    assert (read["objects"]["read"], read["objects"]["subject_type"]) == ("subject_report", "bsn")
    assert BSN not in str(read)
    letter = signed_in.post("/officer/subject", data={
        "kind": "bsn", "value": BSN, "letter": "1", "csrf": csrf_of(form.text)})
    assert letter.status_code == 200 and "Overzicht van verstrekte gegevens" in letter.text
    assert BSN not in letter.text and "••••••333" in letter.text
    assert pack.legal_bases["wpg-art-16"].title in text_of(letter.text)
    bad = signed_in.post("/officer/subject", data={
        "kind": "bsn", "value": "123456789", "csrf": csrf_of(form.text)})
    assert bad.status_code == 422 and "niet geldig" in bad.text and "123456789" not in bad.text


def test_confidential_disclosures_are_withheld_from_the_letter(
    signed_in: TestClient, scenario: Callable[..., Scenario]
) -> None:
    scenario(confidential_until="2999-01-01")
    form = signed_in.get("/officer/subject")
    page = signed_in.post("/officer/subject", data={
        "kind": "bsn", "value": BSN, "csrf": csrf_of(form.text)})
    assert 'id="subject-withheld"' in page.text
    letter = signed_in.post("/officer/subject", data={
        "kind": "bsn", "value": BSN, "letter": "1", "csrf": csrf_of(form.text)})
    assert "vertrouwelijk" not in letter.text.lower()
    assert "Verstrekking" not in text_of(letter.text).split("Opgesteld op")[1]


def test_officer_approves_a_reidentification_with_a_reason(
    signed_in: TestClient, runtime: Runtime, scenario: Callable[..., Scenario]
) -> None:
    rid = scenario().reidentification_id
    listing = signed_in.get("/officer/reidentifications")
    assert rid in listing.text
    page = signed_in.get(f"/officer/reidentifications/{rid}")
    assert "Nodig om de bewoner aan te schrijven" in page.text
    empty = signed_in.post(f"/officer/reidentifications/{rid}/decision", data={
        "decision": "approve", "reason": " ", "csrf": csrf_of(page.text)})
    assert empty.status_code == 422
    approved = signed_in.post(f"/officer/reidentifications/{rid}/decision", data={
        "decision": "approve", "reason": "Sluiting voorbereid; noodzakelijk.",
        "csrf": csrf_of(page.text)})
    assert approved.status_code == 303
    after = signed_in.get(approved.headers["location"])
    assert "goedgekeurd" in after.text and "Sluiting voorbereid" in after.text
    decided = reads.list_entries(runtime.engine, reads.Scope.everything(),
                                 reads.EntryFilter(action="reidentification_decided"),
                                 limit=1, cursor=None)[0][0]
    assert decided["outcome"] == "granted" and decided["objects"]["approved"] is True
    again = signed_in.post(f"/officer/reidentifications/{rid}/decision", data={
        "decision": "refuse", "reason": "Toch niet.", "csrf": csrf_of(page.text)})
    assert again.status_code == 409


def test_policy_page_shows_rules_in_words_and_the_history(
    signed_in: TestClient, runtime: Runtime
) -> None:
    page = signed_in.get("/officer/policy")
    assert page.status_code == 200
    pack = runtime.policy.pack
    assert page.text.count('<tr id="rule-') == len(pack.rules)
    assert pack.hash in page.text and "(geldend)" in page.text
    assert "gepseudonimiseerd" in page.text and "leeftijdsklasse van 10 jaar" in page.text


def test_the_holds_page_lists_the_organisations_holds_and_records_the_view(
    pages: TestClient, credentials: Credentials, auth_headers: Callable[..., dict[str, str]],
    runtime: Runtime,
) -> None:
    politie = auth_headers("politie", ["contributor"])
    api_officer = auth_headers("politie", ["privacy_officer"])
    signal_id = pages.post("/v1/signals", json=drugs(), headers=politie).json()["id"]
    assert pages.post(f"/v1/signals/{signal_id}/hold", json={"case_reference": "RB-2026-17"},
                      headers=api_officer).status_code == 201
    assert sign_in(pages, *credentials("politie", ["privacy_officer"], "personal")
                   ).status_code == 303
    page = pages.get("/officer/holds", params={"lang": "en"})
    assert page.status_code == 200
    shown = text_of(page.text)
    assert signal_id in shown and "RB-2026-17" in shown
    assert 'aria-current="page">Legal holds' in page.text
    entry = last_entry(runtime)
    assert (entry["action"], entry["objects"]) == ("audit_read", {"read": "officer_legal_holds"})


def test_the_holds_page_of_an_organisation_without_holds(signed_in: TestClient) -> None:
    page = signed_in.get("/officer/holds", params={"lang": "nl"})
    assert page.status_code == 200
    assert 'id="holds-none"' in page.text and "Er zijn geen bewaarplichten." in page.text


def test_an_unknown_reidentification_is_not_found(signed_in: TestClient) -> None:
    assert signed_in.get("/officer/reidentifications/rid_unknown").status_code == 404


def test_english_on_request_and_remembered(signed_in: TestClient) -> None:
    english = signed_in.get("/officer/", params={"lang": "en"})
    assert '<html lang="en">' in english.text and "Overview" in english.text
    cookies = [v for k, v in english.headers.multi_items() if k == "set-cookie"]
    assert any(SimpleCookie(c).get("sluis-officer-lang") for c in cookies)
    assert '<html lang="en">' in signed_in.get("/officer/policy").text
    assert '<html lang="nl">' in signed_in.get("/officer/policy", params={"lang": "nl"}).text


@pytest.mark.parametrize("lang", ["nl", "en"])
def test_every_page_renders_in_both_languages(
    signed_in: TestClient, scenario: Callable[..., Scenario], lang: str
) -> None:
    done = scenario()
    for path in ("/officer/", "/officer/log", f"/officer/log/{done.disclosure_seq}",
                 "/officer/subject", "/officer/reidentifications",
                 f"/officer/reidentifications/{done.reidentification_id}", "/officer/holds",
                 "/officer/policy"):
        answer = signed_in.get(path, params={"lang": lang})
        assert answer.status_code == 200, path
        assert f'<html lang="{lang}">' in answer.text
