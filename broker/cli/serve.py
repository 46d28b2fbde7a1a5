"""`broker init` and `broker serve`.

Both run with a umask of 077: every file and folder they (and the workers `serve` starts)
create is the owner's only, since the database, its -wal and -shm files and the key ring
hold what no other local user may read. `serve` refuses a database file that others may
open, as the key ring refuses such a key file.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import uvicorn

from broker import migrate
from broker.db import check_private_database, make_engine
from broker.keys import folder_holds_keys, remove_key_files
from broker.logs import log_config
from broker.runtime import open_runtime
from broker.services import keyring
from broker.settings import get_settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    init = sub.add_parser(
        "init", help="create the key ring if absent, migrate the database to head"
    )
    init.add_argument("--json", action="store_true", help="print JSON")
    init.set_defaults(func=run_init)
    serve = sub.add_parser("serve", help="run the broker's HTTP API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument(
        "--forwarded-allow-ips", default="127.0.0.1", metavar="ADDRESSES",
        help="comma-separated addresses (or *) of the load balancers whose X-Forwarded-For "
             "and X-Forwarded-Proto are believed, so brakes key on the real client address")
    serve.add_argument("--no-proxy-headers", action="store_true",
                       help="believe no X-Forwarded-* header, from anyone")
    serve.set_defaults(func=run_serve)


OWNER_ONLY_UMASK = 0o077


def run_init(args: argparse.Namespace) -> int:
    os.umask(OWNER_ONLY_UMASK)
    settings = get_settings()
    kek = keyring.kek_path(settings)
    engine = make_engine(settings.database_url)
    created: list[str] = []
    removed = 0
    try:
        before = migrate.current_revision(engine)
        migrate.upgrade(engine)
        after = migrate.current_revision(engine)
        # A node joining a deployment reads the ring with the copied file; only the first
        # node of a database makes the key-encryption key.
        kek_created = keyring.is_empty(engine) and keyring.ensure_kek_file(kek)
        if keyring.is_empty(engine):
            folder = Path(settings.key_dir)
            imported = folder_holds_keys(folder)
            created = keyring.store_new_ring(engine, keyring.read_keks(kek), folder)
            if imported and not keyring.is_empty(engine):
                removed = remove_key_files(folder)  # the ring is in the database now
        state = keyring.load(engine, keyring.read_keks(kek)).ring.describe()
    finally:
        engine.dispose()
    if args.json:
        print(json.dumps({"keys_created": created, "keys_imported": removed,
                          "kek_created": kek_created, "schema_from": before,
                          "schema_to": after}))
    else:
        print(f"key-encryption key: {kek} ({'created' if kek_created else 'present'}; "
              "copy it to every node of this deployment, nowhere else)")
        if created:
            print(f"key ring: created {', '.join(created)} in the database")
        elif removed:
            print(f"key ring: imported {removed} key files from {settings.key_dir} into the "
                  "database, and removed them there")
        else:
            print(f"key ring: present in the database ({len(state)} keys)")
        print(f"database: schema {before or 'empty'} -> {after}")
    return 0


def run_serve(args: argparse.Namespace) -> int:
    os.umask(OWNER_ONLY_UMASK)
    settings = get_settings()
    # Fail fast with a clear message (a database others may read, missing keys, schema
    # not at head, bad pack).
    check_private_database(settings.database_url)
    open_runtime(settings).close()
    uvicorn.run(
        "broker.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        # `broker demo serve` comes here too, without the proxy options.
        proxy_headers=not getattr(args, "no_proxy_headers", False),
        forwarded_allow_ips=getattr(args, "forwarded_allow_ips", "127.0.0.1"),
        loop="uvloop",
        http="httptools",
        access_log=False,
        server_header=False,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=10,
        log_level=settings.log_level.lower(),
        log_config=log_config(settings.log_level),
    )
    return 0
