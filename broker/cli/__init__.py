"""The `broker` administration command. Exit codes: 0 ok, 1 a check failed, 2 bad usage."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from broker import __version__
from broker.errors import BrokerError, StartupError


def build_parser() -> argparse.ArgumentParser:
    from broker.cli import audit, clients, demo, keys, policy, retention, serve, witness

    parser = argparse.ArgumentParser(
        prog="broker",
        description="Sluis broker administration: keys, database, policy packs, audit log.",
    )
    parser.add_argument("--version", action="version", version=f"broker {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    serve.register(sub)
    clients.register(sub)
    policy.register(sub)
    audit.register(sub)
    keys.register(sub)
    retention.register(sub)
    demo.register(sub)
    witness.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except StartupError as exc:
        print(f"broker: {exc}", file=sys.stderr)
        return 1
    except BrokerError as exc:
        print(f"broker: {exc.detail}", file=sys.stderr)
        for problem in exc.errors:
            print(f"  {'/'.join(map(str, problem.loc))}: {problem.msg}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
