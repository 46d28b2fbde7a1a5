"""Fixtures of the audit tests: fresh databases on demand, of the kind `db_url` runs on."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from broker.db import is_sqlite
from broker.keys import KeyRing
from tests.audit.audit_kit import Databases, LogEnv, make_env


@pytest.fixture
def databases(db_url: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Databases]:
    """Makes fresh migrated databases of the same kind as `db_url` (one per example)."""
    if is_sqlite(db_url):
        made = Databases("sqlite", tmp_path, sqlite_template=request.getfixturevalue(
            "sqlite_template"))
    else:
        made = Databases(
            "postgresql", tmp_path,
            pg_admin_url=request.getfixturevalue("postgres_admin_url"),
            pg_template=request.getfixturevalue("postgres_template"),
        )
    try:
        yield made
    finally:
        made.drop_all()


@pytest.fixture
def make_log(
    db_url: str, keys: KeyRing, key_dir: Path, tmp_path: Path
) -> Iterator[Callable[..., LogEnv]]:
    """Builds logs on the test's database (or `url`), closed and disposed afterwards.

    Logs made with the same `state` name share one signer state, as two processes of one
    broker share a key directory.
    """
    made: list[LogEnv] = []

    def make(url: str | None = None, *, state: str = "signer", **options: Any) -> LogEnv:
        env = make_env(url or db_url, keys, key_dir, tmp_path / state, **options)
        made.append(env)
        return env

    yield make
    for env in made:
        env.log.close()
        env.engine.dispose()


@pytest.fixture
def sqlite_log(sqlite_url: str, keys: KeyRing, key_dir: Path, tmp_path: Path
               ) -> Iterator[LogEnv]:
    """A log of 45 entries on a fresh SQLite database (for its query plans)."""
    made = make_env(sqlite_url, keys, key_dir, tmp_path)
    try:
        made.fill(45)
        yield made
    finally:
        made.log.close()
        made.engine.dispose()
