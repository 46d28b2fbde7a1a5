"""`broker audit verify [FILE]` and `broker audit checkpoint`.

Live verification reads the database named by the settings; `verify FILE` checks an
export offline and needs only the checkpoint verifier key (`--key`, a C2SP verifier key
string or `@file`; by default the local key ring's checkpoint keys). Exit codes: 0 the
log verifies, 1 it does not (or nothing could be signed), 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from broker import migrate
from broker.audit.export import verify_export_file
from broker.audit.integrity import verify_live
from broker.audit.reads import b64
from broker.audit.signer import CheckpointSigner
from broker.core.checkpoint import CheckpointInvalid, Verifier, parse_verifier_key
from broker.db import make_engine
from broker.errors import StartupError
from broker.services import keyring
from broker.settings import Settings, get_settings

USAGE = 2


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = sub.add_parser("audit", help="verify the audit log, sign checkpoints")
    audit_sub = audit.add_subparsers(dest="audit_command", metavar="COMMAND", required=True)
    verify = audit_sub.add_parser(
        "verify", help="verify the live log, or an export file, against its checkpoints"
    )
    verify.add_argument("file", nargs="?", help="an export (JSON Lines); '-' reads stdin")
    verify.add_argument(
        "--key", help="checkpoint verifier key string, or @FILE holding it (FILE mode only)"
    )
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    verify.set_defaults(func=run_verify)
    checkpoint = audit_sub.add_parser("checkpoint", help="sign and store a checkpoint now")
    checkpoint.add_argument("--json", action="store_true")
    checkpoint.set_defaults(func=run_checkpoint)


@contextmanager
def _signer(settings: Settings) -> Iterator[CheckpointSigner]:
    engine = make_engine(settings.database_url, busy_timeout_ms=settings.sqlite_busy_timeout_ms)
    try:
        migrate.require_head(engine)
        keys = keyring.open_ring(engine, settings).ring
        yield CheckpointSigner(engine, keys, settings)
    finally:
        engine.dispose()


def _verifiers(key: str | None, settings: Settings) -> list[Verifier]:
    """The verifier keys for offline verification; ValueError explains a bad one."""
    if key is None:
        with _signer(settings) as signer:
            verifiers = signer.verifiers()
        return verifiers
    text = Path(key[1:]).read_text(encoding="utf-8").strip() if key.startswith("@") else key
    try:
        return [parse_verifier_key(text)]
    except CheckpointInvalid as exc:
        raise ValueError(f"not a checkpoint verifier key: {exc}") from None


def _print(report: dict[str, Any], as_json: bool, what: str) -> None:
    if as_json:
        print(json.dumps(report, sort_keys=True))
        return
    if report["ok"]:
        print(f"{what}: OK, {report['size']} entries, root {report['root_hash']}")
        return
    where = report.get("first_bad_seq")
    first = f", first bad entry: seq {where}" if where is not None else ""
    print(f"{what}: FAILED ({len(report['problems'])} problems{first})")
    for problem in report["problems"]:
        seq = f"seq {problem['seq']}: " if problem["seq"] is not None else ""
        print(f"  {problem['code']}: {seq}{problem['message']}")


def run_verify(args: argparse.Namespace) -> int:
    settings = get_settings()
    if args.file is None:
        if args.key:
            print("broker: --key applies to verifying a FILE", file=sys.stderr)
            return USAGE
        with _signer(settings) as signer:
            report = verify_live(signer.engine, signer)
        _print(report.as_dict(), args.json, "audit log")
        return 0 if report.ok else 1
    try:
        verifiers = _verifiers(args.key, settings)
        data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except (OSError, ValueError, StartupError) as exc:
        print(f"broker: {exc}", file=sys.stderr)
        return USAGE
    result = verify_export_file(data.splitlines(keepends=True), verifiers)
    seqs = [p.seq for p in result.problems if p.seq is not None]
    _print(
        {
            "ok": result.ok,
            "size": result.size,
            "root_hash": b64(result.root),
            "problems": [p.as_dict() for p in result.problems],
            "first_bad_seq": min(seqs) if seqs else None,
        },
        args.json,
        "export",
    )
    return 0 if result.ok else 1


def run_checkpoint(args: argparse.Namespace) -> int:
    settings = get_settings()
    with _signer(settings) as signer:
        checkpoint = signer.sign()
    if args.json:
        print(json.dumps({"size": checkpoint.size, "root_hash": b64(checkpoint.root),
                          "note": checkpoint.note}))
    else:
        print(checkpoint.note, end="")
    return 0
