"""Reading the audit log: entries, proofs, receipts, checkpoints, live verification, export.

Plain functions over an engine (and the signer where a checkpoint is needed); the API and
the command line call them. Every hash leaves as standard base64 of its 32 raw bytes.
A `Scope` limits what a caller sees: the privacy officer sees every entry; a partner sees
the entries of its own organisation's acts and those whose items are its own signals
(through `audit_entry_org`), each trimmed as `broker.audit.partner_view` says. Bad
parameters are `ValidationFailed` (422); an entry outside the caller's scope is `NotFound`,
like one that does not exist.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Connection, Engine, exists, func, select

from broker.audit.partner_view import partner_view
from broker.audit.signer import (
    CheckpointRefused,
    CheckpointSigner,
    StoredCheckpoint,
    all_checkpoints,
    latest_checkpoint,
)
from broker.audit.tables import (
    TreeDamaged,
    audit_entry,
    audit_entry_org,
    audit_node,
    entry_rows,
    entry_seq,
    node_source,
    tree_size,
)
from broker.clock import as_utc, rfc3339, utcnow
from broker.core import merkle
from broker.core.checkpoint import Checkpoint, Verifier, format_receipt, verifier_key
from broker.core.entry import parse_json
from broker.core.verify import Problem, VerifyReport, verify_export, verify_log
from broker.errors import AuditUnavailable, FieldProblem, NotFound, ValidationFailed

PAGE: Final = 2000
CURSOR_PREFIX: Final = "a1."
MAX_NODE_PROBLEMS: Final = 100


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def invalid(loc: tuple[str | int, ...], message: str) -> ValidationFailed:
    return ValidationFailed("The request is not valid; see `errors`.",
                            errors=[FieldProblem(loc, message)])


@dataclass(frozen=True, slots=True)
class Scope:
    """Which entries a reader may see: all (`org` None) or those concerning `org`."""

    org: str | None

    @classmethod
    def everything(cls) -> Scope:
        return cls(None)


# --- Entries ---


def entry_view(seq: int, data: bytes) -> dict[str, Any]:
    """An entry in the API's flat shape (docs/api.md, "Audit entry fields"), from its bytes."""
    try:
        entry = parse_json(data)
        actor = entry["actor"]
        policy = entry["policy"] or {}
        return {
            "seq": seq,
            "id": entry["id"],
            "time": entry["time"],
            "action": entry["action"],
            "outcome": entry["outcome"],
            "reason": entry["reason"],
            "refusal_reason": entry["reason"] if entry["outcome"] != "granted" else None,
            "client": actor["client"],
            "org": actor["org"],
            "roles": actor["roles"],
            "acting_user": actor["acting_user_tag"],
            "purpose": entry["purpose"],
            "case_reference": entry["case_reference"],
            "legal_basis": entry["legal_basis"],
            "policy_pack": policy.get("pack"),
            "policy_hash": policy.get("hash"),
            "request_id": entry["request_id"],
            "items": [
                {**{k: v for k, v in item.items() if k != "subject_tags"},
                 "subject_hashes": item["subject_tags"]}
                for item in entry["items"]
            ],
            "objects": entry["objects"],
            "confidential_until": entry["confidential_until"],
            "redacted": False,
        }
    except (ValueError, KeyError, TypeError, AttributeError):
        # A damaged row is shown as such (live verification names it), never a 500.
        return {"seq": seq, "damaged": True}


def _visible(scope: Scope) -> Any:
    """The SQL condition limiting entries to the scope (None: no limit)."""
    if scope.org is None:
        return None
    return exists().where(
        audit_entry_org.c.seq == audit_entry.c.seq, audit_entry_org.c.org == scope.org
    )


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"{CURSOR_PREFIX}{seq}".encode()).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> int:
    """The seq a cursor continues below; 422 for anything that is not our cursor."""
    try:
        raw = base64.urlsafe_b64decode(cursor.encode("ascii") + b"==").decode("ascii")
    except (ValueError, binascii.Error, UnicodeError):
        raise invalid(("query", "cursor"), "not a cursor of this list") from None
    number = raw.removeprefix(CURSOR_PREFIX)
    if not raw.startswith(CURSOR_PREFIX) or not number.isdigit() or len(number) > 19:
        raise invalid(("query", "cursor"), "not a cursor of this list")
    return int(number)


