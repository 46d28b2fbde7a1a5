"""Loading a pack: every error docs/policy.md names is refused with its file and entry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from broker.core.policy import load_pack, load_pack_from_text
from broker.errors import PackInvalid
from tests.unit.packs import as_files, base_pack, load

Problem = tuple[str, str, str]


def problems_of(files: dict[str, str]) -> list[Problem]:
    with pytest.raises(PackInvalid) as caught:
        load_pack_from_text(files)
    assert caught.value.status == 422
    return [(str(p.loc[0]), str(p.loc[1]), p.msg) for p in caught.value.errors]


def problems(data: dict[str, Any]) -> list[Problem]:
    return problems_of(as_files(data))


def assert_problem(found: list[Problem], file: str, entry: str, *words: str) -> None:
    """Some problem names `file`, an entry containing `entry`, and all `words`."""
    for f, e, msg in found:
        if f == file and entry in e and all(w in f"{e} {msg}" for w in words):
            return
    raise AssertionError(f"no problem in {file} at {entry} with {words}: {found}")


def rule(data: dict[str, Any], rule_id: str) -> dict[str, Any]:
    return next(r for r in data["rules"] if r["id"] == rule_id)


# --- the happy path and the hash ----------------------------------------------------------


def test_small_pack_loads_with_name_version_and_hash() -> None:
    pack = load(base_pack())
    assert (pack.name, pack.version) == ("klein", "1")
    assert pack.hash.startswith("sha256:")
    assert len(pack.hash) == 7 + 64
    assert pack.category("energie-afwijking") is not None
    assert pack.category("nope") is None
    assert pack.retention_days("drugs-melding") == 730
    assert pack.expand("convenant") == {"gemeente", "politie", "riec"}
    assert pack.groups_of("politie") == ["convenant"]


def test_hash_is_of_the_canonical_json_and_independent_of_file_split_and_order() -> None:
    data = base_pack()
    one_file = {"all.yaml": yaml.safe_dump(dict(reversed(list(data.items()))))}
    split = load(data)
    joined = load_pack_from_text(one_file)
    assert split.hash == joined.hash
    assert split.canonical == joined.canonical
    assert json.loads(split.canonical)["pack"] == "klein"
    assert b", " not in split.canonical
    assert b": " not in split.canonical


def test_hash_changes_with_content() -> None:
    data = base_pack()
    before = load(data).hash
    rule(data, "gemeente-energie")["fields"]["location.postcode"] = {"generalise": "pc4"}
    assert load(data).hash != before


def test_canonical_text_reloads_to_the_same_pack_and_hash() -> None:
    data = base_pack()
    rule(data, "gemeente-energie")["valid_from"] = "2026-01-01"
    pack = load(data)
    assert b'"valid_from":"2026-01-01"' in pack.canonical
    again = load_pack_from_text({"pack.json": pack.canonical.decode("utf-8")})
    assert again.hash == pack.hash
    assert again.model == pack.model


def test_load_pack_reads_every_yaml_file_in_the_folder(tmp_path: Path) -> None:
    for name, text in as_files(base_pack()).items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not part of the pack", encoding="utf-8")
    assert load_pack(tmp_path).hash == load(base_pack()).hash


def test_file_that_is_not_utf8_is_refused_by_name(tmp_path: Path) -> None:
    for name, text in as_files(base_pack()).items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    (tmp_path / "latin1.yaml").write_bytes("description: café\n".encode("latin-1"))
    with pytest.raises(PackInvalid) as caught:
        load_pack(tmp_path)
    assert [(p.loc, p.msg.split(" (")[0]) for p in caught.value.errors] == [
        (("latin1.yaml", "file"), "cannot be read as UTF-8 text")]


def test_folder_without_yaml_files_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PackInvalid, match="no"):
        load_pack(tmp_path)


def test_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PackInvalid):
        load_pack(tmp_path / "absent")


# --- syntax and merging -------------------------------------------------------------------


def test_yaml_syntax_error_names_the_file_and_line() -> None:
    files = as_files(base_pack())
    files["broken.yaml"] = "rules:\n  - id: [unclosed\n"
    assert_problem(problems_of(files), "broken.yaml", "yaml", "line")


def test_key_written_twice_in_one_file_is_refused() -> None:
    files = as_files(base_pack())
    files["pack.yaml"] += "version: '2'\n"
    assert_problem(problems_of(files), "pack.yaml", "yaml", "version", "twice")


def test_top_level_key_in_two_files_is_refused() -> None:
    files = as_files(base_pack())
    files["version.yaml"] = "version: '2'\n"  # read after pack.yaml (files go by name)
    assert_problem(problems_of(files), "version.yaml", "version", "twice", "pack.yaml")


def test_id_defined_in_two_files_is_refused() -> None:
    files = as_files(base_pack())
    files["more.yaml"] = "organisations:\n  politie: {name: Politie bis}\n"
    assert_problem(problems_of(files), "more.yaml", "organisations.politie", "twice",
                   "catalogue.yaml")


def test_sections_may_be_split_over_files() -> None:
    data = base_pack()
    riec = data["organisations"].pop("riec")
    files = as_files(data)
    files["riec.yaml"] = yaml.safe_dump({"organisations": {"riec": riec}})
    assert load_pack_from_text(files).hash == load(base_pack()).hash


def test_rule_id_defined_twice_names_both() -> None:
    data = base_pack()
    copy_of = dict(rule(data, "riec-beeld"), purposes=["integrale-controle"])
    data["rules"].append(copy_of)
    assert_problem(problems(data), "rules.yaml", "rules[3] riec-beeld", "twice", "rules[2]")


def test_unknown_section_is_refused() -> None:
    data = base_pack()
    data["colours"] = {"red": 1}
    assert_problem(problems(data), "pack.yaml", "colours", "unknown section")


def test_missing_required_section_is_refused() -> None:
    data = base_pack()
    del data["purposes"]
    assert_problem(problems(data), "(pack)", "purposes", "missing")


# --- structure: unknown keys, wrong types, identifiers ------------------------------------


def test_unknown_key_in_a_category_names_the_entry() -> None:
    data = base_pack()
    data["categories"]["energie-afwijking"]["colour"] = "red"
    assert_problem(problems(data), "catalogue.yaml", "categories.energie-afwijking.colour",
                   "Extra inputs")


def test_unknown_key_in_a_rule_names_the_rule() -> None:
    data = base_pack()
    rule(data, "gemeente-drugs")["acces"] = "hit"
    assert_problem(problems(data), "rules.yaml", "rules[1] gemeente-drugs", "acces")


@pytest.mark.parametrize(("where", "bend", "entry"), [
    ("categories", lambda d: d["categories"]["drugs-melding"].update(retention_days="730"),
     "categories.drugs-melding.retention_days"),
    ("legal_bases", lambda d: d["legal_bases"]["wpg-art-16"].update(criminal_data="yes"),
     "legal_bases.wpg-art-16.criminal_data"),
    ("purposes", lambda d: d["purposes"]["integrale-controle"].update(title=7),
     "purposes.integrale-controle.title"),
    ("attributes", lambda d: d["categories"]["energie-afwijking"]["attributes"]
     ["kwh_per_month"].update(min=True), "attributes.kwh_per_month.min"),
    ("subject types", lambda d: d["categories"]["drugs-melding"].update(
        subject_types=["human"]), "categories.drugs-melding.subject_types"),
])
def test_wrong_types_in_the_catalogue_name_the_entry(where: str, bend: Any, entry: str) -> None:
    data = base_pack()
    bend(data)
    assert_problem(problems(data), "catalogue.yaml", entry)


@pytest.mark.parametrize(("key", "value", "words"), [
    ("access", "read", ("access",)),
    ("max_age_days", "30", ("max_age_days",)),
    ("max_age_days", 0, ("max_age_days",)),
    ("min_count", True, ("min_count",)),
    ("valid_from", "1 januari", ("valid_from",)),
    ("recipients", "gemeente", ("recipients",)),
])
def test_wrong_types_in_a_rule_name_the_rule(key: str, value: object,
                                             words: tuple[str, ...]) -> None:
    data = base_pack()
    rule(data, "riec-beeld")[key] = value
    assert_problem(problems(data), "rules.yaml", "rules[2] riec-beeld", *words)


def test_version_must_be_text() -> None:
    data = base_pack()
    data["version"] = 2026.1
    assert_problem(problems(data), "pack.yaml", "version", "text")


@pytest.mark.parametrize("bad_id", ["Gemeente", "gemeente_ondermijning", "-gemeente", "ge--m"])
def test_identifiers_are_lower_case_words_joined_by_hyphens(bad_id: str) -> None:
    data = base_pack()
    data["purposes"][bad_id] = {"title": "x"}
    assert_problem(problems(data), "catalogue.yaml", f"purposes.{bad_id}", "lower-case")


def test_rule_id_must_be_an_identifier() -> None:
    data = base_pack()
    rule(data, "riec-beeld")["id"] = "RIEC beeld"
    assert_problem(problems(data), "rules.yaml", "rules[2]", "id")


@pytest.mark.parametrize(("spec", "words"), [
    ({"type": "number", "min": 5, "max": 1}, ("min is greater than max",)),
    ({"type": "text", "values": ["a"]}, ("values",)),
    ({"type": "enum"}, ("values",)),
    ({"type": "boolean", "max_length": 3}, ("max_length",)),
    ({"type": "text", "min": 1}, ("min and max",)),
    ({"type": "colour"}, ("type",)),
])
def test_bad_attribute_specs_name_the_attribute(spec: dict[str, Any],
                                                words: tuple[str, ...]) -> None:
    data = base_pack()
    data["categories"]["energie-afwijking"]["attributes"]["x"] = spec
    assert_problem(problems(data), "catalogue.yaml", "categories.energie-afwijking.attributes.x",
                   *words)


def test_validity_term_must_not_end_before_it_starts() -> None:
    data = base_pack()
    rule(data, "riec-beeld").update(valid_from="2027-01-01", valid_until="2026-12-31")
    assert_problem(problems(data), "rules.yaml", "rules[2] riec-beeld", "valid_from")


def test_fields_only_on_disclose_rules() -> None:
    data = base_pack()
    rule(data, "riec-beeld")["fields"] = {"location.postcode": "pc4"}
    assert_problem(problems(data), "rules.yaml", "rules[2] riec-beeld")


@pytest.mark.parametrize("transform", [
    "show", {"generalise": "week"}, {"generalise": {"bucket": 0}},
    {"generalise": {"bucket": True}}, {"mask": {"keep_first": 2}}, {"mask": 3},
    {"reveal": True, "redact": True},
])
def test_unknown_transform_is_refused(transform: object) -> None:
    data = base_pack()
    rule(data, "gemeente-energie")["fields"]["location.postcode"] = transform
    assert_problem(problems(data), "rules.yaml", "rules[0] gemeente-energie",
                   "location.postcode")


# --- references ---------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "value", "words"), [
    ("recipients", ["belastingdienst"], ("recipients", "belastingdienst", "not a defined")),
    ("purposes", ["fiscale-handhaving"], ("purposes", "fiscale-handhaving")),
    ("categories", ["fiscale-schuld"], ("categories", "fiscale-schuld")),
    ("sources", ["belastingdienst"], ("sources", "belastingdienst")),
    ("legal_bases", ["awr-art-67"], ("legal_bases", "awr-art-67")),
])
def test_undefined_reference_in_a_rule_is_refused(key: str, value: list[str],
                                                  words: tuple[str, ...]) -> None:
    data = base_pack()
    rule(data, "gemeente-energie")[key] = value
    assert_problem(problems(data), "rules.yaml", "rules[0] gemeente-energie", *words)


def test_source_that_does_not_contribute_the_category_is_refused() -> None:
    data = base_pack()
    rule(data, "gemeente-energie")["sources"] = ["politie"]
    assert_problem(problems(data), "rules.yaml", "rules[0] gemeente-energie",
                   "politie is not a contributor of category energie-afwijking")


def test_legal_basis_not_of_the_category_is_refused() -> None:
    data = base_pack()
    rule(data, "gemeente-energie")["legal_bases"] = ["wpg-art-16"]
    assert_problem(problems(data), "rules.yaml", "rules[0] gemeente-energie",
                   "wpg-art-16 is not a legal basis of category energie-afwijking")


def test_undefined_references_in_the_catalogue_are_refused() -> None:
    data = base_pack()
    data["groups"]["convenant"].append("belastingdienst")
    data["legal_bases"]["wpg-art-20"]["allowed_recipients"] = ["partners"]
    data["categories"]["drugs-melding"]["contributors"].append("omgevingsdienst")
    data["categories"]["drugs-melding"]["legal_bases"].append("wpg-art-19")
    found = problems(data)
    assert_problem(found, "catalogue.yaml", "groups.convenant", "belastingdienst")
    assert_problem(found, "catalogue.yaml", "legal_bases.wpg-art-20", "partners")
    assert_problem(found, "catalogue.yaml", "categories.drugs-melding", "omgevingsdienst")
    assert_problem(found, "catalogue.yaml", "categories.drugs-melding", "wpg-art-19")


def test_contributors_are_organisations_not_groups() -> None:
    data = base_pack()
    data["categories"]["drugs-melding"]["contributors"] = ["convenant"]
    assert_problem(problems(data), "catalogue.yaml", "categories.drugs-melding",
                   "convenant is not a defined organisation")


def test_group_cannot_share_a_name_with_an_organisation() -> None:
    data = base_pack()
    data["groups"]["politie"] = ["gemeente"]
    assert_problem(problems(data), "catalogue.yaml", "groups.politie", "name")


def test_test_referring_to_undefined_names_is_refused() -> None:
    data = base_pack()
    data["tests"] = [{"recipient": "gemeente", "purpose": "woonfraude",
                      "category": "energie-afwijking", "source": "netbeheerder",
                      "expect": "none"}]
    assert_problem(problems(data), "rules.yaml", "tests[0]", "woonfraude")


# --- fields and transforms ----------------------------------------------------------------


@pytest.mark.parametrize(("path", "words"), [
    ("subject.bsn", ("category energie-afwijking cannot have this field", "address")),
    ("subject.kvk", ("cannot have this field",)),
    ("attributes.meter_number", ("has no attribute meter_number",)),
    ("location.gps", ("not a field a rule can name",)),
])
def test_path_the_category_cannot_have_is_refused(path: str, words: tuple[str, ...]) -> None:
    data = base_pack()
    rule(data, "gemeente-energie")["fields"][path] = "reveal"
    assert_problem(problems(data), "rules.yaml", "rules[0] gemeente-energie", path, *words)


@pytest.mark.parametrize(("path", "transform"), [
    ("attributes.kwh_per_month", {"generalise": "pc4"}),
    ("location.postcode", {"generalise": {"bucket": 10}}),
    ("observed_at", {"generalise": {"age_band": 10}}),
    ("attributes.kwh_per_month", {"mask": {"keep_last": 2}}),
    ("attributes.meter_seal_broken", {"generalise": "month"}),
    ("location.house_number", {"generalise": "year"}),
])
def test_transform_not_fitting_the_field_type_is_refused(path: str, transform: object) -> None:
    data = base_pack()
    rule(data, "gemeente-energie")["fields"][path] = transform
    assert_problem(problems(data), "rules.yaml", "rules[0] gemeente-energie", path,
                   "does not fit")


def test_fitting_transforms_load() -> None:
    data = base_pack()
    data["categories"]["drugs-melding"]["attributes"]["gemeld_op"] = {"type": "date"}
    rule(data, "gemeente-drugs")["fields"].update({
        "subject.birthdate": {"generalise": {"age_band": 10}},
        "subject.name": {"mask": {"keep_last": 2}},
        "location.postcode": {"generalise": "pc4"},
        "attributes.gemeld_op": {"generalise": "year"},
        "description": "redact",
    })
    load(data)


# --- overlaps -----------------------------------------------------------------------------


def test_overlap_after_group_expansion_names_both_rules() -> None:
    data = base_pack()
    data["rules"].append({
        "id": "convenant-energie", "description": "overlaps gemeente-energie for gemeente",
        "recipients": ["convenant"], "purposes": ["integrale-controle"],
        "categories": ["energie-afwijking"], "access": "hit"})
    assert_problem(problems(data), "rules.yaml", "rules[3] convenant-energie",
                   "overlaps rule gemeente-energie", "recipient gemeente",
                   "rules[0] gemeente-energie")


def test_rules_differing_in_legal_basis_do_not_overlap() -> None:
    data = base_pack()
    data["rules"].append({
        "id": "gemeente-drugs-art-20", "description": "same but under art. 20",
        "recipients": ["gemeente"], "purposes": ["integrale-controle"],
        "categories": ["drugs-melding"], "legal_bases": ["wpg-art-20"], "access": "hit"})
    load(data)


def test_default_legal_bases_overlap_an_explicit_one() -> None:
    data = base_pack()
    data["rules"].append({
        "id": "gemeente-drugs-alle", "description": "all bases of the category",
        "recipients": ["gemeente"], "purposes": ["integrale-controle"],
        "categories": ["drugs-melding"], "access": "hit"})
    assert_problem(problems(data), "rules.yaml", "rules[3] gemeente-drugs-alle",
                   "gemeente-drugs", "legal basis wpg-art-16")


def test_rules_with_disjoint_terms_may_share_a_key() -> None:
    data = base_pack()
    rule(data, "gemeente-energie").update(valid_from="2026-01-01", valid_until="2026-12-31")
    data["rules"].append(dict(rule(data, "gemeente-energie"), id="gemeente-energie-2027",
                              valid_from="2027-01-01", valid_until="2027-12-31"))
    load(data)


def test_rules_with_overlapping_or_open_terms_overlap() -> None:
    data = base_pack()
    rule(data, "gemeente-energie").update(valid_from="2026-01-01", valid_until="2027-01-01")
    data["rules"].append(dict(rule(data, "gemeente-energie"), id="gemeente-energie-2027",
                              valid_from="2027-01-01", valid_until=None))
    del data["rules"][-1]["valid_until"]
    assert_problem(problems(data), "rules.yaml", "gemeente-energie-2027", "overlaps")


def test_all_problems_are_reported_together() -> None:
    data = base_pack()
    data["categories"]["energie-afwijking"]["colour"] = "red"
    rule(data, "gemeente-drugs")["purposes"] = ["nope"]
    rule(data, "riec-beeld")["access"] = "all"
    files = as_files(data)
    files["broken.yaml"] = "a: [\n"
    found = problems_of(files)
    files_named = {f for f, _, _ in found}
    assert {"catalogue.yaml", "rules.yaml", "broken.yaml"} <= files_named
    assert len(found) >= 4
