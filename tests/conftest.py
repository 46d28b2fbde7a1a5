"""Shared fixtures: real databases (SQLite and a throwaway PostgreSQL), key rings, apps.

Every database-backed test gets a fresh migrated database: a copy of a
migrated SQLite file, or a PostgreSQL database cloned from a migrated
template. Nothing of our own code is mocked.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from sqlalchemy import Engine

from broker import migrate
from broker.app import create_app
from broker.db import make_engine
from broker.keys import KeyRing, create_key_ring, load_key_ring
from broker.runtime import Runtime, open_runtime
from broker.settings import Settings
from tests.pgcluster import start_cluster

REPO = Path(__file__).resolve().parent.parent
DEMO_PACK = REPO / "policies" / "ondermijning"
# Each xdist worker migrates its own template, so workers sharing one server
# (`BROKER_TEST_POSTGRES_URL`) never drop or clone each other's.
PG_TEMPLATE = "sluis_template_" + os.environ.get("PYTEST_XDIST_WORKER", "main")

# CI runs property tests with fewer examples. The profile is loaded before the test modules
# are imported, so a test's own `settings(...)` keeps what it names (its max_examples) and
# takes the rest from here: a busy runner fails neither on the per-example deadline nor on
# slow data generation, and a failure prints the blob that replays it.
hypothesis_settings.register_profile(
    "ci",
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
if os.environ.get("CI") == "true":
    hypothesis_settings.load_profile("ci")


def _plain_pg_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """A PostgreSQL server for the session: `BROKER_TEST_POSTGRES_URL`, or a throwaway cluster."""
    given = os.environ.get("BROKER_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    cluster = start_cluster()
    try:
        yield cluster.url
    finally:
        cluster.stop()


def _pg_execute(admin_url: str, statement: str) -> None:
    with psycopg.connect(_plain_pg_url(admin_url), autocommit=True) as conn:
        conn.execute(statement)  # type: ignore[arg-type]


def _database_url(admin_url: str, name: str) -> str:
    base = admin_url.rsplit("/", 1)[0]
    return f"{base}/{name}"


@pytest.fixture(scope="session")
def postgres_template(postgres_admin_url: str) -> str:
    """A migrated template database to clone per test."""
    _pg_execute(postgres_admin_url, f"DROP DATABASE IF EXISTS {PG_TEMPLATE}")
    _pg_execute(postgres_admin_url, f"CREATE DATABASE {PG_TEMPLATE}")
    engine = make_engine(_database_url(postgres_admin_url, PG_TEMPLATE))
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()
    return PG_TEMPLATE


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "broker.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()
    return path


def _fresh_sqlite(template: Path, directory: Path) -> str:
    target = directory / "broker.db"
    shutil.copyfile(template, target)
    return f"sqlite:///{target}"


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    """A fresh migrated SQLite database (for tests that need only SQLite)."""
    return _fresh_sqlite(sqlite_template, tmp_path)


@pytest.fixture
def postgres_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh migrated PostgreSQL database."""
    admin_url: str = request.getfixturevalue("postgres_admin_url")
    template: str = request.getfixturevalue("postgres_template")
    name = "t_" + uuid.uuid4().hex[:16]
    _pg_execute(admin_url, f"CREATE DATABASE {name} TEMPLATE {template}")
    try:
        yield _database_url(admin_url, name)
    finally:
        _pg_execute(admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """A fresh migrated database; every test using it runs on SQLite and on PostgreSQL."""
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    url: str = request.getfixturevalue(name)
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture
def key_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "keys"
    create_key_ring(directory)
    return directory


@pytest.fixture
def keys(key_dir: Path) -> KeyRing:
    return load_key_ring(key_dir)


@pytest.fixture
def settings(db_url: str, key_dir: Path) -> Settings:
    return Settings(
        database_url=db_url,
        key_dir=key_dir,
        policy_dir=DEMO_PACK,
        checkpoint_every_seconds=3600,
    )


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    live = open_runtime(settings)
    try:
        yield live
    finally:
        live.close()


@pytest.fixture
def api(settings: Settings, runtime: Runtime) -> Iterator[TestClient]:
    """The app over the test's runtime, through Starlette's test client (lifespan on)."""
    with TestClient(create_app(settings, runtime=runtime)) as client:
        yield client


Credentials = tuple[str, str]


@pytest.fixture
def credentials(runtime: Runtime) -> Callable[..., Credentials]:
    """Create a client of `org` with `roles`; returns (client_id, secret)."""
    from broker.auth.clients import create_client

    def make(org: str, roles: list[str] | str, kind: str = "system") -> Credentials:
        role_list = roles.split(",") if isinstance(roles, str) else list(roles)
        client, secret = create_client(
            runtime, org=org, name=f"{org} test client", kind=kind, roles=role_list
        )
        assert secret is not None
        return client.id, secret

    return make


@pytest.fixture
def auth_headers(
    api: TestClient, credentials: Callable[..., Credentials]
) -> Callable[..., dict[str, str]]:
    """Headers with a fresh bearer token for a new client of `org` with `roles`."""

    def make(
        org: str, roles: list[str] | str, kind: str = "system", acting_user: str | None = "emp-1"
    ) -> dict[str, str]:
        client_id, secret = credentials(org, roles, kind)
        answer = api.post(
            "/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": secret,
            },
        )
        assert answer.status_code == 200, answer.text
        headers = {"Authorization": f"Bearer {answer.json()['access_token']}"}
        if acting_user:
            headers["X-Acting-User"] = acting_user
        return headers

    return make
