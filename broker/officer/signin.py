"""Signing in and out of the officer's pages.

Sign-in takes a personal privacy_officer client's id and secret (the same check as the
token endpoint, `clients.authenticate_secret`), braked per client id and address like
the token endpoint. Right credentials of any other client are refused with a page that
says why, and the attempt is recorded in the audit log as a refused `audit_read`.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from broker.api.deps import RuntimeDep, get_request_id
from broker.auth import clients
from broker.auth.actors import client_actor
from broker.auth.clients import Client
from broker.errors import Forbidden, InvalidClient
from broker.officer import session as sessions
from broker.officer.i18n import Translator
from broker.officer.session import begin as begin_session
from broker.officer.web import (
    PRE_COOKIE,
    PREFIX,
    SESSION_COOKIE,
    OfficerDep,
    OfficerRoute,
    check_csrf,
    check_origin,
    clear_cookie,
    lang_of,
    officer_refusal,
    render,
    set_cookie,
)
from broker.runtime import Runtime
from broker.services import brakes
from broker.services.oversight import Reader, record_read

router = APIRouter(route_class=OfficerRoute, prefix=PREFIX, include_in_schema=False)
Field = Annotated[str, Form(max_length=600)]


def _form(request: Request, runtime: Runtime, *, status: int = 200,
          message: str | None = None) -> HTMLResponse:
    """The sign-in form with a fresh pre-session (its token binds the form: login CSRF)."""
    nonce, cookie = sessions.pre_session(runtime.keys, now=int(time.time()))
    response = render(request, "sign_in.html", status=status, message=message,
                      sign_in_token=sessions.sign_in_token(runtime.keys, nonce))
    set_cookie(response, PRE_COOKIE, cookie, max_age=sessions.PRE_SESSION_SECONDS)
    return response


@router.get("/sign-in", response_class=HTMLResponse)
def sign_in_form(request: Request, runtime: RuntimeDep) -> HTMLResponse:
    """The sign-in page; says why when a session lapsed or the officer signed out."""
    t = Translator(lang_of(request))
    message = None
    if request.query_params.get("expired"):
        message = t("signin.expired")
    elif request.query_params.get("signed_out"):
        message = t("signin.signed_out")
    return _form(request, runtime, message=message)


def _record_refusal(runtime: Runtime, request: Request, client: Client,
                    reason: str) -> None:
    roles = clients.role_set(client.roles)
    actor = client_actor(runtime.keys, client_id=client.id, org=client.org, roles=roles,
                         acting_user=client.id if client.kind == "personal" else None)
    record_read(runtime, Reader(actor, get_request_id(request)), {"read": "officer_sign_in"},
                outcome="refused", reason=reason)


@router.post("/sign-in", response_class=HTMLResponse)
def sign_in(request: Request, runtime: RuntimeDep, client_id: Field = "",
            client_secret: Field = "", csrf: Field = "") -> Response:
    """Check the credentials; a personal privacy officer gets a session, nobody else."""
    check_origin(request)
    nonce = sessions.read_pre_session(runtime.keys, request.cookies.get(PRE_COOKIE),
                                      now=int(time.time()))
    if not sessions.sign_in_token_ok(runtime.keys, nonce, csrf):
        raise Forbidden("The sign-in form's token is missing or stale.")
    t = Translator(lang_of(request))
    failures = runtime.sign_in_brake
    address = request.client.host if request.client else "unknown"
    brake = [f"client:{client_id[:64]}", f"addr:{address}"]
    if failures.retry_after(brake) is not None:
        return _form(request, runtime, status=429, message=t("signin.throttled"))
    try:
        client = clients.authenticate_secret(runtime, client_id.strip(), client_secret)
    except InvalidClient:
        failures.fail(brake)
        return _form(request, runtime, status=401, message=t("signin.failed"))
    refusal = officer_refusal(client.kind, clients.role_set(client.roles))
    if refusal is not None:
        _record_refusal(runtime, request, client, refusal)
        return _form(request, runtime, status=403, message=t("signin.refused"))
    _, value = begin_session(runtime.keys, client.id, now=int(time.time()))
    response = RedirectResponse(f"{PREFIX}/", status_code=303)
    set_cookie(response, SESSION_COOKIE, value, max_age=sessions.IDLE_SECONDS)
    clear_cookie(response, PRE_COOKIE)
    return response


@router.post("/sign-out")
def sign_out(request: Request, runtime: RuntimeDep, officer: OfficerDep,
             csrf: Field = "") -> Response:
    """End the session: every node refuses it from now on, and the cookie is cleared."""
    check_origin(request)
    check_csrf(runtime, officer, csrf)
    brakes.end_session(runtime.engine, officer.session.session_id, officer.session.expires_at)
    response = RedirectResponse(f"{PREFIX}/sign-in?signed_out=1", status_code=303)
    clear_cookie(response, SESSION_COOKIE)
    return response
