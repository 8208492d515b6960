"""The supervisor's failure handling, with a real broker and a real SQLite sink behind
a switch: a sink whose upstream is down is the case a real SQLite file cannot produce."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import orjson
import pytest

from bench.mosquitto import Mosquitto
from connectors.sqlite_sink import SqliteSink
from connectors.sqlite_ts import open_store
from gateway.counters import Health
from gateway.outbox import GATEWAY_MACHINE, OVERFLOW_EVENT
from gateway.queue import DeliveryQueue
from gateway.runtime import Backoff
from gateway.types import Batch, Delivery, Event
from ombre.app import build_gateway
from ombre.config import OmbreConfig
from tests.conftest import Publisher, plant_config, running, wait_until


class SwitchedSink:
    """The real SQLite sink, behind an upstream that can be switched off: while off,
    `connect` and `write` fail as a network sink's would; `hang` makes writes block."""

    def __init__(self, config: OmbreConfig) -> None:
        self._inner = SqliteSink(config.sinks[0], config.data_dir, config.registry())
        self.name = self._inner.name
        self.up = True
        self.hang = False

    async def connect(self) -> None:
        if not self.up:
            raise ConnectionRefusedError("upstream is down")
        await self._inner.connect()

    async def write(self, batch: Batch, events: Sequence[Event]) -> None:
        if self.hang:
            await asyncio.Event().wait()
        if not self.up:
            raise ConnectionResetError("upstream is down")
        await self._inner.write(batch, events)

    async def aclose(self) -> None:
        await self._inner.aclose()


def test_backoff_doubles_with_jitter_up_to_its_ceiling() -> None:
    backoff = Backoff(1.0, 8.0)
    delays = [backoff.next_delay() for _ in range(6)]
    for delay, ceiling in zip(delays, [1, 2, 4, 8, 8, 8], strict=True):
        assert ceiling / 2 <= delay <= ceiling
    backoff.reset()
    assert backoff.next_delay() <= 1.0


def reading_batch(n: int, signal: int) -> Batch:
    return Batch(np.arange(n, dtype=np.int64), np.full(n, signal, np.int32),
                 np.zeros(n), np.zeros(n, np.uint8))


async def test_drop_oldest_drops_only_telemetry_and_counts_it() -> None:
    dropped: list[int] = []
    acked: list[int] = []
    queue = DeliveryQueue(2, "drop_oldest", lambda b: dropped.append(len(b)))
    for i in range(4):
        await queue.put(Delivery(reading_batch(10, i), [Event(i, "m", "state", i)],
                                 acks=[lambda i=i: acked.append(i)]))
    left = await queue.get_many(10**6)
    assert dropped == [10, 10]
    assert [len(d.batch) for d in left] == [10, 10]
    assert [e.value for d in left for e in d.events] == [0, 1, 2, 3]  # events all kept
    for d in left:
        for ack in d.acks:
            ack()
    assert sorted(acked) == [0, 1, 2, 3]  # dropped messages are acked, not redelivered


async def test_block_policy_waits_for_room() -> None:
    queue = DeliveryQueue(1, "block", lambda b: pytest.fail("block must not drop"))
    await queue.put(Delivery(reading_batch(1, 0)))
    second = asyncio.create_task(queue.put(Delivery(reading_batch(1, 1))))
    await asyncio.sleep(0.05)
    assert not second.done()
    assert len(await queue.get_many(10**6)) == 1
    await second
    assert len(queue) == 1


