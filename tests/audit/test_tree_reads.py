"""Reading stored tree nodes stays a handful of index look-ups however long the log grows.

The signer (every checkpoint), the proofs the API serves and a rebuilt frontier all read
O(log n) nodes. Written as a tuple `IN`, SQLite ran each read as a scan of the whole
node table, so each checkpoint took longer with every entry appended, and the appender,
which signs between batches, held every waiting request meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import (
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    insert,
    select,
)

from broker.audit.tables import read_nodes, stored_root
from broker.core import merkle
from broker.db import make_engine, pairs_in
from tests.audit.audit_kit import LogEnv, read_plans

_GROWING = ("audit_node", "audit_entry")


def test_node_reads_search_the_indexes_and_scan_no_table(sqlite_log: LogEnv) -> None:
    """Every statement reading nodes or leaves of a 45-entry tree, at every size's root
    and every consistency proof to the full size, is an index search on SQLite."""
    log = sqlite_log
    coords = sorted({coord for size in range(1, 46) for coord in merkle.root_nodes(size)}
                    | set(merkle.plan_nodes(merkle.consistency_proof_nodes(13, 45))))
    assert {level for level, _ in coords} >= {0, 1, 2, 3, 4, 5}  # several levels at once
    hashes: list[bytes] = []

    def read() -> None:
        with log.engine.connect() as conn:
            hashes.extend(read_nodes(conn, coords))

    plans = read_plans(log.engine, read)
    assert len(hashes) == len(coords)
    touching = [p for p in plans if any(table in p for table in _GROWING)]
    assert len(touching) >= 2
    assert all(p.startswith("SEARCH ") for p in touching), plans


def test_the_stored_root_is_the_tree_root_at_every_size(sqlite_log: LogEnv) -> None:
    log = sqlite_log
    leaves: list[bytes] = []
    with log.engine.connect() as conn:
        leaves = read_nodes(conn, [(0, i) for i in range(45)])
        for size in range(1, 46):
            assert stored_root(conn, size) == merkle.root_from_leaf_hashes(leaves[:size])


_pairs = Table(
    "pairs_probe", MetaData(),
    Column("a", Integer, primary_key=True, autoincrement=False),
    Column("b", String(8), primary_key=True),
)
_STORED = {(a, b) for a in range(4) for b in ("x", "y", "z") if (a + ord(b)) % 3}


@pytest.fixture
def probe(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    try:
        _pairs.create(engine)
        with engine.begin() as conn:
            conn.execute(insert(_pairs), [{"a": a, "b": b} for a, b in sorted(_STORED)])
        yield engine
    finally:
        engine.dispose()


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(-1, 5), st.sampled_from(["x", "y", "z", "w"]))))
def test_pairs_in_selects_exactly_the_stored_pairs_asked_for(
    probe: Engine, asked: list[tuple[int, str]]
) -> None:
    with probe.connect() as conn:
        rows = conn.execute(select(_pairs.c.a, _pairs.c.b).where(
            pairs_in(_pairs.c.a, _pairs.c.b, asked))).all()
    assert sorted((int(a), str(b)) for a, b in rows) == sorted(_STORED & set(asked))


def test_pairs_in_refuses_more_groups_than_sqlite_can_parse() -> None:
    with pytest.raises(ValueError, match="at most 500"):
        pairs_in(_pairs.c.a, _pairs.c.b, [(a, "x") for a in range(501)])
