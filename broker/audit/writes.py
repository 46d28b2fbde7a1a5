"""Writing one batch of audit entries in the append transaction: the frontier it extends,
the subjects' keys, the entries with the tree nodes they complete, and the callers' rows.

Everything here runs inside the one write transaction of a batch, on the appender's
connection (`broker.audit.driver`); `broker.audit.appender` opens it and decides what a
failure means. How the stored tree is laid out is described in docs/audit.md.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Connection, Table

from broker.audit.driver import Driver, driver_nodes, driver_tail, insert_rows, marks
from broker.audit.encoding import EntryRows, pre_encode, splice
from broker.audit.pending import Pending
from broker.audit.tables import (
    TreeDamaged,
    audit_entry,
    audit_entry_org,
    audit_node,
    audit_subject,
    audit_subject_entry,
    chunks,
    entry_seq,
    frontier,
)
from broker.core import merkle
from broker.core.entry import format_time
from broker.errors import AuditUnavailable

_log = logging.getLogger("broker.audit")
SUBJECT_KEY_BYTES: Final = 32
FOREIGN_CHECK_LIMIT: Final = 10_000
"""Rows appended by another process that the appender re-checks before trusting them."""


class SubjectKeys:
    """Subject keys of one batch: read once, created on first use, inserted only if used."""

    def __init__(self, driver: Driver, batch: Sequence[Pending]) -> None:
        tokens = sorted({
            t for p in batch
            for t in (p.pre.tags.values() if p.pre is not None else p.tokens())
        })
        self.known: dict[bytes, bytes] = {}
        for chunk in chunks(tokens):
            rows = driver.rows(
                "SELECT token, subject_key FROM audit_subject"  # noqa: S608 - marks only
                f" WHERE token IN ({marks(len(chunk))})",
                chunk,
            )
            self.known.update((bytes(t), bytes(k)) for t, k in rows)
        self.created: dict[bytes, bytes] = {}
        self.stored: set[bytes] = set()

    def key(self, token: bytes) -> tuple[bytes, bool]:
        """The subject's key, and whether this batch created it."""
        if token in self.known:
            return self.known[token], False
        if token not in self.created:
            self.created[token] = secrets.token_bytes(SUBJECT_KEY_BYTES)
        return self.created[token], True

    def rows_to_store(self, tokens: Iterable[bytes]) -> list[dict[str, Any]]:
        """The `audit_subject` rows of created keys not stored yet in this batch."""
        rows = []
        for token in tokens:
            if token not in self.stored:
                self.stored.add(token)
                rows.append({"token": token, "subject_key": self.created[token]})
        return rows


def extend_checked(
    driver: Driver, cached: merkle.CompactRange, size: int, origin: str
) -> merkle.CompactRange:
    """Extend our frontier by the rows another appender wrote since, checking each row's
    leaf hash, seq and origin and the nodes it completed: a row slipped in behind the
    appenders' backs is refused (fail closed) instead of being built into every later
    root. These checks are cheap (no parsing); live verification does the full ones."""
    rows = driver.rows(
        "SELECT seq, bytes, leaf_hash FROM audit_entry WHERE seq >= ? AND seq < ? ORDER BY seq",
        (cached.size, size),
    )
    tree = cached.copy()
    completed: list[tuple[int, int, bytes]] = []
    origin_member = b'"origin":' + json.dumps(origin).encode()
    for seq, raw, leaf in rows:
        data = bytes(raw)
        if (
            int(seq) != tree.size
            or entry_seq(data) != tree.size
            or origin_member not in data
            or merkle.leaf_hash(data) != bytes(leaf)
        ):
            raise TreeDamaged(f"entry {tree.size} was not written by an appender")
        completed.extend(tree.append(bytes(leaf)))
    if tree.size != size:
        raise TreeDamaged(f"entry {tree.size} is missing")
    stored = driver_nodes(driver, [(level, index) for level, index, _ in completed])
    for (level, index, computed), found in zip(completed, stored, strict=True):
        if computed != found:
            raise TreeDamaged(f"tree node ({level}, {index}) does not match the entries")
    return tree


def stored_frontier(
    driver: Driver, cached: merkle.CompactRange | None, cached_tail: bytes | None, origin: str
) -> tuple[merkle.CompactRange, bytes | None]:
    """The frontier at the stored size, and its last leaf hash: the cached one if the stored
    tail is ours, the cached one extended by rows another appender wrote (checked on the
    way), or one rebuilt from stored nodes."""
    size, tail = driver_tail(driver)
    if cached is None:
        return frontier(driver.conn, size), tail
    if cached.size == size and cached_tail == tail:
        return cached.copy(), tail
    if cached.size < size <= cached.size + FOREIGN_CHECK_LIMIT:
        return extend_checked(driver, cached, size, origin), tail
    return frontier(driver.conn, size), tail


