"""`broker witness init` and `broker witness serve`: a C2SP witness for a partner to run.

The witness keeps its key and state in one folder (`--state`), never in the broker's
database, and reads no broker settings. Both commands run with a umask of 077.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import uvicorn

from broker.core.checkpoint import CheckpointInvalid
from broker.errors import StartupError
from broker.logs import log_config
from broker.witness import Witness, WitnessState, create_app, follow
from broker.witness.keyfile import check_folder, create_key, load_key

OWNER_ONLY_UMASK = 0o077


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    witness = sub.add_parser("witness", help="run a witness that cosigns a log's checkpoints")
    witness_sub = witness.add_subparsers(dest="witness_command", metavar="COMMAND",
                                         required=True)
    init = witness_sub.add_parser("init", help="create the witness key; print its vkey")
    init.add_argument("--name", required=True,
                      help="the witness's key name, e.g. witness.partner.example/w1")
    init.add_argument("--state", required=True, type=Path, metavar="DIR")
    init.set_defaults(func=run_init)
    serve = witness_sub.add_parser("serve", help="serve POST /add-checkpoint (tlog-witness)")
    serve.add_argument("--state", required=True, type=Path, metavar="DIR")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument(
        "--log", required=True, action="append", metavar="VKEY",
        help="a log to witness: its verifier key, whose name is the origin, or 'VKEY ORIGIN' "
             "for another origin; repeat for more logs or keys")
    serve.set_defaults(func=run_serve)


def run_init(args: argparse.Namespace) -> int:
    os.umask(OWNER_ONLY_UMASK)
    cosigner = create_key(args.state, args.name)
    WitnessState(args.state)
    print(cosigner)
    return 0


def run_serve(args: argparse.Namespace) -> int:
    os.umask(OWNER_ONLY_UMASK)
    folder: Path = args.state
    if not folder.is_dir():
        raise StartupError(f"no witness state at {folder}: run `broker witness init`")
    check_folder(folder)
    name, private_key = load_key(folder)
    try:
        logs = follow(args.log)
    except CheckpointInvalid as exc:
        raise StartupError(f"--log: {exc}") from None
    witness = Witness(name, private_key, logs, WitnessState(folder))
    uvicorn.run(create_app(witness), host=args.host, port=args.port,
                log_config=log_config(), access_log=False)
    return 0
