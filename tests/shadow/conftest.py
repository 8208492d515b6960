"""The shadow's databases: SQLite in the test's directory, and a schema of its own on
the real PostgreSQL at 127.0.0.1:5432 (database `test`), dropped afterwards."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest

PG_DSN = os.environ.get("OMBRE_TEST_PG", "host=127.0.0.1 port=5432 dbname=test user=postgres")


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """A SQLAlchemy URL, or None for the default SQLite file in the data directory.
    A PostgreSQL that cannot be reached fails the test: it is never skipped."""
    if request.param == "sqlite":
        yield None
        return
    schema = f"ombre_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    params = dict(part.split("=", 1) for part in PG_DSN.split())
    try:
        yield (f"postgresql+psycopg://{params['user']}@{params['host']}:{params['port']}/"
               f"{params['dbname']}?options=-csearch_path%3D{schema}")
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