class RowsRefused(Exception):
    """The merged insert of a batch's plain rows failed (the batch is written again)."""


def _insert_isolated(conn: Connection, pending: Pending) -> bool:
    """Insert one entry's plain rows in a savepoint; on failure the entry gets
    `AuditUnavailable` (its caller's answer) and nothing of it stays."""
    savepoint = conn.begin_nested()
    try:
        for table, rows in pending.rows:
            if rows:
                insert_rows(conn, table, [dict(row) for row in rows])
    except Exception as exc:  # noqa: BLE001 - the entry fails, the batch goes on
        savepoint.rollback()
        _log.error("audit rows refused; one act is not recorded",
                   extra={"error_type": type(exc).__name__})
        pending.error = AuditUnavailable("The audit log could not record the act.")
        return False
    savepoint.commit()
    return True


MergedRows = dict[tuple[Table, tuple[str, ...]], list[dict[str, Any]]]
"""A batch's plain rows, one list per table and column set."""


def _merge_rows(merged: MergedRows, pending: Pending) -> None:
    """Add an entry's plain rows to the batch's."""
    for table, rows in pending.rows:
        for row in rows:
            merged.setdefault((table, tuple(row)), []).append(dict(row))


def _insert_merged(conn: Connection, merged: MergedRows) -> None:
    for (table, _), rows in merged.items():
        try:
            insert_rows(conn, table, rows)
        except Exception as exc:
            raise RowsRefused from exc


def write_entries(
    conn: Connection,
    driver: Driver,
    tree: merkle.CompactRange,
    tail: bytes | None,
    batch: list[Pending],
    moment: datetime,
    origin: str,
    *,
    isolate: bool,
) -> bytes | None:
    """Number, finish and insert a batch's entries at the end of `tree` (which grows with
    them), with the nodes they complete and their rows; returns the new last leaf hash.

    Plain rows are merged into one insert per table and shape; if that insert fails,
    `RowsRefused` says so, and `isolate` writes the batch again with each entry's rows in
    a savepoint of their own, before its entry: an entry whose rows fail gets
    `AuditUnavailable` and no entry, and the rest of the batch is written."""
    stamp = format_time(moment)
    keys = SubjectKeys(driver, batch)
    entries: list[dict[str, Any]] = []
    nodes: list[dict[str, Any]] = []
    orgs: list[dict[str, Any]] = []
    subjects: list[dict[str, Any]] = []
    new_subjects: list[dict[str, Any]] = []
    extra: MergedRows = {}
    for pending in batch:
        if isolate and pending.rows and not _insert_isolated(conn, pending):
            continue
        built = _entry_rows(conn, pending, tree.size, moment, stamp, keys, origin)
        if built is None:
            continue
        if not isolate:
            _merge_rows(extra, pending)
        pending.seq = tree.size
        entries.append(built.entry_row)
        nodes.extend(
            {"level": lv, "idx": ix, "hash": h} for lv, ix, h in tree.append(built.leaf)
        )
        tail = built.leaf
        orgs.extend(built.org_rows)
        subjects.extend(built.subject_rows)
        new_subjects.extend(keys.rows_to_store(built.new_tokens))
    for table, rows in (
        (audit_subject, new_subjects),
        (audit_entry, entries),
        (audit_node, nodes),
        (audit_entry_org, orgs),
        (audit_subject_entry, subjects),
    ):
        if rows:
            insert_rows(conn, table, rows)
    _insert_merged(conn, extra)
    return tail


def _entry_rows(
    conn: Connection,
    pending: Pending,
    seq: int,
    moment: datetime,
    stamp: str,
    keys: SubjectKeys,
    origin: str,
) -> EntryRows | None:
    """Run an entry's work in a savepoint and finish the entry; None (with the entry's
    error set) when either fails, leaving nothing of it behind."""
    if pending.work is None:
        try:
            if pending.pre is None:
                pre_encode(pending, origin)
            assert pending.pre is not None  # noqa: S101 - pre_encode sets it or raises
            return splice(pending, pending.pre, seq, moment, stamp, keys)
        except Exception as exc:  # noqa: BLE001 - the caller's own error, handed back
            pending.error = exc
            return None
    savepoint = conn.begin_nested()
    try:
        pending.result = pending.work(conn)
        pre_encode(pending, origin)
        assert pending.pre is not None  # noqa: S101 - pre_encode sets it or raises
        built = splice(pending, pending.pre, seq, moment, stamp, keys)
    except Exception as exc:  # noqa: BLE001 - the caller's own error, handed back
        savepoint.rollback()
        pending.error, pending.result = exc, None
        return None
    savepoint.commit()
    return built
