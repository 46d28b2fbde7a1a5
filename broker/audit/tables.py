"""The audit log's tables (SQLAlchemy Core, on the shared `SQLModel.metadata`) and tree reads.

Insert-only, and part of what checkpoints sign: `audit_entry` (one row per leaf: the
entry's canonical bytes and leaf hash), `audit_node` (every perfect subtree of level >= 1,
written once when it completes) and `audit_checkpoint` (signed notes). Migration 0002 puts
triggers on them that refuse UPDATE, DELETE and TRUNCATE.

Outside the tree, never signed: `audit_entry_org` lists the organisations an entry
concerns (the actor's and the sources of its items), so a partner's view of the log can
be filtered in SQL; `audit_subject` holds each data subject's random tag key under its
blind-index token, and `audit_subject_entry` maps subjects to the entries that concern
them (for the access report). Erasing a subject deletes its rows in those two tables,
never a byte of the log. The clear columns of `audit_entry` (action, org, purpose, time)
exist for filtering and hold no personal data.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Final, TypeVar

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Table,
    Text,
    select,
)
from sqlmodel import SQLModel

from broker.core import merkle
from broker.db import pairs_in

T = TypeVar("T")
IN_CHUNK: Final = 500

TZ = DateTime(timezone=True)

audit_entry = Table(
    "audit_entry",
    SQLModel.metadata,
    # Assigned by the appender from the tree size: never a database sequence, which
    # would leave gaps on rollback.
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("entry_id", String(40), nullable=False, unique=True),
    Column("action", String(40), nullable=False),
    Column("org", String(64), nullable=True),
    Column("purpose", String(64), nullable=True),
    Column("time", TZ, nullable=False),
    Column("bytes", LargeBinary, nullable=False),
    Column("leaf_hash", LargeBinary, nullable=False),
    Index("ix_audit_entry_action_seq", "action", "seq"),
    Index("ix_audit_entry_org_seq", "org", "seq"),
    Index("ix_audit_entry_time", "time"),
    Index("ix_audit_entry_purpose_seq", "purpose", "seq"),
    Index("ix_audit_entry_action_time", "action", "time"),
)

audit_node = Table(
    "audit_node",
    SQLModel.metadata,
    Column("level", SmallInteger, primary_key=True, autoincrement=False),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary, nullable=False),
)

audit_checkpoint = Table(
    "audit_checkpoint",
    SQLModel.metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("size", BigInteger, nullable=False),
    Column("root_hash", LargeBinary, nullable=False),
    Column("time", TZ, nullable=False),
    Column("note", Text, nullable=False),
    Index("ix_audit_checkpoint_size", "size"),
)

audit_entry_org = Table(
    "audit_entry_org",
    SQLModel.metadata,
    Column("org", String(64), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
)

audit_subject = Table(
    "audit_subject",
    SQLModel.metadata,
    Column("token", LargeBinary, primary_key=True),
    Column("subject_key", LargeBinary, nullable=False),
)

audit_subject_entry = Table(
    "audit_subject_entry",
    SQLModel.metadata,
    Column("token", LargeBinary, primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
)

INSERT_ONLY: Final = ("audit_entry", "audit_node", "audit_checkpoint", "audit_entry_org")
"""Tables whose rows are never updated or deleted (triggers and, on PostgreSQL, grants)."""

ERASABLE: Final = ("audit_subject", "audit_subject_entry")
"""Side tables outside the tree: erasure of a subject deletes its rows here."""

APP_ROLE: Final = "sluis_app"
"""PostgreSQL role with INSERT and SELECT only on the insert-only tables (migration 0002)."""

ADVISORY_LOCK_KEY: Final = 0x5A1D_A0D1
"""`pg_advisory_xact_lock` key that serialises appenders across processes."""


# --- Reading the tree: shared by the appender, the signer and the service ---


class TreeDamaged(Exception):
    """A stored tree node or leaf the log needs is missing: the log was tampered with."""


_TAIL = (
    select(audit_entry.c.seq, audit_entry.c.leaf_hash).order_by(audit_entry.c.seq.desc()).limit(1)
)


def tree_tail(conn: Connection) -> tuple[int, bytes | None]:
    """(size, last leaf hash): size is the highest seq + 1, never a row count."""
    row = conn.execute(_TAIL).first()
    if row is None:
        return 0, None
    return int(row[0]) + 1, bytes(row[1])


def entry_seq(data: bytes) -> int | None:
    """The `seq` that canonical entry bytes name, found without parsing them.

    In RFC 8785 key order the top-level `seq` follows every nested object (`actor`,
    `items`, `objects`, `policy`), so its key is the last `,"seq":` in the bytes.
    """
    at = data.rfind(b',"seq":')
    if at < 0:
        return None
    end = data.find(b",", at + 7)
    digits = data[at + 7 : end if end >= 0 else len(data)]
    return int(digits) if digits.isdigit() and len(digits) <= 19 else None


def tree_size(conn: Connection) -> int:
    return tree_tail(conn)[0]


def chunks(items: Sequence[T], size: int = IN_CHUNK) -> Iterator[Sequence[T]]:
    """Slices of at most `size` items, to keep `IN (...)` lists within driver limits."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def read_nodes(conn: Connection, coords: Sequence[merkle.Coord]) -> list[bytes]:
    """Stored hashes of perfect subtrees (level 0: leaf hashes), in the order asked."""
    found: dict[merkle.Coord, bytes] = {}
    leaves = [index for level, index in coords if level == 0]
    inner = [(level, index) for level, index in coords if level > 0]
    for leaf_chunk in chunks(leaves):
        leaf_rows = conn.execute(
            select(audit_entry.c.seq, audit_entry.c.leaf_hash).where(
                audit_entry.c.seq.in_(leaf_chunk)
            )
        )
        found.update(((0, int(seq)), bytes(leaf)) for seq, leaf in leaf_rows)
    for inner_chunk in chunks(inner):
        node_rows = conn.execute(
            select(audit_node.c.level, audit_node.c.idx, audit_node.c.hash).where(
                pairs_in(audit_node.c.level, audit_node.c.idx, inner_chunk)
            )
        )
        found.update(((int(level), int(index)), bytes(h)) for level, index, h in node_rows)
    missing = [coord for coord in coords if coord not in found]
    if missing:
        raise TreeDamaged(f"tree node (level, index) {missing[0]} is missing from the log")
    return [found[coord] for coord in coords]


