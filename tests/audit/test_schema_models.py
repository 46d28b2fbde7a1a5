"""The migrated schema is the one the code's table definitions describe.

The tests build their databases with the migrations, the code writes through its table
definitions: a column, index or table present on one side only (an index the code
counts on that no migration creates) is found here, on both databases. Column types are
not compared (SQLModel's string type and the migrations' plain strings differ in name
only).
"""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine
from sqlmodel import SQLModel

import broker.audit.tables
import broker.models  # noqa: F401 - the imports register every table with the metadata


def test_the_migrated_schema_matches_the_table_definitions(engine: Engine) -> None:
    assert {"audit_entry", "legal_hold", "reidentification", "signal"} <= set(
        SQLModel.metadata.tables)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": False})
        differences = compare_metadata(context, SQLModel.metadata)
    assert differences == []
