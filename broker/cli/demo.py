"""`broker demo seed`: demo clients and synthetic signals for the demo pack."""

from __future__ import annotations

import argparse
import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from broker import demo
from broker.auth.actors import system_actor
from broker.auth.clients import create_client
from broker.models import signal
from broker.runtime import Runtime, open_runtime
from broker.schemas import SignalIn
from broker.services import signals
from broker.settings import get_settings

DEMO_CLIENTS = (
    # (org, name, kind, roles)
    ("politie", "Politie basisteam (systeem)", "system", ["contributor", "requester"]),
    ("gemeente", "Gemeente team Ondermijning (systeem)", "system", ["contributor", "requester"]),
    ("belastingdienst", "Belastingdienst (systeem)", "system", ["contributor", "requester"]),
    ("omgevingsdienst", "Omgevingsdienst (systeem)", "system", ["contributor", "requester"]),
    ("netbeheerder", "Netbeheerder (systeem)", "system", ["contributor", "requester"]),
    ("woningcorporatie", "Woningcorporatie (systeem)", "system", ["contributor", "requester"]),
    ("riec", "RIEC analist", "personal", ["requester"]),
    ("riec", "Functionaris gegevensbescherming", "personal", ["privacy_officer"]),
    ("riec", "Beheerder Sluis", "personal", ["admin"]),
    # A contributing organisation's own officer: legal holds on the police's signals.
    ("politie", "Functionaris gegevensbescherming politie", "personal", ["privacy_officer"]),
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo_parser = sub.add_parser("demo", help="demo data for the demo pack")
    demo_sub = demo_parser.add_subparsers(dest="demo_command", metavar="COMMAND", required=True)
    seed = demo_sub.add_parser("seed", help="create demo clients and synthetic signals")
    seed.add_argument(
        "--clients-file",
        type=Path,
        default=Path("var/demo-clients.json"),
        help="where the demo clients' secrets are written (owner-only)",
    )
    seed.add_argument("--json", action="store_true")
    seed.set_defaults(func=run_seed)


def _write_private(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)


def seed_clients(runtime: Runtime) -> list[dict[str, Any]]:
    created = []
    for org, name, kind, roles in DEMO_CLIENTS:
        client, secret = create_client(runtime, org=org, name=name, kind=kind, roles=roles)
        created.append(
            {
                "client_id": client.id,
                "client_secret": secret,
                "org": org,
                "name": name,
                "kind": kind,
                "roles": roles,
            }
        )
    return created


def seed_signals(runtime: Runtime) -> int:
    by_source: dict[str, list[SignalIn]] = defaultdict(list)
    for source, body in demo.demo_signals(runtime.policy.pack):
        by_source[source].append(SignalIn.model_validate(body))
    total = 0
    for source, bodies in sorted(by_source.items()):
        actor = system_actor(f"demo-seed:{source}")
        created = signals.create_signals(runtime, actor, source, bodies, request_id=None,
                                         client_id=actor.label)
        total += len(created.body["signals"])
    return total


def run_seed(args: argparse.Namespace) -> int:
    runtime = open_runtime(get_settings())
    try:
        with runtime.engine.connect() as conn:
            existing = conn.execute(select(func.count()).select_from(signal)).scalar_one()
        clients: list[dict[str, Any]] = []
        if args.clients_file.exists():
            clients = json.loads(args.clients_file.read_text())
        if existing:
            count = 0
        else:
            clients = seed_clients(runtime)
            _write_private(args.clients_file, clients)
            count = seed_signals(runtime)
    finally:
        runtime.close()
    if args.json:
        print(json.dumps({"signals_created": count, "clients_file": str(args.clients_file)}))
        return 0
    if count:
        print(f"seeded {count} synthetic signals and {len(clients)} demo clients")
    else:
        print(f"the database already holds {existing} signals; nothing seeded")
    print(f"demo client credentials: {args.clients_file} (readable by you only)")
    return 0
