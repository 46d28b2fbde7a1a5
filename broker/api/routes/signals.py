"""Signals: intake, own-organisation reads, retraction (role `contributor`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Response
from fastapi.responses import JSONResponse

from broker.api.deps import RequestIdDep, RuntimeDep
from broker.api.routing import StrictJSONRoute
from broker.auth.actors import actor_of
from broker.auth.deps import Caller, require_acting
from broker.runtime import Runtime
from broker.schemas import (
    Rfc3339DateTime,
    SignalBatchIn,
    SignalBatchOut,
    SignalIn,
    SignalOut,
    SignalPage,
)
from broker.services import signals

router = APIRouter(route_class=StrictJSONRoute, prefix="/v1/signals", tags=["signals"])
Contributor = Annotated[Caller, Depends(require_acting("contributor"))]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]
SignalId = Annotated[str, Path(max_length=64)]


def _create(
    runtime: Runtime, caller: Caller, bodies: list[SignalIn], *, key: str | None,
    request_id: str | None, batch: bool,
) -> JSONResponse:
    answer = signals.create_signals(
        runtime, actor_of(runtime.keys, caller), caller.org, bodies, request_id=request_id,
        client_id=caller.client_id, key=key, batch=batch)
    # A retry's answer says it is one, so a client tells new signals from those it sent
    # before (the header Stripe's and other idempotent APIs use).
    headers = {"Idempotent-Replayed": "true"} if answer.replayed else None
    return JSONResponse(answer.body, status_code=answer.status_code, headers=headers)


@router.post("", status_code=201, response_model=SignalOut)
def create_signal(
    body: SignalIn,
    runtime: RuntimeDep,
    caller: Contributor,
    request_id: RequestIdDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Submit one signal; 422 (nothing stored) when it does not fit its category."""
    return _create(runtime, caller, [body], key=idempotency_key, request_id=request_id,
                   batch=False)


@router.post("/batch", status_code=201, response_model=SignalBatchOut)
def create_batch(
    body: SignalBatchIn,
    runtime: RuntimeDep,
    caller: Contributor,
    request_id: RequestIdDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Submit up to 1000 signals, all or nothing; a 422 names each failing index."""
    return _create(runtime, caller, body.signals, key=idempotency_key, request_id=request_id,
                   batch=True)


@router.get("", response_model=SignalPage)
def list_signals(
    runtime: RuntimeDep,
    caller: Contributor,
    category: Annotated[
        str | None, Query(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$", max_length=64)
    ] = None,
    since: Rfc3339DateTime | None = None,
    until: Rfc3339DateTime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=400)] = None,
) -> dict[str, Any]:
    """The caller's own organisation's signals, newest first."""
    items, next_cursor = signals.list_signals(
        runtime,
        caller.org,
        category=category,
        since=since,
        until=until,
        limit=limit,
        cursor=cursor,
    )
    return {"items": items, "next_cursor": next_cursor}


@router.get("/{signal_id}", response_model=SignalOut)
def get_signal(
    signal_id: SignalId, runtime: RuntimeDep, caller: Contributor, request_id: RequestIdDep
) -> dict[str, Any]:
    """One signal of the caller's organisation; any other signal is 404 (an audited denial)."""
    actor = actor_of(runtime.keys, caller)
    return signals.get_signal(runtime, actor, caller.org, signal_id, request_id=request_id)


@router.delete("/{signal_id}", status_code=204, response_class=Response)
def retract_signal(
    signal_id: SignalId, runtime: RuntimeDep, caller: Contributor, request_id: RequestIdDep
) -> Response:
    """Retract a signal: its data key is destroyed at once (crypto-shredding); any signal but
    the caller's organisation's own live ones is 404 (an audited denial)."""
    actor = actor_of(runtime.keys, caller)
    signals.erase_signal(runtime, actor, caller.org, signal_id, request_id=request_id)
    return Response(status_code=204)
