"""Access log and request metrics: one pure ASGI middleware around the whole app.

For each HTTP request it writes one `broker.access` record (request id, method, route
template, status, duration, client id) and counts the request by route template and
status with its latency. The route is the template (`/v1/signals/{signal_id}`), never
the raw path, and never the query string; a path no route matches is counted as
`unmatched`, so nobody can grow the metrics by inventing paths. The client id is what
authentication left in the request's state (`scope["state"]["client_id"]`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any, Final

from fastapi import FastAPI

from broker.api.asgi import ASGIApp, Message, Receive, Scope, Send

BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Upper bounds (seconds) of the latency histogram; `+Inf` is implied."""
METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED: Final = "unmatched"
CLIENT_GONE: Final = 499
"""Status recorded when the client went away before any answer (nginx's convention)."""

access_log = logging.getLogger("broker.access")


@dataclass
class Latency:
    """One histogram: counts per bucket (not cumulative; the last is `+Inf`), sum, count."""

    buckets: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0
    count: int = 0

    def add(self, seconds: float) -> None:
        self.buckets[bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds
        self.count += 1

    def copy(self) -> Latency:
        return Latency(list(self.buckets), self.total, self.count)


@dataclass(frozen=True)
class Snapshot:
    """A consistent copy of the counters, for rendering."""

    requests: dict[tuple[str, str, int], int]
    latency: dict[tuple[str, str], Latency]
    in_flight: int


class Observations:
    """Request counters and latency histograms of one app (one process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, int], int] = {}
        self._latency: dict[tuple[str, str], Latency] = {}
        self._in_flight = 0

    def started(self) -> None:
        with self._lock:
            self._in_flight += 1

    def finished(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route)
        with self._lock:
            self._in_flight -= 1
            self._requests[(method, route, status)] = (
                self._requests.get((method, route, status), 0) + 1
            )
            latency = self._latency.get(key)
            if latency is None:
                latency = self._latency[key] = Latency()
            latency.add(seconds)

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(
                dict(self._requests),
                {k: v.copy() for k, v in self._latency.items()},
                self._in_flight,
            )


def route_template(scope: Scope) -> str:
    """The matched route's path template, or `unmatched`."""
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED


def _request_id(headers: Any) -> str | None:
    for name, value in headers or ():
        if name.lower() == b"x-request-id":
            text: str = value.decode("latin-1")
            return text
    return None


class AccessObserver:
    """Logs and counts every HTTP request; see the module docstring."""

    def __init__(self, app: ASGIApp, *, observations: Observations) -> None:
        self.app = app
        self.observations = observations

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        answer: dict[str, Any] = {"status": None, "request_id": None}

        async def observed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = int(message["status"])
                answer["request_id"] = _request_id(message.get("headers"))
            await send(message)

        self.observations.started()
        try:
            await self.app(scope, receive, observed_send)
        except (asyncio.CancelledError, OSError):
            answer["status"] = answer["status"] or CLIENT_GONE
            raise
        except Exception:
            # Starlette's outermost handler answers 500 for whatever reaches it.
            answer["status"] = answer["status"] or 500
            raise
        finally:
            self._record(scope, answer, time.perf_counter() - started)

    def _record(self, scope: Scope, answer: dict[str, Any], seconds: float) -> None:
        method = scope.get("method", "")
        method = method if method in METHODS else "other"
        route = route_template(scope)
        status = answer["status"] or CLIENT_GONE
        self.observations.finished(method, route, status, seconds)
        if not access_log.isEnabledFor(logging.INFO):
            return
        state = scope.get("state") or {}
        access_log.info(
            "request",
            extra={
                "event": "http_request",
                "request_id": answer["request_id"] or state.get("request_id"),
                "method": method,
                "route": route,
                "status": status,
                "duration_ms": round(seconds * 1000, 3),
                "client_id": state.get("client_id"),
            },
        )


def install(app: FastAPI) -> Observations:
    """Observe every request of `app` (once; later calls return the same counters); the
    counters are served by `broker.api.metrics`, one of `routers()`.

    Call it after the app's other middleware is added, so the observer is outermost and
    also sees the answers those give (413, 431).
    """
    existing: Observations | None = getattr(app.state, "observations", None)
    if existing is not None:
        return existing
    observations = Observations()
    app.state.observations = observations
    app.add_middleware(AccessObserver, observations=observations)
    return observations
