"""`broker retention run`: shred signals past their retention date."""

from __future__ import annotations

import argparse
import json

from broker.auth.actors import system_actor
from broker.runtime import open_runtime
from broker.services import retention
from broker.settings import get_settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser("retention", help="signal retention")
    retention_sub = group.add_subparsers(
        dest="retention_command", metavar="COMMAND", required=True
    )
    run = retention_sub.add_parser("run", help="erase signals past their retention date")
    run.add_argument("--json", action="store_true")
    run.set_defaults(func=run_retention)


def run_retention(args: argparse.Namespace) -> int:
    runtime = open_runtime(get_settings())
    try:
        run = retention.run_retention(runtime, system_actor("retention"))
    finally:
        runtime.close()
    if args.json:
        print(json.dumps({"erased": run.erased, "answers_deleted": run.answers_deleted}))
    else:
        print(f"erased {run.erased} signals; deleted {run.answers_deleted} stored "
              "Idempotency-Key answers")
    return 0
