"""The layout keeps its layers: thin routers, officer pages without SQL, small modules.

Routers parse, authorise, call one service function and map its errors; the service owns
the transaction and the act's audit entry (docs/architecture.md). These checks read the
source, so a query, a commit or a hand-built audit draft that creeps into a router or an
officer page fails here before review.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

BROKER = Path(__file__).resolve().parents[2] / "broker"
ROUTES = sorted((BROKER / "api" / "routes").glob("*.py"))
OFFICER = sorted((BROKER / "officer").glob("*.py"))
DATABASE_PACKAGES = ("sqlalchemy", "sqlmodel", "psycopg")
TRANSACTION_CALLS = {"commit", "rollback", "begin", "execute", "connect", "record",
                     "record_async", "exec_driver_sql"}
QUERY_BUILDERS = {"select", "insert", "update", "delete", "text"}
DATA_CATALOGUES = {BROKER / "officer" / "i18n.py"}
"""Modules that are tables of labels, not logic: exempt from the size limit."""
MAX_LINES = 425
"""About 400 lines: a module read in one sitting."""
MAX_TOP_LEVEL_MODULES = 16


def _imports(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


def _line(offence: str) -> int:
    return int(offence.split(":")[0].removeprefix("line ")) if offence.startswith("line") else 0


def _offences(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    found = [f"imports {name}" for name in _imports(tree)
             if name.split(".")[0] in DATABASE_PACKAGES]
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in TRANSACTION_CALLS:
                found.append(f"line {node.lineno}: calls .{func.attr}()")
            if isinstance(func, ast.Name) and func.id in QUERY_BUILDERS:
                found.append(f"line {node.lineno}: builds a query with {func.id}()")
        if isinstance(node, ast.Dict):
            keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
            if {"action", "outcome"} <= keys:
                found.append(f"line {node.lineno}: builds an audit draft by hand")
    return sorted(found, key=lambda offence: (_line(offence), offence))


@pytest.mark.parametrize("path", ROUTES, ids=lambda p: p.name)
def test_a_router_holds_no_transaction_query_or_audit_draft(path: Path) -> None:
    assert _offences(path) == []


@pytest.mark.parametrize("path", OFFICER, ids=lambda p: p.name)
def test_an_officer_page_holds_no_sql_and_calls_services(path: Path) -> None:
    assert _offences(path) == []


def test_the_checks_find_what_they_look_for(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from sqlalchemy import select\n"
        "def route(runtime):\n"
        "    runtime.audit.record({'action': 'audit_read', 'outcome': 'granted'})\n"
        "    with runtime.engine.connect() as conn:\n"
        "        conn.execute(select(1))\n"
        "        conn.commit()\n"
    )
    assert _offences(bad) == [
        "imports sqlalchemy",
        "line 3: builds an audit draft by hand",
        "line 3: calls .record()",
        "line 4: calls .connect()",
        "line 5: builds a query with select()",
        "line 5: calls .execute()",
        "line 6: calls .commit()",
    ]


def test_modules_are_small_enough_to_read_in_one_sitting() -> None:
    long = {str(path.relative_to(BROKER)): n for path in BROKER.rglob("*.py")
            if path not in DATA_CATALOGUES
            and (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_the_package_root_names_the_layers() -> None:
    top = sorted(p.name for p in BROKER.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top
    for layer in ("core", "services", "audit", "api", "officer", "auth", "cli"):
        assert (BROKER / layer / "__init__.py").is_file()
    assert (BROKER / "api" / "routes" / "__init__.py").is_file()
    assert not list(BROKER.rglob("service.py"))
    assert not (BROKER / "startup.py").exists()
