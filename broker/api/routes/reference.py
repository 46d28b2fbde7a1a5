"""Reference data of the live pack, and the policy dry run (any authenticated client)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from broker.api.deps import RuntimeDep
from broker.api.routing import StrictJSONRoute
from broker.auth.deps import CallerDep
from broker.clock import utcnow
from broker.schemas import (
    CategoryPage,
    ExplainIn,
    ExplainOut,
    LegalBasisPage,
    OrganisationPage,
    PolicyOut,
    PurposePage,
)
from broker.services import reference

router = APIRouter(route_class=StrictJSONRoute, prefix="/v1", tags=["reference"])


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
