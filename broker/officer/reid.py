"""Re-identification requests as the officer's pages see them.

Listing, reading one request (its sealed justification included) and deciding go through
the re-identification service, `broker.services.reidentification`, which enforces four eyes and
audits the decision; the API's `GET /v1/reidentifications` lists through it too.
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import Engine, select

from broker.auth.actors import actor_of
from broker.errors import NotFound
from broker.officer.web import SignedIn
from broker.runtime import Runtime
from broker.schemas.disclosures import DecisionIn
from broker.services import reidentification

LIST_LIMIT: Final = 200
STATUSES: Final = ("pending", "approved", "refused", "revealed")
TABLE: Final = reidentification.TABLE


def requests(runtime: Runtime, *, status: str | None = None) -> list[dict[str, Any]]:
    """Requests newest first (at most `LIST_LIMIT`), optionally of one status, each as the
    service lists it (with the requester's `client_id` and the `rule`)."""
    return reidentification.list_requests(runtime, status=status, limit=LIST_LIMIT)[0]


def _views(runtime: Runtime, engine: Engine, query: Any) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [{**reidentification.view(runtime.keys, row), "client_id": row.client_id,
             "rule": row.rule} for row in rows]


def request(runtime: Runtime, request_id: str) -> dict[str, Any]:
    """One request with its justification; NotFound if there is none."""
    found = _views(runtime, runtime.engine,
                   select(TABLE).where(TABLE.c.id == request_id[:64]))
    if not found:
        raise NotFound("No such re-identification request.")
    return found[0]


def decide(runtime: Runtime, officer: SignedIn, request_id: str, *, approve: bool,
           reason: str, request_id_header: str | None) -> dict[str, Any]:
    """Approve or refuse through the service (audited; refused for the requester's own
    person, Conflict once decided)."""
    person = reidentification.Person(actor_of(runtime.keys, officer), officer.client_id,
                                      officer.org, officer.acting_user, request_id_header)
    return reidentification.decide(runtime, person, request_id,
                                   DecisionIn(approve=approve, reason=reason))
