"""What a draft pack would have changed: the answers of replayed requests under two packs,
compared and counted (docs/policy.md, "Impact of a draft"). Pure: the caller reads the
signals and decides them under each pack; this module only compares.

A report holds counts and rule ids only: no value, no identifier, no signal id leaves it.
Per (recipient, purpose) it counts the requests replayed and affected; per rule within,
the requests it decided something in (under either pack), those where something it
decides changed, the signals gained (attributed to the draft's rule) and lost (to the live
rule), each field whose transform changes on a signal released under both (attributed to
the draft's rule, as `before -> after`, "dropped" where a rule names no transform), the hit
checks that flip, and the area-summary cells that cross the suppression threshold
(attributed to every rule deciding a signal of the cell under either pack).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from broker.core.policy.diff import DROPPED

KINDS: Final = ("disclosure", "hit", "area_summary")


@dataclass(frozen=True, slots=True)
class Grant:
    """The rule that decides one signal under one pack, with its field transforms as the
    pack writes them."""

    rule: str
    fields: Mapping[str, str | dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Answer:
    """What one request got under one pack: the signals released (a disclosure) or counted
    (a hit check, an area summary), each with its rule; for an area summary, per category
    whether its cell is published (False: suppressed, or not in the answer at all)."""

    signals: Mapping[str, Grant] = field(default_factory=dict)
    cells: Mapping[str, bool] = field(default_factory=dict)
    cell_rules: Mapping[str, frozenset[str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Replayed:
    """One journaled request, answered under the live pack (`before`) and the draft."""

    kind: str
    recipient: str
    purpose: str
    before: Answer
    after: Answer


def _text(spec: str | dict[str, Any]) -> str:
    """A transform as one comparable text: its name, or its JSON form."""
    return spec if isinstance(spec, str) else json.dumps(spec, sort_keys=True)


def field_changes(before: Grant, after: Grant) -> list[tuple[str, str, str]]:
    """(path, before, after) of every field whose transform differs between two grants."""
    out = []
    for path in sorted(set(before.fields) | set(after.fields)):
        old = _text(before.fields[path]) if path in before.fields else DROPPED
        new = _text(after.fields[path]) if path in after.fields else DROPPED
        if old != new:
            out.append((path, old, new))
    return out


@dataclass(slots=True)
class RuleImpact:
    """What changes, within one recipient and purpose, in what one rule decides."""

    rule: str
    requests: int = 0
    affected: int = 0
    signals_gained: int = 0
    signals_lost: int = 0
    hits_gained: int = 0
    hits_lost: int = 0
    cells_published: int = 0
    cells_suppressed: int = 0
    fields: dict[tuple[str, str, str], int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule, "requests": self.requests, "affected": self.affected,
            "signals_gained": self.signals_gained, "signals_lost": self.signals_lost,
            "hits_gained": self.hits_gained, "hits_lost": self.hits_lost,
            "cells_published": self.cells_published, "cells_suppressed": self.cells_suppressed,
            "fields": [{"path": p, "before": b, "after": a, "signals": n}
                       for (p, b, a), n in sorted(self.fields.items())],
        }


@dataclass(slots=True)
class GroupImpact:
    """The requests of one recipient for one purpose, and per rule what changes."""

    recipient: str
    purpose: str
    requests: int = 0
    affected: int = 0
    rules: dict[str, RuleImpact] = field(default_factory=dict)

    def rule(self, rule_id: str) -> RuleImpact:
        found = self.rules.get(rule_id)
        if found is None:
            found = self.rules[rule_id] = RuleImpact(rule_id)
        return found

    def as_dict(self) -> dict[str, Any]:
        return {"recipient": self.recipient, "purpose": self.purpose,
                "requests": self.requests, "affected": self.affected,
                "rules": [self.rules[r].as_dict() for r in sorted(self.rules)]}


TOTALS: Final = ("requests", "affected", "signals_gained", "signals_lost", "field_changes",
                 "hits_flipped", "cells_crossed")


@dataclass(slots=True)
class Impact:
    """The comparison of every replayed request, added one by one (`add`)."""

    groups: dict[tuple[str, str], GroupImpact] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TOTALS, 0))

    def add(self, replayed: Replayed) -> None:
        """Count one replayed request."""
        key = (replayed.recipient, replayed.purpose)
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = GroupImpact(*key)
        group.requests += 1
        self.totals["requests"] += 1
        changed = _compare(replayed, group, self.totals)
        for rule_id in _deciding(replayed):
            impact = group.rule(rule_id)
            impact.requests += 1
            impact.affected += rule_id in changed
        if changed:
            group.affected += 1
            self.totals["affected"] += 1

    def extend(self, replayed: Iterable[Replayed]) -> Impact:
        for one in replayed:
            self.add(one)
        return self

    def as_dict(self) -> dict[str, Any]:
        return {"totals": dict(self.totals),
                "groups": [self.groups[k].as_dict() for k in sorted(self.groups)]}


def _deciding(replayed: Replayed) -> set[str]:
    """The rules that decide a signal of the request under either pack."""
    rules = {g.rule for g in replayed.before.signals.values()}
    return rules | {g.rule for g in replayed.after.signals.values()}


def _compare(replayed: Replayed, group: GroupImpact, totals: dict[str, int]) -> set[str]:
    """Count what changes for one request; the rules to which a change is attributed."""
    if replayed.kind == "disclosure":
        return _released(replayed.before, replayed.after, group, totals)
    if replayed.kind == "hit":
        return _hit(replayed.before, replayed.after, group, totals)
    return _cells(replayed.before, replayed.after, group, totals)


def _released(before: Answer, after: Answer, group: GroupImpact, totals: dict[str, int]
              ) -> set[str]:
    changed: set[str] = set()
    for signal_id, grant in after.signals.items():
        old = before.signals.get(signal_id)
        if old is None:
            group.rule(grant.rule).signals_gained += 1
            totals["signals_gained"] += 1
            changed.add(grant.rule)
            continue
        for change in field_changes(old, grant):
            fields = group.rule(grant.rule).fields
            fields[change] = fields.get(change, 0) + 1
            totals["field_changes"] += 1
            changed.add(grant.rule)
    for signal_id, grant in before.signals.items():
        if signal_id not in after.signals:
            group.rule(grant.rule).signals_lost += 1
            totals["signals_lost"] += 1
            changed.add(grant.rule)
    return changed


def _hit(before: Answer, after: Answer, group: GroupImpact, totals: dict[str, int]
         ) -> set[str]:
    if bool(before.signals) == bool(after.signals):
        return set()
    totals["hits_flipped"] += 1
    gained = bool(after.signals)
    changed = {g.rule for g in (after if gained else before).signals.values()}
    for rule_id in changed:
        impact = group.rule(rule_id)
        if gained:
            impact.hits_gained += 1
        else:
            impact.hits_lost += 1
    return changed


def _cells(before: Answer, after: Answer, group: GroupImpact, totals: dict[str, int]
           ) -> set[str]:
    changed: set[str] = set()
    for category in sorted(set(before.cells) | set(after.cells)):
        published = after.cells.get(category, False)
        if before.cells.get(category, False) == published:
            continue
        totals["cells_crossed"] += 1
        rules = before.cell_rules.get(category, frozenset()) | after.cell_rules.get(
            category, frozenset())
        for rule_id in rules:
            impact = group.rule(rule_id)
            if published:
                impact.cells_published += 1
            else:
                impact.cells_suppressed += 1
            changed.add(rule_id)
    return changed
