"""The data subject's access report (role `privacy_officer`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from broker.api.deps import RequestIdDep, RuntimeDep
from broker.api.routing import StrictJSONRoute
from broker.auth.actors import actor_of
from broker.auth.deps import Caller, require_acting
from broker.schemas import SubjectReportQuery
from broker.schemas.disclosures import SubjectReportOut
from broker.services import subject_report
from broker.services.subject_report import DEFAULT_PAGE, MAX_PAGE

router = APIRouter(route_class=StrictJSONRoute, prefix="/v1/audit", tags=["audit"])
Officer = Annotated[Caller, Depends(require_acting("privacy_officer"))]


@router.post("/subject-report", response_model=SubjectReportOut)
def create_subject_report(
    body: SubjectReportQuery, runtime: RuntimeDep, caller: Officer, request_id: RequestIdDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
) -> dict[str, Any]:
    """Every disclosure, hit and re-identification that concerned the subject (one
    identifier, or an address without BAG id): time, recipient, purpose, legal basis, rule,
    fields; oldest first, in pages of `limit` entries with an opaque `cursor`. Entries still
    confidential are left out and counted in `withheld` (for the officer: not to be passed
    to the subject)."""
    return subject_report.subject_report(
        runtime, actor_of(runtime.keys, caller), body.query(), request_id=request_id,
        limit=limit, cursor=cursor,
    )
