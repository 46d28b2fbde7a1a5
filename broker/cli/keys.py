"""`broker keys rotate NAME`: a new key version, audited; running brokers follow it.
`broker keys rotate-kek` and `broker keys retire-kek`: the key-encryption key's routine.

Every broker process checks the database's key ring once a second (`rotation.KeyFollower`),
so a rotation made here is in use on every node within a couple of seconds, no restart.
"""

from __future__ import annotations

import argparse
import json
import sys

from broker.auth.actors import system_actor
from broker.keys import ROTATABLE
from broker.runtime import open_runtime
from broker.services import keyring, rotation
from broker.settings import get_settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("keys", help="manage the key ring")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)
    rotate = keys_sub.add_parser("rotate", help="add a new version of a key")
    rotate.add_argument("name", choices=ROTATABLE)
    rotate.add_argument("--json", action="store_true")
    rotate.set_defaults(func=run_rotate)
    rotate_kek = keys_sub.add_parser(
        "rotate-kek", help="add a key-encryption key in force; copy the file to every node")
    rotate_kek.add_argument("--json", action="store_true")
    rotate_kek.set_defaults(func=run_rotate_kek)
    retire_kek = keys_sub.add_parser(
        "retire-kek", help="destroy the older key-encryption keys and older master versions")
    retire_kek.add_argument("--json", action="store_true")
    retire_kek.set_defaults(func=run_retire_kek)


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


def run_rotate_kek(args: argparse.Namespace) -> int:
    settings = get_settings()
    runtime = open_runtime(settings)
    try:
        kek_id = rotation.rotate_kek(runtime, actor=system_actor("cli"))
    finally:
        runtime.close()
    if args.json:
        print(json.dumps({"kek": kek_id}))
    else:
        print(f"key-encryption key {kek_id} is in force; every key version is wrapped under it")
        print(f"copy {keyring.kek_path(settings)} to every node, then run "
              "`broker keys retire-kek`")
    return 0


def run_retire_kek(args: argparse.Namespace) -> int:
    runtime = open_runtime(get_settings())
    try:
        figures = rotation.retire_kek(runtime, actor=system_actor("cli"))
    except ValueError as exc:
        print(f"broker: {exc}", file=sys.stderr)
        return 1
    finally:
        runtime.close()
    if args.json:
        print(json.dumps(figures))
    else:
        print(f"retired {figures['keks_retired']} key-encryption key(s) and "
              f"{figures['master_versions_destroyed']} older master key version(s); "
              f"{figures['records_rewrapped']} sealed records now under the active master key")
        print("a backup taken before the retired key-encryption key is unreadable from now on")
    return 0
