"""Administration (role `admin`): clients. Policy reload and key rotation join this router."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from broker.api.deps import RequestIdDep, RuntimeDep
from broker.api.routing import StrictJSONRoute
from broker.auth import clients
from broker.auth.actors import Actor, client_actor
from broker.auth.deps import Caller, require
from broker.runtime import Runtime
from broker.schemas.text import LINE

router = APIRouter(route_class=StrictJSONRoute, prefix="/v1/admin", tags=["administration"])
Admin = Annotated[Caller, Depends(require("admin"))]
# Not pattern-checked here: an id that cannot exist is simply not found (404, not 422).
ClientId = Annotated[str, Path(max_length=100)]
Role = Literal["contributor", "requester", "privacy_officer", "admin"]


class PublicJwkIn(BaseModel):
    """An EC P-256 public key (RFC 7517); a private part (`d`) is refused."""

    model_config = ConfigDict(extra="forbid", strict=True)

    kty: Literal["EC"]
    crv: Literal["P-256"]
    x: str = Field(pattern=r"^[A-Za-z0-9_-]{43}$")
    y: str = Field(pattern=r"^[A-Za-z0-9_-]{43}$")
    kid: str | None = Field(default=None, max_length=100)
    use: Literal["sig"] | None = None
    alg: Literal["ES256"] | None = None


class ClientIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    org: str = Field(pattern=clients.ORG_PATTERN, max_length=64)
    name: Annotated[str, Field(min_length=1, max_length=200), LINE]
    kind: Literal["system", "personal"] = "system"
    roles: list[Role] = Field(min_length=1, max_length=4)
    public_jwk: PublicJwkIn | None = None


class ClientOut(BaseModel):
    id: str
    org: str
    name: str
    kind: str
    roles: list[str]
    authentication: Literal["client_secret", "private_key_jwt"]
    created_at: str
    revoked_at: str | None


class ClientCreatedOut(ClientOut):
    client_secret: str | None = Field(
        default=None, description="Shown once, only when no public key was registered."
    )


class ClientPage(BaseModel):
    items: list[ClientOut]
    next_cursor: str | None


def _actor(runtime: Runtime, caller: Caller) -> Actor:
    return client_actor(runtime.keys, client_id=caller.client_id, org=caller.org,
                        roles=caller.roles, acting_user=caller.acting_user)


@router.post("/clients", status_code=201, response_model=ClientCreatedOut)
def create_client(
    body: ClientIn, runtime: RuntimeDep, caller: Admin, request_id: RequestIdDep
) -> JSONResponse:
    """Register a client; its secret is in this answer only (when no key is given)."""
    client, secret = clients.create_client(
        runtime, org=body.org, name=body.name, kind=body.kind, roles=body.roles,
        public_jwk=body.public_jwk.model_dump(exclude_none=True) if body.public_jwk else None,
        actor=_actor(runtime, caller), request_id=request_id,
    )
    answer = ClientCreatedOut(**clients.describe(client), client_secret=secret)
    return JSONResponse(answer.model_dump(mode="json"), status_code=201,
                        headers={"Cache-Control": "no-store"})


@router.get("/clients", response_model=ClientPage)
def list_clients(
    runtime: RuntimeDep,
    _caller: Admin,
    org: Annotated[str | None, Query(pattern=clients.ORG_PATTERN, max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(pattern=clients.CLIENT_ID_PATTERN)] = None,
) -> dict[str, Any]:
    """Clients by id, revoked ones included; `next_cursor` pages on."""
    found = clients.list_clients(runtime.engine, org=org, after=cursor, limit=limit + 1)
    page = found[:limit]
    return {
        "items": [clients.describe(c) for c in page],
        "next_cursor": page[-1].id if len(found) > limit else None,
    }


@router.delete("/clients/{client_id}", status_code=204, response_class=Response)
def revoke_client(
    client_id: ClientId, runtime: RuntimeDep, caller: Admin, request_id: RequestIdDep
) -> Response:
    """Revoke a client: its tokens stop working on their next request."""
    clients.revoke_client(runtime, client_id, actor=_actor(runtime, caller),
                          request_id=request_id)
    return Response(status_code=204)
