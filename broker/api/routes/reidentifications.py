"""Re-identification requests (requester), decisions (privacy officer), the one-time reveal."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query

from broker.api.deps import RequestIdDep, RuntimeDep
from broker.api.routing import StrictJSONRoute
from broker.auth.actors import actor_of
from broker.auth.deps import Caller, require_acting
from broker.runtime import Runtime
from broker.schemas import ReidentificationPage
from broker.schemas.disclosures import DecisionIn, ReidentificationIn, ReidentificationOut
from broker.services import reidentification

router = APIRouter(route_class=StrictJSONRoute, prefix="/v1/reidentifications",
                   tags=["re-identification"])
Requester = Annotated[Caller, Depends(require_acting("requester"))]
Officer = Annotated[Caller, Depends(require_acting("privacy_officer"))]
Reader = Annotated[Caller, Depends(require_acting("requester", "privacy_officer"))]
RequestId = Annotated[str, Path(max_length=64)]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]
Status = Literal["pending", "approved", "refused", "revealed"]


def _person(runtime: Runtime, caller: Caller, request_id: str | None) -> reidentification.Person:
    return reidentification.Person(actor_of(runtime.keys, caller), caller.client_id, caller.org,
                                   caller.acting_user, request_id)


@router.post("", status_code=202, response_model=ReidentificationOut,
             response_model_exclude_none=True)
def create_reidentification(
    body: ReidentificationIn,
    runtime: RuntimeDep,
    caller: Requester,
    request_id: RequestIdDep,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """Ask to see the clear value behind a pseudonym your organisation received; the privacy
    officer of the organisation whose signal it is (or the covenant's) decides. The
    justification is kept sealed, never in the audit log. A retry with the same
    `Idempotency-Key` and body gets the first answer (409 with another body)."""
    return reidentification.request(runtime, _person(runtime, caller, request_id), body,
                                    idempotency_key)


@router.get("", response_model=ReidentificationPage)
def list_reidentifications(
    runtime: RuntimeDep,
    caller: Officer,
    request_id: RequestIdDep,
    status: Annotated[Status | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    """The requests this officer sees, newest first: those on its organisation's signals
    (all, for the covenant's officer) and its organisation's own (`status=pending`: those
    awaiting a decision), with the requester's organisation, purpose, field and
    justification; never a value. The read is recorded in the audit log first."""
    items, next_cursor = reidentification.officer_list(
        runtime, _person(runtime, caller, request_id), status=status, limit=limit,
        cursor=cursor)
    return {"items": items, "next_cursor": next_cursor}


@router.post("/{reid_id}/decision", response_model=ReidentificationOut,
             response_model_exclude_none=True)
def decide_reidentification(
    reid_id: RequestId,
    body: DecisionIn,
    runtime: RuntimeDep,
    caller: Officer,
    request_id: RequestIdDep,
) -> dict[str, Any]:
    """Approve or refuse a pending request on your organisation's signal (on any signal, for
    the covenant's officer); never one's own (four eyes)."""
    return reidentification.decide(runtime, _person(runtime, caller, request_id), reid_id, body)


@router.get("/{reid_id}", response_model=ReidentificationOut, response_model_exclude_none=True)
def get_reidentification(
    reid_id: RequestId, runtime: RuntimeDep, caller: Reader, request_id: RequestIdDep
) -> dict[str, Any]:
    """The request; to its organisation, once approved, the value (given once, then
    `revealed`). A privacy officer reads the requests it may decide and its organisation's
    own, never with the value."""
    return reidentification.fetch(
        runtime, _person(runtime, caller, request_id), reid_id,
        requester="requester" in caller.roles, officer="privacy_officer" in caller.roles,
    )
