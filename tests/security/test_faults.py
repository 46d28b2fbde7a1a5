"""Faults (docs/security.md rows 38-40 and 44-46): fail closed, lose nothing acknowledged.

- kill -9 of a real `broker serve` while signals pour in, then a restart: every 201 the
  client saw is stored, every stored signal has its audit entry, `broker audit verify`
  exits 0 (`BROKER_FAULT_KILLS` rounds, default 10 on SQLite and 2 on PostgreSQL);
- the database refusing audit inserts: 503, nothing of the request stored, recovery;
- SQLite disk full (`PRAGMA max_page_count` on the broker's own connections): 503, never
  500, nothing half-stored, recovery when space returns;
- alembic downgrade and upgrade on a populated database: no audit row rewritten;
- slowloris and 200 concurrent calls against a real uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import random
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, event, inspect, select, text

from broker import migrate
from broker.audit import integrity
from broker.audit.tables import audit_entry
from broker.db import make_engine
from broker.runtime import Runtime
from tests.api.disclosure_kit import BSN, drugs, energy
from tests.audit.audit_kit import inserts_refused
from tests.security.conftest import ServedBroker, broker_command, broker_env

Headers = Callable[..., dict[str, str]]
PROBLEM = "application/problem+json"
KILLS = int(os.environ.get("BROKER_FAULT_KILLS", "10"))
SLOWLORIS = int(os.environ.get("BROKER_SLOWLORIS_CONNECTIONS", "200"))


def audit_rows(engine: Engine) -> list[tuple[int, bytes, bytes]]:
    with engine.connect() as conn:
        rows = conn.execute(select(audit_entry.c.seq, audit_entry.c.bytes,
                                   audit_entry.c.leaf_hash).order_by(audit_entry.c.seq))
        return [(int(s), bytes(b), bytes(h)) for s, b, h in rows]


def count(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())  # noqa: S608


def table_names(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(inspect(conn).get_table_names())


def verifies(runtime: Runtime) -> bool:
    return bool(integrity.verify_live(runtime.engine, runtime.audit.signer).ok)


# --- row 39: kill -9 under load --------------------------------------------------------------

class Submitter(threading.Thread):
    """Posts signals over keep-alive connections until stopped; keeps the ids it got 201 for."""

    def __init__(self, broker: ServedBroker, token: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.broker, self.stop = broker, stop
        self.headers = {"Authorization": f"Bearer {token}", "X-Acting-User": "agent-7",
                        "Content-Type": "application/json"}
        self.acked: list[str] = []
        self.statuses: Counter[int | str] = Counter()
        self.connection: http.client.HTTPConnection | None = None

    def run(self) -> None:
        try:
            self._submit_until_stopped()
        finally:
            self._close()  # the last connection too: none is left to the collector

    def _close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def _submit_until_stopped(self) -> None:
        while not self.stop.is_set():
            try:
                if self.connection is None:
                    self.connection = http.client.HTTPConnection(
                        self.broker.host, self.broker.port, timeout=10)
                body = json.dumps({**drugs(), "description": f"load {random.random()}"})
                self.connection.request("POST", "/v1/signals", body=body, headers=self.headers)
                answer = self.connection.getresponse()
                data = answer.read()
                self.statuses[answer.status] += 1
                if answer.status == 201:
                    self.acked.append(json.loads(data)["id"])
            except (OSError, http.client.HTTPException):
                self.statuses["dropped"] += 1
                self._close()
                time.sleep(0.02)


def kill_rounds(broker: ServedBroker, rounds: int, seed: int) -> tuple[list[str], Counter[Any]]:
    """Start, load, SIGKILL, `rounds` times; returns every acknowledged id and the statuses."""
    rng = random.Random(seed)
    acked: list[str] = []
    statuses: Counter[Any] = Counter()
    broker.start()
    client_id, secret = broker.client("politie", "contributor")
    token = broker.token(client_id, secret)
    for turn in range(rounds):
        if turn:
            broker.start()
        stop = threading.Event()
        submitters = [Submitter(broker, token, stop) for _ in range(4)]
        for submitter in submitters:
            submitter.start()
        time.sleep(rng.uniform(0.3, 1.2))
        broker.kill()  # mid-request: four submitters keep requests in flight
        stop.set()
        for submitter in submitters:
            submitter.join(timeout=20)
            acked += submitter.acked
            statuses.update(submitter.statuses)
    return acked, statuses


def check_after_kills(broker: ServedBroker, acked: list[str], database_url: str) -> None:
    broker.start()
    try:
        engine = make_engine(database_url)
        try:
            with engine.connect() as conn:
                stored = {r[0] for r in conn.execute(text("SELECT id FROM signal"))}
                audited = conn.execute(select(audit_entry.c.seq).where(
                    audit_entry.c.action == "signal_created")).all()
        finally:
            engine.dispose()
        lost = set(acked) - stored
        assert not lost, f"{len(lost)} acknowledged signals lost"
        assert len(audited) == len(stored), "a stored signal without its entry, or the reverse"
        assert broker.call("GET", "/readyz").status == 200
    finally:
        broker.stop()
    verify = broker_command(broker.env, "audit", "verify", "--json")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert json.loads(verify.stdout)["ok"] is True


@pytest.mark.slow
def test_kill_9_under_load_loses_nothing_acknowledged_sqlite(served: ServedBroker) -> None:
    acked, statuses = kill_rounds(served, KILLS, seed=39)
    print(f"kill -9: {KILLS} rounds, {len(acked)} acknowledged, statuses {dict(statuses)}")
    assert len(acked) >= KILLS * 5 and statuses[500] == 0
    check_after_kills(served, acked, served.env["BROKER_DATABASE_URL"])


@pytest.mark.slow
def test_kill_9_under_load_loses_nothing_acknowledged_postgresql(
    postgres_url: str, tmp_path: Path
) -> None:
    broker = ServedBroker(tmp_path, broker_env(tmp_path, postgres_url))
    broker.command("init")
    rounds = max(1, KILLS // 5)
    try:
        acked, statuses = kill_rounds(broker, rounds, seed=40)
    finally:
        broker.stop()
    print(f"kill -9 (PostgreSQL): {rounds} rounds, {len(acked)} acknowledged")
    assert acked and statuses[500] == 0
    check_after_kills(broker, acked, postgres_url)


# --- row 38: the audit insert fails ----------------------------------------------------------



def _unavailable(answer: Any) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.headers["content-type"].startswith(PROBLEM)
    assert answer.json()["code"] == "audit_unavailable"


def test_a_refused_audit_insert_is_503_and_stores_nothing(
    api: TestClient, auth_headers: Headers, runtime: Runtime
) -> None:
    politie = auth_headers("politie", ["contributor"])
    gemeente = auth_headers("gemeente", ["requester"])
    admin = auth_headers("riec", ["admin"], kind="personal", acting_user=None)
    kept = api.post("/v1/signals", json=drugs(), headers=politie).json()["id"]
    before_rows = audit_rows(runtime.engine)
    before = {t: count(runtime.engine, t) for t in ("signal", "client", "idempotency_record")}
    ask = {"purpose": "integrale-controle", "case_reference": "ZAAK-1",
           "query": {"subject": {"bsn": BSN}}}
    with inserts_refused(runtime.engine):
        _unavailable(api.post("/v1/signals", json=drugs(),
                              headers={**politie, "Idempotency-Key": "fault-1"}))
        _unavailable(api.post("/v1/signals/batch", json={"signals": [drugs(), drugs()]},
                              headers=politie))
        refused = api.post("/v1/disclosures", json=ask, headers=gemeente)
        _unavailable(refused)
        assert "Sem de Vries" not in refused.text and kept not in refused.text
        _unavailable(api.delete(f"/v1/signals/{kept}", headers=politie))
        _unavailable(api.post("/v1/admin/clients", headers=admin, json={
            "org": "politie", "name": "x", "roles": ["requester"]}))
    assert audit_rows(runtime.engine) == before_rows
    assert {t: count(runtime.engine, t) for t in before} == before
    assert api.get(f"/v1/signals/{kept}", headers=politie).status_code == 200
    # Recovery: the same idempotency key now creates once.
    again = api.post("/v1/signals", json=drugs(), headers={**politie, "Idempotency-Key": "fault-1"})
    assert again.status_code == 201
    assert api.post("/v1/disclosures", json=ask, headers=gemeente).status_code == 200
    assert api.get("/readyz").status_code == 200
    assert verifies(runtime)


# --- row 37: concurrent disclosures racing on the log ----------------------------------------

def test_100_concurrent_disclosures_get_distinct_gap_free_seqs(
    api: TestClient, auth_headers: Headers, runtime: Runtime
) -> None:
    api.post("/v1/signals", json=drugs(), headers=auth_headers("politie", ["contributor"]))
    gemeente = auth_headers("gemeente", ["requester"])
    start = len(audit_rows(runtime.engine))
    ask = {"purpose": "integrale-controle", "case_reference": "ZAAK-1",
           "query": {"subject": {"bsn": BSN}}}

    def disclose(_: int) -> int:
        answer = api.post("/v1/disclosures", json=ask, headers=gemeente)
        assert answer.status_code == 200, answer.text
        seq: int = answer.json()["audit_seq"]
        return seq

    with ThreadPoolExecutor(25) as pool:
        seqs = list(pool.map(disclose, range(100)))
    assert len(set(seqs)) == 100
    rows = audit_rows(runtime.engine)
    assert [seq for seq, _, _ in rows] == list(range(len(rows)))  # gap-free
    assert set(seqs) <= set(range(start, len(rows)))
    assert verifies(runtime)


# --- row 41: the clock jumps ------------------------------------------------------------------

def test_a_clock_jumping_back_keeps_seq_order_and_utc(runtime: Runtime) -> None:
    from datetime import UTC, datetime, timedelta

    from broker.audit.appender import AuditLog
    from broker.auth.actors import system_actor
    from broker.core.entry import decode_entry

    moments = iter([datetime(2026, 11, 28, 12, tzinfo=UTC) - timedelta(hours=h)
                    for h in (0, 5, 1, 48)])
    log = AuditLog(runtime.engine, runtime.keys, runtime.settings, clock=lambda: next(moments))
    draft = {"action": "retention_run", "outcome": "granted", "reason": None,
             "actor": system_actor("clock test").as_entry(), "objects": {"erased": 0}}
    seqs = [log.record(draft).seq for _ in range(4)]
    log.close()
    assert seqs == sorted(seqs) and len(set(seqs)) == 4
    times = [decode_entry(b).time for s, b, _ in audit_rows(runtime.engine) if s in seqs]
    assert all(t.endswith("Z") for t in times)
    assert times[1] < times[0]  # recorded as the clock said, ordered by seq regardless
    assert verifies(runtime)


# --- row 40: disk full ------------------------------------------------------------------------

@contextlib.contextmanager
def page_limit(engine: Engine) -> Iterator[Callable[[int | None], None]]:
    """Cap the SQLite file at a page count in every transaction the broker begins (the
    audit appender keeps its connection, so a cap set at checkout would miss it);
    `set(None)` lifts the cap again (space returns)."""
    limit: list[int | None] = [None]

    def on_begin(conn: Connection) -> None:
        pages = limit[0] if limit[0] is not None else 1_073_741_823
        conn.connection.driver_connection.execute(f"PRAGMA max_page_count = {int(pages)}")

    event.listen(engine, "begin", on_begin)
    try:
        yield lambda pages: limit.__setitem__(0, pages)
    finally:
        limit[0] = None
        event.remove(engine, "begin", on_begin)


def test_disk_full_is_503_and_recovers(
    api: TestClient, auth_headers: Headers, runtime: Runtime
) -> None:
    """Row 40 on SQLite. (PostgreSQL's disk full needs its data directory on a small
    filesystem; the throwaway cluster has none: see docs/security.md.)"""
    if runtime.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's max_page_count only")
    politie = auth_headers("politie", ["contributor"])
    netbeheerder = auth_headers("netbeheerder", ["contributor"])
    with runtime.engine.connect() as conn:
        pages = int(conn.exec_driver_sql("PRAGMA page_count").scalar_one())
    plain = TestClient(api.app, raise_server_exceptions=False)
    statuses: Counter[int] = Counter()
    with page_limit(runtime.engine) as set_limit:
        set_limit(pages + 8)
        before = count(runtime.engine, "signal")
        for number in range(200):
            body = {**drugs(), "description": "x" * 3000} if number % 2 else energy()
            answer = plain.post("/v1/signals", json=body,
                                headers=politie if number % 2 else netbeheerder)
            statuses[answer.status_code] += 1
            if answer.status_code != 201:
                assert answer.status_code == 503, answer.text
                assert answer.headers["content-type"].startswith(PROBLEM)
        assert statuses[503] > 0, statuses
        assert count(runtime.engine, "signal") - before == statuses[201]
        set_limit(None)
        assert api.post("/v1/signals", json=drugs(), headers=politie).status_code == 201
    print(f"disk full: {dict(statuses)}")
    assert plain.get("/readyz").status_code == 200
    assert verifies(runtime)


# --- row 46: migrations on a populated database ------------------------------------------------

@pytest.fixture
def populated(api: TestClient, auth_headers: Headers) -> TestClient:
    """Signals, a disclosure, clients: a log with entries and rows in every migration's tables."""
    politie = auth_headers("politie", ["contributor"])
    for _ in range(3):
        assert api.post("/v1/signals", json=drugs(), headers=politie).status_code == 201
    ask = {"purpose": "integrale-controle", "case_reference": "ZAAK-1",
           "query": {"subject": {"bsn": BSN}}}
    assert api.post("/v1/disclosures", json=ask,
                    headers=auth_headers("gemeente", ["requester"])).status_code == 200
    return api