def node_source(conn: Connection, coords: Sequence[merkle.Coord]) -> merkle.NodeSource:
    """A `NodeSource` over `coords`, fetched with one query per table."""
    return merkle.prefetch(coords, lambda wanted: read_nodes(conn, wanted))


def stored_root(conn: Connection, size: int) -> bytes:
    """The root of the first `size` leaves from stored nodes, in O(log n) reads."""
    return merkle.root(size, node_source(conn, merkle.root_nodes(size)))


def frontier(conn: Connection, size: int) -> merkle.CompactRange:
    """The tree's right frontier at `size`, rebuilt from stored nodes."""
    return merkle.CompactRange.from_nodes(size, node_source(conn, merkle.root_nodes(size)))


def entry_rows(
    conn: Connection, size: int, start: int = 0, page: int = 2000
) -> Iterator[tuple[int, bytes, bytes]]:
    """(seq, bytes, leaf hash) of every entry in [start, size) in seq order, a page per
    query (short statements: no cursor held open across a long verification or export)."""
    after = start - 1
    while True:
        rows = conn.execute(
            select(audit_entry.c.seq, audit_entry.c.bytes, audit_entry.c.leaf_hash)
            .where(audit_entry.c.seq > after, audit_entry.c.seq < size)
            .order_by(audit_entry.c.seq)
            .limit(page)
        ).all()
        for seq, data, leaf in rows:
            yield int(seq), bytes(data), bytes(leaf)
        if len(rows) < page:
            return
        after = int(rows[-1][0])
