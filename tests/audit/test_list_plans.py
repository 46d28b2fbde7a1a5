"""The lists read what they show from an index, however long the log and the queues grow.

Each case below ran, on SQLite, as a walk of a whole table or index (the audit log
newest first until enough entries matched; every counted entry ever written; every
re-identification request, sorted): a cost that grew with every entry. The plans are
SQLite's own for the statements the services send.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select

from broker import cursors
from broker.audit.reads import EntryFilter, Scope, list_entries
from broker.models import reidentification
from broker.services import candidates, retention, signals
from broker.services.oversight import activity
from tests.audit.audit_kit import LogEnv, draft, read_plans

GROWING = ("audit_entry", "audit_entry_org", "audit_node", "reidentification", "legal_hold",
           "signal")


def _entries(log: LogEnv, scope: Scope, filters: EntryFilter, cursor: str | None = None
             ) -> Callable[[], Any]:
    return lambda: list_entries(log.engine, scope, filters, limit=10, cursor=cursor)


def _requests(log: LogEnv, status: str | None, cursor: str | None) -> Callable[[], Any]:
    query = select(reidentification)
    if status is not None:
        query = query.where(reidentification.c.status == status)
    return lambda: cursors.newest_first(
        log.engine, query, reidentification.c.created_at, reidentification.c.id,
        prefix="r1|", limit=10, cursor=cursor)


CURSOR = cursors.encode("r1|", datetime(2026, 11, 1, tzinfo=UTC), "rid_x")
Case = Callable[[LogEnv], Callable[[], Any]]
CASES: dict[str, Case] = {
    "a partner's entries": lambda log: _entries(log, Scope("belastingdienst"), EntryFilter()),
    "a partner's entries, next page": lambda log: _entries(
        log, Scope("politie"), EntryFilter(), cursor=list_entries(
            log.engine, Scope("politie"), EntryFilter(), limit=10, cursor=None)[1]),
    "a partner's entries of one purpose": lambda log: _entries(
        log, Scope("belastingdienst"), EntryFilter(purpose="integrale-controle")),
    "a partner's entries of one purpose, next page": lambda log: _entries(
        log, Scope("politie"), EntryFilter(purpose="integrale-controle"), cursor=list_entries(
            log.engine, Scope("politie"), EntryFilter(purpose="integrale-controle"), limit=10,
            cursor=None)[1]),
    "entries of one purpose": lambda log: _entries(
        log, Scope.everything(), EntryFilter(purpose="fiscale-handhaving")),
    "the overview's chart": lambda log: lambda: activity(
        log.engine, today=date(2026, 11, 29), weeks=6),
    "pending requests, next page": lambda log: _requests(log, "pending", CURSOR),
    "requests, next page": lambda log: _requests(log, None, CURSOR),
    "an organisation's signals": lambda log: lambda: signals.list_signals(
        SimpleNamespace(engine=log.engine), "politie",  # type: ignore[arg-type]
        category=None, since=None, until=None, limit=10, cursor=None),
    "an organisation's signals, next page": lambda log: lambda: signals.list_signals(
        SimpleNamespace(engine=log.engine), "politie",  # type: ignore[arg-type]
        category=None, since=None, until=None, limit=10,
        cursor=cursors.encode(signals.CURSOR_PREFIX, datetime(2026, 11, 1, tzinfo=UTC),
                              "sig_x")),
    "an organisation's signals of one category, next page": lambda log: lambda: (
        signals.list_signals(
            SimpleNamespace(engine=log.engine), "politie",  # type: ignore[arg-type]
            category="hennepteelt-vermoeden", since=None, until=None, limit=10,
            cursor=cursors.encode(signals.CURSOR_PREFIX, datetime(2026, 11, 1, tzinfo=UTC),
                                  "sig_x"))),
    "the signals due for retention": lambda log: lambda: _due(log),
    "an organisation's legal holds": lambda log: lambda: retention.listed(
        SimpleNamespace(engine=log.engine), "politie", limit=10),  # type: ignore[arg-type]
    "legal holds of one case, next page": lambda log: lambda: retention.listed(
        SimpleNamespace(engine=log.engine), "politie",  # type: ignore[arg-type]
        case_reference="RB-1", limit=10,
        cursor=cursors.encode(retention.CURSOR_PREFIX, datetime(2026, 11, 1, tzinfo=UTC),
                              "sig_x")),
}
BOUNDED: dict[str, tuple[Case, str]] = {
    # An unfiltered first page walks the newest rows of an index and stops after the page.
    "re-identification requests": (lambda log: _requests(log, None, None),
                                   "SCAN reidentification USING INDEX ix_reidentification_created"),
}


def _due(log: LogEnv) -> Any:
    with log.engine.connect() as conn:
        return retention.due_for_retention(conn, datetime(2026, 11, 29, tzinfo=UTC))


KEYED: dict[str, tuple[Case, str]] = {
    # Found by what they ask for, in indexes of live signals only: not by walking the
    # organisation's live signals for one category, nor every signal ever shredded.
    "an organisation's signals of one category": (
        CASES["an organisation's signals of one category, next page"],
        "SEARCH signal USING INDEX ix_signal_live_source_category_received (source=? AND "
        "category=? AND received_at<?)"),
    "the signals due for retention": (
        CASES["the signals due for retention"],
        "SEARCH signal USING INDEX ix_signal_live_retention (retention_until<?)"),
}


@pytest.mark.parametrize("case", list(KEYED))
def test_signal_reads_are_keyed_by_what_they_ask(sqlite_log: LogEnv, case: str) -> None:
    make, expected = KEYED[case]
    plans = read_plans(sqlite_log.engine, make(sqlite_log))
    assert expected in plans, plans


def _touching(plans: list[str]) -> list[str]:
    return [p for p in plans if any(f" {table} " in f" {p} " for table in GROWING)]


@pytest.mark.parametrize("case", list(CASES))
def test_lists_search_an_index(sqlite_log: LogEnv, case: str) -> None:
    log = sqlite_log
    plans = read_plans(log.engine, CASES[case](log))
    touching = _touching(plans)
    assert touching, plans
    assert all(p.startswith("SEARCH ") for p in touching), plans
    assert not any("TEMP B-TREE" in p for p in plans), plans


@pytest.mark.parametrize("case", list(BOUNDED))
def test_bounded_walks_are_the_only_exceptions(sqlite_log: LogEnv, case: str) -> None:
    log = sqlite_log
    make, exception = BOUNDED[case]
    plans = read_plans(log.engine, make(log))
    assert exception in plans, plans
    rest = [p for p in _touching(plans) if p != exception]
    assert all(p.startswith("SEARCH ") for p in rest), plans
    assert [p for p in plans if "TEMP B-TREE" in p] in ([], [exception]), plans


def _pages(log: LogEnv, scope: Scope, filters: EntryFilter) -> list[int]:
    seen: list[int] = []
    cursor = None
    while True:
        items, cursor = list_entries(log.engine, scope, filters, limit=4, cursor=cursor)
        seen.extend(item["seq"] for item in items)
        if cursor is None:
            return seen


def test_a_partners_list_is_its_own_entries_newest_first(sqlite_log: LogEnv) -> None:
    """Acts of several organisations about several sources' signals, for two purposes:
    each organisation's pages hold exactly the entries it acted in or whose signals it
    gave, newest first, with and without a purpose filter, page after page."""
    log = sqlite_log
    orgs = ("gemeente", "politie", "belastingdienst", "netbeheerder")
    for n in range(40):
        entry = draft(100 + n, org=orgs[n % 4], source=orgs[(n // 4 + 1) % 4])
        entry["purpose"] = ("integrale-controle", "fiscale-handhaving")[n % 3 == 0]
        log.log.record(entry)
    every, _ = list_entries(log.engine, Scope.everything(), EntryFilter(), limit=1000,
                            cursor=None)
    for org in (*orgs, "riec"):
        mine = [item for item in every
                if item["actor"]["org"] == org or any(i["source"] == org for i in item["items"])]
        assert _pages(log, Scope(org), EntryFilter()) == [item["seq"] for item in mine]
        for purpose in ("integrale-controle", "fiscale-handhaving"):
            assert _pages(log, Scope(org), EntryFilter(purpose=purpose)) == [
                item["seq"] for item in mine if item["purpose"] == purpose]
        assert (org == "riec") == (not mine)


def _candidate_plans(log: LogEnv, *, with_payload: bool, after: candidates.After | None,
                     ) -> list[str]:
    """SQLite's plan of the read a hit check (no payload) or a disclosure page sends: the
    gemeente's rules for `integrale-controle`, about one subject."""
    from broker.core.policy import CompiledPolicy, load_pack
    from tests.conftest import DEMO_PACK

    reach = CompiledPolicy(load_pack(DEMO_PACK)).reach(
        "gemeente", "integrale-controle", "hit", datetime(2026, 11, 29, tzinfo=UTC).timestamp())
    terms: list[candidates.Term] = [(r.category, r.source, r.legal_basis, r.since)
                                    for r in reach]
    lookup = candidates.Lookup("subject", token=b"t" * 32, subject=b"t" * 32)
    sql, params = candidates.statement("sqlite", lookup, terms, with_payload=with_payload,
                                       limit=101, after=after)
    with log.engine.connect() as conn:
        return [str(detail) for *_, detail in conn.exec_driver_sql(
            "EXPLAIN QUERY PLAN " + sql, tuple(params)).all()]


