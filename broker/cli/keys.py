"""`broker keys rotate NAME`: a new key version, audited; running brokers follow it.

Every broker process checks the key directory once a second (`rotation.KeyFollower`),
so a rotation made here is in use everywhere within a couple of seconds, no restart.
"""

from __future__ import annotations

import argparse
import json

from broker.auth.actors import system_actor
from broker.keys import ROTATABLE
from broker.runtime import open_runtime
from broker.services import rotation
from broker.settings import get_settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("keys", help="manage the key ring")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)
    rotate = keys_sub.add_parser("rotate", help="add a new version of a key")
    rotate.add_argument("name", choices=ROTATABLE)
    rotate.add_argument("--json", action="store_true")
    rotate.set_defaults(func=run_rotate)


def run_rotate(args: argparse.Namespace) -> int:
    runtime = open_runtime(get_settings())
    try:
        version = rotation.rotate(runtime, args.name, actor=system_actor("cli"), request_id=None)
    finally:
        runtime.close()
    if args.json:
        print(json.dumps({"key": args.name, "version": version}))
    else:
        print(f"key {args.name}: version {version} is active")
        print("running brokers use it within a couple of seconds")
    return 0
