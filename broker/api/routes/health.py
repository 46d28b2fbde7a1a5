"""Operations endpoints without a token: liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from broker import migrate
from broker.api.deps import RuntimeDep
from broker.api.routing import StrictJSONRoute
from broker.db import ping
from broker.schemas import HealthOut, ReadyOut

router = APIRouter(route_class=StrictJSONRoute, tags=["operations"])


@router.get("/healthz", response_model=HealthOut)
def healthz() -> HealthOut:
    """The process is alive."""
    return HealthOut(status="ok")


@router.get("/readyz", response_model=ReadyOut, responses={503: {"model": ReadyOut}})
def readyz(runtime: RuntimeDep) -> JSONResponse:
    """Database reachable and at head, policy and key ring loaded."""
    database = ping(runtime.engine)
    try:
        at_head = database and migrate.current_revision(runtime.engine) == migrate.head_revision()
    except Exception:  # a broken database is "not ready", never a 500
        at_head = False
    checks = {
        "database": database,
        "migrations": at_head,
        "policy": runtime.policy is not None,
        "keys": bool(runtime.keys.signing) and not runtime.keys.unreadable,
        "audit": runtime.audit.healthy,
    }
    ready = all(checks.values())
    body = ReadyOut(status="ready" if ready else "not_ready", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)
