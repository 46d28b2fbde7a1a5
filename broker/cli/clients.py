"""`broker clients create` and `broker clients revoke`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from broker.auth import clients
from broker.auth.actors import system_actor
from broker.auth.clients import Client
from broker.runtime import open_runtime
from broker.settings import get_settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("clients", help="register and revoke API clients")
    clients_sub = parser.add_subparsers(dest="clients_command", metavar="COMMAND", required=True)
    create = clients_sub.add_parser(
        "create", help="register a client; prints its id and, without --jwk, its secret once")
    create.add_argument("--org", required=True, help="organisation id of the live policy pack")
    create.add_argument("--name", required=True)
    create.add_argument("--roles", required=True,
                        help="comma-separated: " + ",".join(sorted(clients.ROLES)))
    create.add_argument("--kind", choices=clients.KINDS, default="system")
    create.add_argument("--jwk", type=Path, metavar="FILE",
                        help="the client's EC P-256 public key (JWK, JSON) for private_key_jwt")
    create.add_argument("--json", action="store_true", help="print JSON")
    create.set_defaults(func=run_create)
    revoke = clients_sub.add_parser("revoke", help="revoke a client; its tokens stop working")
    revoke.add_argument("client_id")
    revoke.add_argument("--json", action="store_true", help="print JSON")
    revoke.set_defaults(func=run_revoke)


def _read_jwk(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"broker: cannot read the key file {path}: {exc}", file=sys.stderr)
        return None
    if not isinstance(value, dict):
        print(f"broker: {path} does not hold a JSON object (a JWK)", file=sys.stderr)
        return None
    return value


def _as_json(client: Client) -> dict[str, Any]:
    described = clients.describe(client)
    return {"client_id": described.pop("id"), **described}


def run_create(args: argparse.Namespace) -> int:
    roles = [role.strip() for role in args.roles.split(",") if role.strip()]
    jwk = None
    if args.jwk is not None:
        jwk = _read_jwk(args.jwk)
        if jwk is None:
            return 2
    runtime = open_runtime(get_settings())
    try:
        client, secret = clients.create_client(
            runtime, org=args.org, name=args.name, kind=args.kind, roles=roles,
            public_jwk=jwk, actor=system_actor("cli"),
        )
    finally:
        runtime.close()
    if args.json:
        print(json.dumps({**_as_json(client), "client_secret": secret}))
        return 0
    print(f"client_id:     {client.id}")
    if secret is not None:
        print(f"client_secret: {secret}")
        print("The secret is shown this once; store it now.")
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    runtime = open_runtime(get_settings())
    try:
        client = clients.revoke_client(runtime, args.client_id, actor=system_actor("cli"))
    finally:
        runtime.close()
    if args.json:
        print(json.dumps(_as_json(client)))
    else:
        print(f"client {client.id} revoked; its tokens stop working on their next request")
    return 0
