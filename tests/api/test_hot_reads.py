"""The hot reads of every request (`broker.db.read_rows`): on SQLite each thread keeps its
own driver connection, which must hold nothing between reads, stay out of the pool's
count, close with its engine, and be replaced after an error."""

from __future__ import annotations

import gc
import os
import threading
import time

import pytest
from sqlalchemy import Engine, text

from broker.db import make_engine, read_rows
from broker.errors import ServiceUnavailable

COUNT = "SELECT count(*) FROM policy_version"


def _insert(engine: Engine, number: int) -> None:
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO policy_version (hash, pack, version, canonical, first_loaded_at) "
            "VALUES (:h, 'demo', '1', '{}', CURRENT_TIMESTAMP)"), {"h": f"h{number}"})


def _open_files(database: str) -> int:
    """File descriptors of this process open on the database file itself."""
    target = os.path.realpath(database)
    found = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == target:
                found += 1
        except OSError:
            continue
    return found


def test_a_read_sees_what_others_committed_since_the_last_read(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        assert read_rows(engine, COUNT, (), "test store") == [(0,)]
        _insert(engine, 1)
        assert read_rows(engine, COUNT, (), "test store") == [(1,)]
    finally:
        engine.dispose()


def test_a_kept_connection_holds_no_read_transaction_between_reads(sqlite_url: str) -> None:
    """A reader that stayed in a read transaction would pin the WAL: a truncating
    checkpoint would report itself busy, and the WAL would grow without end."""
    engine = make_engine(sqlite_url)
    try:
        _insert(engine, 1)
        read_rows(engine, COUNT, (), "test store")
        _insert(engine, 2)
        with engine.connect() as conn:
            busy, _, _ = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
        assert busy == 0
    finally:
        engine.dispose()


def test_kept_connections_stay_out_of_the_pool_and_go_with_their_threads(
    sqlite_url: str,
) -> None:
    database = sqlite_url.removeprefix("sqlite:///")
    engine = make_engine(sqlite_url, pool_size=1)
    try:
        before = _open_files(database)
        together = threading.Barrier(13)

        def read() -> None:
            read_rows(engine, COUNT, (), "test store")
            together.wait(10)  # all alive at once: twelve threads, twelve connections
            together.wait(10)

        threads = [threading.Thread(target=read) for _ in range(12)]  # over the pool's 1 + 9
        for thread in threads:
            thread.start()
        together.wait(10)
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        assert _open_files(database) >= before + 12
        together.wait(10)
        for thread in threads:
            thread.join(10)
        gc.collect()
        assert _open_files(database) <= before  # each went with its thread
    finally:
        engine.dispose()


def test_dispose_closes_the_callers_connection_and_retires_the_others(sqlite_url: str) -> None:
    database = sqlite_url.removeprefix("sqlite:///")
    engine = make_engine(sqlite_url)
    try:
        before = _open_files(database)
        read_rows(engine, COUNT, (), "test store")
        assert _open_files(database) > before
        engine.dispose()
        assert _open_files(database) <= before
        _insert(engine, 1)  # the engine is used again after its disposal
        assert read_rows(engine, COUNT, (), "test store") == [(1,)]
    finally:
        engine.dispose()


def test_a_disposal_never_closes_another_threads_connection(sqlite_url: str) -> None:
    """Closing a connection another thread may be reading on can crash the process; the
    other thread closes its retired connection itself, at its next read."""
    database = sqlite_url.removeprefix("sqlite:///")
    engine = make_engine(sqlite_url)
    ready, go = threading.Event(), threading.Event()
    results: list[object] = []

    def reader() -> None:
        read_rows(engine, COUNT, (), "test store")
        ready.set()
        go.wait(10)
        results.append(read_rows(engine, COUNT, (), "test store"))

    try:
        thread = threading.Thread(target=reader)
        thread.start()
        assert ready.wait(10)
        held = _open_files(database)
        engine.dispose()
        assert _open_files(database) == held  # the reader's connection is still its own
        go.set()
        thread.join(10)
        assert results == [[(0,)]]
    finally:
        engine.dispose()


def test_a_read_in_flight_survives_a_disposal_from_another_thread(sqlite_url: str) -> None:
    """Another thread's connection is never closed under it: its long read completes, and
    its next read opens a fresh connection."""
    engine = make_engine(sqlite_url)
    slow = ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000000)"
            " SELECT count(*) FROM n")
    results: list[object] = []

    def reader() -> None:
        read_rows(engine, COUNT, (), "test store")
        results.append(read_rows(engine, slow, (), "test store"))
        results.append(read_rows(engine, COUNT, (), "test store"))

    try:
        thread = threading.Thread(target=reader)
        thread.start()
        while thread.is_alive() and not results:
            engine.dispose()
            time.sleep(0.01)
        thread.join(60)
        assert results == [[(3000000,)], [(0,)]]
    finally:
        engine.dispose()


def test_a_failed_read_is_unavailable_and_the_next_one_works(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    try:
        with pytest.raises(ServiceUnavailable, match="test store is not reachable"):
            read_rows(engine, "SELECT nothing FROM nowhere", (), "test store")
        assert read_rows(engine, COUNT, (), "test store") == [(0,)]
    finally:
        engine.dispose()
