"""Reading the audit log: entries (listed, one by one), checkpoints, proofs and receipts.

Plain functions over an engine (and the signer where a checkpoint is needed); the API, the
officer's pages and the command line call them. Every hash leaves as standard base64 of
its 32 raw bytes. A `Scope` limits what a caller sees: the privacy officer sees every
entry; a partner sees the entries of its own organisation's acts and those whose items are
its own signals (through `audit_entry_org`), each trimmed as `broker.audit.partner_view`
says. Bad parameters are `ValidationFailed` (422); an entry outside the caller's scope is
`NotFound`, like one that does not exist. The export is `broker.audit.export`, live
verification `broker.audit.integrity`.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Connection, Engine, exists, select

from broker import cursors
from broker.audit.partner_view import partner_view
from broker.audit.signer import (
    CheckpointRefused,
    CheckpointSigner,
    StoredCheckpoint,
    latest_checkpoint,
)
from broker.audit.tables import (
    TreeDamaged,
    audit_entry,
    audit_entry_org,
    node_source,
    tree_size,
)
from broker.clock import as_utc, rfc3339
from broker.core import merkle
from broker.core.checkpoint import Checkpoint, format_receipt, verifier_key
from broker.core.entry import ENTRY_FIELDS, parse_json
from broker.errors import AuditUnavailable, FieldProblem, NotFound, ValidationFailed
from broker.keys import KeyRing

CURSOR_PREFIX: Final = "a1."
"""Names the entry list in its cursors (by seq, newest first)."""


def b64(data: bytes) -> str:
    """Standard base64 of a hash or an entry's bytes, as every answer spells them."""
    return base64.b64encode(data).decode("ascii")


def invalid(loc: tuple[str | int, ...], message: str) -> ValidationFailed:
    """The 422 for one bad parameter at `loc`."""
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
    """An entry as every reader is shown it: the object its canonical bytes decode to
    (docs/audit.md, "Entries"), or `{"seq", "damaged": true}` for bytes that do not decode
    to an entry's shape (live verification names it; never a 500)."""
    try:
        entry = parse_json(data)
    except ValueError:
        entry = None
    if (not isinstance(entry, dict) or set(entry) != ENTRY_FIELDS
            or not isinstance(entry["actor"], dict) or not isinstance(entry["items"], list)
            or not all(isinstance(item, dict) for item in entry["items"])
            or not isinstance(entry["objects"], dict)
            or not isinstance(entry["policy"], dict | None)):
        return {"seq": seq, "damaged": True}
    return entry


def _visible(scope: Scope) -> Any:
    """The SQL condition limiting entries to the scope (None: no limit)."""
    if scope.org is None:
        return None
    return exists().where(
        audit_entry_org.c.seq == audit_entry.c.seq, audit_entry_org.c.org == scope.org
    )


def encode_cursor(seq: int) -> str:
    """The entry list's cursor continuing below `seq` (the codec is `broker.cursors`)."""
    return cursors.encode_seq(CURSOR_PREFIX, seq)


def decode_cursor(cursor: str) -> int:
    """The seq an entry list cursor continues below; 422 for anything that is not one."""
    return cursors.decode_seq(CURSOR_PREFIX, cursor)


@dataclass(frozen=True, slots=True)
class EntryFilter:
    """Filters of the entry list; all optional, combined with AND."""

    action: str | None = None
    org: str | None = None
    purpose: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def list_entries(
    engine: Engine, scope: Scope, filters: EntryFilter, *, limit: int, cursor: str | None,
    keys: KeyRing | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Entries newest first, filtered and limited to the scope, paged by an opaque cursor;
    `keys` make again the refs a partner's own answers gave (`broker.audit.partner_view`)."""
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
        items = [_scoped_view(conn, scope, int(seq), bytes(data), keys)[0]
                 for seq, data in page]
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


def _scoped_view(conn: Connection, scope: Scope, seq: int, data: bytes,
                 keys: KeyRing | None) -> tuple[dict[str, Any], bool]:
    """(the view of an entry the scope may see, whether it is whole): a partner's is trimmed
    as `broker.audit.partner_view` says."""
    view = entry_view(seq, data)
    if scope.org is None:
        return view, True
    return partner_view(conn, view, scope.org, keys)


def get_entry(engine: Engine, scope: Scope, seq: int, *, keys: KeyRing | None = None
              ) -> dict[str, Any]:
    """One entry: the object its bytes decode to, the canonical bytes (base64) and the leaf
    hash. A partner's view that withholds anything (that object with members removed) is
    `redacted` and comes without bytes and leaf hash (they would show, or confirm guesses
    of, what it withholds); `keys` make again the refs of its own answers."""
    with engine.connect() as conn:
        data, leaf = _entry_row(conn, scope, seq)
        view, whole = _scoped_view(conn, scope, seq, data, keys)
    return {
        "seq": seq,
        "entry": view,
        "entry_b64": b64(data) if whole else None,
        "leaf_hash": b64(leaf) if whole else None,
        "redacted": not whole,
    }


# --- Checkpoints, proofs, receipts ---


def note_signature(note: str) -> tuple[str, str]:
    """(key id as hex, signature as base64) of a note's last signature line."""
    line = note.rstrip("\n").rsplit("\n", 1)[-1]
    raw = base64.b64decode(line.rsplit(" ", 1)[-1])
    return raw[:4].hex(), b64(raw[4:])


def checkpoint_view(origin: str, checkpoint: StoredCheckpoint) -> dict[str, Any]:
    """The API's checkpoint object; `note` is what counts, the rest is its parsed form."""
    key_id, signature = note_signature(checkpoint.note)
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
