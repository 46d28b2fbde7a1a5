"""`broker policy check|test|explain|load`: work on a pack folder without a running broker;
`broker policy history|show|diff`: read the packs the database recorded as live;
`broker policy impact`: replay the journaled requests under a draft folder.

Exit codes: 0 ok, 1 the pack has errors (or, with --strict, warnings) or a test fails, or
no recorded pack has the hash given, 2 bad usage (including a folder that does not exist).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from broker.core.policy import (
    CompiledPolicy,
    Pack,
    lint_pack,
    load_pack,
    parse_transform,
    run_pack_tests,
)
from broker.core.policy.diff import DROPPED, PackDiff, diff_packs
from broker.errors import PackInvalid

if TYPE_CHECKING:
    from sqlalchemy import Engine

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

    p_history = sub.add_parser("history", help="every recorded load of a pack, newest first")
    p_history.add_argument("--json", action="store_true")
    p_history.set_defaults(func=history)

    p_show = sub.add_parser("show", help="a recorded pack's canonical text")
    p_show.add_argument("hash", metavar="HASH", help="its hash, or a prefix only it has")
    p_show.set_defaults(func=show)

    p_diff = sub.add_parser("diff", help="what changes from pack A to pack B")
    pack_help = "a recorded pack's hash (or a prefix only it has), or a pack folder"
    p_diff.add_argument("before", metavar="A", help=pack_help)
    p_diff.add_argument("after", metavar="B", help=pack_help)
    p_diff.add_argument("--json", action="store_true")
    p_diff.set_defaults(func=diff)

    p_impact = sub.add_parser("impact", help="replay the journaled requests under a draft")
    p_impact.add_argument("dir", metavar="DRAFT_DIR")
    p_impact.add_argument("--since", metavar="PERIOD",
                          help="how far back: 14d or 36h (default: all the journal keeps)")
    p_impact.add_argument("--json", action="store_true")
    p_impact.set_defaults(func=impact)


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


# --- history, show, diff: the packs the database recorded -------------------------------


@contextmanager
def _history_engine() -> Iterator[Engine]:
    """The settings' database, read only, at the newest migration."""
    from broker import migrate
    from broker.db import make_engine
    from broker.settings import get_settings

    settings = get_settings()
    engine = make_engine(settings.database_url, busy_timeout_ms=settings.sqlite_busy_timeout_ms)
    try:
        migrate.require_head(engine)
        yield engine
    finally:
        engine.dispose()


def history(args: argparse.Namespace) -> int:
    """Every recorded load of a pack, newest first; the newest is the live pack."""
    from broker.services import pack_history

    with _history_engine() as engine:
        loads = pack_history.loads(engine)
    if args.json:
        _print_json([load.as_dict() for load in loads])
        return 0
    for load in loads:
        data = load.as_dict()
        live = "  (live)" if load.live else ""
        print(f"{data['loaded_at']}  {load.hash}  {load.pack} {load.version}  "
              f"by {load.loaded_by}{live}")
    if not loads:
        print("no pack has been recorded yet")
    return 0


def show(args: argparse.Namespace) -> int:
    """A recorded pack's canonical text, as it was stored on its first load."""
    from broker.services import pack_history

    with _history_engine() as engine:
        found = pack_history.stored(engine, args.hash, loc=("HASH",))
    print(found.canonical)
    return 0


def _policy_of(reference: str, loc: str, engine: Callable[[], Engine]) -> CompiledPolicy | int:
    """The pack a `diff` argument names: a folder, else a recorded pack's hash."""
    from broker.services import pack_history

    if Path(reference).is_dir():
        loaded = _load(Path(reference), as_json=False)
        return loaded if isinstance(loaded, int) else CompiledPolicy(loaded)
    if not pack_history.REFERENCE.fullmatch(reference):
        print(f"broker policy diff: {reference} is neither a folder nor a pack hash",
              file=sys.stderr)
        return 2
    return pack_history.compiled(engine(), reference, loc=(loc,))


def diff(args: argparse.Namespace) -> int:
    """What changes from pack A to pack B, each a folder or a recorded pack."""
    with ExitStack() as stack:
        opened: list[Engine] = []

        def engine() -> Engine:
            if not opened:
                opened.append(stack.enter_context(_history_engine()))
            return opened[0]

        before = _policy_of(args.before, "A", engine)
        if isinstance(before, int):
            return before
        after = _policy_of(args.after, "B", engine)
        if isinstance(after, int):
            return after
    changes = diff_packs(before, after)
    if args.json:
        _print_json(changes.as_dict())
    else:
        print(f"from {before.hash} ({before.pack.name} {before.pack.version})")
        print(f"to   {after.hash} ({after.pack.name} {after.pack.version})")
        for line in diff_lines(changes):
            print(line)
    return 0


