"""Purpose binding shared by disclosures, hits and area summaries (docs/architecture.md).

Every request for signals names a purpose of the live pack, with a case reference when the
purpose demands one, and a rule must name the caller for that purpose. Refusals of an
unknown or not-allowed purpose are audited (`refusal`) before the error leaves (docs/security.md
rows 19 and 20). The abuse limits are applied first, so refused requests cannot flood the log.

The checks do not write the refusal's entry themselves: they raise `AuditedRefusal`, which
carries the entry and the error, and the caller records the one and then raises the other.
A request served on the event loop can so await the entry instead of blocking the loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from broker.audit.drafts import draft as entry_draft
from broker.auth.actors import Actor
from broker.errors import BrokerError, FieldProblem, PolicyRefused, ValidationFailed
from broker.runtime import LivePolicy
from broker.services.ratelimit import UNKNOWN_PURPOSE, AbuseLimits


class AuditedRefusal(Exception):  # noqa: N818 - not an error itself: it carries one
    """A refusal whose audit entry must be durable before `error` reaches the caller."""

    def __init__(self, entry: dict[str, Any], error: BrokerError) -> None:
        super().__init__(error.detail)
        self.entry = entry
        self.error = error


@dataclass(frozen=True, slots=True)
class Asker:
    """Who asks, for which purpose and case: one request's context."""

    actor: Actor
    client_id: str
    org: str
    purpose: str
    case_reference: str | None
    request_id: str | None


def draft(
    asker: Asker,
    live: LivePolicy,
    action: str,
    *,
    outcome: str = "granted",
    reason: str | None = None,
    items: Sequence[dict[str, Any]] = (),
    objects: dict[str, Any] | None = None,
    confidential_until: date | None = None,
    purpose_known: bool = True,
) -> dict[str, Any]:
    """The audit entry draft (`broker.audit.drafts.draft`) of an act of `asker` decided
    under `live`."""
    # A purpose the pack does not know is caller input: it stays out of the log.
    return entry_draft(
        action, asker.actor, outcome=outcome, reason=reason, request_id=asker.request_id,
        pack=live.pack, purpose=asker.purpose if purpose_known else None,
        case_reference=asker.case_reference if purpose_known else None, items=items,
        objects=objects, confidential_until=confidential_until)


def admit(limits: AbuseLimits, live: LivePolicy, asker: Asker) -> None:
    """The request rate limit of (client, purpose); 429 when exhausted."""
    known = asker.purpose in live.pack.purposes
    limits.admit(asker.client_id, asker.purpose if known else UNKNOWN_PURPOSE)


def check_purpose(live: LivePolicy, asker: Asker, request: str) -> None:
    """422 for an unknown purpose (audited) or a missing case reference; 403 (audited) when no
    rule names the caller for the purpose."""
    purpose = live.pack.purpose(asker.purpose)
    if purpose is None:
        raise AuditedRefusal(
            draft(asker, live, "refusal", outcome="refused", reason="unknown_purpose",
                  objects={"request": request}, purpose_known=False),
            ValidationFailed("Unknown purpose.",
                             errors=[FieldProblem(("body", "purpose"), "unknown purpose")]),
        )
    if not live.compiled.allows_purpose(asker.org, asker.purpose):
        raise AuditedRefusal(
            draft(asker, live, "refusal", outcome="refused", reason="purpose_not_allowed",
                  objects={"request": request}),
            PolicyRefused("No rule allows your organisation this purpose."),
        )
    if purpose.requires_case_reference and not asker.case_reference:
        raise ValidationFailed(
            "This purpose requires a case reference.",
            errors=[FieldProblem(("body", "case_reference"), "required for this purpose")],
        )


def check_subject_count(
    limits: AbuseLimits, live: LivePolicy, asker: Asker, subject: bytes
) -> None:
    """Count a subject asked about; over the hourly limit: an audited alert, then 429."""
    if not limits.ask_about(asker.client_id, subject):
        return
    raise AuditedRefusal(
        draft(asker, live, "alert", outcome="refused", reason="too_many_subjects",
              objects={"distinct_subjects_per_hour": limits.subjects_per_hour}),
        limits.over_limit(asker.client_id),
    )


def check_categories(live: LivePolicy, categories: Sequence[str] | None) -> None:
    """422 naming each category of a filter that the pack does not know."""
    problems = [
        FieldProblem(("body", "query", "categories", i), "unknown category")
        for i, category in enumerate(categories or ())
        if live.pack.category(category) is None
    ]
    if problems:
        raise ValidationFailed("Unknown category.", errors=problems)
