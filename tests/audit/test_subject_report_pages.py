"""A subject report comes in pages (finding: one answer of 337,855 acts took 8.5 s and
104 MB): every page holds at most `limit` acts, the pages together are the whole report
as one answer gave it, `withheld` adds up over the pages, each page is one audited
look-up, and answering a page reads that page's entries only. SQLite and PostgreSQL.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from broker.audit.tables import audit_entry, audit_subject, audit_subject_entry
from broker.auth.actors import system_actor
from broker.core.identifiers import valid_bsn_from
from broker.runtime import Runtime
from broker.schemas.disclosures import SubjectQuery
from broker.services import subject_report
from tests.api.disclosure_kit import entry_at, log_size
from tests.audit.report_kit import fill, token_of, whole_report

Headers = Callable[..., dict[str, str]]
REPORT = "/v1/audit/subject-report"
MANY = 2400


def pages_of(api: TestClient, headers: dict[str, str], bsn: str, limit: int | None
             ) -> Iterator[dict[str, Any]]:
    params: dict[str, Any] = {} if limit is None else {"limit": limit}
    while True:
        answer = api.post(REPORT, params=params, json={"subject": {"bsn": bsn}},
                          headers=headers)
        assert answer.status_code == 200, answer.text
        page: dict[str, Any] = answer.json()
        yield page
        if page["next_cursor"] is None:
            return
        params["cursor"] = page["next_cursor"]


@pytest.fixture
def many(runtime: Runtime) -> str:
    bsn = valid_bsn_from(456_100_000)
    fill(runtime, bsn, MANY)
    return bsn


@pytest.mark.parametrize("limit", [1000, 250, None])
def test_a_long_report_comes_in_bounded_pages_that_add_up_to_the_whole(
    api: TestClient, auth_headers: Headers, runtime: Runtime, many: str, limit: int | None
) -> None:
    items, withheld = whole_report(runtime, many)
    shown = MANY - MANY // 7 - 1  # 0, 7, 14, ... are confidential
    assert (len(items), withheld) == (shown, MANY // 7 + 1)
    officer = auth_headers("riec", ["privacy_officer"])
    size = log_size(runtime)
    pages = list(pages_of(api, officer, many, limit))
    page_size = limit or subject_report.DEFAULT_PAGE
    assert len(pages) == -(-MANY // page_size)  # every reported entry once, `limit` a page
    assert all(len(p["items"]) <= page_size for p in pages)
    assert all(len(p["items"]) + p["withheld"] == page_size for p in pages[:-1])
    assert [act for p in pages for act in p["items"]] == items
    assert sum(p["withheld"] for p in pages) == withheld
    assert {p["subject_type"] for p in pages} == {"bsn"}
    # One audited look-up per page, tagged with the subject; a later page says where it
    # continued.
    assert log_size(runtime) == size + len(pages)
    reads = [entry_at(runtime, seq) for seq in range(size, size + len(pages))]
    assert [(e.action, len(e.objects["subject_tags"])) for e in reads] == [
        ("audit_read", 1)] * len(pages)
    assert reads[0].objects.keys() == {"read", "subject_type", "subject_tags"}
    assert {(e.objects["read"], e.objects["subject_type"]) for e in reads} == {
        ("subject_report", "bsn")}
    for before, read, page in zip(pages, reads[1:], pages[1:], strict=False):
        after = read.objects["after"]
        assert all(act["seq"] <= after for act in before["items"])
        assert all(act["seq"] > after for act in page["items"])
    assert many not in str([e.model_dump() for e in reads])


def test_a_page_reads_only_its_own_entries(runtime: Runtime, many: str) -> None:
    """The memory a page takes does not follow the subject's history: far less than the
    subject's entries' bytes, which the report as one answer held all at once."""
    token = token_of(runtime, many)
    with runtime.engine.connect() as conn:
        stored = sum(len(bytes(b)) for b in conn.execute(
            select(audit_entry.c.bytes).join(
                audit_subject_entry, audit_subject_entry.c.seq == audit_entry.c.seq)
            .where(audit_subject_entry.c.token == token)).scalars())
    actor, query = system_actor("test"), SubjectQuery(bsn=many)
    subject_report.subject_report(runtime, actor, query, request_id=None, limit=100)  # warm
    tracemalloc.start()
    try:
        page = subject_report.subject_report(runtime, actor, query, request_id=None,
                                             limit=100)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(page["items"]) + page["withheld"] == 100 and page["next_cursor"]
    assert peak < stored / 4, (peak, stored)


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(limit=st.integers(min_value=1, max_value=40))
def test_pages_of_any_size_give_the_whole_report(
    api: TestClient, auth_headers: Headers, runtime: Runtime, limit: int
) -> None:
    bsn = valid_bsn_from(456_200_000)
    if not whole_report_known(runtime, bsn):  # once: the examples share the database
        fill(runtime, bsn, 30)
    items, withheld = whole_report(runtime, bsn)
    pages = list(pages_of(api, auth_headers("riec", ["privacy_officer"]), bsn, limit))
    assert all(len(p["items"]) <= limit for p in pages)
    assert [act for p in pages for act in p["items"]] == items
    assert sum(p["withheld"] for p in pages) == withheld


def whole_report_known(runtime: Runtime, bsn: str) -> bool:
    with runtime.engine.connect() as conn:
        return conn.execute(select(audit_subject.c.token).where(
            audit_subject.c.token == token_of(runtime, bsn))).first() is not None


@pytest.mark.parametrize(("params", "loc"), [
    ({"limit": 0}, ["query", "limit"]),
    ({"limit": 1001}, ["query", "limit"]),
    ({"limit": "many"}, ["query", "limit"]),
    ({"cursor": "not-a-cursor"}, ["query", "cursor"]),
    ({"cursor": "YTEuMTI"}, ["query", "cursor"]),  # the audit log list's cursor "a1.12"
    ({"cursor": "czF8LTE"}, ["query", "cursor"]),  # "s1|-1"
])
def test_a_bad_limit_or_cursor_is_422_and_records_nothing(
    api: TestClient, auth_headers: Headers, runtime: Runtime, params: dict[str, Any],
    loc: list[str],
) -> None:
    officer = auth_headers("riec", ["privacy_officer"])
    size = log_size(runtime)
    answer = api.post(REPORT, params=params, json={"subject": {"bsn": "111222333"}},
                      headers=officer)
    assert answer.status_code == 422, answer.text
    assert [e["loc"] for e in answer.json()["errors"]] == [loc]
    assert "111222333" not in answer.text
    assert log_size(runtime) == size
