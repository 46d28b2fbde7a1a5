"""Reference data of the live pack, as partners see it.

A partner sees the rules in which it is a recipient or a source, but not the sources of a
rule that hides them from it (`reveal_source: false`, it being a recipient), and the dry
run does not answer it, source by source, where a rule hides the source from the
recipient asked about: the answers would differ by source and so name it
(`broker.core.policy.concealment`). Privacy officers and administrators see everything.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from broker.clock import rfc3339
from broker.core.policy.concealment import concealment
from broker.core.policy.model import Rule
from broker.errors import Forbidden
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


def _recipients(live: LivePolicy, rule: Rule) -> set[str]:
    return set().union(*(live.pack.expand(name) for name in rule.recipients))


def _concerns(live: LivePolicy, rule: Rule, org: str) -> bool:
    pack = live.pack
    if org in _recipients(live, rule):
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
        _shown(live, rule, org, see_all)
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


def _shown(live: LivePolicy, rule: Rule, org: str, see_all: bool) -> dict[str, Any]:
    """A rule as `org` may read it: without the sources it hides from `org`."""
    shown = rule.model_dump(mode="json", exclude_none=True)
    if not see_all and not rule.reveal_source and org in _recipients(live, rule):
        shown.pop("sources", None)
    return shown


def explain(
    live: LivePolicy,
    recipient: str,
    purpose: str,
    category: str,
    source: str,
    legal_basis: str | None,
    now: datetime,
    *,
    roles: frozenset[str],
) -> dict[str, Any]:
    """A dry run over the live pack; discloses nothing. To a caller without a role that sees
    every rule it is 403 where a rule hides the source of the category from the recipient
    for the purpose, whatever the source asked about."""
    if not roles & SEE_ALL_RULES and (
            (recipient, purpose, category) in concealment(live.pack).hidden_from):
        raise Forbidden("A rule hides the sources of this category from the recipient; the "
                        "dry run does not answer per source. GET /v1/policy lists the rule.")
    return live.compiled.explain(recipient, purpose, category, source, legal_basis, now).as_dict()