@dataclass(frozen=True, slots=True)
class EntryFilter:
    """Filters of the entry list; all optional, combined with AND."""

    action: str | None = None
    org: str | None = None
    purpose: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def list_entries(
    engine: Engine, scope: Scope, filters: EntryFilter, *, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """Entries newest first, filtered and limited to the scope, paged by an opaque cursor."""
    if not 1 <= limit <= 1000:
        raise invalid(("query", "limit"), "must be between 1 and 1000")
    before = decode_cursor(cursor) if cursor else None
    query = select(audit_entry.c.seq, audit_entry.c.bytes)
    # A partner's entries are read from its own rows of the organisation index: walking
    # the whole log newest first for those that concern it would cost more the less it is
    # involved. (An action or acting organisation filter has an index of its own, which
    # the `_visible` condition then follows.) Its purpose is compared as an expression,
    # so that the purpose index, which would find every entry of the purpose to be
    # sorted, is not used instead.
    by_org = scope.org is not None and not (filters.action or filters.org)
    purpose = audit_entry.c.purpose.concat("") if by_org else audit_entry.c.purpose
    order = audit_entry_org.c.seq if by_org else audit_entry.c.seq
    conditions = [
        audit_entry.c.action == filters.action if filters.action else None,
        audit_entry.c.org == filters.org if filters.org else None,
        purpose == filters.purpose if filters.purpose else None,
        audit_entry.c.time >= as_utc(filters.since) if filters.since else None,
        audit_entry.c.time < as_utc(filters.until) if filters.until else None,
        audit_entry_org.c.org == scope.org if by_org else _visible(scope),
        order < before if before is not None else None,
    ]
    if by_org:
        query = query.select_from(audit_entry_org.join(
            audit_entry, audit_entry.c.seq == audit_entry_org.c.seq))
    for condition in conditions:
        if condition is not None:
            query = query.where(condition)
    query = query.order_by(order.desc()).limit(limit + 1)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
        page = rows[:limit]
        items = [_scoped_view(conn, scope, int(seq), bytes(data))[0] for seq, data in page]
    next_cursor = encode_cursor(int(page[-1][0])) if len(rows) > limit else None
    return items, next_cursor


def _entry_row(conn: Connection, scope: Scope, seq: int) -> tuple[bytes, bytes]:
    query = select(audit_entry.c.bytes, audit_entry.c.leaf_hash).where(audit_entry.c.seq == seq)
    visible = _visible(scope)
    if visible is not None:
        query = query.where(visible)
    row = conn.execute(query).first()
    if row is None:
        raise NotFound("No such audit entry.")
    return bytes(row[0]), bytes(row[1])


def _scoped_view(conn: Connection, scope: Scope, seq: int, data: bytes
                 ) -> tuple[dict[str, Any], bool]:
    """(the view of an entry the scope may see, whether it is whole): a partner's is trimmed
    as `broker.audit.partner_view` says."""
    view = entry_view(seq, data)
    if scope.org is None:
        return view, True
    return partner_view(conn, view, scope.org)


def get_entry(engine: Engine, scope: Scope, seq: int) -> dict[str, Any]:
    """One entry: its view, its canonical bytes (base64) and its leaf hash. A partner's view
    that withholds anything is `redacted` and comes without bytes and leaf hash (they would
    show, or confirm guesses of, what it withholds)."""
    with engine.connect() as conn:
        data, leaf = _entry_row(conn, scope, seq)
        view, whole = _scoped_view(conn, scope, seq, data)
    return {
        "seq": seq,
        "entry": view,
        "entry_b64": b64(data) if whole else None,
        "leaf_hash": b64(leaf) if whole else None,
        "redacted": not whole,
    }


# --- Checkpoints, proofs, receipts ---


def _note_signature(note: str) -> tuple[str, str]:
    """(key id as hex, signature as base64) of a note's last signature line."""
    line = note.rstrip("\n").rsplit("\n", 1)[-1]
    raw = base64.b64decode(line.rsplit(" ", 1)[-1])
    return raw[:4].hex(), b64(raw[4:])


def checkpoint_view(origin: str, checkpoint: StoredCheckpoint) -> dict[str, Any]:
    """The API's checkpoint object; `note` is what counts, the rest is its parsed form."""
    key_id, signature = _note_signature(checkpoint.note)
    return {
        "origin": origin,
        "size": checkpoint.size,
        "root_hash": b64(checkpoint.root),
        "time": rfc3339(checkpoint.time),
        "key_id": key_id,
        "signature": signature,
        "note": checkpoint.note,
    }


def _signed(signer: CheckpointSigner) -> StoredCheckpoint:
    try:
        return signer.sign()
    except CheckpointRefused as exc:
        raise AuditUnavailable("No checkpoint can be signed: " + exc.detail) from None


def current_checkpoint(engine: Engine, signer: CheckpointSigner) -> StoredCheckpoint:
    """The latest stored checkpoint; one is signed now if none exists yet."""
    with engine.connect() as conn:
        latest = latest_checkpoint(conn)
    return latest if latest is not None else _signed(signer)


def checkpoint_covering(engine: Engine, signer: CheckpointSigner, size: int) -> StoredCheckpoint:
    """The latest checkpoint if it covers `size` entries, else a fresh one signed now."""
    latest = current_checkpoint(engine, signer)
    return latest if latest.size >= size else _signed(signer)


def verifier_key_text(signer: CheckpointSigner) -> str:
    """The C2SP verifier key string of the active checkpoint key."""
    verifier = signer.verifier()
    return verifier_key(verifier.name, verifier.public_key)


def _proof(conn: Connection, plan: merkle.Plan) -> list[bytes]:
    try:
        return merkle.fold_plan(plan, node_source(conn, merkle.plan_nodes(plan)))
    except TreeDamaged:
        raise AuditUnavailable("The audit tree is damaged; run `broker audit verify`.") from None


def _check_size(conn: Connection, size: int, name: str) -> None:
    if size > tree_size(conn):
        raise invalid(("query", name), "larger than the log")


def inclusion(engine: Engine, seq: int, size: int) -> dict[str, Any]:
    """The RFC 9162 inclusion proof of entry `seq` in the tree of `size` entries."""
    if not 0 <= seq < size:
        raise invalid(("query", "seq"), "must be at least 0 and below size")
    with engine.connect() as conn:
        _check_size(conn, size, "size")
        hashes = _proof(conn, merkle.inclusion_proof_nodes(seq, size))
    return {"leaf_index": seq, "tree_size": size, "hashes": [b64(h) for h in hashes]}


def consistency(engine: Engine, first: int, second: int) -> dict[str, Any]:
    """The RFC 9162 consistency proof from the tree of `first` to the tree of `second`."""
    if not 0 <= first <= second:
        raise invalid(("query", "from"), "must be at least 0 and at most `to`")
    with engine.connect() as conn:
        _check_size(conn, second, "to")
        hashes = _proof(conn, merkle.consistency_proof_nodes(first, second))
    return {"from": first, "to": second, "hashes": [b64(h) for h in hashes]}


def receipt(engine: Engine, signer: CheckpointSigner, scope: Scope, seq: int) -> str:
    """The C2SP tlog-proof of entry `seq` against the latest checkpoint (signed now if the
    latest does not cover the entry yet)."""
    with engine.connect() as conn:
        _entry_row(conn, scope, seq)
    checkpoint = checkpoint_covering(engine, signer, seq + 1)
    with engine.connect() as conn:
        hashes = _proof(conn, merkle.inclusion_proof_nodes(seq, checkpoint.size))
    return format_receipt(seq, hashes, checkpoint.note)


def checkpoint_follows(
    seen: Checkpoint, served: Checkpoint, proof: Sequence[bytes]
) -> str | None:
    """What a holder of `seen` should alarm about in `served` (None: it extends `seen`).

    A smaller tree than already seen (a replayed or rolled-back checkpoint), another
    root for the same size (a fork), or a consistency proof that does not verify.
    """
    if served.origin != seen.origin:
        return "the checkpoint is of another log"
    if served.size < seen.size:
        return f"the checkpoint is older ({served.size}) than one already seen ({seen.size})"
    if not merkle.verify_consistency(seen.size, served.size, seen.root, served.root, proof):
        if served.size == seen.size:
            return f"two different roots for size {served.size}"
        return "the log is not an extension of the checkpoint already seen"
    return None


# --- Export ---


def _line(obj: dict[str, Any]) -> str:
    """One export line: compact JSON (ASCII) in a fixed key order, so every byte counts."""
    return json.dumps(obj, separators=(",", ":")) + "\n"


def export_entry_line(seq: int, data: bytes, leaf: bytes) -> str:
    return _line({"seq": seq, "entry_b64": b64(data), "leaf_hash": b64(leaf)})


def export_trailer(origin: str, checkpoint: StoredCheckpoint) -> dict[str, Any]:
    """The export's last object: the checkpoint without its unsigned `time`, so nothing in
    an export is left that verification does not check."""
    view = checkpoint_view(origin, checkpoint)
    del view["time"]
    return view


def export_lines(engine: Engine, signer: CheckpointSigner) -> Iterator[str]:
    """The log as JSON Lines: one object per entry, then the latest checkpoint (signed now
    so that it covers the whole export, unless the signer refuses: then the last one).

    The checkpoint is settled before the first line, so a failure is an error answer,
    never a stream cut short.
    """
    try:
        checkpoint = signer.sign()
    except CheckpointRefused:
        with engine.connect() as conn:
            latest = latest_checkpoint(conn)
        if latest is None:
            raise
        checkpoint = latest
    with engine.connect() as conn:
        size = max(tree_size(conn), checkpoint.size)

    def lines() -> Iterator[str]:
        with engine.connect() as conn:
            for seq, data, leaf in entry_rows(conn, size):
                yield export_entry_line(seq, data, leaf)
        yield _line(export_trailer(signer.origin, checkpoint))

    return lines()


def _strict_lines(lines: Iterable[bytes], problems: list[Problem]) -> Iterator[str]:
    """Pass each export line on, noting any that is not exactly as `export_lines` writes
    it (whitespace, key order, base64 spelling, a derived checkpoint field changed)."""
    for number, raw in enumerate(lines, start=1):
        try:
            line = raw.decode("utf-8")
            obj = json.loads(line)
            if "note" in obj:
                key_id, signature = _note_signature(obj["note"])
                expected = {**obj, "key_id": key_id, "signature": signature}
            else:
                expected = {"seq": obj["seq"],
                            "entry_b64": b64(base64.b64decode(obj["entry_b64"], validate=True)),
                            "leaf_hash": b64(base64.b64decode(obj["leaf_hash"], validate=True))}
            exact = _line(expected) == line
        except (ValueError, TypeError, KeyError, binascii.Error, AttributeError):
            exact = False
            line = ""
        if not exact:
            problems.append(Problem(None, "export_not_exact",
                                    f"line {number} is not exactly as the broker exports it"))
        yield line


def verify_export_file(
    lines: Iterable[bytes], verifier: Verifier | Iterable[Verifier]
) -> VerifyReport:
    """Verify an export offline with only the checkpoint verifier key: the entries, the
    final signed checkpoint, and that every line is byte for byte as exported."""
    strict: list[Problem] = []
    report = verify_export(_strict_lines(lines, strict), verifier)
    if strict:
        report.problems.extend(strict)
        report.ok = False
    return report


# --- Live verification ---


@dataclass(frozen=True, slots=True)
class LiveReport:
    ok: bool
    size: int
    root: bytes
    checked_at: datetime
    problems: list[Problem]
    first_bad_seq: int | None

    def as_dict(self) -> dict[str, Any]:
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
    with engine.connect() as conn:
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
