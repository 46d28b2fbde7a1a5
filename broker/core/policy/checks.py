"""Cross-entry checks of a pack: references, field/transform fit and rule overlaps.

Run by the loader after every entry has passed its own structural validation. Each problem
names the file and the entry it belongs to (see `Origins`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date

from broker.core.policy.model import (
    FIELD_CATALOGUE,
    Category,
    PackModel,
    Rule,
    field_kind,
)
from broker.core.policy.transform_spec import transform_fits
from broker.errors import FieldProblem

__all__ = ["Origins", "check_references", "expand_names", "rule_keys"]

Key = tuple[str, str, str, str, str]


@dataclass
class Origins:
    """Where each part of a merged pack was written: file names and per-file positions."""

    scalars: dict[str, str] = field(default_factory=dict)
    entries: dict[tuple[str, str], str] = field(default_factory=dict)
    items: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    valid_items: dict[str, list[int]] = field(default_factory=dict)
    labels: dict[tuple[str, int], str] = field(default_factory=dict)
    # ids that exist but failed their own validation: references to them are not "undefined"
    broken: dict[str, set[str]] = field(default_factory=dict)

    def is_broken(self, *sections_and_name: str) -> bool:
        *sections, name = sections_and_name
        return any(name in self.broken.get(section, ()) for section in sections)

    def label(self, section: str, position: int, item: object) -> str:
        """`rules[3] gemeente-energie`: the per-file index and, for rules, the id."""
        _, index = self.items[section][position]
        text = f"{section}[{index}]"
        if isinstance(item, Mapping) and isinstance(item.get("id"), str):
            text += f" {item['id']}"
        self.labels[(section, position)] = text
        return text

    def entry(self, section: str, entry_id: str) -> tuple[str, str]:
        """(file, entry) of an id in a mapping section such as categories."""
        return (self.entries.get((section, entry_id), "(pack)"), f"{section}.{entry_id}")

    def item(self, section: str, valid_index: int) -> tuple[str, str]:
        """(file, entry) of the n-th valid item of a list section such as rules."""
        positions = self.valid_items.get(section, [])
        if valid_index >= len(positions):
            return ("(pack)", f"{section}[{valid_index}]")
        position = positions[valid_index]
        file_name, _ = self.items[section][position]
        return (file_name, self.labels[(section, position)])


def expand_names(names: Iterable[str], members: Mapping[str, frozenset[str]]) -> set[str]:
    """Organisation and group names to the set of organisations they stand for."""
    result: set[str] = set()
    for name in names:
        result |= members.get(name, frozenset())
    return result


def members_of(model: PackModel) -> dict[str, frozenset[str]]:
    expanded = {org: frozenset({org}) for org in model.organisations}
    for group, orgs in model.groups.items():
        if group not in expanded:
            expanded[group] = frozenset(o for o in orgs if o in model.organisations)
    return expanded


def rule_keys(rule: Rule, model: PackModel,
              members: Mapping[str, frozenset[str]]) -> Iterator[Key]:
    """Every (recipient, purpose, category, source, legal basis) a rule covers."""
    for category_id in rule.categories:
        category = model.categories[category_id]
        sources = expand_names(rule.sources or category.contributors, members)
        sources &= expand_names(category.contributors, members)
        bases = [b for b in (rule.legal_bases or category.legal_bases)
                 if b in category.legal_bases]
        yield from itertools.product(
            sorted(expand_names(rule.recipients, members)), rule.purposes, [category_id],
            sorted(sources), bases)


# --- the checks ---------------------------------------------------------------------------


def _check_covenant_officer(model: PackModel, origins: Origins) -> Iterator[FieldProblem]:
    named = model.covenant_privacy_officer
    if named is not None and named not in model.organisations:
        where = (origins.scalars.get("covenant_privacy_officer", "(pack)"),
                 "covenant_privacy_officer")
        yield FieldProblem(where, f"{named} is not an organisation of the pack")


def _check_groups(model: PackModel, origins: Origins) -> Iterator[FieldProblem]:
    for group, orgs in model.groups.items():
        where = origins.entry("groups", group)
        if group in model.organisations:
            yield FieldProblem(where, "a group cannot have the name of an organisation")
        for org in orgs:
            if org not in model.organisations:
                yield FieldProblem(where, f"member {org} is not an organisation (groups "
                                   "list organisations only)")


_SECTIONS_OF = {
    "organisation or group": ("organisations", "groups"),
    "organisation": ("organisations",),
    "purpose": ("purposes",),
    "category": ("categories",),
    "legal basis": ("legal_bases",),
}


@dataclass(frozen=True)
class _Context:
    model: PackModel
    origins: Origins
    members: Mapping[str, frozenset[str]]

    def unknown(self, names: Iterable[str], what: str, where: tuple[str, str],
                label: str) -> list[FieldProblem]:
        """A problem per name that is not defined (names defined but invalid are skipped)."""
        known: Mapping[str, object] = {
            "organisation or group": self.members,
            "organisation": self.model.organisations,
            "purpose": self.model.purposes,
            "category": self.model.categories,
            "legal basis": self.model.legal_bases,
        }[what]
        return [FieldProblem(where, f"{label}: {name} is not a defined {what}")
                for name in names
                if name not in known and not self.origins.is_broken(*_SECTIONS_OF[what], name)]

    def all_valid(self, rule: Rule) -> bool:
        """Whether every name the rule uses is a defined and valid entry."""
        m = self.model
        return (all(n in self.members for n in [*rule.recipients, *(rule.sources or [])])
                and all(n in m.purposes for n in rule.purposes)
                and all(n in m.categories for n in rule.categories)
                and all(n in m.legal_bases for n in rule.legal_bases or []))


def _check_catalogue(ctx: _Context) -> Iterator[FieldProblem]:
    model, origins = ctx.model, ctx.origins
    for basis_id, basis in model.legal_bases.items():
        yield from ctx.unknown(basis.allowed_recipients or [], "organisation or group",
                               origins.entry("legal_bases", basis_id), "allowed_recipients")
    for category_id, category in model.categories.items():
        where = origins.entry("categories", category_id)
        # Contributors are organisations, not groups: intake checks `org in contributors`.
        yield from ctx.unknown(category.contributors, "organisation", where, "contributors")
        yield from ctx.unknown(category.legal_bases, "legal basis", where, "legal_bases")


def _check_rule_references(ctx: _Context, rule: Rule,
                           where: tuple[str, str]) -> list[FieldProblem]:
    problems = [
        *ctx.unknown(rule.recipients, "organisation or group", where, "recipients"),
        *ctx.unknown(rule.purposes, "purpose", where, "purposes"),
        *ctx.unknown(rule.categories, "category", where, "categories"),
        *ctx.unknown(rule.sources or [], "organisation or group", where, "sources"),
        *ctx.unknown(rule.legal_bases or [], "legal basis", where, "legal_bases"),
    ]
    if problems or not ctx.all_valid(rule):
        return problems
    for category_id in rule.categories:
        category = ctx.model.categories[category_id]
        contributors = expand_names(category.contributors, ctx.members)
        for source in sorted(expand_names(rule.sources or [], ctx.members) - contributors):
            problems.append(FieldProblem(where, f"sources: {source} is not a contributor of "
                                         f"category {category_id}"))
        for basis in rule.legal_bases or []:
            if basis not in category.legal_bases:
                problems.append(FieldProblem(where, f"legal_bases: {basis} is not a legal basis "
                                             f"of category {category_id}"))
    return problems


def _check_rule_fields(rule: Rule, model: PackModel,
                       where: tuple[str, str]) -> Iterator[FieldProblem]:
    for path, transform in rule.fields.items():
        if path not in FIELD_CATALOGUE and not path.startswith("attributes."):
            yield FieldProblem(where, f"fields.{path}: not a field a rule can name")
            continue
        for category_id in rule.categories:
            category: Category = model.categories[category_id]
            kind = field_kind(category, path)
            if kind is None and path.startswith("attributes."):
                yield FieldProblem(where, f"fields.{path}: category {category_id} has no "
                                   f"attribute {path.removeprefix('attributes.')}")
            elif kind is None:
                yield FieldProblem(where, f"fields.{path}: category {category_id} cannot have "
                                   f"this field (subject types: "
                                   f"{', '.join(category.subject_types)})")
            elif not transform_fits(transform, kind):
                yield FieldProblem(where, f"fields.{path}: transform {transform} does not fit "
                                   f"a {kind} value (category {category_id})")


def _windows_meet(a: Rule, b: Rule) -> bool:
    """False only when the validity terms are certainly disjoint (request time can't be in both)."""
    if a.valid_until is not None and b.valid_from is not None and a.valid_until < b.valid_from:
        return False
    return not (b.valid_until is not None and a.valid_from is not None
                and b.valid_until < a.valid_from)


def _check_overlaps(ctx: _Context, rule_indexes: Iterable[int]) -> Iterator[FieldProblem]:
    model, origins = ctx.model, ctx.origins
    owners: dict[Key, list[int]] = {}
    reported: set[tuple[int, int]] = set()
    for index in rule_indexes:
        rule = model.rules[index]
        for key in rule_keys(rule, model, ctx.members):
            holders = owners.setdefault(key, [])
            for other_index in holders:
                other = model.rules[other_index]
                if (other_index, index) in reported or not _windows_meet(rule, other):
                    continue
                reported.add((other_index, index))
                other_file, other_entry = origins.item("rules", other_index)
                recipient, purpose, category, source, basis = key
                yield FieldProblem(
                    origins.item("rules", index),
                    f"overlaps rule {other.id} ({other_file} {other_entry}): both cover "
                    f"recipient {recipient}, purpose {purpose}, category {category}, "
                    f"source {source}, legal basis {basis}; rules {other.id} and {rule.id} "
                    "must not overlap")
            holders.append(index)


def _check_tests(ctx: _Context) -> Iterator[FieldProblem]:
    for index, test in enumerate(ctx.model.tests):
        where = ctx.origins.item("tests", index)
        yield from ctx.unknown([test.recipient, test.source], "organisation", where,
                               "recipient/source")
        yield from ctx.unknown([test.purpose], "purpose", where, "purpose")
        yield from ctx.unknown([test.category], "category", where, "category")
        if test.legal_basis is not None:
            yield from ctx.unknown([test.legal_basis], "legal basis", where, "legal_basis")
        if test.fields and test.expect != "disclose":
            yield FieldProblem(where, "fields: only a test expecting disclose can name fields")


def check_references(model: PackModel, origins: Origins) -> list[FieldProblem]:
    """All cross-entry problems of the entries that passed their own validation."""
    ctx = _Context(model, origins, members_of(model))
    problems = [*_check_covenant_officer(model, origins), *_check_groups(model, origins),
                *_check_catalogue(ctx)]
    sound_rules: list[int] = []
    first_by_id: dict[str, int] = {}
    for index, rule in enumerate(model.rules):
        where = origins.item("rules", index)
        if rule.id in first_by_id:
            other_file, other_entry = origins.item("rules", first_by_id[rule.id])
            problems.append(FieldProblem(where, f"rule id {rule.id} is defined twice (also "
                                         f"{other_file} {other_entry})"))
        first_by_id.setdefault(rule.id, index)
        reference_problems = _check_rule_references(ctx, rule, where)
        problems.extend(reference_problems)
        if not reference_problems and ctx.all_valid(rule):
            problems.extend(_check_rule_fields(rule, model, where))
            sound_rules.append(index)
    problems.extend(_check_overlaps(ctx, sound_rules))
    problems.extend(_check_tests(ctx))
    return problems


def term_has_passed(rule: Rule, today: date) -> bool:
    """True when the rule's valid_until lies before `today`."""
    return rule.valid_until is not None and rule.valid_until < today
