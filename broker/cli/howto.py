"""Prints how to try the demo broker with the seeded demo clients (used by scripts/demo)."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def howto(clients_file: Path, base_url: str) -> str:
    clients = json.loads(clients_file.read_text())
    gemeente = next(c for c in clients if c["org"] == "gemeente")
    lines = [
        "",
        f"Sluis demo broker on {base_url} (API documentation: {base_url}/docs)",
        f"Demo clients and their secrets: {clients_file}",
        "",
        "Try it: get a token as the municipality's system client, then list the purposes:",
        "",
        "  TOKEN=$(curl -s -d grant_type=client_credentials \\",
        f"      -d client_id={gemeente['client_id']} \\",
        f"      -d client_secret={gemeente['client_secret']} {base_url}/oauth/token \\",
        "      | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')",
        f'  curl -s -H "Authorization: Bearer $TOKEN" {base_url}/v1/purposes',
        '  curl -s -H "Authorization: Bearer $TOKEN" -H "X-Acting-User: emp-1" \\',
        f"      {base_url}/v1/signals",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(howto(Path(sys.argv[1]), sys.argv[2]))