def test_downgrade_and_upgrade_keep_the_log(
    populated: TestClient, auth_headers: Headers, runtime: Runtime, db_url: str
) -> None:
    """Row 46: head -> 0002 -> head on a populated database; no audit row rewritten."""
    rows = audit_rows(runtime.engine)
    signals = count(runtime.engine, "signal")
    head = migrate.head_revision()
    engine = make_engine(db_url)
    try:
        migrate.downgrade(engine, "0002")
        assert migrate.current_revision(engine) == "0002"
        assert audit_rows(engine) == rows
        migrate.upgrade(engine)
        assert migrate.current_revision(engine) == head
        assert audit_rows(engine) == rows
        assert count(engine, "signal") == signals
    finally:
        engine.dispose()
    assert verifies(runtime)
    politie = auth_headers("politie", ["contributor"])
    assert populated.post("/v1/signals", json=drugs(), headers=politie).status_code == 201
    assert verifies(runtime)


def test_a_refused_downgrade_changes_nothing(
    populated: TestClient, runtime: Runtime, db_url: str
) -> None:
    """Migration 0002 refuses to go below itself while the log holds entries; the refused
    run must leave the database as it was, at head (on SQLite too: one transaction for
    the whole run, so 0003's downgrade is rolled back with 0002's refusal)."""
    tables = table_names(runtime.engine)
    rows = audit_rows(runtime.engine)
    head = migrate.head_revision()
    engine = make_engine(db_url)
    try:
        with pytest.raises(RuntimeError, match="refusing to downgrade below 0002"):
            migrate.downgrade(engine, "0001")
        assert audit_rows(engine) == rows
        assert migrate.current_revision(engine) == head
        assert table_names(engine) == tables
    finally:
        engine.dispose()


