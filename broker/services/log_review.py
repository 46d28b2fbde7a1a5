"""The privacy officer's review of the log: filtered entries in pages, and one entry with
its rule and its verified proof.

Entries come from `broker.audit.reads` (the same list, entry and proof functions the API
uses). Three filters the audit service lacks, the outcome, the employee (by the acting-person
tags the broker computes from the id typed) and "hide reads of the log", live only in the
entry bytes: they are applied to the service's pages here, scanning at most
`SCAN_LIMIT` entries per page view and continuing with the service's own cursor. Each
read is recorded first, as the officer's `audit_read`.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Final

from broker.audit import reads
from broker.audit.compact import released_fields
from broker.audit.partner_view import pack_hash
from broker.auth.actors import person_tag
from broker.core import merkle
from broker.core.checkpoint import CheckpointInvalid, open_checkpoint
from broker.core.policy.load import Pack
from broker.core.policy.model import Rule
from broker.runtime import Runtime
from broker.services.oversight import Reader, day_start, record_read
from broker.services.packs import stored_pack

PAGE_SIZE: Final = 50
SCAN_LIMIT: Final = 5000
_FETCH: Final = 200
OUTCOMES: Final = ("granted", "refused", "error")


@dataclass(frozen=True, slots=True)
class LogQuery:
    """The log page's filters; every one optional."""

    org: str | None = None
    purpose: str | None = None
    action: str | None = None
    outcome: str | None = None
    since: date | None = None
    until: date | None = None
    hide_reads: bool = False
    employee: str | None = None
    """An employee id as the organisations send it (`X-Acting-User`): the acts it tagged."""

    def entry_filter(self) -> reads.EntryFilter:
        """The filters the audit service applies in SQL (dates as Dutch calendar days)."""
        return reads.EntryFilter(
            action=self.action,
            org=self.org,
            purpose=self.purpose,
            since=day_start(self.since) if self.since else None,
            until=day_start(self.until + timedelta(days=1)) if self.until else None,
        )

    def keeps(self, view: dict[str, Any], tags: frozenset[str] | None = None) -> bool:
        """The filters applied to each entry the service returns; `tags` are the employee's
        acting-person tags (None: no employee asked for)."""
        if self.outcome and view.get("outcome") != self.outcome:
            return False
        if tags is not None and (view.get("actor") or {}).get("acting_user_tag") not in tags:
            return False
        return not (self.hide_reads and not self.action and view.get("action") == "audit_read")

    def objects(self, tags: frozenset[str] | None = None) -> dict[str, Any]:
        """The filters as the read's entry names them (hiding reads is not one); an employee
        by the tags searched for, never by the id typed."""
        return {
            "read": "officer_log", "org": self.org, "purpose": self.purpose,
            "action": self.action, "outcome": self.outcome,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "acting_user_tags": sorted(tags) if tags is not None else None,
        }


def employee_tags(runtime: Runtime, query: LogQuery) -> frozenset[str] | None:
    """The acting-person tags of the employee asked for: one per organisation, since the
    same id in two organisations is two people (only the filtered organisation's, if one
    is); None when no employee is asked for."""
    if not query.employee:
        return None
    orgs = [query.org] if query.org else sorted(runtime.policy.pack.organisations)
    return frozenset(person_tag(runtime.keys, org, query.employee) for org in orgs)


@dataclass(frozen=True, slots=True)
class LogPage:
    items: list[dict[str, Any]]
    next_cursor: str | None
    scan_exhausted: bool
    scanned: int


