"""Reference data of the live pack and the policy dry run (any authenticated client); the
packs that were live, what changed between them and what a draft would change (privacy
officers and administrators)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query

from broker.api.deps import RequestIdDep, RuntimeDep
from broker.api.routing import StrictJSONRoute
from broker.auth.actors import actor_of
from broker.auth.deps import Caller, CallerDep, require
from broker.clock import utcnow
from broker.runtime import Runtime
from broker.schemas import (
    CategoryPage,
    ExplainIn,
    ExplainOut,
    LegalBasisPage,
    OrganisationPage,
    PolicyOut,
    PurposePage,
)
from broker.schemas.policy_history import PackDiffOut, PackHistoryPage, StoredPackOut
from broker.schemas.policy_impact import ImpactIn, ImpactOut
from broker.services import impact, pack_history, reference
from broker.services.oversight import Reader

router = APIRouter(route_class=StrictJSONRoute, prefix="/v1", tags=["reference"])

Officer = Annotated[Caller, Depends(require("privacy_officer", "admin"))]
PackRef = Annotated[str, Path(max_length=71, description="a pack's hash, or an unambiguous "
                                                        "prefix of six or more hex digits")]
PackQuery = Annotated[str, Query(max_length=71)]


@router.get("/organisations", response_model=OrganisationPage)
def list_organisations(runtime: RuntimeDep, _caller: CallerDep) -> dict[str, Any]:
    return {"items": reference.organisations(runtime.policy)}


@router.get("/purposes", response_model=PurposePage)
def list_purposes(runtime: RuntimeDep, _caller: CallerDep) -> dict[str, Any]:
    return {"items": reference.purposes(runtime.policy)}


@router.get("/legal-bases", response_model=LegalBasisPage)
def list_legal_bases(runtime: RuntimeDep, _caller: CallerDep) -> dict[str, Any]:
    return {"items": reference.legal_bases(runtime.policy)}


@router.get("/categories", response_model=CategoryPage)
def list_categories(runtime: RuntimeDep, _caller: CallerDep) -> dict[str, Any]:
    return {"items": reference.categories(runtime.policy)}


@router.get("/policy", response_model=PolicyOut)
def get_policy(runtime: RuntimeDep, caller: CallerDep) -> dict[str, Any]:
    """The live pack; partners see the rules in which they are recipient or source, without
    the sources a rule hides from them."""
    return reference.policy(runtime.policy, caller.org, caller.roles)


@router.post("/policy/explain", response_model=ExplainOut, response_model_exclude_none=True)
def explain(body: ExplainIn, runtime: RuntimeDep, caller: CallerDep) -> dict[str, Any]:
    """A dry run over the live pack: which rule, which access, which transform per field.
    403 to a partner where a rule hides the category's sources from the recipient (the
    answers would name them, source by source)."""
    return reference.explain(
        runtime.policy,
        body.recipient,
        body.purpose,
        body.category,
        body.source,
        body.legal_basis,
        utcnow(),
        roles=caller.roles,
    )


def _reader(runtime: Runtime, caller: Caller, request_id: str | None) -> Reader:
    return Reader(actor_of(runtime.keys, caller), request_id)


@router.get("/policy/history", response_model=PackHistoryPage)
def policy_history(runtime: RuntimeDep, caller: Officer,
                   request_id: RequestIdDep) -> dict[str, Any]:
    """Every load of a pack, newest first: hash, name, version, when, by whom; the newest
    is the live pack."""
    loads = pack_history.history(runtime, _reader(runtime, caller, request_id))
    return {"items": [load.as_dict() for load in loads]}


@router.get("/policy/packs/{pack_hash}", response_model=StoredPackOut)
def get_pack(pack_hash: PackRef, runtime: RuntimeDep, caller: Officer,
             request_id: RequestIdDep) -> dict[str, Any]:
    """A recorded pack's canonical text, as stored when it was first loaded. 404 for a
    hash no recorded pack has; 422 for a prefix that more than one shares."""
    return pack_history.pack_text(runtime, _reader(runtime, caller, request_id),
                                  pack_hash).as_dict()


@router.get("/policy/diff", response_model=PackDiffOut)
def policy_diff(runtime: RuntimeDep, caller: Officer, request_id: RequestIdDep,
                before: Annotated[str, Query(alias="from", max_length=71)],
                to: PackQuery) -> dict[str, Any]:
    """What changes from one recorded pack to another: rules added, removed and changed,
    catalogue entries, and per recipient, purpose, category, source and legal basis the
    access and each field's transform before and after."""
    return pack_history.diff(runtime, _reader(runtime, caller, request_id), before,
                             to).as_dict()


@router.post("/policy/impact", response_model=ImpactOut)
def policy_impact(body: ImpactIn, runtime: RuntimeDep, caller: Officer,
                  request_id: RequestIdDep) -> dict[str, Any]:
    """What a draft pack would have changed: every journaled request of the period replayed
    under the live pack and the draft, against the signals as they are now, counted per
    recipient, purpose and rule. Counts and rule ids only; recorded as `policy_impact`."""
    return impact.replay_draft(runtime, actor_of(runtime.keys, caller), reference=body.draft,
                               files=body.files, since=body.since,
                               request_id=request_id).as_dict()
