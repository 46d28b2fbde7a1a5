"""The officer's page of the organisation's legal holds: which signals are kept from
erasure, for which case, since when and by whom. Placing and lifting stay with the API
and `sluis signals hold` (the pages only read)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from broker.api.deps import RuntimeDep
from broker.officer.names import Names
from broker.officer.web import PREFIX, OfficerDep, OfficerRoute, reader_of, render
from broker.services import oversight

router = APIRouter(route_class=OfficerRoute, prefix=PREFIX, include_in_schema=False)
SHOWN = 1000
"""Holds on one page at most; `sluis signals holds --all` lists every one."""


@router.get("/holds", response_class=HTMLResponse)
def holds(request: Request, runtime: RuntimeDep, officer: OfficerDep) -> HTMLResponse:
    """The organisation's legal holds, newest first."""
    items, more = oversight.organisation_holds(runtime, reader_of(runtime, officer, request),
                                               officer.org, limit=SHOWN)
    return render(request, "holds.html", officer=officer, runtime=runtime, nav="holds",
                  items=items, more=more is not None, names=Names(runtime.policy.pack))
