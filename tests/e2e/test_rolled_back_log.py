"""A log rolled back under a running broker fails closed (docs/security.md row 62), on
SQLite and PostgreSQL through real HTTP: after the database loses its newest entries (as
when an older copy is restored), `/readyz` is not ready, accountable acts answer 503
`audit_log_untrusted` and store nothing, `sluis_audit_healthy` is 0, and nothing more is
signed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from broker.db import make_engine
from tests.api.disclosure_kit import drugs
from tests.audit.audit_kit import tamper
from tests.e2e.served import Served, database_for, served_broker

METRICS_TOKEN = "m" * 40
KEPT = 3


@pytest.fixture(params=["sqlite", "postgresql"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    with served_broker(tmp_path, database_for(request, tmp_path), {
        "BROKER_CHECKPOINT_EVERY_ENTRIES": "4",
        "BROKER_AUDIT_CHECK_SECONDS": "0.5",
        "BROKER_METRICS_TOKEN": METRICS_TOKEN,
    }) as broker:
        yield broker


def scalar(url: str, sql: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(sql)).scalar_one())
    finally:
        engine.dispose()


def roll_back(url: str, size: int) -> None:
    """What restoring a copy of `size` entries does to the log's tables."""
    engine = make_engine(url)
    try:
        tamper(engine, [
            ("DELETE FROM audit_entry_org WHERE seq >= :n", {"n": size}),
            ("DELETE FROM audit_subject_entry WHERE seq >= :n", {"n": size}),
            ("DELETE FROM audit_entry WHERE seq >= :n", {"n": size}),
            ("DELETE FROM audit_node WHERE ((idx + 1) << level) > :n", {"n": size}),
            ("DELETE FROM audit_checkpoint WHERE size > :n", {"n": size}),
        ])
    finally:
        engine.dispose()


def test_a_rolled_back_log_stops_accountable_acts(served: Served) -> None:
    politie = served.client("politie", "contributor", "agent-1")
    with httpx.Client(base_url=served.url, timeout=10) as http:
        for number in range(1, 11):
            stored = http.post("/v1/signals", headers=politie, json=drugs(number=number))
            assert stored.status_code == 201, stored.text
        deadline = time.monotonic() + 20
        signed = "SELECT coalesce(max(size), 0) FROM audit_checkpoint"
        while scalar(served.database_url, signed) < 8:
            assert time.monotonic() < deadline, "no checkpoint was signed"
            time.sleep(0.2)
        time.sleep(1.0)  # the guard has seen the checkpoint
        assert http.get("/readyz").status_code == 200
        roll_back(served.database_url, KEPT)
        signals = scalar(served.database_url, "SELECT count(*) FROM signal")

        deadline = time.monotonic() + 10
        while http.get("/readyz").status_code == 200:
            assert time.monotonic() < deadline, "a rolled-back log is still served as ready"
            time.sleep(0.2)
        ready = http.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["audit"] is False
        refused = http.post("/v1/signals", headers=politie, json=drugs(number=99))
        assert refused.status_code == 503, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        body = refused.json()
        assert body["code"] == "audit_log_untrusted"
        assert "behind or forked" in body["detail"]
        assert scalar(served.database_url, "SELECT count(*) FROM signal") == signals
        metrics = http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert "sluis_audit_healthy 0" in metrics.text
        time.sleep(1.0)
        assert scalar(served.database_url, "SELECT count(*) FROM audit_entry") == KEPT
        assert scalar(served.database_url, signed) <= KEPT
