"""The one error-to-HTTP mapping: RFC 9457 problem details for every failure.

Nothing submitted is echoed: validation problems carry locations and
messages only, and a location segment that is not a plain field name (it
might be a submitted key such as a BSN) is replaced by `*`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from broker.errors import BrokerError, FieldProblem, ValidationFailed

PROBLEM_TYPE_BASE = "https://sluis.example/problems/"
_PLAIN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$")
_log = logging.getLogger("broker.errors")

_HTTP_TITLES = {
    400: ("bad_request", "Bad request"),
    401: ("unauthorized", "Unauthorized"),
    403: ("forbidden", "Forbidden"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    406: ("not_acceptable", "Not acceptable"),
    413: ("payload_too_large", "Payload too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
    422: ("validation_failed", "Validation failed"),
    429: ("rate_limited", "Too many requests"),
    503: ("service_unavailable", "Service unavailable"),
}


def problem_body(error: BrokerError, *, instance: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + error.code,
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
        "instance": instance,
        "code": error.code,
    }
    if error.errors or error.status == 422:
        body["errors"] = [
            {"loc": list(safe_loc(p.loc) if error.loc_from_input else p.loc), "msg": p.msg}
            for p in error.errors
        ]
    return body


def problem_bytes(error: BrokerError, *, instance: str) -> bytes:
    return json.dumps(problem_body(error, instance=instance), ensure_ascii=True).encode()


def problem_response(error: BrokerError, request: Request) -> Response:
    # The instance names the request, never its path: a path may carry an identifier.
    request_id = request.scope.get("state", {}).get("request_id", "unknown")
    return Response(
        problem_bytes(error, instance=f"urn:sluis:request:{request_id}"),
        status_code=error.status,
        media_type="application/problem+json",
        headers=error.headers,
    )


def safe_loc(loc: Iterable[Any]) -> tuple[str | int, ...]:
    """A location with every segment that is not a plain field name or index masked."""
    cleaned: list[str | int] = []
    for part in loc:
        index = isinstance(part, int) and not isinstance(part, bool)
        name = isinstance(part, str) and bool(_PLAIN_NAME.match(part)) and not part.isdigit()
        if index or name:
            cleaned.append(part)
        else:
            cleaned.append("*")
    return tuple(cleaned)


def _message(error: Mapping[str, Any]) -> str:
    kind = str(error.get("type", ""))
    if kind == "json_invalid":
        return "The body is not valid JSON."
    if kind == "extra_forbidden":
        return "Unknown field."
    if kind == "missing":
        return "Field required."
    msg = str(error.get("msg", "Invalid value."))
    # Pydantic prefixes custom errors with "Value error, "; keep the message only.
    return msg.removeprefix("Value error, ")[:300]


def validation_problems(errors: Sequence[Mapping[str, Any]]) -> list[FieldProblem]:
    return [FieldProblem(safe_loc(e.get("loc", ())), _message(e)) for e in errors]


async def _on_broker_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, BrokerError):  # registered for BrokerError only
        return await _on_unexpected(request, exc)
    return problem_response(exc, request)


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, RequestValidationError):  # registered for it only
        return await _on_unexpected(request, exc)
    problems = validation_problems(exc.errors())
    return problem_response(
        ValidationFailed("The request is not valid; see `errors`.", errors=problems), request
    )


async def _on_http_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, StarletteHTTPException):  # registered for it only
        return await _on_unexpected(request, exc)
    code, title = _HTTP_TITLES.get(exc.status_code, ("error", "Error"))
    error = BrokerError(title, headers=exc.headers or {})
    error.status, error.code, error.title = exc.status_code, code, title
    if exc.status_code == 401:
        error.headers.setdefault("WWW-Authenticate", "Bearer")
    return problem_response(error, request)


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    _log.error("unexpected error", extra={"error_type": type(exc).__name__})
    return problem_response(BrokerError("An unexpected error occurred."), request)


def install_problem_handlers(app: FastAPI) -> None:
    """Route every exception to one problem-details answer."""
    app.add_exception_handler(BrokerError, _on_broker_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)
