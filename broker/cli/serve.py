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

import uvicorn

from broker import migrate
from broker.db import check_private_database, make_engine
from broker.keys import create_key_ring
from broker.logs import log_config
from broker.runtime import open_runtime
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
    serve.set_defaults(func=run_serve)


OWNER_ONLY_UMASK = 0o077


def run_init(args: argparse.Namespace) -> int:
    os.umask(OWNER_ONLY_UMASK)
    settings = get_settings()
    created = create_key_ring(settings.key_dir)
    engine = make_engine(settings.database_url)
    try:
        before = migrate.current_revision(engine)
        migrate.upgrade(engine)
        after = migrate.current_revision(engine)
    finally:
        engine.dispose()
    if args.json:
        print(json.dumps({"keys_created": created, "schema_from": before, "schema_to": after}))
    else:
        state = "created " + ", ".join(created) if created else "present"
        print(f"key ring: {settings.key_dir} ({state})")
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
