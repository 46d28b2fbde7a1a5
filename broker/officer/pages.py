"""The officer's reading pages: overview, log, one entry, policy, and the stylesheet.

Each view is recorded as an `audit_read` before anything is gathered for it (fail
closed): the services that read for the pages, `broker.services.oversight`,
`broker.services.log_review` and `broker.services.pack_history`, record it first.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Final, get_args

from fastapi import APIRouter, Form, Path, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from broker.api.deps import RuntimeDep
from broker.clock import rfc3339, utcnow
from broker.core.entry import MAX_SAFE_INTEGER, Action
from broker.errors import FieldProblem, ValidationFailed
from broker.officer.chart import Series, bar_chart
from broker.officer.i18n import Translator
from broker.officer.names import Names
from broker.officer.web import (
    PREFIX,
    STATIC_DIR,
    OfficerDep,
    OfficerRoute,
    check_csrf,
    check_origin,
    lang_of,
    reader_of,
    render,
    state_of,
)
from broker.services import log_review, oversight, pack_history
from broker.services.log_review import OUTCOMES, LogQuery
from broker.services.oversight import LOCAL, SERIES

router = APIRouter(route_class=OfficerRoute, prefix=PREFIX, include_in_schema=False)
WEEKS: Final = 6
ACTIONS: Final = get_args(Action)
Text = Annotated[str, Query(max_length=100)]
EMPLOYEE_ID: Final = re.compile(r"[A-Za-z0-9._@-]{1,64}")


def today() -> date:
    """Today in the Netherlands (the pages count calendar days as the officer does)."""
    return utcnow().astimezone(LOCAL).date()


@router.get("/static/officer.css")
def stylesheet() -> Response:
    """The pages' one stylesheet."""
    return Response((STATIC_DIR / "officer.css").read_bytes(), media_type="text/css")


@router.get("/", response_class=HTMLResponse)
def overview(request: Request, runtime: RuntimeDep, officer: OfficerDep) -> HTMLResponse:
    """The log's state and verification, activity per day, per recipient, open requests."""
    found = oversight.overview(runtime, reader_of(runtime, officer, request), today=today(),
                               weeks=WEEKS)
    t = Translator(lang_of(request))
    verification = state_of(request).verification(runtime, fresh=False)
    figures = found.activity
    series = [Series(key, t(f"series.{key}"), figures.series[key]) for key in SERIES]
    chart = bar_chart(
        figures.days, series, title=t("overview.chart_title"),
        description=t("overview.chart_desc", start=figures.days[0].isoformat(),
                      end=figures.days[-1].isoformat()),
    )
    return render(
        request, "overview.html", officer=officer, runtime=runtime, nav="overview",
        size=found.size, checkpoint=found.checkpoint, verification=verification,
        figures=figures, series=series, chart=chart, weeks=WEEKS,
        names=Names(runtime.policy.pack), open_requests=found.open_requests,
        alerts=oversight.integrity_alerts(verification) + found.alerts,
    )


@router.post("/verify")
def verify_now(request: Request, runtime: RuntimeDep, officer: OfficerDep,
               csrf: Annotated[str, Form(max_length=200)] = "") -> Response:
    """Verify the whole log now instead of showing the last result."""
    check_origin(request)
    check_csrf(runtime, officer, csrf)
    oversight.record_read(runtime, reader_of(runtime, officer, request),
                          {"read": "officer_verify"})
    state_of(request).verification(runtime, fresh=True)
    return RedirectResponse(f"{PREFIX}/", status_code=303)


def _choice(value: str | None, allowed: tuple[str, ...] | list[str],
            name: str) -> str | None:
    if not value:
        return None
    if value not in allowed:
        raise ValidationFailed("Not a valid filter.",
                               errors=[FieldProblem(("query", name), "not a valid choice")])
    return value


def _day(value: str | None, name: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValidationFailed("Not a date.",
                               errors=[FieldProblem(("query", name), "not a date")]) from None


def _employee(value: str) -> str | None:
    """An employee id as `X-Acting-User` carries it (1 to 64 of A-Z a-z 0-9 . _ @ -)."""
    value = value.strip()
    if not value:
        return None
    if not EMPLOYEE_ID.fullmatch(value):
        raise ValidationFailed("Not an employee id.",
                               errors=[FieldProblem(("query", "employee"), "not an employee id")])
    return value


def _link_params(query: LogQuery, since: str, until: str) -> dict[str, str]:
    """The filters as the page's links carry them on (the dates as the officer typed them)."""
    given = (("org", query.org), ("purpose", query.purpose), ("action", query.action),
             ("outcome", query.outcome), ("employee", query.employee),
             ("since", since), ("until", until),
             ("hide_reads", "1" if query.hide_reads else None), ("filtered", "1"))
    return {name: value for name, value in given if value}


@router.get("/log", response_class=HTMLResponse)
def log(request: Request, runtime: RuntimeDep, officer: OfficerDep,
        org: Text = "", purpose: Text = "", action: Text = "", outcome: Text = "",
        since: Text = "", until: Text = "", hide_reads: Text = "", filtered: Text = "",
        cursor: Text = "", employee: Text = "") -> HTMLResponse:
    """Entries newest first, filtered and paged."""
    pack = runtime.policy.pack
    query = LogQuery(
        org=_choice(org, list(pack.organisations), "org"),
        purpose=_choice(purpose, list(pack.purposes), "purpose"),
        action=_choice(action, ACTIONS, "action"),
        outcome=_choice(outcome, OUTCOMES, "outcome"),
        since=_day(since, "since"),
        until=_day(until, "until"),
        employee=_employee(employee),
        # Until the form is used, the officer's own reads (every page view) stay hidden.
        hide_reads=bool(hide_reads) or not filtered,
    )
    page = log_review.log_page(runtime, reader_of(runtime, officer, request), query,
                               cursor=cursor or None)
    return render(request, "log.html", officer=officer, runtime=runtime, nav="log",
                  query=query, page=page, params=_link_params(query, since, until),
                  actions=ACTIONS, outcomes=OUTCOMES,
                  names=Names(pack), pack=pack, first_page=not cursor)


@router.get("/log/{seq}", response_class=HTMLResponse)
def entry(request: Request, runtime: RuntimeDep, officer: OfficerDep,
          seq: Annotated[int, Path(ge=0, le=MAX_SAFE_INTEGER)]) -> HTMLResponse:
    """One entry in full, with its rule, legal basis, fields, and its verified proof."""
    detail = log_review.entry_detail(runtime, reader_of(runtime, officer, request), seq)
    names = Names(detail.pack or runtime.policy.pack)
    return render(request, "entry.html", officer=officer, runtime=runtime, nav="log",
                  detail=detail, view=detail.view, names=names)


@router.get("/policy", response_class=HTMLResponse)
def policy(request: Request, runtime: RuntimeDep, officer: OfficerDep) -> HTMLResponse:
    """The live pack's rules in words, its hash, and the history of activations, each
    with what changed against the one before."""
    versions = pack_history.versions(runtime, reader_of(runtime, officer, request))
    live = runtime.policy
    return render(request, "policy.html", officer=officer, runtime=runtime, nav="policy",
                  pack=live.pack, loaded_at=rfc3339(live.loaded_at), names=Names(live.pack),
                  versions=versions)
