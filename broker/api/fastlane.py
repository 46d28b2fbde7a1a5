"""A short way through the app for the busiest POST routes, with the same answers.

A disclosure passes FastAPI's router, its dependency solver, its body reader and the
middleware between them on every call, and on the broker's busiest route that path costs
more than deciding the disclosure (bench/RESULTS.md). `FastLane` sits inside our own
middleware (so request ids, limits, the access log and metrics are as for any request)
and serves the routes it was given directly: it reads the body, parses it strictly,
validates it with the route's model, authenticates, and calls the route's own service.

It takes only the plain case and hands everything else, unchanged, to the full stack:
a content type other than exactly `application/json`, a repeated header it reads, a
body that is not strict JSON or does not validate, a failed authentication. Nothing has
happened by then (these checks write nothing), so the full stack answers exactly as it
would have, with the body replayed. From the service on, the lane answers itself: a
`BrokerError` is the same problem answer the app's handlers give; anything else goes up
to the app's outermost handler, as from a route.

A lane serves a route the app includes (checked when the lane is installed) and marks
the request with that route, as the router would: the OpenAPI document, the access log
and the metrics see the route as before.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute, APIRouter
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from broker.api.asgi import ASGIApp, Message, Receive, Scope, Send
from broker.api.problems import problem_response
from broker.api.routing import strict_loads
from broker.auth.deps import Caller
from broker.errors import BrokerError

Authenticate = Callable[[Request], Awaitable[Caller]]
Serve = Callable[[Request, Caller, Any, str | None], Awaitable[Response]]

_JSON = b"application/json"
_READS = (b"content-type", b"idempotency-key")


@dataclass(frozen=True, slots=True)
class Lane:
    """One POST route served directly: its body model, its caller check, what serves it."""

    path: str
    model: type[BaseModel]
    authenticate: Authenticate
    serve: Serve


def route_path(scope: Scope) -> str:
    """The path the router matches: behind a proxy's `root_path`, the part after it (as
    Starlette's router reads it; a path outside the root path is matched as it is)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if not root or not path.startswith(root):
        return path
    if path == root:
        return ""
    return path[len(root):] if path[len(root)] == "/" else path


class _NotPlain(Exception):
    """The request is not the plain case: the full stack answers it."""


def _headers(scope: Scope) -> dict[bytes, bytes]:
    """The headers the lane reads, each present at most once (else `_NotPlain`)."""
    found: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        if name in _READS:
            if name in found:
                raise _NotPlain
            found[name] = value
    if found.get(b"content-type") != _JSON:
        raise _NotPlain
    return found


class _Tape:
    """Reads a request's body through `receive`, keeping every message (and what
    `receive` raised), so the full stack can be given exactly the same."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._messages: list[Message] = []
        self._raised: BaseException | None = None

    async def body(self) -> bytes:
        """The whole body; `_NotPlain` when the client went away or `receive` raised."""
        chunks = []
        while True:
            try:
                message = await self._receive()
            except Exception as exc:  # noqa: BLE001 - replayed to the full stack
                self._raised = exc
                raise _NotPlain from None
            self._messages.append(message)
            if message["type"] != "http.request":
                raise _NotPlain
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                return b"".join(chunks)

    def replay(self) -> Receive:
        """A `receive` giving what was read, then what was raised, then what follows."""
        pending = list(self._messages)
        raised = self._raised
        receive = self._receive

        async def replayed() -> Message:
            nonlocal raised
            if pending:
                return pending.pop(0)
            if raised is not None:
                exc, raised = raised, None
                raise exc
            return await receive()

        return replayed


class FastLane:
    """Serves the given lanes directly, and everything else through `app`."""

    def __init__(self, app: ASGIApp, *, routes: dict[str, tuple[Lane, APIRoute]]) -> None:
        self.app = app
        self.lanes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = (
            self.lanes.get(route_path(scope))
            if scope["type"] == "http" and scope["method"] == "POST"
            else None
        )
        if found is None:
            await self.app(scope, receive, send)
            return
        lane, route = found
        try:
            headers = _headers(scope)
        except _NotPlain:
            await self.app(scope, receive, send)
            return
        tape = _Tape(receive)
        try:
            body = await tape.body()
            request = Request(scope, receive)
            parsed = lane.model.model_validate(strict_loads(body))
            caller = await lane.authenticate(request)
        except (_NotPlain, json.JSONDecodeError, ValidationError, BrokerError):
            await self.app(scope, tape.replay(), send)
            return
        scope["route"], scope["endpoint"], scope["path_params"] = route, route.endpoint, {}
        key = headers.get(b"idempotency-key")
        try:
            response = await lane.serve(request, caller, parsed,
                                        None if key is None else key.decode("latin-1"))
        except BrokerError as error:
            response = problem_response(error, request)
        await response(scope, receive, send)


def install(app: FastAPI, router: APIRouter, lanes: list[Lane]) -> None:
    """Serve `lanes`, routes of `router`, in the fast lane. `router` must be included in
    `app` already; call this before adding our other middleware (the lane is innermost)."""
    if not any(getattr(route, "original_router", route) is router for route in app.routes):
        raise LookupError("the fast lane serves routes of a router the app does not include")
    routes: dict[str, tuple[Lane, APIRoute]] = {}
    for lane in lanes:
        found = [route for route in router.routes if isinstance(route, APIRoute)
                 and route.path == lane.path and "POST" in (route.methods or ())]
        if len(found) != 1:
            raise LookupError(f"no one POST route at {lane.path} to serve in the fast lane")
        routes[lane.path] = (lane, found[0])
    app.add_middleware(FastLane, routes=routes)
