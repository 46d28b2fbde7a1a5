"""The hot reads of every request (`broker.db.read_rows`): on SQLite each thread keeps its
own driver connection, which must hold nothing between reads, stay out of the pool's
count, close with its engine, and be replaced after an error."""

from __future__ import annotations

import os
import threading

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


def test_kept_connections_stay_out_of_the_pool_and_close_with_their_engine(
    sqlite_url: str,
) -> None:
    database = sqlite_url.removeprefix("sqlite:///")
    engine = make_engine(sqlite_url, pool_size=1)
    before = _open_files(database)
    together = threading.Barrier(12)

    def read() -> None:
        read_rows(engine, COUNT, (), "test store")
        together.wait(10)  # all alive at once: twelve threads, twelve connections

    threads = [threading.Thread(target=read) for _ in range(12)]  # over the pool's 1 + 9
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    assert _open_files(database) >= before + 12
    engine.dispose()
    assert _open_files(database) <= before


def test_a_failed_read_is_unavailable_and_the_next_one_works(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    try:
        with pytest.raises(ServiceUnavailable, match="test store is not reachable"):
            read_rows(engine, "SELECT nothing FROM nowhere", (), "test store")
        assert read_rows(engine, COUNT, (), "test store") == [(0,)]
    finally:
        engine.dispose()
