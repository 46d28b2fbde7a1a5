"""`broker keys rotate NAME`."""

from __future__ import annotations

import argparse
import json

from broker.keys import ROTATABLE, rotate_key
from broker.settings import get_settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("keys", help="manage the key ring")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)
    rotate = keys_sub.add_parser("rotate", help="add a new version of a key")
    rotate.add_argument("name", choices=ROTATABLE)
    rotate.add_argument("--json", action="store_true")
    rotate.set_defaults(func=run_rotate)


def run_rotate(args: argparse.Namespace) -> int:
    settings = get_settings()
    version = rotate_key(settings.key_dir, args.name)
    if args.json:
        print(json.dumps({"key": args.name, "version": version}))
    else:
        print(f"key {args.name}: version {version} is now active; restart the broker to use it")
    return 0
