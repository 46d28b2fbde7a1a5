"""The officer's pages that answer someone: a data subject's access request, and
re-identification requests to approve or refuse.

The subject's identifier arrives in a POST body (never in a URL, so it stays out of
histories and access logs); the subject report service uses it only as its blind-index
token and records the look-up itself.
"""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Form, Path, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError

from broker.api.deps import RuntimeDep, get_request_id
from broker.auth.actors import actor_of
from broker.errors import Conflict, Forbidden, ValidationFailed
from broker.officer import subjects
from broker.officer.i18n import Translator
from broker.officer.names import Names
from broker.officer.pages import today
from broker.officer.web import (
    PREFIX,
    OfficerDep,
    OfficerRoute,
    SignedIn,
    check_csrf,
    check_origin,
    lang_of,
    reader_of,
    render,
)
from broker.runtime import Runtime
from broker.schemas.disclosures import DecisionIn
from broker.services import oversight
from broker.services.oversight import Reader
from broker.services.reidentification import NotTheDecidingOfficer, Person
from broker.services.reidentification import decide as decide_request

router = APIRouter(route_class=OfficerRoute, prefix=PREFIX, include_in_schema=False)
Short = Annotated[str, Form(max_length=200)]
Reason = Annotated[str, Form(max_length=2000)]
RequestId = Annotated[str, Path(max_length=40, pattern=r"^[A-Za-z0-9_-]+$")]
DECISIONS: Final = {"approve": True, "refuse": False}


@router.get("/subject", response_class=HTMLResponse)
def subject_form(request: Request, runtime: RuntimeDep, officer: OfficerDep) -> HTMLResponse:
    """The form for a data subject's access request."""
    return render(request, "subject.html", officer=officer, runtime=runtime, nav="subject",
                  kinds=subjects.KINDS, kind="bsn", rows=None, error=None, masked=None)


@router.post("/subject", response_class=HTMLResponse)
def subject_report(request: Request, runtime: RuntimeDep, officer: OfficerDep,
                   kind: Short = "bsn", value: Short = "", csrf: Short = "",
                   letter: Short = "", cursor: Short = "") -> HTMLResponse:
    """The report as a page, or (`letter`) as a printable letter to the data subject; with
    `cursor`, the page after the one that gave it."""
    check_origin(request)
    check_csrf(runtime, officer, csrf)
    t = Translator(lang_of(request))
    try:
        found = subjects.report(runtime, actor_of(runtime.keys, officer), kind, value,
                                request_id=get_request_id(request), cursor=cursor or None)
    except ValidationFailed:
        return render(request, "subject.html", officer=officer, runtime=runtime,
                      nav="subject", kinds=subjects.KINDS, kind=kind, rows=None,
                      error=t("subject.invalid"), masked=None, status=422)
    template = "subject_letter.html" if letter else "subject.html"
    return render(request, template, officer=officer, runtime=runtime, nav="subject",
                  kinds=subjects.KINDS, kind=kind, rows=found.groups, withheld=found.withheld,
                  next_cursor=found.next_cursor, letter=bool(letter),
                  error=None, masked=subjects.masked(value),
                  names=Names(runtime.policy.pack), today=today())


@router.get("/reidentifications", response_class=HTMLResponse)
def reidentifications(request: Request, runtime: RuntimeDep,
                      officer: OfficerDep) -> HTMLResponse:
    """The re-identification requests the officer sees, newest first."""
    items = oversight.reidentification_queue(runtime, reader_of(runtime, officer, request))
    return render(request, "reidentifications.html", officer=officer, runtime=runtime,
                  nav="reid", items=items, names=Names(runtime.policy.pack))


def _request_page(request: Request, runtime: Runtime, officer: SignedIn, request_id: str, *,
                  reader: Reader | None, message: str | None = None,
                  status: int = 200) -> HTMLResponse:
    item = oversight.reidentification_request(runtime, request_id, officer.org, reader=reader)
    return render(request, "reidentification.html", officer=officer, runtime=runtime,
                  nav="reid", item=item, names=Names(runtime.policy.pack), message=message,
                  status=status, decided=bool(request.query_params.get("decided")))


@router.get("/reidentifications/{request_id}", response_class=HTMLResponse)
def reidentification(request: Request, runtime: RuntimeDep, officer: OfficerDep,
                     request_id: RequestId) -> HTMLResponse:
    """One request: what is asked, why (the justification), and the decision form."""
    return _request_page(request, runtime, officer, request_id,
                         reader=reader_of(runtime, officer, request))


@router.post("/reidentifications/{request_id}/decision")
def decide(request: Request, runtime: RuntimeDep, officer: OfficerDep,
           request_id: RequestId, decision: Short = "", reason: Reason = "",
           csrf: Short = "") -> Response:
    """Approve or refuse with a reason, through the re-identification service, which
    enforces who decides and four eyes and audits the decision (refused for an officer of
    another organisation than the signal's or the covenant's, and for the requester's own
    person; Conflict once decided)."""
    check_origin(request)
    check_csrf(runtime, officer, csrf)
    t = Translator(lang_of(request))
    try:
        # A browser sends a textarea's line breaks as CR LF; the reason keeps them as LF.
        body = DecisionIn(approve=DECISIONS[decision],
                          reason=reason.replace("\r\n", "\n").strip())
    except (KeyError, ValidationError):
        return _request_page(request, runtime, officer, request_id, reader=None,
                             message=t("reid.no_reason"), status=422)
    person = Person(actor_of(runtime.keys, officer), officer.client_id, officer.org,
                    officer.acting_user, get_request_id(request))
    try:
        decide_request(runtime, person, request_id, body)
    except NotTheDecidingOfficer:
        return _request_page(request, runtime, officer, request_id, reader=None,
                             message=t("reid.not_decider"), status=403)
    except Forbidden:
        return _request_page(request, runtime, officer, request_id, reader=None,
                             message=t("reid.own"), status=403)
    except Conflict:
        return _request_page(request, runtime, officer, request_id, reader=None,
                             message=t("reid.already"), status=409)
    return RedirectResponse(f"{PREFIX}/reidentifications/{request_id}?decided=1",
                            status_code=303)
