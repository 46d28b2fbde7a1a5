"""What changes between two packs: rules added, removed and changed, the catalogue's entries,
and per (recipient, purpose, category, source, legal basis) the access and each field's
transform before and after.

The access per key is read from the compiled policies, groups expanded and defaults filled
in as the broker decides, so a change made through a group, a category's contributors or
a rule's defaults shows at every key it reaches. A key is listed when what it releases
changes; a grant moved unchanged to a rule of another name is not (the rules added and
removed show the move).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from itertools import zip_longest
from typing import Any

from broker.core.policy.checks import members_of, rule_keys
from broker.core.policy.evaluate import CompiledPolicy, CompiledRule

__all__ = ["AccessChange", "Change", "Grant", "PackDiff", "RuleChange", "SectionChange",
           "diff_packs", "effective_access"]

Key = tuple[str, str, str, str, str]
KEY_NAMES = ("recipient", "purpose", "category", "source", "legal_basis")
CATALOGUE = ("organisations", "groups", "legal_bases", "purposes", "categories")
PACK_SETTINGS = ("description", "covenant_privacy_officer")
NO_ACCESS = "none"
DROPPED = "dropped"
"""A field no transform names: absent from the answer."""


def _day(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


@dataclass(frozen=True, slots=True)
class Grant:
    """What one rule gives at one key: its access, field transforms and conditions."""

    rule: str
    access: str
    fields: Mapping[str, str | dict[str, Any]]
    conditions: Mapping[str, Any]

    @classmethod
    def of(cls, compiled: CompiledRule) -> Grant:
        rule = compiled.rule
        return cls(rule=compiled.id, access=compiled.access, fields=dict(compiled.field_data),
                   conditions={
                       "reveal_source": compiled.reveal_source,
                       "min_count": compiled.min_count, "max_age_days": rule.max_age_days,
                       "valid_from": _day(rule.valid_from),
                       "valid_until": _day(rule.valid_until)})

    def term(self) -> tuple[str, str]:
        """The rule's term as sortable text (an open end sorts outermost)."""
        return (self.conditions["valid_from"] or "", self.conditions["valid_until"] or "~")


@dataclass(frozen=True, slots=True)
class Change:
    """One thing of a key that changes: a `field` (with its path) or a condition of the
    rule (`reveal_source`, `min_count`, `max_age_days`, `valid_from`, `valid_until`).

    A field's `before`/`after` is its transform as a pack writes it, or "dropped"."""

    what: str
    before: Any
    after: Any
    path: str | None = None

    def as_dict(self) -> dict[str, Any]:
        data = {"what": self.what, "before": self.before, "after": self.after}
        return data if self.path is None else {**data, "path": self.path}


@dataclass(frozen=True, slots=True)
class AccessChange:
    """A key whose effective access changes: the access level and rule before and after
    ("none" and None: no rule), and each field or condition that changes."""

    key: Key
    access_before: str
    access_after: str
    rule_before: str | None
    rule_after: str | None
    changes: tuple[Change, ...]

    def as_dict(self) -> dict[str, Any]:
        return {**dict(zip(KEY_NAMES, self.key, strict=True)),
                "access": {"before": self.access_before, "after": self.access_after},
                "rule": {"before": self.rule_before, "after": self.rule_after},
                "changes": [c.as_dict() for c in self.changes]}


