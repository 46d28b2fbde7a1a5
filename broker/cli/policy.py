"""`broker policy check|test|explain`: work on a pack folder without a running broker.

Exit codes: 0 ok, 1 the pack has errors (or, with --strict, warnings) or a test fails,
2 bad usage (including a folder that does not exist).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import date
from pathlib import Path
from typing import Any

from broker.core.policy import CompiledPolicy, Pack, lint_pack, load_pack, run_pack_tests
from broker.errors import PackInvalid

__all__ = ["register"]

DEFAULT_PACK_DIR = "policies/ondermijning"


def _print_json(data: object) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True))


def _problems(exc: PackInvalid) -> list[dict[str, str]]:
    rows = []
    for problem in exc.errors:
        file_name = str(problem.loc[0]) if problem.loc else ""
        entry = " ".join(str(part) for part in problem.loc[1:])
        rows.append({"file": file_name, "entry": entry, "msg": problem.msg})
    return rows


def _load(directory: Path, as_json: bool) -> Pack | int:
    """The loaded pack, or the exit code after reporting why it did not load."""
    if not directory.is_dir():
        print(f"broker policy: {directory} is not a folder", file=sys.stderr)
        return 2
    try:
        return load_pack(directory)
    except PackInvalid as exc:
        rows = _problems(exc)
        if as_json:
            _print_json({"ok": False, "errors": rows, "warnings": []})
        else:
            print(f"{exc.detail}:")
            for row in rows:
                print(f"  error: {row['file']}: {row['entry']}: {row['msg']}")
        return 1


def check(args: argparse.Namespace) -> int:
    """Validate and lint a pack folder."""
    loaded = _load(Path(args.dir), args.json)
    if isinstance(loaded, int):
        return loaded
    warnings = lint_pack(loaded, date.today())
    failed = bool(warnings) and args.strict
    if args.json:
        _print_json({"ok": not failed, "pack": loaded.name, "version": loaded.version,
                     "hash": loaded.hash, "rules": len(loaded.rules), "errors": [],
                     "warnings": [w.as_dict() for w in warnings]})
    else:
        for warning in warnings:
            print(f"  {'error' if args.strict else 'warning'}: {warning}")
        print(f"{'FAILED' if failed else 'ok'}: pack {loaded.name} {loaded.version} "
              f"{loaded.hash}: {len(loaded.rules)} rules, {len(warnings)} warning(s)")
    return 1 if failed else 0


def test(args: argparse.Namespace) -> int:
    """Run the pack's tests section."""
    loaded = _load(Path(args.dir), args.json)
    if isinstance(loaded, int):
        return loaded
    results = run_pack_tests(CompiledPolicy(loaded))
    failures = [r for r in results if not r.passed]
    if args.json:
        _print_json({"ok": not failures, "pack": loaded.name, "hash": loaded.hash,
                     "passed": len(results) - len(failures), "failed": len(failures),
                     "results": [r.as_dict() for r in results]})
    else:
        for result in results:
            status = "PASS" if result.passed else "FAIL"
            reason = f": {result.reason}" if result.reason else ""
            print(f"{status} {result.name()}{reason}")
        print(f"{len(results) - len(failures)} passed, {len(failures)} failed")
    return 1 if failures else 0


def _unknown_names(pack: Pack, args: argparse.Namespace) -> list[str]:
    wanted = [("organisation", args.recipient, pack.organisations),
              ("purpose", args.purpose, pack.purposes),
              ("category", args.category, pack.categories),
              ("organisation", args.source, pack.organisations)]
    if args.legal_basis is not None:
        wanted.append(("legal basis", args.legal_basis, pack.legal_bases))
    return [f"unknown {what} {name}" for what, name, known in wanted if name not in known]


def explain(args: argparse.Namespace) -> int:
    """Dry run: which rule would apply, and with which transforms."""
    loaded = _load(Path(args.dir), args.json)
    if isinstance(loaded, int):
        return loaded
    unknown = _unknown_names(loaded, args)
    if unknown:
        for line in unknown:
            print(f"broker policy explain: {line}", file=sys.stderr)
        return 2
    answer = CompiledPolicy(loaded).explain(args.recipient, args.purpose, args.category,
                                            args.source, args.legal_basis)
    if args.json:
        data: dict[str, Any] = answer.as_dict()
        if answer.rule is not None:
            data["legal_basis"] = answer.legal_basis
        _print_json(data)
        return 0
    print(f"access: {answer.access}")
    if answer.rule is not None:
        print(f"rule: {answer.rule}")
        print(f"legal basis: {answer.legal_basis}")
        for path, transform in answer.fields.items():
            print(f"  {path}: {json.dumps(transform, ensure_ascii=False)}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `policy check|test|explain` to the `broker` command."""
    parser = subparsers.add_parser("policy", help="check, test and explain policy packs")
    sub = parser.add_subparsers(dest="policy_command", metavar="SUBCOMMAND", required=True)

    p_check = sub.add_parser("check", help="validate and lint a pack folder")
    p_check.add_argument("dir", metavar="DIR")
    p_check.add_argument("--strict", action="store_true", help="treat warnings as errors")
    p_check.add_argument("--json", action="store_true")
    p_check.set_defaults(func=check)

    p_test = sub.add_parser("test", help="run the pack's tests section")
    p_test.add_argument("dir", metavar="DIR")
    p_test.add_argument("--json", action="store_true")
    p_test.set_defaults(func=test)

    p_explain = sub.add_parser("explain", help="which rule applies to a request (dry run)")
    p_explain.add_argument("--recipient", required=True, metavar="ORG")
    p_explain.add_argument("--purpose", required=True, metavar="P")
    p_explain.add_argument("--category", required=True, metavar="C")
    p_explain.add_argument("--source", required=True, metavar="ORG")
    p_explain.add_argument("--legal-basis", metavar="B")
    p_explain.add_argument("--dir", metavar="DIR",
                           default=os.environ.get("BROKER_POLICY_DIR", DEFAULT_PACK_DIR))
    p_explain.add_argument("--json", action="store_true")
    p_explain.set_defaults(func=explain)

    p_load = sub.add_parser("load", help="make DIR the live pack (refused if it does not check)")
    p_load.add_argument("dir", metavar="DIR")
    p_load.add_argument("--json", action="store_true")
    p_load.set_defaults(func=load)


def load(args: argparse.Namespace) -> int:
    """Record DIR's pack as the live one (audited); running brokers follow within seconds."""
    from broker.auth.actors import system_actor
    from broker.runtime import open_runtime
    from broker.services import packs
    from broker.settings import get_settings

    runtime = open_runtime(get_settings())
    try:
        new, previous = packs.reload_from_dir(runtime, Path(args.dir), actor=system_actor("cli"))
    finally:
        runtime.close()
    if args.json:
        print(json.dumps({"hash": new, "previous_hash": previous}))
    else:
        print(f"live pack: {new} (was {previous})")
    return 0
