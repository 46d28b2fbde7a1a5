"""Disclosures, hit checks and area summaries (role `requester`, acting person named).

This is the busiest route of the broker, so its service verbs are coroutines that hold no
thread while the entry becomes durable (see `broker.services.disclosure`).

A plain request to these routes is served by the fast lane (`broker.api.fastlane`, see
`LANES`) with the same `_answer` and service verb; the routes below serve every other
request and describe all of them in the OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse, Response

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
from broker.services import disclosure
from broker.services.purpose_binding import Asker

router = APIRouter(route_class=StrictJSONRoute, prefix="/v1", tags=["disclosures"])
requester = require_acting("requester")
Requester = Annotated[Caller, Depends(requester)]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]
Body = TypeVar("Body", bound=PurposeBound)


Verb = Callable[[Runtime, Asker, Body, str | None], Awaitable[dict[str, Any]]]


async def _answer(request: Request, caller: Caller, body: Body, verb: Verb[Body],
                  key: str | None) -> JSONResponse:
    runtime: Runtime = request.app.state.runtime
    asker = Asker(actor_of(runtime.keys, caller), caller.client_id, caller.org, body.purpose,
                  body.case_reference, get_request_id(request))
    return JSONResponse(await verb(runtime, asker, body, key))


@router.post("/disclosures", response_model=DisclosureOut)
async def create_disclosure(body: DisclosureIn, request: Request, caller: Requester,
                            idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """What the policy releases to the caller for a purpose: by subject, address, area or
    signal ids. 422 for an unknown purpose or a missing case reference; 403 when no rule
    names the caller for the purpose. Every answer, also an empty one, is audited first.
    A retry with the same `Idempotency-Key` and body gets the first answer (another
    body: 409)."""
    return await _answer(request, caller, body, disclosure.disclose, idempotency_key)


@router.post("/hits", response_model=HitOut)
async def create_hit(body: HitIn, request: Request, caller: Requester,
                     idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Whether signals exist about a subject that a rule lets the caller know of."""
    return await _answer(request, caller, body, disclosure.check_hit, idempotency_key)


@router.post("/area-summaries", response_model=AreaSummaryOut)
async def create_area_summary(body: AreaSummaryIn, request: Request, caller: Requester,
                              idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Counts per category over a postcode area; small counts suppressed."""
    return await _answer(request, caller, body, disclosure.summarise_area, idempotency_key)


def _served_by(verb: Verb[Body]) -> Serve:
    async def serve(request: Request, caller: Caller, body: Body, key: str | None) -> Response:
        return await _answer(request, caller, body, verb, key)

    return serve


LANES = [
    Lane("/v1/disclosures", DisclosureIn, requester, _served_by(disclosure.disclose)),
    Lane("/v1/hits", HitIn, requester, _served_by(disclosure.check_hit)),
    Lane("/v1/area-summaries", AreaSummaryIn, requester, _served_by(disclosure.summarise_area)),
]
"""The routes above, served in the fast lane (`broker.api.fastlane`) when plain."""