async def test_a_sink_that_is_down_loses_nothing_and_catches_up(
        broker: Mosquitto, publisher: Publisher, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    config = plant_config(broker.port, tmp_path / "data")
    sink = SwitchedSink(config)
    base = time.time_ns() // 1_000_000 - 60_000
    async with running(config, [sink]) as gateway:
        sink_counters = gateway.counters.connector("timeseries", "sink")
        await wait_until(lambda: sink_counters.health is Health.UP, what="the sink to start")
        sink.up = False
        for i in range(500):
            publisher.publish("plant/l1/m1/temp", orjson.dumps({"value": i, "ts": base + i}))
        await wait_until(lambda: gateway.counters.outbox_batches > 0 and
                         sink_counters.health is Health.DOWN, what="the outbox to hold data")
        await wait_until(lambda: gateway.counters.connector("broker", "source").readings == 500,
                         what="the source to receive everything")
        await asyncio.sleep(0.5)  # several failed retries
        sink.up = True
        await wait_until(lambda: sink_counters.readings == 500, what="the backlog to drain")
    with open_store(tmp_path / "data" / "timeseries.sqlite") as store:
        np.testing.assert_array_equal(store.read("m1", "temp", 0, 2**62)[1], np.arange(500))
    downs = [r for r in caplog.records if "is down" in r.getMessage()]
    ups = [r for r in caplog.records if "sink timeseries is up (was down)" in r.getMessage()]
    assert len(downs) == 1  # logged once when it failed, not at every retry
    assert len(ups) == 1


async def test_a_write_whose_cursor_move_was_lost_is_not_written_again(
        broker: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The process dies after the sink's commit and before the outbox's: on the next
    start the sink's own record of the seq it reached moves the cursor past those rows."""
    caplog.set_level(logging.INFO)
    config = plant_config(broker.port, tmp_path / "data")
    _, outbox = build_gateway(config)
    sink = SqliteSink(config.sinks[0], config.data_dir, config.registry())
    now = time.time_ns()
    outbox.append(Batch(np.arange(now, now + 300, dtype=np.int64), np.zeros(300, np.int32),
                        np.ones(300), np.zeros(300, np.uint8)), [], [])
    pending = outbox.pending(sink.name, 1000)
    await sink.connect()
    await sink.write_upto(pending.batch, pending.events, outbox.id, pending.last_seq)
    await sink.aclose()
    outbox.close()  # ...and outbox.delivered never ran
    async with running(config) as gateway:
        await wait_until(lambda: gateway.counters.connector("timeseries", "sink").health
                         is Health.UP, what="the sink to start")
    with sqlite3.connect(config.data_dir / "timeseries.sqlite") as db:
        assert db.execute("SELECT SUM(n) FROM chunk").fetchone()[0] == 300  # written once
    assert any("had stored 1 outbox rows whose delivery was not recorded" in r.getMessage()
               for r in caplog.records)
    _, outbox = build_gateway(config)
    assert outbox.backlog() == {"timeseries": 0, "shadow": 0}
    outbox.close()


async def test_outbox_over_its_cap_drops_exactly_the_counted_telemetry_and_keeps_events(
        broker: Mosquitto, publisher: Publisher, tmp_path: Path) -> None:
    # Small deliveries: one delivery bigger than the cap would be dropped whole.
    config = plant_config(broker.port, tmp_path / "data", outbox_max_bytes=20_000,
                          batch_max_messages=100)
    sink = SwitchedSink(config)
    base = time.time_ns() // 1_000_000 - 60_000
    total = 3000
    async with running(config, [sink]) as gateway:
        source = gateway.counters.connector("broker", "source")
        await wait_until(lambda: source.health is Health.UP, what="the source to connect")
        sink.up = False
        for i in range(total):
            publisher.publish("plant/l1/m1/temp", orjson.dumps({"value": i, "ts": base + i}))
            if i % 100 == 0:
                publisher.publish("plant/l1/m1/state",
                                  orjson.dumps({"value": f"S{i}", "ts": base + i}))
        await wait_until(lambda: source.readings == total and source.events == total // 100,
                         what="the source to receive everything")
        outbox = gateway.counters.connector("outbox", "runtime")
        assert outbox.health is Health.DEGRADED
        assert 0 < outbox.dropped < total, (outbox.dropped, gateway.counters.outbox_bytes,
                                            gateway.counters.outbox_batches)
        sink.up = True
        sink_counters = gateway.counters.connector("timeseries", "sink")
        # The writer may still be committing (and dropping) the last deliveries: wait
        # until every reading is either written or counted as dropped.
        await wait_until(lambda: sink_counters.readings + outbox.dropped == total,
                         what="what was kept to reach the sink")
        dropped = outbox.dropped
        assert gateway.counters.signal_dropped.sum() == dropped
    with open_store(tmp_path / "data" / "timeseries.sqlite") as store:
        kept = store.read("m1", "temp", 0, 2**62)[1]
        states = store.read_events("m1", 0, 2**62)
        overflow = store.read_events(GATEWAY_MACHINE, 0, 2**62)
    assert len(kept) == total - dropped
    assert np.all(np.diff(kept) > 0)
    assert kept[-1] == total - 1  # the newest are kept; the oldest went
    assert [e.value for e in states] == [f"S{i}" for i in range(0, total, 100)]
    assert [(e.name, e.value) for e in overflow] == [  # one episode, two events
        (OVERFLOW_EVENT, "started dropping telemetry"),
        (OVERFLOW_EVENT, f"stopped dropping: {dropped} readings dropped")]
    assert gateway.counters.connector("outbox", "runtime").health is Health.UP


async def test_a_second_signal_exits_at_once_naming_what_was_not_drained(
        broker: Mosquitto, publisher: Publisher, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    config = plant_config(broker.port, tmp_path / "data", drain_timeout_s=600)
    sink = SwitchedSink(config)
    sink.hang = True
    gateway, outbox = build_gateway(config, [sink])
    stop, force = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(gateway.run(stop, force))
    source = gateway.counters.connector("broker", "source")
    await wait_until(lambda: source.health is Health.UP, what="the source to connect")
    publisher.publish("plant/l1/m1/temp", b'{"value": 1}')
    await wait_until(lambda: gateway.counters.outbox_batches > 0, what="a row in the outbox")
    stop.set()
    await asyncio.sleep(0.2)
    assert not task.done()  # draining, and the sink hangs
    force.set()
    await asyncio.wait_for(task, 5)
    outbox.close()
    message = next(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
                   and "without draining" in r.getMessage())
    assert "sink timeseries 1 outbox rows behind" in message


class DeafSource:
    """A polling source whose read swallows the first cancellation and polls on, as
    python-snap7's reads did through asyncio.wait_for on Python 3.11 when a response
    arrived at the moment of the cancel: a race a real PLC only produces now and then."""

    name = "deaf"

    def __init__(self) -> None:
        self.swallowed = 0

    async def connect(self) -> None:
        pass

    async def read(self) -> Delivery:
        while True:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                if self.swallowed:
                    raise
                self.swallowed += 1

    async def aclose(self) -> None:
        pass


async def test_a_source_that_swallows_a_cancellation_does_not_hold_the_stop(
        broker: Mosquitto, tmp_path: Path) -> None:
    config = plant_config(broker.port, tmp_path / "data")
    deaf = DeafSource()
    gateway, outbox = build_gateway(config, sources=[deaf])
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop, asyncio.Event()))
    await wait_until(lambda: gateway.counters.connector("deaf", "source").health is Health.UP,
                     what="the source to connect")
    stop.set()
    await asyncio.wait_for(task, 5)  # it once waited for that source for ever
    outbox.close()
    assert deaf.swallowed == 1


async def test_get_many_takes_whole_deliveries_up_to_a_reading_count() -> None:
    queue = DeliveryQueue(10, "block", lambda b: pytest.fail("block must not drop"))
    for n in (30, 30, 30, 5):
        await queue.put(Delivery(reading_batch(n, 0)))
    assert [len(d.batch) for d in await queue.get_many(50)] == [30, 30]
    assert [len(d.batch) for d in await queue.get_many(1)] == [30]
    await queue.close()
    assert [len(d.batch) for d in await queue.get_many(1)] == [5]
    assert await queue.get_many(1) == []
