"""Verifying the live audit log: every entry, stored checkpoint and tree node, against the
signer's last signed head.

`verify_live` streams the stored entries through `broker.core.verify` and adds what only
the database shows: tree nodes missing, mismatched or beyond the log, an entry stored at
another entry's seq, checkpoints that sign more entries than the log holds. What each
problem means is described in docs/audit.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Connection, Engine, func, select

from broker.audit.reads import b64
from broker.audit.signer import CheckpointRefused, CheckpointSigner, all_checkpoints
from broker.audit.tables import audit_entry, audit_node, entry_rows, entry_seq, tree_size
from broker.clock import rfc3339, utcnow
from broker.core import merkle
from broker.core.checkpoint import Checkpoint
from broker.core.verify import Problem, verify_log
from broker.db import read_snapshot

PAGE: Final = 2000
"""Rows of one tree level read at a time."""
MAX_NODE_PROBLEMS: Final = 100
"""Problems of the tree's nodes (and displaced entries) reported at most."""


@dataclass(frozen=True, slots=True)
class LiveReport:
    """What live verification found: the log's size and root, and every problem."""

    ok: bool
    size: int
    root: bytes
    checked_at: datetime
    problems: list[Problem]
    first_bad_seq: int | None

    def as_dict(self) -> dict[str, Any]:
        """The report as the API answers it."""
        return {
            "ok": self.ok,
            "size": self.size,
            "root_hash": b64(self.root),
            "checked_at": rfc3339(self.checked_at),
            "problems": [p.as_dict() for p in self.problems],
            "first_bad_seq": self.first_bad_seq,
        }


class _Forward:
    """Forward-only lookup by index over a stream of (index, hash) sorted by index."""

    def __init__(self, stream: Iterable[tuple[int, bytes]]) -> None:
        self._stream = iter(stream)
        self._current = next(self._stream, None)

    def take(self, index: int) -> bytes | None:
        while self._current is not None and self._current[0] < index:
            self._current = next(self._stream, None)
        if self._current is not None and self._current[0] == index:
            return self._current[1]
        return None


def _level(conn: Connection, level: int, count: int) -> Iterator[tuple[int, bytes]]:
    """Stored hashes of one tree level (0: leaf hashes) below index `count`, in order."""
    if level == 0:
        index, hashed = audit_entry.c.seq, audit_entry.c.leaf_hash
        table_filter = None
    else:
        index, hashed = audit_node.c.idx, audit_node.c.hash
        table_filter = audit_node.c.level == level
    after = -1
    while True:
        query = select(index, hashed).where(index > after, index < count)
        if table_filter is not None:
            query = query.where(table_filter)
        rows = conn.execute(query.order_by(index).limit(PAGE)).all()
        yield from ((int(i), bytes(h)) for i, h in rows)
        if len(rows) < PAGE:
            return
        after = int(rows[-1][0])


def node_problems(conn: Connection, size: int) -> list[Problem]:
    """Check the stored tree nodes: each is the hash of its two stored children (leaves
    at level 1), none is missing, and none lies beyond the log. One pass per level."""
    problems: list[Problem] = []
    level = 1
    while size >> level and len(problems) < MAX_NODE_PROBLEMS:
        count = size >> level
        children = _Forward(_level(conn, level - 1, count * 2))
        stored = _Forward(_level(conn, level, count))
        for index in range(count):
            left, right = children.take(2 * index), children.take(2 * index + 1)
            node = stored.take(index)
            first, last = index << level, ((index + 1) << level) - 1
            if node is None:
                # The appender writes a node with the entry that completes it: name that one.
                problems.append(Problem(last, "node_missing",
                                        f"tree node ({level}, {index}) over seq {first}..{last} "
                                        f"is missing: entry {last} was not written by the "
                                        "appender, or the node was removed"))
            elif left is not None and right is not None and merkle.node_hash(left, right) != node:
                # Either child may have changed (with its hash fixed up): name the range only.
                problems.append(Problem(None, "node_mismatch",
                                        f"tree node ({level}, {index}) does not match seq "
                                        f"{first}..{last}: an entry there or the node changed"))
            if len(problems) >= MAX_NODE_PROBLEMS:
                break
        level += 1
    rows = conn.execute(
        select(audit_node.c.level, func.max(audit_node.c.idx)).group_by(audit_node.c.level)
    ).all()
    for node_level, highest in rows:
        if int(highest) >= size >> int(node_level):
            problems.append(Problem(size, "node_beyond_log",
                                    f"tree nodes of level {node_level} cover entries beyond the "
                                    f"log's {size}: entries from seq {size} on were removed"))
            break
    return problems


