"""Disclosures, hit checks and area summaries (role `requester`, acting person named).

The endpoints are `async` and hand the service to the thread pool in one step: each
synchronous dependency or endpoint costs FastAPI a thread-pool round trip of its own
(about 50 µs of the event loop's time each, measured in bench/disclosure_bench.py), and
this is the busiest route of the broker. The runtime and request id are read from the
request here for the same reason.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from broker import disclosure
from broker.actors import actor_of
from broker.api.deps import get_request_id
from broker.api.routing import StrictJSONRoute
from broker.auth.deps import Caller, require_acting
from broker.disclosure_schemas import (
    AreaSummaryIn,
    AreaSummaryOut,
    DisclosureIn,
    DisclosureOut,
    HitIn,
    HitOut,
    PurposeBound,
)
from broker.purpose_binding import Asker
from broker.ratelimit import AbuseLimits
from broker.runtime import Runtime

router = APIRouter(route_class=StrictJSONRoute, prefix="/v1", tags=["disclosures"])
Requester = Annotated[Caller, Depends(require_acting("requester"))]
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


async def _answer(
    request: Request,
    caller: Caller,
    body: Body,
    service: Callable[[Runtime, AbuseLimits, Asker, Body], dict[str, Any]],
) -> JSONResponse:
    runtime: Runtime = request.app.state.runtime
    asker = Asker(actor_of(runtime.keys, caller), caller.client_id, caller.org, body.purpose,
                  body.case_reference, get_request_id(request))
    answer = await run_in_threadpool(service, runtime, limits_of(request), asker, body)
    return JSONResponse(answer)


@router.post("/disclosures", response_model=DisclosureOut)
async def create_disclosure(body: DisclosureIn, request: Request,
                            caller: Requester) -> JSONResponse:
    """What the policy releases to the caller for a purpose: by subject, address, area or
    signal ids. 422 for an unknown purpose or a missing case reference; 403 when no rule
    names the caller for the purpose. Every answer, also an empty one, is audited first."""
    return await _answer(request, caller, body, disclosure.disclose)


@router.post("/hits", response_model=HitOut)
async def create_hit(body: HitIn, request: Request, caller: Requester) -> JSONResponse:
    """Whether signals exist about a subject that a rule lets the caller know of."""
    return await _answer(request, caller, body, disclosure.check_hit)


@router.post("/area-summaries", response_model=AreaSummaryOut)
async def create_area_summary(body: AreaSummaryIn, request: Request,
                              caller: Requester) -> JSONResponse:
    """Counts per category over a postcode area; small counts suppressed."""
    return await _answer(request, caller, body, disclosure.summarise_area)
