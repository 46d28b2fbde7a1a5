"""Lint warns on a `min_count` below 5 (an area summary that may show single cases), and
`broker policy check --strict` makes it an error; a hit rule, which counts nothing, is
not warned about."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from broker.core.policy import lint_pack
from broker.core.policy.lint import MIN_COUNT_FLOOR
from tests.unit.packs import base_pack, load
from tests.unit.test_policy_lint import TODAY
from tests.unit.test_policy_packtests import run, write_pack

MESSAGE = "min_count {n} is below 5: an area summary may show a count of single cases"


@pytest.mark.parametrize(("rule", "min_count", "warned"), [
    (2, 1, True),    # riec-beeld, aggregate
    (2, 4, True),
    (2, 5, False),
    (2, 20, False),
    (0, 2, True),    # gemeente-energie, disclose: its signals are counted in summaries too
])
def test_a_small_min_count_is_a_warning(rule: int, min_count: int, warned: bool) -> None:
    data = base_pack()
    data["rules"][rule]["min_count"] = min_count
    found = [(w.code, w.file, w.entry, w.msg) for w in lint_pack(load(data), TODAY)]
    entry = f"rules[{rule}] {data['rules'][rule]['id']}"
    expected = [("small-min-count", "rules.yaml", entry, MESSAGE.format(n=min_count))]
    assert found == (expected if warned else [])


def test_a_hit_rule_counts_nothing_and_is_not_warned_about() -> None:
    data = base_pack()
    data["rules"][2].update(access="hit", min_count=1)
    assert [w.code for w in lint_pack(load(data), TODAY)] == []


def test_the_floor_is_the_default_min_count() -> None:
    data = base_pack()
    assert "min_count" not in data["rules"][2]
    assert load(data).rules[2].min_count == MIN_COUNT_FLOOR == 5


def test_strict_check_fails_on_a_small_min_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = base_pack()
    data["rules"][2]["min_count"] = 1
    folder = write_pack(tmp_path / "pack", data)
    assert run("policy", "check", str(folder)) == 0
    line = f"rules.yaml: rules[2] riec-beeld: {MESSAGE.format(n=1)} [small-min-count]"
    assert f"  warning: {line}" in capsys.readouterr().out.splitlines()
    assert run("policy", "check", str(folder), "--strict") == 1
    assert f"  error: {line}" in capsys.readouterr().out.splitlines()
    assert run("policy", "check", str(folder), "--strict", "--json") == 1
    answer = json.loads(capsys.readouterr().out)
    assert answer["ok"] is False
    assert [w["code"] for w in answer["warnings"]] == ["small-min-count"]
