"""The web shell of the officer's pages: templates, security headers, cookies, sessions.

`OfficerRoute` gives every page the same security headers (a strict content security
policy, no framing, no caching) and turns domain errors into HTML pages instead of the
API's problem details: a lapsed session on a GET becomes a redirect to the sign-in page.
`signed_in` is the dependency that admits only a personal client that holds the
`privacy_officer` role, read fresh on every request, so revocation ends a session at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Final

from fastapi import Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from broker.api.deps import RuntimeDep, get_request_id
from broker.api.routing import StrictJSONRoute
from broker.audit.integrity import LiveReport, verify_live
from broker.auth import clients
from broker.auth.actors import actor_of
from broker.errors import BrokerError, Forbidden, Unauthorized
from broker.officer import session as sessions
from broker.officer.i18n import DEFAULT, Translator, language
from broker.runtime import Runtime
from broker.services import brakes
from broker.services.oversight import LOCAL, Reader

PREFIX: Final = "/officer"
SESSION_COOKIE: Final = "__Host-sluis-officer"
PRE_COOKIE: Final = "__Host-sluis-officer-pre"
LANG_COOKIE: Final = "sluis-officer-lang"
OFFICER_ROLE: Final = "privacy_officer"
VERIFY_CACHE_SECONDS: Final = 60.0
SECURITY_HEADERS: Final[Mapping[str, str]] = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; "
                               "form-action 'self'; base-uri 'none'; object-src 'none'",
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
TEMPLATE_DIR: Final = Path(__file__).resolve().parent / "templates"
STATIC_DIR: Final = Path(__file__).resolve().parent / "static"
_log = logging.getLogger("broker.officer")
_state_lock = threading.Lock()


# --- Per-app state ---


class OfficerState:
    """What the pages keep in the process: the last live verification (a full pass over
    the log; repeated at most once a minute unless the officer asks). Sign-outs and the
    sign-in brake are the deployment's, in the database (`broker.services.brakes`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._verified: tuple[float, LiveReport] | None = None

    def verification(self, runtime: Runtime, *, fresh: bool) -> LiveReport:
        """The live log's verification report, at most a minute old unless `fresh`."""
        now = time.monotonic()
        with self._lock:
            cached = self._verified
        if not fresh and cached is not None and now - cached[0] < VERIFY_CACHE_SECONDS:
            return cached[1]
        report = verify_live(runtime.engine, runtime.audit.signer)
        with self._lock:
            self._verified = (now, report)
        return report


def state_of(request: Request) -> OfficerState:
    app_state = request.app.state
    with _state_lock:
        found: OfficerState | None = getattr(app_state, "officer", None)
        if found is None:
            found = OfficerState()
            app_state.officer = found
    return found


# --- Templates ---


def _local_time(value: str | datetime | None, lang: str = DEFAULT) -> str:
    if value is None:
        return "—"
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    local = when.astimezone(LOCAL)
    return f"{local:%d-%m-%Y %H:%M:%S}" if lang == "nl" else f"{local:%Y-%m-%d %H:%M:%S}"


def _local_date(value: Any, lang: str = DEFAULT) -> str:
    return f"{value:%d-%m-%Y}" if lang == "nl" else f"{value:%Y-%m-%d}"


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["localtime"] = _local_time
    env.filters["localdate"] = _local_date
    return env


TEMPLATES: Final = _environment()


def lang_of(request: Request) -> str:
    """The page language: `?lang=`, else the language cookie, else Dutch."""
    return (language(request.query_params.get("lang"))
            or language(request.cookies.get(LANG_COOKIE)) or DEFAULT)


def set_cookie(response: Response, name: str, value: str, *, max_age: int,
               path: str = "/") -> None:
    """A cookie only this site's pages get back: HttpOnly, Secure, SameSite=Strict."""
    response.set_cookie(name, value, max_age=max_age, path=path, secure=True, httponly=True,
                        samesite="strict")


def clear_cookie(response: Response, name: str) -> None:
    response.delete_cookie(name, path="/", secure=True, httponly=True, samesite="strict")


# --- Signed-in officers ---


@dataclass(frozen=True, slots=True)
class SignedIn:
    """The officer of a request: a personal client with the privacy_officer role."""

    client_id: str
    org: str
    roles: frozenset[str]
    name: str
    session: sessions.Session

    @property
    def acting_user(self) -> str:
        # A personal client is the person (docs/api.md): the audit tags it like a token would.
        return self.client_id


