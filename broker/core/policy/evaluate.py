"""Decisions: which rule, if any, releases a signal to a recipient for a purpose.

The pack is compiled once into a dict keyed by (recipient, purpose, category, source, legal
basis), groups expanded and defaults filled in, so a decision is one dictionary look-up and a
few number comparisons (budget: 10 µs per signal; it takes well under one).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

from broker.core.policy.checks import members_of, rule_keys
from broker.core.policy.load import Pack
from broker.core.policy.model import ACCESS_LEVELS, Rule
from broker.core.policy.transform_spec import Transform

__all__ = ["COVENANT_TIMEZONE", "CompiledPolicy", "CompiledRule", "Explanation", "Reach"]

Key = tuple[str, str, str, str, str]
# valid_from / valid_until are calendar days of a Dutch covenant: they begin and end at
# midnight in Dutch time, not UTC.
COVENANT_TIMEZONE = ZoneInfo("Europe/Amsterdam")
_DAY = 86400.0
_REACH_CACHE = 4096
"""Reaches kept per compiled pack (per recipient, purpose, level and minute)."""


def _day_start(day: date) -> float:
    return datetime.combine(day, time(0), tzinfo=COVENANT_TIMEZONE).timestamp()


@dataclass(frozen=True, slots=True, eq=False)
class CompiledRule:
    """A rule ready for evaluation: access as a number, time bounds as epoch seconds."""

    id: str
    access: str
    level: int
    fields: Mapping[str, Transform]
    reveal_source: bool
    min_count: int
    rule: Rule = field(repr=False)
    max_age: float | None = None  # seconds
    not_before: float | None = None  # epoch seconds, inclusive
    not_after: float | None = None  # epoch seconds, exclusive
    unbounded: bool = True  # no time condition at all: skip the clock
    # Per field path, its transform as the pack writes it (what an audit item records),
    # and the paths whose values leave as pseudonyms: the same for every signal released.
    field_data: Mapping[str, str | dict[str, Any]] = field(default_factory=dict)
    pseudonymised: frozenset[str] = frozenset()

    @classmethod
    def from_rule(cls, rule: Rule) -> CompiledRule:
        max_age = None if rule.max_age_days is None else rule.max_age_days * _DAY
        not_before = None if rule.valid_from is None else _day_start(rule.valid_from)
        not_after = (None if rule.valid_until is None
                     else _day_start(rule.valid_until + timedelta(days=1)))
        return cls(
            id=rule.id, access=rule.access, level=ACCESS_LEVELS[rule.access],
            fields=MappingProxyType(dict(rule.fields)), reveal_source=rule.reveal_source,
            min_count=rule.min_count, rule=rule, max_age=max_age, not_before=not_before,
            not_after=not_after,
            unbounded=max_age is None and not_before is None and not_after is None,
            field_data=MappingProxyType({p: t.as_data() for p, t in rule.fields.items()}),
            pseudonymised=frozenset(
                p for p, t in rule.fields.items() if t.kind == "pseudonymise"))

    def grants(self, level: str) -> bool:
        """Whether this rule gives at least `level` (disclose > aggregate > hit)."""
        return self.level >= ACCESS_LEVELS[level]

    def in_force(self, now_ts: float) -> bool:
        """Whether a request at `now_ts` (epoch seconds) lies within valid_from..valid_until."""
        if self.not_before is not None and now_ts < self.not_before:
            return False
        return self.not_after is None or now_ts < self.not_after

    def matches_ts(self, observed_ts: float, now_ts: float) -> bool:
        """Time conditions on epoch seconds: in force now, and the signal not too old."""
        if self.unbounded:
            return True
        if self.not_before is not None and now_ts < self.not_before:
            return False
        if self.not_after is not None and now_ts >= self.not_after:
            return False
        return self.max_age is None or now_ts - observed_ts <= self.max_age


@dataclass(frozen=True, slots=True)
class Reach:
    """Signals one rule in force can release to a request: of this category, source and
    legal basis, observed at or after `since` (epoch seconds; None: of any age). A request
    reads only signals within its reaches, so what it cannot see costs it nothing."""

    category: str
    source: str
    legal_basis: str
    since: float | None


@dataclass(frozen=True, slots=True)
class Explanation:
    """The answer of a dry run: access level, the rule and its transforms, or access "none"."""

    access: str
    rule: str | None = None
    legal_basis: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)
    reveal_source: bool | None = None
    min_count: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """The API form: `{access, rule, fields}`, or `{access: "none"}`."""
        if self.rule is None:
            return {"access": "none"}
        return {"access": self.access, "rule": self.rule, "fields": dict(self.fields)}


class CompiledPolicy:
    """A pack compiled into look-up tables. Immutable; build a new one per loaded pack."""

    def __init__(self, pack: Pack) -> None:
        self.pack = pack
        self.hash = pack.hash
        self.rules: dict[str, CompiledRule] = {
            r.id: CompiledRule.from_rule(r) for r in pack.model.rules}
        by_key: dict[Key, list[CompiledRule]] = {}
        members = members_of(pack.model)
        for rule in pack.model.rules:
            compiled = self.rules[rule.id]
            for key in rule_keys(rule, pack.model, members):
                by_key.setdefault(key, []).append(compiled)
        # Several rules share a key only when their validity terms are disjoint (the loader
        # refuses any other overlap); those few keys go to a slower table.
        self._index: dict[Key, CompiledRule] = {
            k: v[0] for k, v in by_key.items() if len(v) == 1}
        self._windowed: dict[Key, tuple[CompiledRule, ...]] = {
            k: tuple(v) for k, v in by_key.items() if len(v) > 1}
        self._purposes: frozenset[tuple[str, str]] = frozenset(
            (k[0], k[1]) for k in by_key)
        self._categories: dict[tuple[str, str], dict[str, int]] = {}
        self._keys: dict[tuple[str, str], list[tuple[Key, tuple[CompiledRule, ...]]]] = {}
        self._reach: dict[tuple[str, str, str, float], tuple[Reach, ...]] = {}
        for key, rules in sorted(by_key.items()):
            best = self._categories.setdefault((key[0], key[1]), {})
            best[key[2]] = max(best.get(key[2], 0), *(r.level for r in rules))
            self._keys.setdefault((key[0], key[1]), []).append((key, tuple(rules)))

    def decide(self, recipient: str, purpose: str, category: str, source: str,
               legal_basis: str, observed_at: datetime, now: datetime) -> CompiledRule | None:
        """The one rule releasing this signal for this request, or None (default deny).

        `observed_at` and `now` must be timezone-aware.
        """
        rule = self._index.get((recipient, purpose, category, source, legal_basis))
        if rule is None:
            if not self._windowed:
                return None
            return self.decide_ts(recipient, purpose, category, source, legal_basis,
                                  observed_at.timestamp(), now.timestamp())
        if rule.unbounded:
            return rule
        now_ts = now.timestamp()
        if rule.not_before is not None and now_ts < rule.not_before:
            return None
        if rule.not_after is not None and now_ts >= rule.not_after:
            return None
        if rule.max_age is not None and now_ts - observed_at.timestamp() > rule.max_age:
            return None
        return rule

    def decide_ts(self, recipient: str, purpose: str, category: str, source: str,
                  legal_basis: str, observed_ts: float, now_ts: float) -> CompiledRule | None:
        """`decide` with times as epoch seconds, for callers that hold them already."""
        key = (recipient, purpose, category, source, legal_basis)
        rule = self._index.get(key)
        if rule is not None:
            return rule if rule.matches_ts(observed_ts, now_ts) else None
        for candidate in self._windowed.get(key, ()):
            if candidate.matches_ts(observed_ts, now_ts):
                return candidate
        return None

    def allows_purpose(self, recipient: str, purpose: str) -> bool:
        """Whether any rule names this recipient for this purpose (else the request is 403)."""
        return (recipient, purpose) in self._purposes

    def categories_for(self, recipient: str, purpose: str,
                       level: str = "hit") -> frozenset[str]:
        """Categories of which some rule gives this recipient at least `level` for `purpose`."""
        wanted = ACCESS_LEVELS[level]
        best = self._categories.get((recipient, purpose), {})
        return frozenset(c for c, lvl in best.items() if lvl >= wanted)

    def reach(self, recipient: str, purpose: str, level: str, now_ts: float
              ) -> tuple[Reach, ...]:
        """What a request of `recipient` for `purpose` at `now_ts` can see at `level` or
        above: per (category, source, legal basis) with a rule in force, the oldest
        observation its rule accepts. Sorted, so one request shape gives one statement.

        Decided as of the start of `now_ts`'s minute (validity terms begin and end on whole
        minutes, so the rules in force are the same), and kept for that minute: a reach may
        take in signals up to a minute older than their rule accepts, never fewer; each
        request still decides every signal by its rule.
        """
        minute = now_ts // 60 * 60
        key = (recipient, purpose, level, minute)
        found = self._reach.get(key)
        if found is None:
            if len(self._reach) >= _REACH_CACHE:
                self._reach.clear()
            found = self._reach[key] = self._reach_at(recipient, purpose, level, minute)
        return found

    def _reach_at(self, recipient: str, purpose: str, level: str, now_ts: float
                  ) -> tuple[Reach, ...]:
        wanted = ACCESS_LEVELS[level]
        found = []
        for (_, _, category, source, basis), rules in self._keys.get((recipient, purpose), ()):
            for rule in rules:
                if rule.level >= wanted and rule.in_force(now_ts):
                    since = None if rule.max_age is None else now_ts - rule.max_age
                    found.append(Reach(category, source, basis, since))
                    break
        return tuple(found)

    def explain(self, recipient: str, purpose: str, category: str, source: str,
                legal_basis: str | None = None, now: datetime | None = None) -> Explanation:
        """A dry run: the rule that would apply, ignoring the signal's age.

        Without `legal_basis`, every basis of the category is tried and the one giving the
        highest access is reported. With `now`, the rules' validity terms are applied.
        """
        cat = self.pack.category(category)
        if legal_basis is not None:
            bases = [legal_basis]
        else:
            bases = list(cat.legal_bases) if cat is not None else []
        best: tuple[CompiledRule, str] | None = None
        for basis in bases:
            key = (recipient, purpose, category, source, basis)
            candidates = ([self._index[key]] if key in self._index
                          else list(self._windowed.get(key, ())))
            for rule in candidates:
                if now is not None and not rule.in_force(now.timestamp()):
                    continue
                if best is None or rule.level > best[0].level:
                    best = (rule, basis)
        if best is None:
            return Explanation(access="none")
        rule, basis = best
        return Explanation(
            access=rule.access, rule=rule.id, legal_basis=basis,
            fields={p: t.as_data() for p, t in rule.fields.items()},
            reveal_source=rule.reveal_source, min_count=rule.min_count)
