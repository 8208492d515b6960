"""Opening the shadow's database and bringing its schema to the current version with
the Alembic migrations in shadow/migrations, so that an upgrade keeps the data."""

from __future__ import annotations

import contextlib
import fcntl
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.pool import ConnectionPoolEntry

from gateway.storage import limit_writes

MIGRATIONS = Path(__file__).with_name("migrations")


def database_url(database: str | None, data_dir: Path) -> URL:
    """The configured SQLAlchemy URL, or SQLite at <data_dir>/ombre.sqlite."""
    return make_url(database or f"sqlite:///{data_dir / 'ombre.sqlite'}")


def _sqlite_pragmas(dbapi_connection: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
    limit_writes(dbapi_connection)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")  # a power cut must not lose committed rows
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def open_engine(url: URL) -> Engine:
    """An engine for `url`; SQLite gets WAL (bounded: gateway/storage.py), full sync
    and foreign keys, and its directory is created."""
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=2)


def alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


MIGRATION_LOCK = 0x6F6D6272  # "ombr": PostgreSQL's advisory lock id for migrations


def upgrade(engine: Engine) -> None:
    """Applies every migration the database has not had yet, all or nothing: a failure
    (a full disk, say) leaves the schema where it was. Processes that start at once
    (`ombre run` and `ombre api`) take turns: the others then find nothing to do.
    PostgreSQL serialises them with a transaction's advisory lock; SQLite with a lock on
    a file beside the database."""
    if engine.dialect.name != "sqlite":
        with engine.begin() as connection:
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                               {"key": MIGRATION_LOCK})
            command.upgrade(alembic_config(connection), "head")
        return
    migrating = _transactional_ddl(engine.url)
    try:
        with _file_lock(engine.url), migrating.begin() as connection:
            command.upgrade(alembic_config(connection), "head")
    finally:
        migrating.dispose()


def _transactional_ddl(url: URL) -> Engine:
    """A SQLite engine whose transactions hold DDL too. Python's sqlite3 begins a
    transaction only before INSERT, UPDATE or DELETE, so each CREATE or ALTER of a
    migration would commit alone, and one that failed half-way would leave tables without
    their version (SQLAlchemy's recipe for SQLite's transactional DDL)."""
    engine = open_engine(url)

    def autocommit_driver(dbapi_connection: object, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None  # type: ignore[attr-defined]

    event.listen(engine, "connect", autocommit_driver)
    event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
    return engine


@contextlib.contextmanager
def _file_lock(url: URL) -> Iterator[None]:
    database = url.database if url.get_backend_name() == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate-lock", "a") as lock:  # unlocked when closed
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
