"""A request reads only the signals its rules reach (docs/security.md row 51).

A hit check or disclosure used to read every signal under the subject's token of the
categories it could receive, and decide each afterwards: its answer took longer the more
signals of other legal bases, sources or ages there were, which told of signals the caller
may not see (a timing the benchmark `bench/hit_timing_bench.py` measures; no test times
anything). Now the database seeks exactly the (category, source, legal basis) the rules
reach, from the oldest observation each accepts. Held here by what the read hands back,
and by its consequence the old read showed: enough unseen signals crowded out, under the
read's limit, the ones the caller may see. SQLite and PostgreSQL; the plan of the read is
held in tests/audit/test_list_plans.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from broker.core.identifiers import valid_bsn_from
from broker.runtime import Runtime
from broker.schemas.disclosures import SubjectQuery
from broker.services import candidates
from broker.services.candidates import MAX_CANDIDATES, Lookup, subject_token
from tests.api.disclosure_kit import drugs, entry_at, fiscal

Headers = Callable[..., dict[str, str]]
CASE = "ZAAK-2026-0051"
WATCHED = valid_bsn_from(456_100_000)
NOBODY = valid_bsn_from(456_200_000)


def ago(days: int) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).isoformat()


def unseen(count: int, bsn: str = WATCHED) -> list[dict[str, Any]]:
    """Signals about `bsn` the gemeente may not see for `integrale-controle`: drug reports
    under other legal bases, one too old for its rule, a tax debt (another purpose's)."""
    bodies: list[dict[str, Any]] = []
    for n in range(count):
        kind = n % 4
        if kind == 3:
            body = fiscal()
            body["subject"] = {"type": "person", "bsn": bsn}
        else:
            body = drugs(bsn=bsn, basis=("wpg-art-19", "wpg-art-20", "wpg-art-16")[kind])
            body["observed_at"] = ago(800 if kind == 2 else 10)  # the rule keeps 730 days
        bodies.append(body)
    return bodies


def submit_all(api: TestClient, headers: dict[str, str], bodies: list[dict[str, Any]]) -> None:
    for start in range(0, len(bodies), 1000):
        answer = api.post("/v1/signals/batch", json={"signals": bodies[start:start + 1000]},
                          headers=headers)
        assert answer.status_code == 201, answer.text


def ask_hit(api: TestClient, headers: dict[str, str], bsn: str) -> Any:
    return api.post("/v1/hits", json={"purpose": "integrale-controle", "case_reference": CASE,
                                      "subject": {"bsn": bsn}}, headers=headers)


def test_unseen_signals_are_not_read_and_leave_no_trace(
    api: TestClient, auth_headers: Headers, runtime: Runtime
) -> None:
    politie = auth_headers("politie", ["contributor"])
    belastingdienst = auth_headers("belastingdienst", ["contributor"])
    bodies = unseen(400)
    submit_all(api, politie, [b for b in bodies if b["category"] != "fiscale-schuld"])
    submit_all(api, belastingdienst, [b for b in bodies if b["category"] == "fiscale-schuld"])
    gemeente = auth_headers("gemeente", ["requester"])
    now = datetime.now(UTC).timestamp()
    reach = runtime.policy.compiled.reach("gemeente", "integrale-controle", "hit", now)
    keys = runtime.keys
    for bsn in (WATCHED, NOBODY):
        token = subject_token(keys, SubjectQuery(bsn=bsn), ("body", "subject"))
        lookup = Lookup("subject", token=token, subject=token)
        # The read the hit check sends hands back nothing for either subject ...
        assert candidates.find_reachable(runtime.engine, lookup, reach, with_payload=False) == []
        assert candidates.find_reachable(runtime.engine, lookup, reach, with_payload=True) == []
        if runtime.engine.dialect.name == "postgresql":
            terms: list[candidates.Term] = [
                (r.category, r.source, r.legal_basis, r.since) for r in reach]
            for with_payload in (False, True):
                assert _rows_read(runtime.engine, lookup, terms, with_payload=with_payload) == 0
            # What a read by category alone (the old hit check's) went through:
            by_category: list[candidates.Term] = [(c, None, None, None) for c in sorted(
                {r.category for r in reach})]
            assert _rows_read(runtime.engine, lookup, by_category, with_payload=False) == (
                300 if bsn == WATCHED else 0)
        # ... and both answers and entries are alike.
        answer = ask_hit(api, gemeente, bsn)
        assert answer.status_code == 200, answer.text
        assert (answer.json()["hit"], answer.json()["sources"]) == (False, [])
        entry = entry_at(runtime, answer.json()["audit_seq"])
        assert (entry.items, entry.objects["hit"]) == ([], False)


def _rows_read(engine: Engine, lookup: Lookup, terms: list[candidates.Term], *,
               with_payload: bool) -> int:
    """Rows of the signal tables the database itself counts reading for the statement a
    hit check (or a disclosure) sends: PostgreSQL's EXPLAIN ANALYZE, every scan's rows
    kept and filtered out. (SQLite's plan is held in tests/audit/test_list_plans.py.)"""
    sql, params = candidates.statement("postgresql", lookup, terms, with_payload=with_payload,
                            limit=MAX_CANDIDATES)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
        plan = cursor.fetchone()[0]
    finally:
        raw.close()
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return _read(plan[0]["Plan"])


SIGNAL_TABLES = ("signal", "signal_index")


def _read(node: dict[str, Any]) -> int:
    scanned = node.get("Relation Name") in SIGNAL_TABLES or str(
        node.get("Index Name", "")).startswith(("ix_signal", "signal"))
    rows = 0
    if scanned:
        per_loop = (node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)
                    + node.get("Rows Removed by Index Recheck", 0))
        rows = int(per_loop * node.get("Actual Loops", 1))
    return rows + sum(_read(child) for child in node.get("Plans", ()))


def test_unseen_signals_do_not_crowd_out_what_the_caller_may_see(
    api: TestClient, auth_headers: Headers, runtime: Runtime
) -> None:
    """More unseen signals than a request considers, older than the one the gemeente may
    see: the old read, oldest first under its limit, found only the unseen ones."""
    politie = auth_headers("politie", ["contributor"])
    crowd = [drugs(bsn=WATCHED, basis="wpg-art-19") for _ in range(MAX_CANDIDATES)]
    for body in crowd:
        body["observed_at"] = ago(10)
    submit_all(api, politie, crowd)
    seen = drugs(bsn=WATCHED, basis="wpg-art-16")
    seen["observed_at"] = ago(1)
    submit_all(api, politie, [seen])
    gemeente = auth_headers("gemeente", ["requester"])
    answer = ask_hit(api, gemeente, WATCHED)
    assert answer.status_code == 200, answer.text
    assert answer.json()["hit"] is True
    disclosed = api.post("/v1/disclosures", json={
        "purpose": "integrale-controle", "case_reference": CASE,
        "query": {"subject": {"bsn": WATCHED}}}, headers=gemeente)
    assert disclosed.status_code == 200, disclosed.text
    (signal,) = disclosed.json()["signals"]
    assert signal["category"] == "drugsgerelateerde-melding"
    assert signal["fields"]["observed_at"] == seen["observed_at"][:7]