# --- rows 44 and 45: slowloris and a burst of concurrent calls -------------------------------

def healthz_latencies(broker: ServedBroker, n: int = 60) -> list[float]:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        assert broker.call("GET", "/healthz", timeout=10).status == 200
        times.append(time.perf_counter() - started)
    return times


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


class Trickle(threading.Thread):
    """`n` connections that send a request head one short header per second, forever."""

    def __init__(self, broker: ServedBroker, n: int) -> None:
        super().__init__(daemon=True)
        self.broker, self.n = broker, n
        self.opened = self.closed_by_server = 0
        self.ready = threading.Event()
        self.stop = threading.Event()

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        writers = []
        for _ in range(self.n):
            try:
                _, writer = await asyncio.open_connection(self.broker.host, self.broker.port)
            except OSError:
                continue
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            writers.append(writer)
        self.opened = len(writers)
        self.ready.set()
        while not self.stop.is_set():
            await asyncio.sleep(1)
            for writer in writers:
                if writer.is_closing():
                    continue
                try:
                    writer.write(b"X-Slow: 1\r\n")
                    await writer.drain()
                except OSError:
                    writer.close()
        self.closed_by_server = sum(w.is_closing() for w in writers)
        for writer in writers:
            writer.close()


@pytest.mark.slow
def test_slowloris_does_not_starve_healthz(served: ServedBroker) -> None:
    served.start()
    healthz_latencies(served, 10)  # warm up
    before = healthz_latencies(served)
    trickle = Trickle(served, SLOWLORIS)
    trickle.start()
    assert trickle.ready.wait(60)
    time.sleep(2)
    during = healthz_latencies(served)
    trickle.stop.set()
    trickle.join(timeout=30)
    print(f"slowloris: {trickle.opened} trickling connections; healthz p95 "
          f"{p95(before) * 1000:.1f} ms before, {p95(during) * 1000:.1f} ms during; "
          f"{trickle.closed_by_server} closed by the server")
    assert trickle.opened >= SLOWLORIS * 0.95
    assert p95(during) <= max(3 * p95(before), p95(before) + 0.05)


