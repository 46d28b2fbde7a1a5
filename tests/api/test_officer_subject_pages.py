"""The officer's pages as callers of the paged subject report and of the free-text check:
a long report shows `subjects.PAGE` entries a page and continues with the identifier typed
again (never carried in a page), each page one audited look-up; a decision's reason keeps
a textarea's line breaks and refuses control characters with the form again, not a 500.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from broker.app import create_app
from broker.core.identifiers import valid_bsn_from
from broker.officer import subjects
from broker.runtime import Runtime
from broker.settings import Settings
from tests.api.disclosure_kit import entry_at, log_size
from tests.audit.report_kit import fill
from tests.e2e.officer_app import with_officer_pages
from tests.officer_kit import csrf_of, run_scenario

Credentials = Callable[..., tuple[str, str]]


@pytest.fixture
def signed_in(settings: Settings, runtime: Runtime, credentials: Credentials
              ) -> Iterator[TestClient]:
    app = create_app(settings, runtime=runtime)
    with TestClient(with_officer_pages(app), base_url="https://testserver",
                    follow_redirects=False) as client:
        form = client.get("/officer/sign-in")
        client_id, secret = credentials("riec", ["privacy_officer"], "personal")
        answer = client.post("/officer/sign-in", data={
            "client_id": client_id, "client_secret": secret, "csrf": csrf_of(form.text)})
        assert answer.status_code == 303
        yield client


def rows_of(page: str) -> int:
    """How many acts the page's report table shows: identical rows are grouped, each
    group saying how many acts it stands for (`N×`, or a single act's `1`)."""
    table = page.split('id="subject-table"')[1].split("</table>")[0]
    cells = [cell.split("</td>")[0] for cell in table.split('class="num group-count">')[1:]]
    counts = [re.search(r"(\d+)(?:×|</a>|$)", re.sub(r"<ul.*?</ul>", "", c, flags=re.S))
              for c in cells]
    assert all(counts), cells
    return sum(int(found.group(1)) for found in counts if found)


def test_a_long_report_is_shown_a_page_at_a_time(signed_in: TestClient,
                                                 runtime: Runtime) -> None:
    bsn = valid_bsn_from(456_300_000)
    fill(runtime, bsn, subjects.PAGE + 40, workers=1)  # 0, 7, 14, ... confidential
    form = signed_in.get("/officer/subject")
    size = log_size(runtime)
    first = signed_in.post("/officer/subject", data={
        "kind": "bsn", "value": bsn, "csrf": csrf_of(form.text)})
    assert first.status_code == 200
    assert bsn not in first.text and 'id="subject-next"' in first.text
    assert 'id="subject-withheld"' in first.text
    shown = rows_of(first.text)
    assert shown == subjects.PAGE - len(range(0, subjects.PAGE, 7))
    cursor = first.text.split('name="cursor" value="')[1].split('"')[0]
    second = signed_in.post("/officer/subject", data={
        "kind": "bsn", "value": bsn, "cursor": cursor, "csrf": csrf_of(form.text)})
    assert second.status_code == 200 and bsn not in second.text
    assert 'id="subject-next"' not in second.text
    assert shown + rows_of(second.text) == subjects.PAGE + 40 - len(range(0, subjects.PAGE + 40, 7))
    letter = signed_in.post("/officer/subject", data={
        "kind": "bsn", "value": bsn, "letter": "1", "csrf": csrf_of(form.text)})
    assert letter.status_code == 200 and bsn not in letter.text
    assert rows_of(letter.text) == shown and 'name="letter" value="1"' in letter.text
    reads = [entry_at(runtime, seq) for seq in range(size, log_size(runtime))]
    assert [(e.action, e.objects["read"]) for e in reads] == [("audit_read", "subject_report")] * 3
    assert "after" not in reads[0].objects and "after" in reads[1].objects
    bad = signed_in.post("/officer/subject", data={
        "kind": "bsn", "value": bsn, "cursor": "nonsense", "csrf": csrf_of(form.text)})
    assert bad.status_code == 422 and bsn not in bad.text


@pytest.mark.parametrize(("reason", "status", "stored"), [
    ("Sluiting voorbereid.\r\nHet BSN is nodig.", 303, "Sluiting voorbereid.\nHet BSN is nodig."),
    ("Sluiting\x1b[2J voorbereid.", 422, None),
    ("Sluiting\x9b voorbereid.", 422, None),
])
def test_a_decisions_reason_from_the_form(
    signed_in: TestClient, runtime: Runtime, auth_headers: Callable[..., dict[str, str]],
    reason: str, status: int, stored: str | None,
) -> None:
    made: dict[str, dict[str, str]] = {}

    def headers(org: str) -> dict[str, str]:
        if org not in made:
            made[org] = auth_headers(org, ["contributor", "requester"], acting_user="emp-7")
        return made[org]

    rid = run_scenario(signed_in, headers).reidentification_id
    page = signed_in.get(f"/officer/reidentifications/{rid}")
    size = log_size(runtime)
    answer = signed_in.post(f"/officer/reidentifications/{rid}/decision", data={
        "decision": "approve", "reason": reason, "csrf": csrf_of(page.text)})
    assert answer.status_code == status, answer.text
    if stored is None:
        assert "Geef een reden" in answer.text and "\x1b" not in answer.text
        assert log_size(runtime) == size
        return
    after = signed_in.get(answer.headers["location"])
    assert "goedgekeurd" in after.text and stored in after.text