def officer_refusal(kind: str, roles: frozenset[str]) -> str | None:
    """Why a client may not use these pages (None: it may)."""
    if OFFICER_ROLE not in roles:
        return "not_privacy_officer"
    if kind != "personal":
        return "system_client"
    return None


def signed_in(request: Request, runtime: RuntimeDep) -> SignedIn:
    """The signed-in officer; Unauthorized when the session is missing, lapsed, ended, or
    its client is revoked, no longer an officer or of an organisation left out of the pack."""
    session = sessions.read(runtime.keys, request.cookies.get(SESSION_COOKIE),
                            now=int(time.time()))
    if session is None or brakes.session_ended(runtime.engine, session.session_id):
        raise Unauthorized("Sign in first.")
    client = clients.load_client(runtime.engine, session.client_id)
    if (client is None or client.revoked_at is not None
            or client.org not in runtime.policy.pack.organisations
            or officer_refusal(client.kind, clients.role_set(client.roles)) is not None):
        raise Unauthorized("Sign in first.")
    return SignedIn(client.id, client.org, clients.role_set(client.roles), client.name, session)


OfficerDep = Annotated[SignedIn, Depends(signed_in)]


def check_csrf(runtime: Runtime, officer: SignedIn, token: str) -> None:
    """Every form post carries the session's token (synchronizer token pattern)."""
    if not sessions.csrf_ok(runtime.keys, officer.session, token):
        raise Forbidden("The form token is missing or not of this session.")


def check_origin(request: Request) -> None:
    """A browser's `Origin` on a form post must be this site (defence beside the token)."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return
    host = request.headers.get("host", "")
    if origin.split("://", 1)[-1] != host:
        raise Forbidden("The form was not sent from this site.")


def reader_of(runtime: Runtime, officer: SignedIn, request: Request) -> Reader:
    """The officer as the services record a page view's read: actor and request id."""
    return Reader(actor_of(runtime.keys, officer), get_request_id(request))


# --- Rendering ---


def render(request: Request, template: str, *, officer: SignedIn | None = None,
           runtime: Runtime | None = None, status: int = 200,
           **context: Any) -> HTMLResponse:
    """A page in the request's language; renews the officer's session cookie."""
    lang = lang_of(request)
    csrf = (sessions.csrf_token(runtime.keys, officer.session)
            if officer is not None and runtime is not None else "")
    html = TEMPLATES.get_template(template).render(
        t=Translator(lang), lang=lang, officer=officer, csrf=csrf, path=request.url.path,
        prefix=PREFIX, **context,
    )
    response = HTMLResponse(html, status_code=status)
    if language(request.query_params.get("lang")):
        set_cookie(response, LANG_COOKIE, lang, max_age=365 * 86400, path=PREFIX)
    if officer is not None and runtime is not None:
        renewed = sessions.renew(runtime.keys, officer.session, now=int(time.time()))
        set_cookie(response, SESSION_COOKIE, renewed, max_age=sessions.IDLE_SECONDS)
    return response


def error_page(request: Request, status: int) -> HTMLResponse:
    t = Translator(lang_of(request))
    key = f"error.{status}" if t.has(f"error.{status}") else "error.500"
    return render(request, "error.html", status=status, message=t(key))


def _on_error(request: Request, error: Exception) -> Response:
    if isinstance(error, Unauthorized):
        had_session = SESSION_COOKIE in request.cookies
        if request.method == "GET":
            target = f"{PREFIX}/sign-in" + ("?expired=1" if had_session else "")
            response: Response = RedirectResponse(target, status_code=303)
        else:
            response = error_page(request, 401)
        if had_session:
            clear_cookie(response, SESSION_COOKIE)
        return response
    if isinstance(error, BrokerError):
        response = error_page(request, error.status)
        for name, value in error.headers.items():
            if name.lower() != "www-authenticate":
                response.headers[name] = value
        return response
    if isinstance(error, RequestValidationError):
        return error_page(request, 422)
    _log.error("unexpected error on an officer page",
               extra={"error_type": type(error).__name__})
    return error_page(request, 500)


class OfficerRoute(StrictJSONRoute):
    """A page route: HTML error pages and the pages' security headers on every answer."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                response = await handler(request)
            except Exception as error:  # every failure becomes a page, never a trace
                response = _on_error(request, error)
            for name, value in SECURITY_HEADERS.items():
                response.headers[name] = value
            return response

        return page_handler
