"""The data directory on a small tmpfs that fills up under a QoS 1 flow: Ombre does not
crash, health shows which store is down and why, nothing is lost once space is freed
(the queue blocks, the broker keeps the rest), and every SQLite file passes
`PRAGMA integrity_check` afterwards."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from bench.mosquitto import Mosquitto
from connectors.sqlite_config import SqliteSinkConfig
from connectors.sqlite_sink import SqliteSink
from connectors.sqlite_ts import open_store
from gateway.counters import Health
from gateway.outbox import Outbox
from gateway.types import Batch
from tests.conftest import Publisher, plant_config, running, wait_until
from tests.faults.harness import SIGNALS, Flow

pytestmark = [pytest.mark.faults, pytest.mark.slow]

SIZE = "8m"  # the tmpfs
LEFT_BYTES = 256 * 1024  # free space the filler file leaves
RATE = 2000  # readings/s
FULL_FOR_S = 3.0  # the flow goes on this long against the full disk


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MB tmpfs mounted for the test (as root, like CI), unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs",
                             str(mount)], capture_output=True, text=True, check=False)
    if result.returncode:
        pytest.fail(f"cannot mount a tmpfs (the test runs as root): {result.stderr}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], check=True)


def fill(disk: Path, leave: int) -> Path:
    """A file taking all the free space of `disk` but `leave` bytes."""
    stats = os.statvfs(disk)
    filler = disk / "filler"
    with filler.open("wb") as out:
        out.truncate(0)
        remaining = stats.f_bavail * stats.f_frsize - leave
        block = b"\xff" * (1 << 20)
        while remaining > 0:
            remaining -= out.write(block[:remaining])
    return filler


async def flow_until_full(flow: Flow, small_disk: Path,
                          full: Callable[[], bool]) -> tuple[Path, float]:
    """Fill the disk, go on with the flow until `full()` (a store saw the disk full),
    then for FULL_FOR_S more; returns the filler file and when `full()` held (loop time)."""
    loop = asyncio.get_running_loop()
    filler = fill(small_disk, LEFT_BYTES)
    start = loop.time()
    while not full():
        flow.publish_until(int((loop.time() - start) * RATE))
        assert loop.time() - start < 60, "the disk never filled"
        await asyncio.sleep(0.01)
    full_at = loop.time()
    while loop.time() < full_at + FULL_FOR_S:
        flow.publish_until(int((loop.time() - start) * RATE))
        await asyncio.sleep(0.01)
    return filler, full_at


def integrity(path: Path) -> str:
    db = sqlite3.connect(path)
    try:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        db.close()


async def test_a_full_data_directory_degrades_health_and_loses_nothing(
        broker: Mosquitto, small_disk: Path) -> None:
    config = plant_config(broker.port, small_disk / "data")
    flow = Flow(Publisher(broker.port, client_id="faults-publisher"))
    loop = asyncio.get_running_loop()
    try:
        async with running(config) as gateway:
            counters = gateway.counters
            source = counters.connector("broker", "source")
            await wait_until(lambda: source.health is Health.UP, what="the source to connect")

            def down() -> list[str]:
                return [f"{c.kind} {c.name}: {c.last_error}" for c in counters.connectors.values()
                        if c.health is Health.DOWN]

            filler, full_at = await flow_until_full(flow, small_disk, lambda: bool(down()))
            health = down()
            filler.unlink()
            freed = loop.time()
            timeseries = counters.connector("timeseries", "sink")
            await wait_until(lambda: (flow.publish_until(flow.sent),
                                      timeseries.readings >= flow.sent)[1], timeout_s=60,
                             what="every reading stored once space is free")
            recovered = loop.time()
            # Every store is up again once it retried (each after its own backoff).
            await wait_until(lambda: not down(), timeout_s=60,
                                 what=f"every store up again (down at the start: {down()})")
    finally:
        flow.publisher.close()
    data = config.data_dir
    with open_store(data / "timeseries.sqlite") as store:
        values = [store.read(m, s, 0, 2**62)[1] for m, s in SIGNALS]
    lost = flow.lost(values)
    checks = {p.name: integrity(p) for p in sorted(data.glob("*.sqlite"))}
    print(f"\ndata directory on a {SIZE} tmpfs, full for {freed - full_at:.1f} s under "
          f"{RATE} readings/s: health {health}; {flow.sent} published, {lost} lost; "
          f"caught up {recovered - freed:.1f} s after space was freed; integrity {checks}")
    # Whichever store hit the full disk first (the outbox, a sink) says so, in one line:
    # SQLite's SQLITE_FULL, or SQLITE_IOERR when the write that met the full disk was
    # one it reports as an I/O error (a WAL page, with secure_delete=FAST).
    assert health
    assert all(line.endswith(("database or disk is full", "disk I/O error"))
               for line in health), health
    flow.assert_each_stored_once(values)
    assert set(checks) == {"gateway.sqlite", "timeseries.sqlite", "ombre.sqlite"}
    assert set(checks.values()) == {"ok"}


def test_a_write_the_full_disk_refused_leaves_the_outbox_counts_true(small_disk: Path) -> None:
    """A refused append or delivery moved nothing: the outbox's byte and row counts stay
    those of its file (they once grew with every refused try, and past the byte cap the
    outbox then dropped telemetry it never held too much of)."""
    outbox = Outbox(small_disk / "gateway.sqlite", ["sink"], SIGNALS, 1 << 30, 1000)
    n = 20_000
    readings = Batch(np.arange(n, dtype=np.int64), np.zeros(n, np.int32),
                     np.arange(n, dtype=np.float64), np.zeros(n, np.uint8))
    try:
        outbox.append(readings, [], [])
        filler = fill(small_disk, 0)
        for _ in range(3):
            with pytest.raises(sqlite3.OperationalError, match="disk is full"):
                outbox.append(readings, [], [])
            assert not outbox.writable
        filler.unlink()
        outbox.append(readings, [], [])
        assert outbox.writable
        db = sqlite3.connect(small_disk / "gateway.sqlite")
        truth = db.execute("SELECT SUM(nbytes), COUNT(*) FROM outbox").fetchone()
        db.close()
        assert (outbox.bytes, outbox.rows) == tuple(truth) == (2 * 21 * n, 2)
    finally:
        outbox.close()


async def test_the_outbox_comes_back_by_itself_and_loses_nothing(
        broker: Mosquitto, small_disk: Path) -> None:
    """The outbox alone on the small disk (the sink elsewhere): it is down while the disk
    is full, up again once space is freed, without a restart, and every reading the
    broker had is stored once."""
    config = plant_config(broker.port, small_disk / "data")
    sink_dir = small_disk.parent / "sink"
    sink = SqliteSink(SqliteSinkConfig(type="sqlite"), sink_dir, config.registry())
    flow = Flow(Publisher(broker.port, client_id="faults-publisher"))
    try:
        async with running(config, [sink]) as gateway:
            counters = gateway.counters
            outbox = counters.connector("outbox", "store")
            source = counters.connector("broker", "source")
            await wait_until(lambda: source.health is Health.UP, what="the source to connect")
            assert outbox.health is Health.UP
            filler, _ = await flow_until_full(flow, small_disk,
                                              lambda: outbox.health is Health.DOWN)
            assert outbox.health is Health.DOWN
            assert outbox.last_error is not None
            assert outbox.last_error.endswith("database or disk is full")
            filler.unlink()
            timeseries = counters.connector("timeseries", "sink")
            await wait_until(lambda: (flow.publish_until(flow.sent),
                                      timeseries.readings >= flow.sent)[1], timeout_s=60,
                             what="every reading stored once space is free")
            assert outbox.health is Health.UP
            assert outbox.dropped == 0
            await wait_until(lambda: counters.outbox_batches == 0, what="the outbox emptied")
            assert counters.outbox_bytes == 0
    finally:
        flow.publisher.close()
    with open_store(sink_dir / "timeseries.sqlite") as store:
        values = [store.read(m, s, 0, 2**62)[1] for m, s in SIGNALS]
    flow.assert_each_stored_once(values)