REACH_SEEK = ("SEARCH i USING COVERING INDEX ix_signal_index_reach (token=? AND category=? "
              "AND source=? AND legal_basis=? AND observed_at>?)")


@pytest.mark.parametrize(("with_payload", "after"), [
    (False, None), (True, None), (True, candidates.After(1_764_000_000_000_000, "sig_x"))])
def test_a_candidate_read_seeks_only_what_the_rules_reach(
    sqlite_log: LogEnv, with_payload: bool, after: candidates.After | None
) -> None:
    """A hit check or a disclosure page seeks each (token, category, source, legal basis)
    its rules reach from the oldest observation they accept, in the index that holds the
    envelope: no row of another basis, source or age is read (docs/security.md row 51); a
    disclosure reads the signal rows it found by their key, and nothing else."""
    plans = _candidate_plans(sqlite_log, with_payload=with_payload, after=after)
    seeks = [p for p in plans if p.startswith("SEARCH i ")]
    assert seeks and all(p == REACH_SEEK for p in seeks), plans
    assert all(p.startswith("SEARCH ") for p in _touching(plans)), plans
    signal_reads = [p for p in plans if p.startswith("SEARCH s ")]
    by_key = "SEARCH s USING INDEX sqlite_autoindex_signal_1 (id=?)"
    assert signal_reads == ([by_key] * len(seeks) if with_payload else []), plans
    assert not any(p.startswith("SCAN ") and p != "SCAN t" for p in plans), plans
