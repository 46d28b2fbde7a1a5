"""Legal holds on the organisation's own signals (role `privacy_officer`): one signal's
hold under `/v1/signals/{id}/hold`, the organisation's holds under `/v1/legal-holds`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response

from broker.api.deps import RequestIdDep, RuntimeDep
from broker.api.routing import StrictJSONRoute
from broker.auth.actors import actor_of
from broker.auth.deps import Caller, require_acting
from broker.runtime import Runtime
from broker.schemas.disclosures import CaseReference, LegalHoldIn, LegalHoldOut, LegalHoldPage
from broker.services import retention

router = APIRouter(route_class=StrictJSONRoute, prefix="/v1/signals", tags=["legal holds"])
list_router = APIRouter(route_class=StrictJSONRoute, prefix="/v1/legal-holds",
                        tags=["legal holds"])
Officer = Annotated[Caller, Depends(require_acting("privacy_officer"))]
SignalId = Annotated[str, Path(max_length=64)]


def _officer(runtime: Runtime, caller: Caller, request_id: str | None) -> retention.Officer:
    return retention.Officer(actor_of(runtime.keys, caller), caller.client_id, caller.org,
                               request_id)


@router.post("/{signal_id}/hold", status_code=201, response_model=LegalHoldOut)
def place_hold(signal_id: SignalId, body: LegalHoldIn, runtime: RuntimeDep, caller: Officer,
               request_id: RequestIdDep) -> dict[str, Any]:
    """Keep one of your organisation's signals from erasure while a case needs it: it
    cannot be retracted (409) and the retention run passes it by. 409 if it is held
    already; 404 for any id that is not one of your organisation's live signals."""
    officer = _officer(runtime, caller, request_id)
    return retention.place(runtime, officer, signal_id, body.case_reference).as_answer()


@router.get("/{signal_id}/hold", response_model=LegalHoldOut)
def read_hold(signal_id: SignalId, runtime: RuntimeDep, caller: Officer,
              request_id: RequestIdDep) -> dict[str, Any]:
    """The hold on one of your organisation's signals; 404 if it is not held."""
    officer = _officer(runtime, caller, request_id)
    return retention.current(runtime, officer, signal_id).as_answer()


@router.delete("/{signal_id}/hold", status_code=204)
def lift_hold(signal_id: SignalId, runtime: RuntimeDep, caller: Officer,
              request_id: RequestIdDep) -> Response:
    """Lift the hold: the signal follows the ordinary rules again (a signal past its
    retention date goes at the next retention run)."""
    retention.lift(runtime, _officer(runtime, caller, request_id), signal_id)
    return Response(status_code=204)


@list_router.get("", response_model=LegalHoldPage)
def list_holds(
    runtime: RuntimeDep,
    caller: Officer,
    case_reference: Annotated[CaseReference | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    """Your organisation's holds, newest first (`case_reference`: those of one case), with
    each signal's category; `next_cursor` continues the list."""
    items, next_cursor = retention.listed(runtime, caller.org, case_reference=case_reference,
                                            limit=limit, cursor=cursor)
    return {"items": items, "next_cursor": next_cursor}
