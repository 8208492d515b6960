"""Storage profiles (gateway/storage.py): the PRAGMAs each SQLite file gets, read back
from its own connection, and the writer's gathering of deliveries into one commit."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text

from connectors.sqlite_ts import TimeSeriesStore
from gateway.outbox import Outbox
from gateway.queue import DeliveryQueue
from gateway.storage import JOURNAL_SIZE_LIMIT_BYTES, PROFILES, WAL_AUTOCHECKPOINT_PAGES
from gateway.types import Batch, Delivery
from shadow.schema import database_url, open_engine

FULL, NORMAL = 2, 1  # PRAGMA synchronous
SIGNALS = [("m", "a")]


def pragma(db: sqlite3.Connection, name: str) -> int:
    return int(db.execute(f"PRAGMA {name}").fetchone()[0])


def readings(n: int) -> Batch:
    return Batch(np.arange(n, dtype=np.int64), np.zeros(n, np.int32), np.ones(n),
                 np.zeros(n, np.uint8))


def assert_wal_bounded(db: sqlite3.Connection) -> None:
    assert pragma(db, "wal_autocheckpoint") == WAL_AUTOCHECKPOINT_PAGES
    assert pragma(db, "journal_size_limit") == JOURNAL_SIZE_LIMIT_BYTES
    assert pragma(db, "secure_delete") == 2  # FAST


@pytest.mark.parametrize(("profile", "cursor_sync"), [("default", FULL), ("sd-card", NORMAL)])
def test_outbox_syncs_appends_always_and_cursor_moves_by_profile(
        tmp_path: Path, profile: str, cursor_sync: int) -> None:
    box = Outbox(tmp_path / "g.sqlite", ["a"], SIGNALS, 10**9, 100,
                 profile=PROFILES[profile])  # type: ignore[index]
    try:
        assert_wal_bounded(box._db)
        assert box._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        box.append(readings(3), [], [])
        assert pragma(box._db, "synchronous") == FULL  # before the source's ack
        pending = box.pending("a", 100)
        box.delivered("a", pending.last_seq)
        assert pragma(box._db, "synchronous") == cursor_sync
        box.append(readings(2), [], [])
        assert pragma(box._db, "synchronous") == FULL
    finally:
        box.close()


def test_time_series_store_and_shadow_database_bound_their_wal(tmp_path: Path) -> None:
    store = TimeSeriesStore(tmp_path / "ts.sqlite")
    try:
        assert_wal_bounded(store._db)
        assert pragma(store._db, "synchronous") == FULL
    finally:
        store.close()
    engine = open_engine(database_url(None, tmp_path))
    try:
        with engine.connect() as connection:
            assert connection.execute(text("PRAGMA journal_size_limit")).scalar() == \
                JOURNAL_SIZE_LIMIT_BYTES
            assert connection.execute(text("PRAGMA wal_autocheckpoint")).scalar() == \
                WAL_AUTOCHECKPOINT_PAGES
            assert connection.execute(text("PRAGMA synchronous")).scalar() == FULL
            assert connection.execute(text("PRAGMA secure_delete")).scalar() == 2
    finally:
        engine.dispose()


def test_a_checkpoint_truncates_a_grown_wal_to_the_limit(tmp_path: Path) -> None:
    """A WAL that grew past the limit while checkpoints could not finish (here: a reader
    held its snapshot) is cut back to the limit when it restarts after a checkpoint,
    instead of keeping its size."""
    store = TimeSeriesStore(tmp_path / "ts.sqlite")
    reader = sqlite3.connect(tmp_path / "ts.sqlite")
    wal = tmp_path / "ts.sqlite-wal"
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM chunk").fetchone()  # holds its snapshot
        blob = bytes(64 * 1024)
        store._db.execute("CREATE TABLE filler(b BLOB)")
        while wal.stat().st_size <= 2 * JOURNAL_SIZE_LIMIT_BYTES:
            store._db.execute("INSERT INTO filler VALUES (?)", (blob,))
        reader.execute("COMMIT")
        store._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        assert wal.stat().st_size > 2 * JOURNAL_SIZE_LIMIT_BYTES  # checkpointed, not cut
        store._db.execute("DELETE FROM filler")  # the next write restarts the WAL
        assert wal.stat().st_size <= JOURNAL_SIZE_LIMIT_BYTES
    finally:
        reader.close()
        store.close()


async def test_the_writer_gathers_deliveries_until_the_queue_is_full() -> None:
    queue = DeliveryQueue(3, "block", lambda _batch: None)
    taken = asyncio.create_task(queue.get_many(10_000, gather_s=3600))
    for _ in range(3):
        await queue.put(Delivery(readings(1)))
        await asyncio.sleep(0)
    assert [len(d.batch) for d in await taken] == [1, 1, 1]


async def test_the_writer_gathers_deliveries_until_enough_readings() -> None:
    queue = DeliveryQueue(10, "block", lambda _batch: None)
    taken = asyncio.create_task(queue.get_many(5, gather_s=3600))
    await queue.put(Delivery(readings(2)))
    await queue.put(Delivery(readings(3)))
    assert [len(d.batch) for d in await taken] == [2, 3]


async def test_the_writer_takes_what_it_gathered_when_the_interval_ends_or_on_close() -> None:
    queue = DeliveryQueue(10, "block", lambda _batch: None)
    await queue.put(Delivery(readings(2)))
    assert [len(d.batch) for d in await queue.get_many(10_000, gather_s=0.01)] == [2]
    await queue.put(Delivery(readings(4)))
    taken = asyncio.create_task(queue.get_many(10_000, gather_s=3600))
    await asyncio.sleep(0)
    await queue.close()
    assert [len(d.batch) for d in await taken] == [4]
    assert await queue.get_many(10_000, gather_s=3600) == []
