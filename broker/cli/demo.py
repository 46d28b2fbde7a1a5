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
from broker.cli import howto, serve
from broker.errors import StartupError
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
    serving = demo_sub.add_parser(
        "serve", help="init, seed, write a sluis configuration, and serve on 127.0.0.1")
    serving.add_argument("--port", type=int, default=8000)
    serving.add_argument("--dir", type=Path, default=Path("var"),
                         help="where the demo clients, the sluis configuration and the curl "
                              "form are written (owner-only)")
    serving.set_defaults(func=run_serve)


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
            howto.write_private(args.clients_file, json.dumps(clients, indent=2))
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


def run_serve(args: argparse.Namespace) -> int:
    """What `scripts/demo` runs: a demo broker on loopback that a new user can try at once.

    Its issuer is the URL it serves, unless `BROKER_ISSUER` says otherwise: a client
    assertion names the issuer's token URL as its audience, and `sluis` (like most
    clients) assumes the URL it talks to. The sluis configuration names that audience
    when the two differ.
    """
    url = f"http://127.0.0.1:{args.port}"
    os.environ.setdefault("BROKER_ISSUER", url)  # read by this process and its workers
    serve.run_init(argparse.Namespace(json=False))
    files = howto.files_beside(args.dir / "demo-clients.json")
    run_seed(argparse.Namespace(clients_file=files.clients, json=False))
    if not files.clients.exists():
        raise StartupError(f"the database was seeded before, but {files.clients} is gone: "
                           "start from an empty database to make new demo clients")
    clients = howto.write_files(files, url, get_settings().token_url)
    print(howto.howto(files, url, clients), flush=True)
    return serve.run_serve(argparse.Namespace(host="127.0.0.1", port=args.port, workers=1))