def log_page(runtime: Runtime, reader: Reader, query: LogQuery, *, cursor: str | None,
             limit: int = PAGE_SIZE) -> LogPage:
    """One page of entries, newest first, matching every filter (the read recorded first)."""
    tags = employee_tags(runtime, query)
    record_read(runtime, reader, query.objects(tags))
    filters = query.entry_filter()
    items: list[dict[str, Any]] = []
    scanned = 0
    while scanned < SCAN_LIMIT:
        batch, after = reads.list_entries(
            runtime.engine, reads.Scope.everything(), filters, limit=_FETCH, cursor=cursor
        )
        for index, view in enumerate(batch):
            scanned += 1
            if query.keeps(view, tags):
                items.append(view)
                if len(items) == limit:
                    more = index < len(batch) - 1 or after is not None
                    next_cursor = reads.encode_cursor(view["seq"]) if more else None
                    return LogPage(items, next_cursor, False, scanned)
        if after is None:
            return LogPage(items, None, False, scanned)
        cursor = after
    # Scanned enough for one page view: offer to go on from where the scan stopped.
    return LogPage(items, cursor, True, scanned)


# --- One entry ---


@dataclass(frozen=True, slots=True)
class Proof:
    """The entry checked against a signed checkpoint: each step and the whole."""

    size: int
    root_b64: str
    signed_at: str
    key_id: str
    leaf_ok: bool
    signature_ok: bool
    inclusion_ok: bool
    hashes: list[str]

    @property
    def verified(self) -> bool:
        return self.leaf_ok and self.signature_ok and self.inclusion_ok


@dataclass(frozen=True, slots=True)
class ItemRule:
    """An item of the entry with the rule that released it, read from the pack in force."""

    item: dict[str, Any]
    rule: Rule | None
    fields: dict[str, Any] = field(default_factory=dict)
    """The fields its signal released, resolved through `objects.rule_fields`."""


@dataclass(frozen=True, slots=True)
class EntryDetail:
    seq: int
    view: dict[str, Any]
    proof: Proof
    pack: Pack | None
    items: list[ItemRule] = field(default_factory=list)


def prove(runtime: Runtime, seq: int, data: bytes, stored_leaf: bytes) -> Proof:
    """Check the entry's bytes against the latest checkpoint (signed now if none covers it):
    its leaf hash, the checkpoint's signature, and the RFC 9162 inclusion proof."""
    signer = runtime.audit.signer
    checkpoint = reads.checkpoint_covering(runtime.engine, signer, seq + 1)
    shown = reads.checkpoint_view(signer.origin, checkpoint)
    leaf = merkle.leaf_hash(data)
    try:
        opened = open_checkpoint(checkpoint.note, signer.verifiers(), signer.origin)
        signature_ok = (opened.size, opened.root) == (checkpoint.size, checkpoint.root)
    except CheckpointInvalid:
        signature_ok = False
    proof = reads.inclusion(runtime.engine, seq, checkpoint.size)
    hashes = [base64.b64decode(h) for h in proof["hashes"]]
    return Proof(
        size=checkpoint.size,
        root_b64=shown["root_hash"],
        signed_at=shown["time"],
        key_id=shown["key_id"],
        leaf_ok=leaf == stored_leaf,
        signature_ok=signature_ok,
        inclusion_ok=merkle.verify_inclusion(seq, checkpoint.size, leaf, hashes, checkpoint.root),
        hashes=proof["hashes"],
    )


def entry_detail(runtime: Runtime, reader: Reader, seq: int) -> EntryDetail:
    """One entry in full, its items' rules from the pack version it names, and its proof
    (the read recorded first)."""
    record_read(runtime, reader, {"read": "officer_entry", "seq": seq})
    got = reads.get_entry(runtime.engine, reads.Scope.everything(), seq)
    view: dict[str, Any] = got["entry"]
    proof = prove(runtime, seq, base64.b64decode(got["entry_b64"]),
                  base64.b64decode(got["leaf_hash"]))
    pack = None
    named = None if view.get("damaged") else pack_hash(view)
    if named:
        with runtime.engine.connect() as conn:
            pack = stored_pack(conn, named)
    rules = {rule.id: rule for rule in pack.rules} if pack else {}
    objects = view.get("objects")
    items = [ItemRule(item, rules.get(item.get("rule") or ""), released_fields(item, objects))
             for item in view.get("items", [])]
    return EntryDetail(seq, view, proof, pack, items)