def _shown(value: object, *, transform: bool) -> str:
    """A field's transform as `pseudonymise` or `generalise:month`; a condition as JSON."""
    if transform and value != DROPPED and isinstance(value, str | dict):
        return str(parse_transform(value))
    return value if value == DROPPED else json.dumps(value, ensure_ascii=False)


def _either(before: str, after: str) -> str:
    return before if before == after else f"{before} -> {after}"


def diff_lines(changes: PackDiff) -> list[str]:
    """A diff in lines for a terminal."""
    if changes.empty:
        return ["no changes"]
    lines = [f"rule added: {r}" for r in changes.rules_added]
    lines += [f"rule removed: {r}" for r in changes.rules_removed]
    for rule in changes.rules_changed:
        lines.append(f"rule changed: {rule.id}: {', '.join(rule.attributes)}")
    for name, section in changes.catalogue.items():
        for what in ("added", "removed", "changed"):
            if ids := getattr(section, what):
                lines.append(f"{name} {what}: {', '.join(ids)}")
    for name, (old, new) in changes.settings.items():
        lines.append(f"{name}: {json.dumps(old)} -> {json.dumps(new)}")
    for change in changes.access:
        access = _either(change.access_before, change.access_after)
        rules = _either(change.rule_before or "-", change.rule_after or "-")
        lines.append(f"{' / '.join(change.key)}: {access} (rule {rules})")
        for item in change.changes:
            field = item.path is not None
            before = _shown(item.before, transform=field)
            after = _shown(item.after, transform=field)
            lines.append(f"    {item.path if field else item.what}: {before} -> {after}")
    return lines


# --- impact: the draft replayed over the journaled requests -------------------------------


def impact(args: argparse.Namespace) -> int:
    """Replay every journaled request of the period under the live pack and the draft
    folder, and report what changes (recorded as a `policy_impact` entry)."""
    from broker.auth.actors import system_actor
    from broker.runtime import open_runtime
    from broker.services import impact as replay
    from broker.settings import get_settings

    loaded = _load(Path(args.dir), args.json)
    if isinstance(loaded, int):
        return loaded
    back = None if args.since is None else replay.period(args.since, ("--since",))
    runtime = open_runtime(get_settings())
    try:
        report = replay.replay(runtime, system_actor("cli"), CompiledPolicy(loaded), back=back)
    finally:
        runtime.close()
    if args.json:
        _print_json(report.as_dict())
    else:
        for line in impact_lines(report.as_dict()):
            print(line)
    return 0


def impact_lines(report: dict[str, Any]) -> list[str]:
    """An impact report as text: the totals, then per recipient and purpose each rule
    whose decisions change."""
    totals = report["totals"]
    lines = [f"live  {report['live']}", f"draft {report['draft']}",
             f"requests {report['since']} .. {report['until']}: {totals['requests']} replayed, "
             f"{totals['affected']} affected; signals +{totals['signals_gained']} "
             f"-{totals['signals_lost']}; field changes {totals['field_changes']}; hits flipped "
             f"{totals['hits_flipped']}; cells crossing the threshold {totals['cells_crossed']}"]
    for group in report["groups"]:
        lines.append(f"{group['recipient']} / {group['purpose']}: {group['requests']} "
                     f"replayed, {group['affected']} affected")
        for rule in group["rules"]:
            if not rule["affected"]:
                continue
            parts = [f"signals +{rule['signals_gained']} -{rule['signals_lost']}"]
            if rule["hits_gained"] or rule["hits_lost"]:
                parts.append(f"hits +{rule['hits_gained']} -{rule['hits_lost']}")
            if rule["cells_published"] or rule["cells_suppressed"]:
                parts.append(f"cells published {rule['cells_published']}, suppressed "
                             f"{rule['cells_suppressed']}")
            lines.append(f"    rule {rule['rule']}: {rule['affected']} of {rule['requests']} "
                         f"requests affected; {'; '.join(parts)}")
            lines += [f"        {f['path']}: {f['before']} -> {f['after']} ({f['signals']} "
                      "signals)" for f in rule["fields"]]
    return lines
