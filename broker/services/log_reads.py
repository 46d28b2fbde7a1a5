"""Reading the audit log through the API: entries, receipts, checkpoints, proofs,
verification and the export, each read recorded (`audit_read`) before anything of the log
leaves (fail closed: 503 if it cannot be recorded).

Privacy officers see every entry whole; other partner clients see the entries of their
own organisation's acts and those whose items are their own signals, trimmed to what their
rules let them know (`broker.audit.partner_view`). See docs/audit.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from broker.audit import reads
from broker.audit.drafts import draft, without_none
from broker.audit.export import export_lines
from broker.audit.integrity import verify_live
from broker.auth.actors import Actor
from broker.runtime import Runtime


@dataclass(frozen=True, slots=True)
class LogReader:
    """Who reads the log, which part of it they may see, and the request's id."""

    actor: Actor
    scope: reads.Scope
    request_id: str | None


def _record(runtime: Runtime, reader: LogReader, what: dict[str, Any]) -> None:
    runtime.audit.record(draft("audit_read", reader.actor, request_id=reader.request_id,
                               objects=without_none(what)))


def list_entries(
    runtime: Runtime, reader: LogReader, filters: reads.EntryFilter, *, limit: int,
    cursor: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Entries newest first, filtered and limited to the reader's scope, in pages."""
    if cursor:
        reads.decode_cursor(cursor)  # a bad cursor is a 422 before anything is recorded
    _record(runtime, reader, {
        "read": "entries", "action": filters.action, "org": filters.org,
        "purpose": filters.purpose,
        "since": filters.since.isoformat() if filters.since else None,
        "until": filters.until.isoformat() if filters.until else None,
    })
    return reads.list_entries(runtime.engine, reader.scope, filters, limit=limit,
                              cursor=cursor, keys=runtime.keys)


def entry(runtime: Runtime, reader: LogReader, seq: int) -> dict[str, Any]:
    """One entry as the reader may see it."""
    found = reads.get_entry(runtime.engine, reader.scope, seq, keys=runtime.keys)
    _record(runtime, reader, {"read": "entry", "seq": seq})
    return found


def receipt(runtime: Runtime, reader: LogReader, seq: int) -> str:
    """The C2SP tlog-proof of one entry against the latest checkpoint."""
    text = reads.receipt(runtime.engine, runtime.audit.signer, reader.scope, seq)
    _record(runtime, reader, {"read": "receipt", "seq": seq})
    return text


def checkpoint(runtime: Runtime, reader: LogReader) -> dict[str, Any]:
    """The latest signed checkpoint, as JSON and as its signed note."""
    latest = reads.current_checkpoint(runtime.engine, runtime.audit.signer)
    _record(runtime, reader, {"read": "checkpoint"})
    return reads.checkpoint_view(runtime.audit.signer.origin, latest)


def inclusion(runtime: Runtime, reader: LogReader, seq: int, size: int) -> dict[str, Any]:
    """The RFC 9162 inclusion proof of entry `seq` in the tree of `size` entries."""
    proof = reads.inclusion(runtime.engine, seq, size)
    _record(runtime, reader, {"read": "inclusion_proof", "seq": seq, "size": size})
    return proof


def consistency(runtime: Runtime, reader: LogReader, first: int, second: int
                ) -> dict[str, Any]:
    """The RFC 9162 consistency proof between two tree sizes."""
    proof = reads.consistency(runtime.engine, first, second)
    _record(runtime, reader, {"read": "consistency_proof", "from": first, "to": second})
    return proof


def verify(runtime: Runtime, reader: LogReader) -> dict[str, Any]:
    """The whole live log verified now, naming the first entry that fails."""
    _record(runtime, reader, {"read": "verify"})
    return verify_live(runtime.engine, runtime.audit.signer).as_dict()


def export(runtime: Runtime, reader: LogReader) -> Iterator[str]:
    """The whole log as JSON Lines, ending with the latest checkpoint."""
    _record(runtime, reader, {"read": "export"})
    return export_lines(runtime.engine, runtime.audit.signer)
