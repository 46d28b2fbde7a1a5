"""What names a hidden source besides the source (`broker.core.policy.concealment`): the
legal bases and rules an answer leaves out, and the hiding rules the pack itself betrays,
which the lint flags (`hidden-source-betrayed`; an error with `broker policy check
--strict`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from broker.core.policy import LintWarning, lint_pack
from broker.core.policy.concealment import Concealment, concealment
from tests.unit.packs import base_pack, load
from tests.unit.test_policy_lint import TODAY
from tests.unit.test_policy_packtests import run, write_pack


def hiding_pack() -> dict[str, Any]:
    """The small pack with a second contributor of `overlast`: the politie and the
    woningcorporatie both report it, under a basis of their own or a shared one."""
    data = base_pack()
    data["organisations"]["woningcorporatie"] = {"name": "Woningcorporatie"}
    data["legal_bases"]["gemeentewet"] = {"title": "Gemeentewet art. 174a"}
    data["legal_bases"]["avg"] = {"title": "AVG art. 6 lid 1 onder e"}
    data["categories"]["overlast"] = {
        "title": "Overlast", "subject_types": ["address"],
        "contributors": ["politie", "woningcorporatie"],
        "legal_bases": ["gemeentewet", "avg"], "retention_days": 365}
    data["rules"] += [
        {"id": "riec-overlast", "description": "Het RIEC hoort van overlast",
         "recipients": ["riec"], "purposes": ["integrale-controle"],
         "categories": ["overlast"], "sources": ["politie"], "access": "hit",
         "reveal_source": False},
        {"id": "gemeente-overlast", "description": "De gemeente hoort van overlast",
         "recipients": ["gemeente"], "purposes": ["integrale-controle"],
         "categories": ["overlast"], "access": "disclose", "reveal_source": False,
         "fields": {"location.postcode": "reveal"}},
    ]
    return data


def test_an_answer_leaves_out_single_source_bases_and_rules_of_one_source() -> None:
    concealed = concealment(load(hiding_pack()))
    # wpg-art-16 is carried by drugs-melding alone, which only the politie contributes
    assert "wpg-art-16" in concealed.telling_bases
    assert "elektriciteitswet" in concealed.telling_bases  # the netbeheerder's only
    assert not {"gemeentewet", "avg"} & concealed.telling_bases
    assert concealed.anonymous == {"riec-overlast"}  # gemeente-overlast covers two sources
    assert concealed.shown_rule("riec-overlast") is None
    assert concealed.shown_rule("gemeente-overlast") == "gemeente-overlast"
    assert concealed.shown_rule("gemeente-energie") == "gemeente-energie"
    assert concealed.shown_basis("gemeente-overlast", "avg") == "avg"
    assert concealed.shown_basis("gemeente-energie", "elektriciteitswet") == "elektriciteitswet"
    assert concealed.hidden_from == {("riec", "integrale-controle", "overlast"),
                                     ("gemeente", "integrale-controle", "overlast")}


def test_an_unknown_pack_or_rule_hides_everything() -> None:
    for concealed, rule in ((Concealment(), "gemeente-energie"),
                            (concealment(load(hiding_pack())), "no-such-rule")):
        assert not concealed.shows_source(rule)
        assert concealed.shown_rule(rule) is None
        assert concealed.shown_basis(rule, "gemeentewet") is None


def test_a_pack_that_hides_nothing_it_cannot_hide_lints_clean() -> None:
    assert lint_pack(load(hiding_pack()), TODAY) == []


@pytest.mark.parametrize(("bend", "betrayers"), [
    # the category has one contributor: the recipient reads it in GET /v1/categories
    ({"categories": ["drugs-melding"]},
     ["category drugs-melding has one possible source (politie)"]),
    # and the rule names a basis only the politie's signals carry (GET /v1/policy shows it)
    ({"categories": ["drugs-melding"], "legal_bases": ["wpg-art-16"]},
     ["category drugs-melding has one possible source (politie)",
      "legal basis wpg-art-16 has one possible source (politie)"]),
    # the recipient is the other contributor: it knows its own signals
    ({"recipients": ["woningcorporatie"]},
     ["category overlast has one possible source (politie)"]),
    # the rule says whom it hides (GET /v1/policy shows its description)
    ({"description": "Het RIEC hoort van overlast die de Politie meldt"},
     ["its description names politie"]),
])
def test_a_hiding_rule_the_pack_betrays_is_a_warning(
    bend: dict[str, Any], betrayers: list[str]
) -> None:
    data = hiding_pack()
    data["rules"][-2].update(bend)
    assert lint_pack(load(data), TODAY) == [LintWarning(
        "hidden-source-betrayed", "rules.yaml", "rules[3] riec-overlast",
        f"hides its source, but {'; '.join(betrayers)}: the recipient can tell the source "
        "all the same")]


def test_a_rule_that_shows_its_source_is_never_betrayed() -> None:
    data = hiding_pack()
    data["rules"][-2].update(categories=["drugs-melding"], reveal_source=True)
    assert lint_pack(load(data), TODAY) == []


def test_broker_policy_check_strict_fails_on_a_betrayed_hiding_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = hiding_pack()
    data["rules"][-2]["categories"] = ["drugs-melding"]
    folder = write_pack(tmp_path / "pack", data)
    assert run("policy", "check", str(folder)) == 0
    assert ("warning: rules.yaml: rules[3] riec-overlast: hides its source, but category "
            "drugs-melding has one possible source (politie)") in capsys.readouterr().out
    assert run("policy", "check", str(folder), "--strict") == 1
    assert "error: rules.yaml: rules[3] riec-overlast" in capsys.readouterr().out
    assert run("policy", "check", str(folder), "--strict", "--json") == 1
    answer = json.loads(capsys.readouterr().out)
    assert answer["ok"] is False
    assert [w["code"] for w in answer["warnings"]] == ["hidden-source-betrayed"]
