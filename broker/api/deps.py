"""FastAPI dependencies of our own (authentication lives in `broker.auth.deps`).

They are `async def` although they do no I/O: FastAPI sends every plain `def` dependency
through the thread pool, a round trip that costs more than reading an attribute.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from broker.runtime import Runtime


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def get_request_id(request: Request) -> str | None:
    """The request id RequestGuard gave the request (a plain function, for direct use)."""
    request_id: str | None = request.scope.get("state", {}).get("request_id")
    return request_id


async def _request_id(request: Request) -> str | None:
    return get_request_id(request)


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
RequestIdDep = Annotated[str | None, Depends(_request_id)]
