"""The pure core imports no web framework, database layer or settings (docs/architecture.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CORE = REPO / "broker" / "core"
# Every module of the pure core, found on disk, so that a new one is held to the rule too.
PURE = sorted(
    ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
    for path in CORE.rglob("*.py"))
PURE_IF_PRESENT: list[str] = []
FORBIDDEN_PREFIXES = ("fastapi", "starlette", "sqlalchemy", "sqlmodel", "alembic", "uvicorn",
                      "psycopg")
FORBIDDEN_MODULES = ("broker.settings", "broker.db", "broker.models", "broker.app")

PROBE = """
import importlib, importlib.util, json, sys
names = json.loads(sys.argv[1])
optional = json.loads(sys.argv[2])
for name in names:
    importlib.import_module(name)
for name in optional:
    if importlib.util.find_spec(name) is not None:
        importlib.import_module(name)
print(json.dumps(sorted(sys.modules)))
"""


def test_pure_core_loads_no_web_or_database_modules() -> None:
    completed = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(PURE), json.dumps(PURE_IF_PRESENT)],
        capture_output=True, text=True, check=True, cwd=REPO, timeout=60)
    loaded = json.loads(completed.stdout)
    assert "broker.core.policy.evaluate" in loaded  # the probe really imported the core
    offending = [m for m in loaded
                 if m.split(".")[0] in FORBIDDEN_PREFIXES or m in FORBIDDEN_MODULES
                 or any(m.startswith(f"{f}.") for f in FORBIDDEN_MODULES)]
    assert offending == []
