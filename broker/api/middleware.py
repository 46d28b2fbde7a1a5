"""ASGI middleware: request ids, header and body limits, before any parsing.

Written as plain ASGI (not BaseHTTPMiddleware) because it sits on every
request's path and must not buffer or copy bodies.
"""

from __future__ import annotations

import re

from starlette.exceptions import HTTPException as StarletteHTTPException

from broker.api.asgi import ASGIApp, Message, Receive, Scope, Send
from broker.api.problems import problem_bytes
from broker.core import randomness
from broker.errors import BadRequest, BrokerError, HeaderTooLarge, PayloadTooLarge

_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")


_NUL_TEXT = "The request path or query string contains a NUL character."


def _has_nul(scope: Scope) -> bool:
    """Whether the path or query string carries a NUL, raw or percent-encoded.

    PostgreSQL refuses NUL in text, so a NUL reaching a query is a 500 there (where
    SQLite stores it); no identifier or parameter of the API may hold one.
    """
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
    query: bytes = scope.get("query_string", b"")
    return (
        "\x00" in scope["path"]
        or any(b"\x00" in part or b"%00" in part for part in (raw_path, query))
    )


def new_request_id() -> str:
    return "req_" + randomness.token_hex(12)


class _BodyTooLarge(StarletteHTTPException):
    """Raised while a body streams in; an HTTPException so body parsing lets it through."""

    def __init__(self) -> None:
        super().__init__(413)


class RequestGuard:
    """Assigns `X-Request-Id`, caps header and body sizes (431, 413), refuses a NUL in the
    path or query string (400) before routing, and stamps every answer."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, max_header_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id, declared_length, oversize = self._scan_headers(scope)
        if oversize:
            await self._refuse(scope, send, HeaderTooLarge(), request_id)
            return
        scope.setdefault("state", {})["request_id"] = request_id
        if _has_nul(scope):
            await self._refuse(scope, send, BadRequest(_NUL_TEXT), request_id)
            return
        if declared_length is not None and (
            not declared_length.isdigit() or int(declared_length) > self.max_body_bytes
        ):
            await self._refuse(scope, send, PayloadTooLarge(self._limit_text()), request_id)
            return
        await self._forward(scope, receive, send, request_id)

    def _scan_headers(self, scope: Scope) -> tuple[str, bytes | None, bool]:
        """The request id to use, the declared body length, and whether a header is oversize."""
        request_id = None
        declared_length = None
        oversize = False
        for name, value in scope["headers"]:
            if name == b"x-request-id" and _REQUEST_ID.match(value):
                request_id = value.decode()
            elif name == b"content-length":
                declared_length = value
            elif len(value) > self.max_header_bytes:
                oversize = True
        return request_id or new_request_id(), declared_length, oversize

    async def _forward(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise _BodyTooLarge
            return message

        async def stamped_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, limited_receive, stamped_send)
        except _BodyTooLarge:
            if not started:
                await self._refuse(scope, send, PayloadTooLarge(self._limit_text()), request_id)

    def _limit_text(self) -> str:
        return f"The request body is larger than {self.max_body_bytes} bytes."

    async def _refuse(
        self, scope: Scope, send: Send, error: BrokerError, request_id: str | None
    ) -> None:
        request_id = request_id or new_request_id()
        body = problem_bytes(error, instance=f"urn:sluis:request:{request_id}")
        headers = [
            (b"content-type", b"application/problem+json"),
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", request_id.encode()),
            (b"connection", b"close"),
        ]
        headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
        await send({"type": "http.response.start", "status": error.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
