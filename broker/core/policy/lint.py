"""Lint a loaded pack: grants that are allowed but deserve a privacy officer's second look.

Warnings never refuse a pack on their own; `broker policy check --strict` makes them errors.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date

from broker.core.policy.checks import expand_names, members_of
from broker.core.policy.concealment import betrayals
from broker.core.policy.load import Pack
from broker.core.policy.model import Rule

__all__ = ["MIN_COUNT_FLOOR", "LintWarning", "lint_pack"]

# Fields whose clear value identifies a person directly or may hold anything at all.
_SENSITIVE_REVEALS = ("subject.bsn", "description")
# Below this, an area summary's count may single out a case (the model's default).
MIN_COUNT_FLOOR = 5


@dataclass(frozen=True, slots=True)
class LintWarning:
    """One warning: a stable `code`, the file and entry it concerns, and a message."""

    code: str
    file: str
    entry: str
    msg: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "file": self.file, "entry": self.entry, "msg": self.msg}

    def __str__(self) -> str:
        return f"{self.file}: {self.entry}: {self.msg} [{self.code}]"


def _rule_bases(rule: Rule, pack: Pack) -> list[str]:
    """The legal bases a rule covers (explicit, or every basis of its categories)."""
    if rule.legal_bases is not None:
        return list(rule.legal_bases)
    bases: list[str] = []
    for category_id in rule.categories:
        bases.extend(b for b in pack.categories[category_id].legal_bases if b not in bases)
    return bases


def _rule_warnings(pack: Pack, today: date) -> Iterator[LintWarning]:
    members = members_of(pack.model)
    for index, rule in enumerate(pack.rules):
        file_name, entry = pack.origins.item("rules", index)
        for path in _SENSITIVE_REVEALS:
            transform = rule.fields.get(path)
            if transform is not None and transform.kind == "reveal":
                yield LintWarning("reveals-identifying-field", file_name, entry,
                                  f"reveals {path} in clear; consider pseudonymise or redact")
        recipients = expand_names(rule.recipients, members)
        for basis_id in _rule_bases(rule, pack):
            basis = pack.legal_bases[basis_id]
            if not basis.criminal_data or basis.allowed_recipients is None:
                continue
            outside = recipients - expand_names(basis.allowed_recipients, members)
            if outside:
                yield LintWarning(
                    "criminal-data-recipient", file_name, entry,
                    f"gives criminal-law data under {basis_id} to {', '.join(sorted(outside))},"
                    f" outside its allowed_recipients "
                    f"({', '.join(basis.allowed_recipients)})")
        if rule.access != "hit" and rule.min_count < MIN_COUNT_FLOOR:
            yield LintWarning("small-min-count", file_name, entry,
                              f"min_count {rule.min_count} is below {MIN_COUNT_FLOOR}: an "
                              "area summary may show a count of single cases")
        if rule.valid_until is not None and rule.valid_until < today:
            yield LintWarning("rule-expired", file_name, entry,
                              f"valid_until {rule.valid_until.isoformat()} has passed")


def _catalogue_warnings(pack: Pack) -> Iterator[LintWarning]:
    used_purposes = {p for r in pack.rules for p in r.purposes}
    for purpose_id in pack.purposes:
        if purpose_id not in used_purposes:
            file_name, entry = pack.origins.entry("purposes", purpose_id)
            yield LintWarning("purpose-unused", file_name, entry,
                              "no rule uses this purpose")
    received = {c for r in pack.rules for c in r.categories}
    for category_id in pack.categories:
        if category_id not in received:
            file_name, entry = pack.origins.entry("categories", category_id)
            yield LintWarning("category-unreceived", file_name, entry,
                              "no rule lets anyone receive this category")


def _betrayal_warnings(pack: Pack) -> Iterator[LintWarning]:
    for index, what in betrayals(pack):
        file_name, entry = pack.origins.item("rules", index)
        yield LintWarning("hidden-source-betrayed", file_name, entry,
                          f"hides its source, but {'; '.join(what)}: the recipient can "
                          "tell the source all the same")


def lint_pack(pack: Pack, today: date) -> list[LintWarning]:
    """Every warning for a loaded (valid) pack, as of `today`."""
    return [*_rule_warnings(pack, today), *_betrayal_warnings(pack),
            *_catalogue_warnings(pack)]
