"""One partner hammering area disclosures over real HTTP (uvicorn on loopback) gets no more
than its budget, and another organisation's requests keep being answered meanwhile
(docs/security.md row 52). SQLite and PostgreSQL.

Four threads of one gemeente client page through a postcode area of 300 drug reports as
fast as they can; the politie checks hits all the while. Asserted on counts and status
codes, never on times: the gemeente's released signals add up to exactly its budget,
past it every answer is 429 and one `alert` is recorded, every one of the politie's hit
checks is answered 200, and the gemeente's entries stay within what its budget allows.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from broker.audit.tables import audit_entry
from broker.core.entry import decode_entry
from broker.core.identifiers import valid_bsn_from
from broker.db import make_engine
from tests.e2e.conftest import SluisRunner, client_env
from tests.e2e.served import Served, database_for, served_broker

BUDGET = 250
PAGE = 50
PEOPLE = 300
HITS = 60
CASE = "ZAAK-2026-0077"


@pytest.fixture(params=["sqlite", "postgresql"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    with served_broker(tmp_path, database_for(request, tmp_path), {
        "BROKER_RELEASE_BUDGET_PER_HOUR": str(BUDGET),
        "BROKER_DISCLOSURE_PAGE_SIZE": str(PAGE),
        "BROKER_FISHING_SUBJECTS_PER_HOUR": "100000",
    }) as broker:
        yield broker


def reports() -> list[dict[str, Any]]:
    seen = (datetime.now(UTC) - timedelta(days=3)).isoformat()
    bodies, n = [], 456_300_000
    for number in range(1, PEOPLE + 1):
        bsn = valid_bsn_from(n)
        n = int(bsn) + 1
        bodies.append({
            "category": "drugsgerelateerde-melding", "legal_basis": "wpg-art-16",
            "subject": {"type": "person", "bsn": bsn},
            "location": {"postcode": "3072AB", "house_number": number},
            "observed_at": seen, "attributes": {"soort": "handel", "ernst": "midden"}})
    return bodies


def test_a_hammering_partner_gets_its_budget_and_the_others_their_answers(
    served: Served,
) -> None:
    politie_in = served.client("politie", "contributor", "agent-1")
    gemeente = served.client("gemeente", "requester", "handhaver-1")
    politie = served.client("politie", "requester", "rechercheur-1")
    with httpx.Client(base_url=served.url, timeout=30) as http:
        stored = http.post("/v1/signals/batch", json={"signals": reports()}, headers=politie_in)
        assert stored.status_code == 201, stored.text

    released: list[int] = []
    statuses: Counter[int] = Counter()
    hit_statuses: Counter[int] = Counter()
    done = threading.Event()
    lock = threading.Lock()

    def hammer() -> None:
        with httpx.Client(base_url=served.url, timeout=30) as http:
            page = None
            while not done.is_set():
                body: dict[str, Any] = {"purpose": "integrale-controle", "case_reference": CASE,
                                        "query": {"area": {"postcode": "3072"}}}
                if page:
                    body["page"] = page
                answer = http.post("/v1/disclosures", json=body, headers=gemeente)
                with lock:
                    statuses[answer.status_code] += 1
                    if answer.status_code == 200:
                        released.append(len(answer.json()["signals"]))
                page = answer.json().get("next_page") if answer.status_code == 200 else None

    def check_hits() -> None:
        with httpx.Client(base_url=served.url, timeout=30) as http:
            for n in range(HITS):
                answer = http.post("/v1/hits", headers=politie, json={
                    "purpose": "integrale-controle", "case_reference": "PL-2026-1",
                    "subject": {"bsn": valid_bsn_from(456_900_000 + n % 5)}})
                hit_statuses[answer.status_code] += 1
        done.set()

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    threads.append(threading.Thread(target=check_hits))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads)

    assert hit_statuses == Counter({200: HITS})  # the other organisation was answered
    assert sum(released) == BUDGET  # exactly the budget, however the threads raced
    assert all(n <= PAGE for n in released)
    assert set(statuses) == {200, 429} and statuses[429] >= 1

    engine = make_engine(served.database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(audit_entry.c.bytes).where(
                audit_entry.c.action.in_(["disclosure", "alert"]))).scalars().all()
    finally:
        engine.dispose()
    entries = [decode_entry(bytes(row)) for row in rows]
    alerts = [e for e in entries if e.action == "alert"]
    assert [(e.reason, e.actor.org) for e in alerts] == [("too_many_signals", "gemeente")]
    disclosures = [e for e in entries if e.action == "disclosure"]
    assert sum(e.objects["released"] for e in disclosures) == BUDGET
    assert len(disclosures) == statuses[200]
    # What the gemeente's answers could write to the log is bounded by its budget: some
    # 250 bytes a signal, and little for each page beside.
    assert sum(len(bytes(row)) for row in rows) < BUDGET * 300 + len(rows) * 2000


def test_the_client_pages_through_an_area(
    served: Served, run_sluis: SluisRunner, tmp_path: Path
) -> None:
    """`sluis disclose` names the next page, and `--page` gets it."""
    politie_in = served.client("politie", "contributor", "agent-1")
    with httpx.Client(base_url=served.url, timeout=30) as http:
        stored = http.post("/v1/signals/batch", json={"signals": reports()[:70]},
                           headers=politie_in)
        assert stored.status_code == 201, stored.text
    env = client_env(tmp_path / "gemeente", served.url,
                     served.credentials("gemeente", "requester"), acting_user="handhaver-1")
    ask = ("disclose", "--purpose", "integrale-controle", "--case", CASE, "--area", "3072")
    first = run_sluis(env, *ask)
    assert first.returncode == 0, first.stderr
    assert f"{PAGE} signals released" in first.stdout
    token = first.stdout.split("--page ", 1)[1].split()[0]
    second = run_sluis(env, *ask, "--page", token, "--json")
    assert second.returncode == 0, second.stderr
    page = json.loads(second.stdout)
    assert len(page["signals"]) == 70 - PAGE and page["next_page"] is None
    assert "--page" not in run_sluis(env, *ask, "--page", token).stdout
    wrong = run_sluis(env, "disclose", "--purpose", "integrale-controle", "--case", CASE,
                      "--area", "3072AB", "--page", token)
    assert wrong.returncode != 0 and "not a page of this query" in wrong.stdout + wrong.stderr