@pytest.mark.slow
def test_200_concurrent_calls_answer_or_503_within_the_pool_timeout(
    served: ServedBroker,
) -> None:
    served.start()
    client_id, secret = served.client("politie", "contributor")
    token = served.token(client_id, secret)
    headers = {"Authorization": f"Bearer {token}", "X-Acting-User": "agent-7",
               "Content-Type": "application/json"}
    barrier = threading.Barrier(200)

    def one(number: int) -> tuple[int, float]:
        barrier.wait()
        started = time.perf_counter()
        if number % 2:
            answer = served.call("POST", "/v1/signals", json.dumps(drugs()).encode(), headers,
                                 timeout=60)
        else:
            answer = served.call("GET", "/v1/signals?limit=50", headers=headers, timeout=60)
        return answer.status, time.perf_counter() - started

    started = time.perf_counter()
    with ThreadPoolExecutor(200) as pool:
        results = list(pool.map(one, range(200)))
    took = time.perf_counter() - started
    statuses = Counter(status for status, _ in results)
    slowest = max(seconds for _, seconds in results)
    print(f"200 concurrent: {dict(statuses)} in {took:.1f} s, slowest {slowest:.2f} s")
    assert set(statuses) <= {200, 201, 503}
    assert slowest < 35  # the database pool's timeout is 30 s
    created = statuses[201]
    listed = served.call("GET", "/v1/signals?limit=1000", headers=headers).json()["items"]
    assert len(listed) == created
