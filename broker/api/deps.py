"""FastAPI dependencies of our own (authentication lives in `broker.auth.deps`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from broker.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def get_request_id(request: Request) -> str | None:
    request_id: str | None = request.scope.get("state", {}).get("request_id")
    return request_id


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
RequestIdDep = Annotated[str | None, Depends(get_request_id)]
