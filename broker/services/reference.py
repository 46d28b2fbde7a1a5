"""Reference data of the live pack, as partners see it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from broker.clock import rfc3339
from broker.core.policy.model import Rule
from broker.runtime import LivePolicy

SEE_ALL_RULES = frozenset({"privacy_officer", "admin"})


def organisations(live: LivePolicy) -> list[dict[str, Any]]:
    pack = live.pack
    return [
        {"id": org_id, "name": org.name, "groups": pack.groups_of(org_id)}
        for org_id, org in sorted(pack.organisations.items())
    ]


def purposes(live: LivePolicy) -> list[dict[str, Any]]:
    return [
        {"id": pid, "title": p.title, "requires_case_reference": p.requires_case_reference}
        for pid, p in sorted(live.pack.purposes.items())
    ]


def legal_bases(live: LivePolicy) -> list[dict[str, Any]]:
    return [
        {"id": bid, "title": b.title, "criminal_data": b.criminal_data}
        for bid, b in sorted(live.pack.legal_bases.items())
    ]


def categories(live: LivePolicy) -> list[dict[str, Any]]:
    return [
        {
            "id": cid,
            "title": c.title,
            "subject_types": list(c.subject_types),
            "legal_bases": list(c.legal_bases),
            "contributors": list(c.contributors),
            "retention_days": c.retention_days,
            "attributes": {
                name: spec.model_dump(mode="json", exclude_none=True)
                for name, spec in c.attributes.items()
            },
        }
        for cid, c in sorted(live.pack.categories.items())
    ]


def _concerns(live: LivePolicy, rule: Rule, org: str) -> bool:
    pack = live.pack
    recipients = set().union(*(pack.expand(name) for name in rule.recipients))
    if org in recipients:
        return True
    if rule.sources is None:
        sources = {c for cat in rule.categories for c in pack.categories[cat].contributors}
    else:
        sources = set().union(*(pack.expand(name) for name in rule.sources))
    return org in sources


def policy(live: LivePolicy, org: str, roles: frozenset[str]) -> dict[str, Any]:
    """The live pack's identity and the rules this caller may read."""
    see_all = bool(roles & SEE_ALL_RULES)
    rules = [
        rule.model_dump(mode="json", exclude_none=True)
        for rule in live.pack.rules
        if see_all or _concerns(live, rule, org)
    ]
    return {
        "pack": live.pack.name,
        "version": live.pack.version,
        "hash": live.pack.hash,
        "loaded_at": rfc3339(live.loaded_at),
        "rules": rules,
    }


def explain(
    live: LivePolicy,
    recipient: str,
    purpose: str,
    category: str,
    source: str,
    legal_basis: str | None,
    now: datetime,
) -> dict[str, Any]:
    """A dry run over the live pack; discloses nothing."""
    return live.compiled.explain(recipient, purpose, category, source, legal_basis, now).as_dict()
