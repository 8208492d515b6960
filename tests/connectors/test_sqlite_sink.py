"""The SQLite sink: writes, reconnects, replays, maintenance and close."""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

from connectors import sqlite_sink
from connectors.sqlite_config import SqliteSinkConfig
from connectors.sqlite_sink import SqliteSink
from connectors.sqlite_ts import BLOCK_NS, TimeSeriesStore, open_store
from gateway.types import Batch, Event, SignalRegistry

ALL = (-(2**63), 2**63 - 1)


async def test_sink_writes_maintains_and_closes(tmp_path: Path) -> None:
    registry = SignalRegistry([("press", "temp", "°C"), ("press", "speed", None)])
    config = SqliteSinkConfig(type="sqlite", retention_days=1)
    sink = SqliteSink(config, tmp_path / "data", registry, maintenance_interval_s=0)
    assert sink.path == tmp_path / "data" / "timeseries.sqlite"
    await sink.connect()
    now = time.time_ns()
    old = now - 2 * 86_400 * 10**9
    await sink.write(Batch(np.array([old, now, now], np.int64), np.array([0, 0, 1], np.int32),
                           np.array([1.0, 2.0, 3.0]), np.zeros(3, np.uint8)),
                     [Event(now, "press", "state", "run")])
    await sink.connect()  # a reconnect after a failure
    batch = Batch(np.array([now + 1], np.int64), np.array([1], np.int32), np.array([4.0]),
                  np.zeros(1, np.uint8))
    await sink.write(batch, [])
    await sink.write(batch, [])  # a replay
    with open_store(sink.path) as store:
        assert store.read("press", "temp", *ALL)[1].tolist() == [2.0]  # 2 days old: dropped
        assert store.read("press", "speed", *ALL)[1].tolist() == [3.0, 4.0]
        assert [e.value for e in store.read_events("press", *ALL)] == ["run"]
    await sink.aclose()
    with pytest.raises(RuntimeError, match="not connected"):
        await sink.write(batch, [])


async def test_sink_does_not_compact_a_block_still_being_written(tmp_path: Path) -> None:
    """Readings arriving late into a block that closed long ago (a backlog replayed,
    a source's clock behind, the soak's readings): compacting the block after every
    write merged it whole each time, work and memory growing with the block (the
    soak's RSS grew by 4.3 MB/min). It waits until no write touched it for
    COMPACT_QUIET_S."""
    registry = SignalRegistry([("press", "temp", None)])
    sink = SqliteSink(SqliteSinkConfig(type="sqlite"), tmp_path, registry,
                      maintenance_interval_s=0)  # maintenance after every write
    await sink.connect()
    block = (time.time_ns() - 3600 * 10**9) // BLOCK_NS * BLOCK_NS  # closed an hour ago
    for k in range(20):
        await sink.write(Batch(np.array([block + k], np.int64), np.zeros(1, np.int32),
                               np.array([float(k)]), np.zeros(1, np.uint8)), [])
    await sink.aclose()
    with sqlite3.connect(sink.path) as db:
        pieces = db.execute("SELECT count(*) FROM write_log WHERE piece IS NOT NULL")
        assert pieces.fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM chunk").fetchone() == (20,)
    with open_store(sink.path) as store:
        assert store.read("press", "temp", *ALL)[1].tolist() == list(map(float, range(20)))


async def test_sink_logs_a_failing_maintenance_once_and_keeps_writing(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=sqlite_sink.__name__)
    registry = SignalRegistry([("press", "temp", None)])
    sink = SqliteSink(SqliteSinkConfig(type="sqlite"), tmp_path, registry,
                      maintenance_interval_s=0)
    await sink.connect()
    failure, now = sqlite3.OperationalError("database or disk is full"), time.time_ns()
    with mock.patch.object(TimeSeriesStore, "compact", side_effect=failure):
        for k in range(3):
            await sink.write(Batch(np.array([now + k], np.int64), np.zeros(1, np.int32),
                                   np.array([float(k)]), np.zeros(1, np.uint8)), [])
    await sink.write(Batch.empty(), [])
    await sink.aclose()
    assert [r.levelname for r in caplog.records] == ["ERROR", "INFO"]
    with open_store(tmp_path / "timeseries.sqlite") as store:
        assert store.read("press", "temp", *ALL)[1].tolist() == [0.0, 1.0, 2.0]