@dataclass(frozen=True, slots=True)
class RuleChange:
    """A rule of the same id in both packs, and its attributes that differ (as JSON data)."""

    id: str
    attributes: Mapping[str, tuple[Any, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "attributes": {
            name: {"before": before, "after": after}
            for name, (before, after) in self.attributes.items()}}


@dataclass(frozen=True, slots=True)
class SectionChange:
    """Entries of a catalogue section (organisations, purposes, ...) added, removed, changed."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def as_dict(self) -> dict[str, list[str]]:
        return {"added": list(self.added), "removed": list(self.removed),
                "changed": list(self.changed)}


@dataclass(frozen=True, slots=True)
class PackDiff:
    """Everything that differs between two packs, `before` and `after` named by hash."""

    before: str
    after: str
    rules_added: tuple[str, ...]
    rules_removed: tuple[str, ...]
    rules_changed: tuple[RuleChange, ...]
    access: tuple[AccessChange, ...]
    catalogue: Mapping[str, SectionChange]
    settings: Mapping[str, tuple[Any, Any]]

    @property
    def empty(self) -> bool:
        """Whether nothing the broker decides by differs (the rules' order aside)."""
        return not (self.rules_added or self.rules_removed or self.rules_changed
                    or self.access or self.catalogue or self.settings)

    def as_dict(self) -> dict[str, Any]:
        return {
            "from": self.before, "to": self.after, "empty": self.empty,
            "rules": {"added": list(self.rules_added), "removed": list(self.rules_removed),
                      "changed": [r.as_dict() for r in self.rules_changed]},
            "catalogue": {name: s.as_dict() for name, s in self.catalogue.items()},
            "settings": {name: {"before": b, "after": a}
                         for name, (b, a) in self.settings.items()},
            "access": [c.as_dict() for c in self.access],
        }


def effective_access(policy: CompiledPolicy) -> dict[Key, tuple[Grant, ...]]:
    """Per key, the grants of the rules that cover it: one, or several with terms that do
    not meet (sorted by term)."""
    model = policy.pack.model
    members = members_of(model)
    table: dict[Key, list[Grant]] = {}
    for rule in model.rules:
        grant = Grant.of(policy.rules[rule.id])
        for key in rule_keys(rule, model, members):
            table.setdefault(key, []).append(grant)
    return {key: tuple(sorted(grants, key=Grant.term)) for key, grants in table.items()}


def _grant_changes(before: Grant | None, after: Grant | None) -> Iterator[Change]:
    old = before.fields if before is not None else {}
    new = after.fields if after is not None else {}
    for path in sorted({*old, *new}):
        if old.get(path) != new.get(path):
            yield Change("field", old.get(path, DROPPED), new.get(path, DROPPED), path)
    if before is None or after is None:
        return  # the rule added or removed shows its conditions
    for name, value in before.conditions.items():
        if after.conditions[name] != value:
            yield Change(name, value, after.conditions[name])


def _key_changes(key: Key, before: tuple[Grant, ...], after: tuple[Grant, ...]
                 ) -> Iterator[AccessChange]:
    # Rules sharing a key have terms that do not meet: they are compared term by term.
    for old, new in zip_longest(before, after):
        changes = tuple(_grant_changes(old, new))
        access_before = old.access if old is not None else NO_ACCESS
        access_after = new.access if new is not None else NO_ACCESS
        if changes or access_before != access_after:
            yield AccessChange(key, access_before, access_after,
                               old.rule if old is not None else None,
                               new.rule if new is not None else None, changes)


def _section(before: Mapping[str, Any], after: Mapping[str, Any]) -> SectionChange:
    return SectionChange(
        added=tuple(sorted(set(after) - set(before))),
        removed=tuple(sorted(set(before) - set(after))),
        changed=tuple(sorted(k for k in set(before) & set(after) if before[k] != after[k])))


def _rule_changes(before: CompiledPolicy, after: CompiledPolicy) -> Iterator[RuleChange]:
    for rule_id in sorted(set(before.rules) & set(after.rules)):
        old = before.rules[rule_id].rule.model_dump(mode="json")
        new = after.rules[rule_id].rule.model_dump(mode="json")
        changed = {name: (old[name], new[name]) for name in old if old[name] != new[name]}
        if changed:
            yield RuleChange(rule_id, changed)


def diff_packs(before: CompiledPolicy, after: CompiledPolicy) -> PackDiff:
    """What changes from the pack `before` to the pack `after`."""
    old_access, new_access = effective_access(before), effective_access(after)
    access = tuple(
        change for key in sorted({*old_access, *new_access})
        for change in _key_changes(key, old_access.get(key, ()), new_access.get(key, ())))
    old_model, new_model = before.pack.model, after.pack.model
    catalogue = {}
    for name in CATALOGUE:
        old_section = {k: _data(v) for k, v in getattr(old_model, name).items()}
        new_section = {k: _data(v) for k, v in getattr(new_model, name).items()}
        if section := _section(old_section, new_section):
            catalogue[name] = section
    settings = {name: (getattr(old_model, name), getattr(new_model, name))
                for name in PACK_SETTINGS if getattr(old_model, name) != getattr(new_model, name)}
    return PackDiff(
        before=before.hash, after=after.hash,
        rules_added=tuple(r for r in after.rules if r not in before.rules),
        rules_removed=tuple(r for r in before.rules if r not in after.rules),
        rules_changed=tuple(_rule_changes(before, after)),
        access=access, catalogue=catalogue, settings=settings)


def _data(value: Any) -> Any:
    """A catalogue entry as comparable data (groups are lists, the rest pydantic models)."""
    return value.model_dump(mode="json") if hasattr(value, "model_dump") else value
