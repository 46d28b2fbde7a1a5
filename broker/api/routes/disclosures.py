"""Disclosures, hit checks and area summaries (role `requester`, acting person named).

This is the busiest route of the broker, so it holds no thread while it waits: the service
decides and builds the answer and its entry, then the endpoint awaits the entry's
durability (`AuditLog.record_async`), and the appender wakes the event loop once per batch
instead of one blocked thread per request. On SQLite the service runs on the event loop
itself (its reads are local page reads of a few microseconds, and a thread-pool round
trip costs more than the work, measured in bench/disclosure_bench.py); on PostgreSQL,
whose reads wait on the network, it runs in the thread pool.

A plain request to these routes is served by the fast lane (`broker.api.fastlane`, see
`LANES`) with the same `_answer`; the routes below serve every other request and
describe all of them in the OpenAPI document.
"""

from __future__ import annotations

import threading
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from broker.api.deps import get_request_id
from broker.api.fastlane import Lane, Serve
from broker.api.routing import StrictJSONRoute
from broker.auth.actors import actor_of
from broker.auth.deps import Caller, require_acting
from broker.runtime import Runtime
from broker.schemas.disclosures import (
    AreaSummaryIn,
    AreaSummaryOut,
    DisclosureIn,
    DisclosureOut,
    HitIn,
    HitOut,
    PurposeBound,
)
from broker.services import disclosure, idempotency
from broker.services.disclosure import Service
from broker.services.purpose_binding import Asker, AuditedRefusal
from broker.services.ratelimit import AbuseLimits

router = APIRouter(route_class=StrictJSONRoute, prefix="/v1", tags=["disclosures"])
requester = require_acting("requester")
Requester = Annotated[Caller, Depends(requester)]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]
Body = TypeVar("Body", bound=PurposeBound)
_LIMITS_LOCK = threading.Lock()


def limits_of(request: Request) -> AbuseLimits:
    """This process's abuse limits, made on first use from the runtime's settings."""
    state = request.app.state
    limits: AbuseLimits | None = getattr(state, "abuse_limits", None)
    if limits is None:
        with _LIMITS_LOCK:
            limits = getattr(state, "abuse_limits", None)
            if limits is None:
                settings = state.runtime.settings
                limits = AbuseLimits(settings.request_rate_per_minute,
                                     settings.fishing_subjects_per_hour)
                state.abuse_limits = limits
    return limits


async def _answer(request: Request, caller: Caller, body: Body, service: Service[Body],
                  key: str | None = None, route: str = "") -> JSONResponse:
    runtime: Runtime = request.app.state.runtime
    once = None if key is None else idempotency.begin_audited(
        caller.client_id, caller.org, key, route, body.model_dump(mode="json"))
    if once is not None:
        earlier = await run_in_threadpool(idempotency.replay_audited, runtime.engine,
                                          runtime.keys, once, idempotency.lifetime_of(runtime))
        if earlier is not None:
            return JSONResponse(earlier)
    asker = Asker(actor_of(runtime.keys, caller), caller.client_id, caller.org, body.purpose,
                  body.case_reference, get_request_id(request))
    limits = limits_of(request)
    try:
        if runtime.local_reads:
            prepared = service(runtime, limits, asker, body)
        else:
            prepared = await run_in_threadpool(service, runtime, limits, asker, body)
    except AuditedRefusal as refusal:
        await runtime.audit.record_async(refusal.entry)
        raise refusal.error from None
    if once is not None:  # rare: the answer is stored in the entry's transaction (a thread)
        return JSONResponse(await run_in_threadpool(
            idempotency.record_audited, runtime, once, prepared.entry, prepared.answer,
            status_code=200, rows=prepared.rows, subjects=prepared.subjects))
    recorded = await runtime.audit.record_async(prepared.entry, rows=prepared.rows,
                                                subjects=prepared.subjects)
    return JSONResponse(prepared.finish(recorded.seq))


@router.post("/disclosures", response_model=DisclosureOut)
async def create_disclosure(body: DisclosureIn, request: Request, caller: Requester,
                            idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """What the policy releases to the caller for a purpose: by subject, address, area or
    signal ids. 422 for an unknown purpose or a missing case reference; 403 when no rule
    names the caller for the purpose. Every answer, also an empty one, is audited first.
    A retry with the same `Idempotency-Key` and body gets the first answer (another
    body: 409)."""
    return await _answer(request, caller, body, disclosure.prepare_disclosure,
                         idempotency_key, "disclosures.create")


@router.post("/hits", response_model=HitOut)
async def create_hit(body: HitIn, request: Request, caller: Requester,
                     idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Whether signals exist about a subject that a rule lets the caller know of."""
    return await _answer(request, caller, body, disclosure.prepare_hit, idempotency_key,
                         "hits.create")


@router.post("/area-summaries", response_model=AreaSummaryOut)
async def create_area_summary(body: AreaSummaryIn, request: Request, caller: Requester,
                              idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Counts per category over a postcode area; small counts suppressed."""
    return await _answer(request, caller, body, disclosure.prepare_area_summary,
                         idempotency_key, "area-summaries.create")


def _served_by(service: Service[Body], route: str) -> Serve:
    async def serve(request: Request, caller: Caller, body: Body, key: str | None) -> Response:
        return await _answer(request, caller, body, service, key, route)

    return serve


LANES = [
    Lane("/v1/disclosures", DisclosureIn, requester,
         _served_by(disclosure.prepare_disclosure, "disclosures.create")),
    Lane("/v1/hits", HitIn, requester, _served_by(disclosure.prepare_hit, "hits.create")),
    Lane("/v1/area-summaries", AreaSummaryIn, requester,
         _served_by(disclosure.prepare_area_summary, "area-summaries.create")),
]
"""The routes above, served in the fast lane (`broker.api.fastlane`) when plain."""
