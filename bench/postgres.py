"""A PostgreSQL schema of one's own on the local server, for tests and benchmarks."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

PG_DSN = os.environ.get("OMBRE_TEST_PG", "host=127.0.0.1 port=5432 dbname=test user=postgres")


@contextmanager
def pg_schema() -> Iterator[str]:
    """A SQLAlchemy URL of a new schema on PG_DSN's server, dropped after. A server that
    cannot be reached raises: a test that needs it fails, it is never skipped."""
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
