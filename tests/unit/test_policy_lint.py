"""Lint warnings: each one docs/policy.md names, with its file and entry."""

from __future__ import annotations

from datetime import date

from broker.core.policy import LintWarning, lint_pack
from tests.unit.packs import base_pack, load

TODAY = date(2026, 11, 28)


def warnings_of(data: dict[str, object]) -> list[LintWarning]:
    return lint_pack(load(data), TODAY)


def only(warnings: list[LintWarning], code: str) -> LintWarning:
    matching = [w for w in warnings if w.code == code]
    assert len(matching) == 1, warnings
    return matching[0]


def test_small_pack_has_no_warnings() -> None:
    assert warnings_of(base_pack()) == []


def test_revealing_bsn_is_a_warning() -> None:
    data = base_pack()
    data["rules"][1]["fields"]["subject.bsn"] = "reveal"
    warning = only(warnings_of(data), "reveals-identifying-field")
    assert (warning.file, warning.entry) == ("rules.yaml", "rules[1] gemeente-drugs")
    assert "subject.bsn" in warning.msg


def test_revealing_description_is_a_warning_but_redacting_it_is_not() -> None:
    data = base_pack()
    data["rules"][0]["fields"]["description"] = "reveal"
    warning = only(warnings_of(data), "reveals-identifying-field")
    assert warning.entry == "rules[0] gemeente-energie"
    assert "description" in warning.msg
    data["rules"][0]["fields"]["description"] = "redact"
    assert warnings_of(data) == []


def test_criminal_data_outside_allowed_recipients_is_a_warning() -> None:
    data = base_pack()
    data["rules"][1]["recipients"] = ["convenant"]  # wpg-art-16 allows gemeente and riec
    warning = only(warnings_of(data), "criminal-data-recipient")
    assert (warning.file, warning.entry) == ("rules.yaml", "rules[1] gemeente-drugs")
    assert "wpg-art-16 to politie," in warning.msg


def test_criminal_data_through_default_bases_is_checked_too() -> None:
    data = base_pack()
    data["legal_bases"]["wpg-art-20"]["allowed_recipients"] = ["politie"]
    warning = only(warnings_of(data), "criminal-data-recipient")
    assert warning.entry == "rules[2] riec-beeld"
    assert "wpg-art-20" in warning.msg


def test_unused_purpose_is_a_warning() -> None:
    data = base_pack()
    data["purposes"]["woonfraude"] = {"title": "Woonfraude"}
    warning = only(warnings_of(data), "purpose-unused")
    assert (warning.file, warning.entry) == ("catalogue.yaml", "purposes.woonfraude")


def test_category_nobody_may_receive_is_a_warning() -> None:
    data = base_pack()
    data["categories"]["overlast"] = {
        "title": "Overlast", "subject_types": ["address"], "contributors": ["gemeente"],
        "legal_bases": ["elektriciteitswet"], "retention_days": 30}
    warning = only(warnings_of(data), "category-unreceived")
    assert (warning.file, warning.entry) == ("catalogue.yaml", "categories.overlast")


def test_rule_past_its_term_is_a_warning() -> None:
    data = base_pack()
    data["rules"][2]["valid_until"] = "2026-11-27"
    warning = only(warnings_of(data), "rule-expired")
    assert (warning.file, warning.entry) == ("rules.yaml", "rules[2] riec-beeld")
    assert "2026-11-27" in warning.msg
    data["rules"][2]["valid_until"] = "2026-11-28"  # still valid today
    assert warnings_of(data) == []
