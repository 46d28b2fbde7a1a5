"""What else names a source that a rule hides (`reveal_source: false`).

A recipient that is not told a signal's source can still be told it by what surrounds the
signal: a legal basis that only one organisation's signals can carry in the pack (a police
law names the police), or the id of a rule that covers a single source. So an answer item
whose rule hides the source also leaves out its legal basis where the basis has a single
possible source, and its rule where the rule covers a single possible source; a partner's
view of its own audit entries leaves out the same (`broker.audit.partner_view`).

What the pack itself betrays no answer can leave out: a category that one organisation
alone contributes (the recipient reads the contributors in `GET /v1/categories`), a
single-source legal basis a hiding rule names, or a hiding rule whose id or description
names the source (`GET /v1/policy` shows them). `betrayals` finds those for the lint.

The possible sources of a legal basis are the contributors of the categories that list
it; of a rule, its `sources` (every contributor when it names none) that contribute one of
its categories. Pure code; a pack's concealment is computed once per pack hash.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Final

from broker.core.policy.load import Pack
from broker.core.policy.model import Rule

__all__ = ["Concealment", "betrayals", "cached_concealment", "concealment"]

_CACHED_PACKS: Final = 32


@dataclass(frozen=True, slots=True)
class Concealment:
    """What answers under one pack leave out of the items whose rule hides the source.

    A rule id the pack does not know counts as hiding everything (fail closed), so
    `Concealment()` withholds every source, rule and legal basis.
    """

    rules: frozenset[str] = frozenset()
    """Every rule id of the pack."""
    revealing: frozenset[str] = frozenset()
    """Rules that show the source to the recipient."""
    anonymous: frozenset[str] = frozenset()
    """Hiding rules with a single possible source: their id is left out."""
    telling_bases: frozenset[str] = frozenset()
    """Legal bases with a single possible source: left out where the rule hides it."""
    hidden_from: frozenset[tuple[str, str, str]] = frozenset()
    """(recipient, purpose, category) some rule hides the source of."""

    def shows_source(self, rule: str | None) -> bool:
        return rule in self.revealing

    def shown_rule(self, rule: str | None) -> str | None:
        """The rule id as the recipient may read it (None: left out)."""
        if rule in self.revealing or (rule in self.rules and rule not in self.anonymous):
            return rule
        return None

    def shown_basis(self, rule: str | None, basis: str | None) -> str | None:
        """The legal basis of an item of `rule` as the recipient may read it."""
        if rule in self.revealing or (rule in self.rules and basis not in self.telling_bases):
            return basis
        return None


def _expand(pack: Pack, names: Iterable[str]) -> set[str]:
    found: set[str] = set()
    for name in names:
        found |= pack.expand(name)
    return found


def contributors(pack: Pack, category: str) -> set[str]:
    """The organisations that may submit signals of `category`."""
    return _expand(pack, pack.categories[category].contributors)


def basis_sources(pack: Pack) -> dict[str, set[str]]:
    """Per legal basis, the organisations whose signals can carry it."""
    found: dict[str, set[str]] = {basis: set() for basis in pack.legal_bases}
    for category_id, category in pack.categories.items():
        for basis in category.legal_bases:
            found.setdefault(basis, set()).update(contributors(pack, category_id))
    return found


def rule_sources(pack: Pack, rule: Rule) -> set[str]:
    """The organisations whose signals `rule` can release."""
    possible: set[str] = set()
    for category in rule.categories:
        possible |= contributors(pack, category)
    return possible if rule.sources is None else possible & _expand(pack, rule.sources)


def _compute(pack: Pack) -> Concealment:
    bases = basis_sources(pack)
    hiding = [rule for rule in pack.rules if not rule.reveal_source]
    return Concealment(
        rules=frozenset(rule.id for rule in pack.rules),
        revealing=frozenset(rule.id for rule in pack.rules if rule.reveal_source),
        anonymous=frozenset(rule.id for rule in hiding if len(rule_sources(pack, rule)) <= 1),
        telling_bases=frozenset(basis for basis, orgs in bases.items() if len(orgs) <= 1),
        hidden_from=frozenset(
            (recipient, purpose, category)
            for rule in hiding for recipient in _expand(pack, rule.recipients)
            for purpose in rule.purposes for category in rule.categories),
    )


_cache: dict[str, Concealment] = {}
_lock = threading.Lock()


def cached_concealment(pack_hash: str) -> Concealment | None:
    """The concealment of the pack with this hash, if one was computed already."""
    return _cache.get(pack_hash)


def concealment(pack: Pack) -> Concealment:
    """The pack's concealment (computed once per pack hash: a pack never changes under it)."""
    found = _cache.get(pack.hash)
    if found is None:
        found = _compute(pack)
        with _lock:
            if len(_cache) >= _CACHED_PACKS:
                _cache.clear()
            _cache[pack.hash] = found
    return found


def _named_in_words(pack: Pack, rule: Rule, covered: set[str]) -> Iterator[str]:
    """A hidden source that the rule's own id or description names (`GET /v1/policy`
    shows both to the recipient)."""
    recipients = _expand(pack, rule.recipients)
    for source in sorted(covered - recipients):
        said = re.compile("|".join(
            rf"\b{re.escape(name)}\b" for name in (source, pack.organisations[source].name)),
            re.IGNORECASE)
        if said.search(rule.id):
            yield f"its id names {source}"
        if said.search(rule.description):
            yield f"its description names {source}"


def betrayals(pack: Pack) -> Iterator[tuple[int, list[str]]]:
    """(rule index, what names the source) for each hiding rule the pack itself betrays to
    a recipient: a category of the rule, or a legal basis it names, that has a single
    possible source other than the recipient, while the rule hides a source from it."""
    bases: Mapping[str, set[str]] = basis_sources(pack)
    for index, rule in enumerate(pack.rules):
        if rule.reveal_source:
            continue
        covered = rule_sources(pack, rule)
        found: list[str] = []
        for recipient in sorted(_expand(pack, rule.recipients)):
            if not covered - {recipient}:
                continue  # the rule hides nothing from this recipient
            for category in rule.categories:
                others = contributors(pack, category) - {recipient}
                if len(others) == 1 and covered & others:
                    found.append(f"category {category} has one possible source "
                                 f"({next(iter(others))})")
            for basis in rule.legal_bases or ():
                others = bases.get(basis, set()) - {recipient}
                if len(others) == 1 and covered & others:
                    found.append(f"legal basis {basis} has one possible source "
                                 f"({next(iter(others))})")
        found.extend(_named_in_words(pack, rule, covered))
        if found:
            yield index, list(dict.fromkeys(found))
