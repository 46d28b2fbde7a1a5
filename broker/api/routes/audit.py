"""The audit log's API: entries, receipts, checkpoints, proofs, live verification, export.

Privacy officers see every entry whole; other partner clients see the entries of their own
organisation's acts and those whose items are their own signals, trimmed to what their
rules let them know (`broker.audit.partner_view`: a source sees only its own signals'
items, a requester no source its rule hides; a trimmed entry is `redacted` and comes without
its canonical bytes and leaf hash). Admin-only clients see none (they may not read
disclosures). Every read through a token is itself recorded
(`audit_read`) before the answer leaves; the checkpoint key is public. Only the privacy
officer verifies and exports. (The data subject's report is `broker.api.routes.subject_report`.)
"""

from __future__ import annotations

from typing import Annotated, Any, Final, get_args

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import BaseModel, Field

from broker.api.deps import RequestIdDep, RuntimeDep
from broker.api.routing import StrictJSONRoute
from broker.audit import reads
from broker.auth.actors import actor_of
from broker.auth.deps import Caller, CallerDep, require
from broker.core.entry import MAX_SAFE_INTEGER, Action
from broker.runtime import Runtime
from broker.schemas import Rfc3339DateTime
from broker.services import log_reads

router = APIRouter(route_class=StrictJSONRoute, prefix="/v1/audit", tags=["audit"])

READER_ROLES: Final = ("privacy_officer", "requester", "contributor")
Reader = Annotated[Caller, Depends(require(*READER_ROLES))]
Officer = Annotated[Caller, Depends(require("privacy_officer"))]
Seq = Annotated[int, Path(ge=0, le=MAX_SAFE_INTEGER)]
Size = Annotated[int, Query(ge=0, le=MAX_SAFE_INTEGER)]
Ident = Annotated[str | None, Query(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$", max_length=64)]
ACTIONS: Final = frozenset(get_args(Action))


class AuditEntryPage(BaseModel):
    items: list[dict[str, Any]]
    next_cursor: str | None


class AuditEntryOut(BaseModel):
    seq: int
    entry: dict[str, Any]
    entry_b64: str | None = Field(
        description="the canonical bytes; null when `redacted` (they would show what is withheld)")
    leaf_hash: str | None = Field(description="null when `redacted`")
    redacted: bool = Field(
        default=False,
        description="a partner's view that withholds parts of the entry (other sources' items, "
                    "a source the rule hides, the requester's details) and the entry's id")


class CheckpointOut(BaseModel):
    origin: str
    size: int
    root_hash: str
    time: str
    key_id: str
    signature: str
    note: str


class InclusionOut(BaseModel):
    leaf_index: int
    tree_size: int
    hashes: list[str]


class ConsistencyOut(BaseModel):
    first: int = Field(alias="from")
    to: int
    hashes: list[str]


class ProblemOut(BaseModel):
    seq: int | None
    code: str
    message: str


class VerifyOut(BaseModel):
    ok: bool
    size: int
    root_hash: str
    checked_at: str
    problems: list[ProblemOut]
    first_bad_seq: int | None


def _reader(runtime: Runtime, caller: Caller, request_id: str | None) -> log_reads.LogReader:
    scope = (reads.Scope.everything() if "privacy_officer" in caller.roles
             else reads.Scope(caller.org))
    return log_reads.LogReader(actor_of(runtime.keys, caller), scope, request_id)


@router.get("/entries", response_model=AuditEntryPage)
def list_entries(
    runtime: RuntimeDep,
    caller: Reader,
    request_id: RequestIdDep,
    action: Annotated[str | None, Query(max_length=40)] = None,
    org: Ident = None,
    purpose: Ident = None,
    since: Rfc3339DateTime | None = None,
    until: Rfc3339DateTime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
) -> dict[str, Any]:
    """Entries newest first, filtered, in pages of `limit` with an opaque `cursor`."""
    if action is not None and action not in ACTIONS:
        raise reads.invalid(("query", "action"), "not an audit action")
    filters = reads.EntryFilter(action=action, org=org, purpose=purpose, since=since,
                                until=until)
    items, next_cursor = log_reads.list_entries(
        runtime, _reader(runtime, caller, request_id), filters, limit=limit, cursor=cursor)
    return {"items": items, "next_cursor": next_cursor}


@router.get("/entries/{seq}", response_model=AuditEntryOut)
def get_entry(
    seq: Seq, runtime: RuntimeDep, caller: Reader, request_id: RequestIdDep
) -> dict[str, Any]:
    """One entry: its fields, its canonical bytes (base64) and its leaf hash; to a partner
    whose view of it is trimmed, `redacted: true` and neither bytes nor leaf hash."""
    return log_reads.entry(runtime, _reader(runtime, caller, request_id), seq)


@router.get("/entries/{seq}/receipt", response_class=PlainTextResponse)
def get_receipt(
    seq: Seq, runtime: RuntimeDep, caller: Reader, request_id: RequestIdDep
) -> PlainTextResponse:
    """The C2SP tlog-proof of the entry against the latest checkpoint: offline evidence."""
    return PlainTextResponse(log_reads.receipt(runtime, _reader(runtime, caller, request_id),
                                               seq))


@router.get("/checkpoint", response_model=CheckpointOut)
def get_checkpoint(
    runtime: RuntimeDep, caller: CallerDep, request_id: RequestIdDep
) -> dict[str, Any]:
    """The latest signed checkpoint, as JSON and as its C2SP signed note."""
    return log_reads.checkpoint(runtime, _reader(runtime, caller, request_id))


@router.get("/checkpoint-key", response_class=PlainTextResponse)
def get_checkpoint_key(runtime: RuntimeDep) -> PlainTextResponse:
    """The C2SP note verifier key of the checkpoint signer (no token: anyone may check)."""
    return PlainTextResponse(reads.verifier_key_text(runtime.audit.signer))


@router.get("/proofs/inclusion", response_model=InclusionOut)
def get_inclusion_proof(
    seq: Size, size: Size, runtime: RuntimeDep, caller: CallerDep, request_id: RequestIdDep
) -> dict[str, Any]:
    """The RFC 9162 inclusion proof of entry `seq` in the tree of `size` entries."""
    return log_reads.inclusion(runtime, _reader(runtime, caller, request_id), seq, size)


@router.get("/proofs/consistency", response_model=ConsistencyOut)
def get_consistency_proof(
    runtime: RuntimeDep,
    caller: CallerDep,
    request_id: RequestIdDep,
    first: Annotated[int, Query(alias="from", ge=0, le=MAX_SAFE_INTEGER)],
    to: Size,
) -> dict[str, Any]:
    """The RFC 9162 consistency proof from the tree of `from` entries to that of `to`."""
    return log_reads.consistency(runtime, _reader(runtime, caller, request_id), first, to)


@router.get("/verify", response_model=VerifyOut)
def verify(runtime: RuntimeDep, caller: Officer, request_id: RequestIdDep) -> dict[str, Any]:
    """Verify the whole live log now, naming the first entry that fails."""
    return log_reads.verify(runtime, _reader(runtime, caller, request_id))


@router.get("/export", response_class=StreamingResponse)
def export(runtime: RuntimeDep, caller: Officer, request_id: RequestIdDep) -> StreamingResponse:
    """The whole log as JSON Lines, ending with the latest checkpoint; verifiable offline
    with `broker audit verify FILE` and the checkpoint key."""
    lines = log_reads.export(runtime, _reader(runtime, caller, request_id))
    return StreamingResponse(lines, media_type="application/jsonl")

