"""Administration of the live broker: policy reload and key rotation (role `admin`)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from broker.api.deps import RequestIdDep, RuntimeDep
from broker.api.routing import StrictJSONRoute
from broker.auth.actors import actor_of
from broker.auth.deps import Caller, require
from broker.schemas import ReloadOut, Strict
from broker.services import packs, rotation

router = APIRouter(route_class=StrictJSONRoute, prefix="/v1/admin", tags=["administration"])
Admin = Annotated[Caller, Depends(require("admin"))]


class RotateIn(Strict):
    key: Literal["pseudonym", "signing", "checkpoint", "master"]


class RotateOut(BaseModel):
    key: str
    version: int


@router.post("/policy/reload", response_model=ReloadOut)
def reload_policy(runtime: RuntimeDep, caller: Admin, request_id: RequestIdDep) -> ReloadOut:
    """Load the pack folder again and make it live; 422 with its errors leaves the live pack."""
    actor = actor_of(runtime.keys, caller)
    new, previous = packs.reload_from_dir(runtime, None, actor=actor, request_id=request_id)
    return ReloadOut(hash=new, previous_hash=previous)


@router.post("/keys/rotate", response_model=RotateOut)
def rotate_key(
    body: RotateIn, runtime: RuntimeDep, caller: Admin, request_id: RequestIdDep
) -> RotateOut:
    """Add a new version of a key; old versions stay to read and verify what they protected."""
    actor = actor_of(runtime.keys, caller)
    version = rotation.rotate(runtime, body.key, actor=actor, request_id=request_id)
    return RotateOut(key=body.key, version=version)
