"""The pack's own `tests:` section, and the `broker policy` commands that run it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from broker.cli import policy as policy_cli
from broker.core.policy import CompiledPolicy, run_pack_tests
from tests.unit.packs import as_files, base_pack, load

PASSING_TESTS: list[dict[str, Any]] = [
    {"recipient": "gemeente", "purpose": "integrale-controle", "category": "energie-afwijking",
     "source": "netbeheerder", "expect": "disclose",
     "fields": {"attributes.kwh_per_month": {"generalise": {"bucket": 500}}}},
    {"recipient": "riec", "purpose": "ondermijningsbeeld", "category": "drugs-melding",
     "source": "politie", "legal_basis": "wpg-art-20", "expect": "aggregate"},
    {"recipient": "politie", "purpose": "integrale-controle", "category": "energie-afwijking",
     "source": "netbeheerder", "expect": "none"},
]


def with_tests(tests: list[dict[str, Any]]) -> dict[str, Any]:
    data = base_pack()
    data["tests"] = tests
    return data


def results(tests: list[dict[str, Any]]) -> list[Any]:
    return list(run_pack_tests(CompiledPolicy(load(with_tests(tests)))))


def test_passing_tests_pass() -> None:
    outcome = results(PASSING_TESTS)
    assert [r.passed for r in outcome] == [True, True, True]
    assert [r.rule for r in outcome] == ["gemeente-energie", "riec-beeld", None]


def test_wrong_access_fails_with_reason() -> None:
    [result] = results([dict(PASSING_TESTS[1], expect="disclose")])
    assert not result.passed
    assert result.reason == "expected disclose, got aggregate (rule riec-beeld)"


def test_wrong_transform_fails_with_reason() -> None:
    test = dict(PASSING_TESTS[0], fields={"observed_at": {"generalise": "day"}})
    [result] = results([test])
    assert not result.passed
    assert "observed_at" in result.reason
    assert "generalise:month" in result.reason


def test_field_the_rule_does_not_release_fails() -> None:
    test = dict(PASSING_TESTS[0], fields={"location.street": "reveal"})
    [result] = results([test])
    assert result.reason == "field location.street is not released"


def test_legal_basis_narrows_the_test() -> None:
    test = {"recipient": "gemeente", "purpose": "integrale-controle",
            "category": "drugs-melding", "source": "politie", "legal_basis": "wpg-art-20",
            "expect": "none"}
    assert results([test])[0].passed
    assert not results([dict(test, legal_basis="wpg-art-16")])[0].passed


# --- the command line ---------------------------------------------------------------------


def write_pack(folder: Path, data: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in as_files(data).items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="broker")
    sub = parser.add_subparsers(dest="command", required=True)
    policy_cli.register(sub)
    args = parser.parse_args(list(argv))
    code: int = args.func(args)
    return code


def test_check_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_pack(tmp_path / "pack", base_pack())
    assert run("policy", "check", str(folder)) == 0
    assert capsys.readouterr().out.startswith("ok: pack klein 1 sha256:")


def test_check_reports_errors_with_file_and_entry(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    data = base_pack()
    data["rules"][0]["recipients"] = ["belastingdienst"]
    folder = write_pack(tmp_path / "pack", data)
    assert run("policy", "check", str(folder)) == 1
    assert ("error: rules.yaml: rules[0] gemeente-energie: recipients: belastingdienst is not "
            "a defined organisation or group") in capsys.readouterr().out
    assert run("policy", "check", str(folder), "--json") == 1
    answer = json.loads(capsys.readouterr().out)
    assert answer["ok"] is False
    assert answer["errors"][0]["file"] == "rules.yaml"
    assert answer["errors"][0]["entry"] == "rules[0] gemeente-energie"


def test_warnings_fail_only_with_strict(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    data = base_pack()
    data["purposes"]["woonfraude"] = {"title": "Woonfraude"}
    folder = write_pack(tmp_path / "pack", data)
    assert run("policy", "check", str(folder)) == 0
    assert "warning: catalogue.yaml: purposes.woonfraude" in capsys.readouterr().out
    assert run("policy", "check", str(folder), "--strict") == 1
    assert "FAILED: pack klein" in capsys.readouterr().out
    assert run("policy", "check", str(folder), "--strict", "--json") == 1
    assert json.loads(capsys.readouterr().out)["ok"] is False


def test_check_json_lists_warnings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = base_pack()
    data["purposes"]["woonfraude"] = {"title": "Woonfraude"}
    folder = write_pack(tmp_path / "pack", data)
    assert run("policy", "check", str(folder), "--json") == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["ok"] is True
    assert answer["warnings"] == [{"code": "purpose-unused", "file": "catalogue.yaml",
                                   "entry": "purposes.woonfraude",
                                   "msg": "no rule uses this purpose"}]


def test_missing_folder_is_a_usage_error(tmp_path: Path) -> None:
    assert run("policy", "check", str(tmp_path / "absent")) == 2


def test_test_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write_pack(tmp_path / "good", with_tests(PASSING_TESTS))
    assert run("policy", "test", str(good)) == 0
    assert "3 passed, 0 failed" in capsys.readouterr().out
    bad = write_pack(tmp_path / "bad", with_tests([dict(PASSING_TESTS[2], expect="hit")]))
    assert run("policy", "test", str(bad)) == 1
    assert "FAIL tests[0] politie integrale-controle" in capsys.readouterr().out
    assert run("policy", "test", str(bad), "--json") == 1
    answer = json.loads(capsys.readouterr().out)
    assert (answer["passed"], answer["failed"]) == (0, 1)


def test_explain_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_pack(tmp_path / "pack", base_pack())
    common = ("--purpose", "integrale-controle", "--category", "energie-afwijking",
              "--source", "netbeheerder", "--dir", str(folder))
    assert run("policy", "explain", "--recipient", "gemeente", *common, "--json") == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["access"] == "disclose"
    assert answer["rule"] == "gemeente-energie"
    assert answer["fields"]["observed_at"] == {"generalise": "month"}
    assert run("policy", "explain", "--recipient", "politie", *common) == 0
    assert capsys.readouterr().out == "access: none\n"
    assert run("policy", "explain", "--recipient", "nobody", *common) == 2
    assert "unknown organisation nobody" in capsys.readouterr().err


def test_explain_dir_defaults_to_the_environment(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_pack(tmp_path / "pack", base_pack())
    monkeypatch.setenv("BROKER_POLICY_DIR", str(folder))
    assert run("policy", "explain", "--recipient", "riec", "--purpose", "ondermijningsbeeld",
               "--category", "drugs-melding", "--source", "politie") == 0


def test_bad_usage_exits_2() -> None:
    with pytest.raises(SystemExit) as caught:
        run("policy", "explain", "--recipient", "gemeente")
    assert caught.value.code == 2