class _Displacements:
    """Spots an entry stored at a later position than its own seq, and tells a replayed
    copy (same bytes as the row at its seq: the later row is bad, as `verify_log` says)
    from an insertion or reordering (another entry holds its seq: the log goes wrong there)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.problems: list[Problem] = []

    def watch(
        self, rows: Iterable[tuple[int, bytes, bytes]]
    ) -> Iterator[tuple[int, bytes, bytes]]:
        for seq, data, leaf in rows:
            inner = entry_seq(data)
            if inner is not None and inner < seq and len(self.problems) < MAX_NODE_PROBLEMS:
                self._check(seq, inner, data)
            yield seq, data, leaf

    def _check(self, seq: int, inner: int, data: bytes) -> None:
        other = self.conn.execute(
            select(audit_entry.c.bytes).where(audit_entry.c.seq == inner)
        ).scalar()
        if other is not None and bytes(other) != data:
            self.problems.append(Problem(inner, "entry_displaced",
                                         f"the entry stored at seq {seq} is entry {inner}, and "
                                         f"another entry holds seq {inner}: an entry was "
                                         f"inserted or moved there"))


def verify_live(engine: Engine, signer: CheckpointSigner) -> LiveReport:
    """Verify the live log: every entry, stored checkpoint, tree node, and the signer's last
    signed head (kept apart from the database), naming the first entry that fails."""
    checked_at = utcnow()
    extra: list[Problem] = []
    try:
        remembered = signer.remembered()
    except CheckpointRefused as exc:
        remembered = None
        extra.append(Problem(None, "signer_state_unreadable", exc.detail))
    # One snapshot bounded by the size it reads: entries appended meanwhile are not seen
    # half-way (no false alarm of nodes beyond the log under load).
    with read_snapshot(engine) as conn:
        size = tree_size(conn)
        stored = all_checkpoints(conn)
        notes: list[Checkpoint | str] = [c.note for c in stored]
        if remembered is not None and remembered.origin == signer.origin:
            notes.append(Checkpoint(remembered.origin, remembered.size, remembered.root))
        displaced = _Displacements(conn)
        report = verify_log(
            displaced.watch(entry_rows(conn, size)), notes, signer.verifiers(), signer.origin
        )
        extra.extend(displaced.problems)
        extra.extend(node_problems(conn, size))
    signed_sizes = [c.size for c in stored] + ([remembered.size] if remembered else [])
    if signed_sizes and max(signed_sizes) > report.size:
        extra.append(Problem(report.size, "entries_missing",
                             f"checkpoints sign {max(signed_sizes)} entries, the log holds "
                             f"{report.size}: entries from seq {report.size} on are missing"))
    if stored and remembered and stored[-1].size < remembered.size:
        extra.append(Problem(None, "checkpoint_replayed",
                             f"the latest stored checkpoint ({stored[-1].size} entries) is older "
                             f"than the last one signed ({remembered.size})"))
    problems = report.problems + extra
    seqs = [p.seq for p in problems if p.seq is not None]
    return LiveReport(
        ok=not problems,
        size=report.size,
        root=report.root,
        checked_at=checked_at,
        problems=problems,
        first_bad_seq=min(seqs) if seqs else None,
    )
