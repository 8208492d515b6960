"""The OPC UA source against real in-process asyncua servers on free ports, through the
whole gateway into the SQLite sink."""

from __future__ import annotations

import asyncio
import logging
import math
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from asyncua import Server, ua

from bench.mosquitto import free_port
from connectors.opcua import GAP_EVENT
from connectors.sqlite_ts import StoreError, open_store
from gateway.config import OmbreConfig
from gateway.runtime import Gateway
from gateway.types import Quality
from tests.conftest import running, wait_until

ALL = (-(2**63), 2**63 - 1)
NS_URI = "urn:ombre:test"
BASE_TS = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)  # within retention
STEP = timedelta(milliseconds=100)
T = TypeVar("T")


def ns(ts: datetime) -> int:
    return (ts - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000


class Plc:
    """An asyncua server in a thread of its own, with its own event loop (so the
    server's tasks never mix with the gateway's), whose variables are `ns=2;s=<name>`.
    `write` sets a value with an explicit source timestamp, so expected counts are exact."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.server = Server()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"plc:{port}",
                                        daemon=True)

    async def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    async def start(self, variables: dict[str, Any]) -> None:
        self._thread.start()
        await self._call(self._setup(variables))

    async def _setup(self, variables: dict[str, Any]) -> None:
        await self.server.init()
        self.server.set_endpoint(f"opc.tcp://127.0.0.1:{self.port}/ombre/")
        assert await self.server.register_namespace(NS_URI) == 2
        folder = await self.server.nodes.objects.add_folder(2, "Plant")
        for name, initial in variables.items():
            await folder.add_variable(ua.NodeId(name, 2), name, initial)
            await self._write(name, initial, BASE_TS - timedelta(days=1))
        await self.server.start()

    async def write(self, name: str, value: Any, ts: datetime | None,
                    status: int = ua.StatusCodes.Good, server_ts: datetime | None = None
                    ) -> None:
        """Set a value stamped `ts` (source) and `server_ts` (server; default: ts)."""
        await self._call(self._write(name, value, ts, status, server_ts))

    async def _write(self, name: str, value: Any, ts: datetime | None,
                     status: int = ua.StatusCodes.Good, server_ts: datetime | None = None
                     ) -> None:
        await self.server.write_attribute_value(
            ua.NodeId(name, 2),
            ua.DataValue(ua.Variant(value), StatusCode=ua.StatusCode(status),
                         SourceTimestamp=ts, ServerTimestamp=server_ts or ts))

    async def stop(self) -> None:
        await self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        await asyncio.to_thread(self._thread.join, 10)
        self._loop.close()

    async def _stop(self) -> None:
        await self.server.stop()
        left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in left:  # asyncua leaves its sessions' timeout loops running
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)


@asynccontextmanager
async def plc(port: int, variables: dict[str, Any]) -> AsyncIterator[Plc]:
    """A server on `port` with one variable per name, holding its initial value stamped
    a day before BASE_TS (so counts from BASE_TS on exclude it)."""
    server = Plc(port)
    await server.start(variables)
    try:
        yield server
    finally:
        await server.stop()


def config(port: int, data_dir: Path, nodes: list[dict[str, Any]],
           machines: dict[str, list[dict[str, Any]]], **source: Any) -> OmbreConfig:
    return OmbreConfig.model_validate({
        "data_dir": str(data_dir),
        "sites": [{"id": "site", "lines": [{"id": "l1", "machines": [
            {"id": m, "signals": signals} for m, signals in machines.items()]}]}],
        "sources": [{"type": "opcua", "name": "plc", "endpoint": f"opc.tcp://127.0.0.1:{port}/ombre/",
                     "publishing_interval_ms": 50, "keepalive_count": 5,
                     "sampling_interval_ms": 0, "queue_size": 100, "connect_timeout_s": 2,
                     "nodes": nodes, **source}],
        "sinks": [{"type": "sqlite", "name": "timeseries"}],
        "runtime": {"flush_interval_ms": 20, "backoff_initial_s": 0.1, "backoff_max_s": 1},
    })


def counter(store_path: Path, machine: str, signal: str, from_ns: int = ns(BASE_TS)
            ) -> Callable[[], int]:
    def count() -> int:
        try:
            with open_store(store_path) as store:
                return store.count(machine, signal, from_ns, ALL[1])
        except (StoreError, KeyError):  # not created yet, or no such series yet
            return 0
    return count


def quarantine(data_dir: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(data_dir / "gateway.sqlite") as db:
        return list(db.execute("SELECT topic, reason FROM quarantine ORDER BY ts_ns"))


async def subscribed(gateway: Gateway, initial: int) -> None:
    """Wait for the `initial` values a new subscription reports first, so what the test
    writes next is not folded into them."""
    source = gateway.counters.connector("plc", "source")
    await wait_until(lambda: source.readings + source.events + source.quarantined >= initial,
                     what=f"{initial} initial values")


MACHINES = 10
SIGNALS = 20  # 200 variables


async def test_many_variables_reach_sqlite_with_exact_counts(tmp_path: Path) -> None:
    port, rounds = free_port(), 30
    names = [f"m{m}.s{s}" for m in range(MACHINES) for s in range(SIGNALS)]
    machines = {f"m{m}": [{"name": f"s{s}"} for s in range(SIGNALS)] for m in range(MACHINES)}
    nodes = [{"machine": n.split(".")[0], "signal": n.split(".")[1], "node_id": f"ns=2;s={n}"}
             for n in names]
    cfg = config(port, tmp_path, nodes, machines)
    store = tmp_path / "timeseries.sqlite"
    async with plc(port, dict.fromkeys(names, -1.0)) as server, running(cfg) as gateway:
        await subscribed(gateway, len(names))
        for k in range(rounds):
            ts = BASE_TS + k * STEP
            for i, name in enumerate(names):
                await server.write(name, float(k * 1000 + i), ts)
            await asyncio.sleep(0.1)
        for name in names:
            machine, signal = name.split(".")
            await wait_until(lambda m=machine, s=signal: counter(store, m, s)() == rounds,
                             what=f"{rounds} readings of {name}")
    with open_store(store) as db:
        ts, values, quality = db.read("m3", "s7", ns(BASE_TS), ALL[1])
    i = names.index("m3.s7")
    assert ts.tolist() == [ns(BASE_TS + k * STEP) for k in range(rounds)]
    assert values.tolist() == [float(k * 1000 + i) for k in range(rounds)]
    assert set(quality.tolist()) == {Quality.GOOD}
    assert quarantine(tmp_path) == []


async def test_types_strings_booleans_and_wrong_types(tmp_path: Path) -> None:
    port = free_port()
    machines = {"press": [{"name": "state", "type": "string"}, {"name": "running"},
                          {"name": "temp"}, {"name": "label"}]}
    nodes = [{"machine": "press", "signal": "state", "node_id": "ns=2;s=state"},
             {"machine": "press", "signal": "running", "node_id": "ns=2;s=running"},
             {"machine": "press", "signal": "temp", "node_id": "ns=2;s=temp"},
             {"machine": "press", "signal": "label", "node_id": "ns=2;s=label"}]
    store = tmp_path / "timeseries.sqlite"
    variables = {"state": "idle", "running": False, "temp": 0.0, "label": "x"}
    async with plc(port, variables) as server, \
            running(config(port, tmp_path, nodes, machines)) as gateway:
        await subscribed(gateway, 4)
        await server.write("state", "run", BASE_TS)
        await server.write("running", True, BASE_TS)
        await server.write("label", "hot", BASE_TS)  # a string on a number signal
        await server.write("temp", 21.5, BASE_TS + STEP)  # the others keep flowing
        await wait_until(counter(store, "press", "temp"), what="temp")
        source = gateway.counters.connector("plc", "source")
        await wait_until(lambda: source.quarantined == 2, what="2 quarantine records")
        await wait_until(counter(store, "press", "running"), what="running")

        def events() -> list[tuple[str, object]]:
            with open_store(store) as db:
                return [(e.name, e.value) for e in db.read_events("press", ns(BASE_TS), ALL[1])]

        await wait_until(lambda: events() == [("state", "run")],
                         what="the state event")
    with open_store(store) as db:
        assert db.read("press", "running", ns(BASE_TS), ALL[1])[1].tolist() == [1.0]
        assert db.read("press", "temp", ns(BASE_TS), ALL[1])[1].tolist() == [21.5]
    records = quarantine(tmp_path)
    assert len(records) == 2  # the initial value and the write
    assert {topic for topic, _ in records} == {"ns=2;s=label"}
    assert "found String" in records[0][1]
    assert "press/label" in records[0][1]


async def test_absolute_deadband_suppresses_small_changes(tmp_path: Path) -> None:
    port = free_port()
    machines = {"press": [{"name": "temp"}, {"name": "raw"}]}
    nodes = [{"machine": "press", "signal": "temp", "node_id": "ns=2;s=temp",
              "deadband": {"type": "absolute", "value": 1.0}},
             {"machine": "press", "signal": "raw", "node_id": "ns=2;s=raw"}]
    store = tmp_path / "timeseries.sqlite"
    writes = 20  # odd steps move 0.5 (suppressed), even steps 9.5 (reported)
    values = [10.0 * k if k % 2 == 0 else 10.0 * (k - 1) + 0.5 for k in range(writes)]
    async with plc(port, {"temp": -100.0, "raw": -100.0}) as server, \
            running(config(port, tmp_path, nodes, machines)) as gateway:
        await subscribed(gateway, 2)
        for k, value in enumerate(values):
            await server.write("temp", value, BASE_TS + k * STEP)
            await server.write("raw", value, BASE_TS + k * STEP)
        await wait_until(lambda: counter(store, "press", "raw")() == writes, what="raw")
        await wait_until(lambda: counter(store, "press", "temp")() == writes // 2, what="temp")
    with open_store(store) as db:
        assert db.read("press", "temp", ns(BASE_TS), ALL[1])[1].tolist() == values[::2]


async def test_bad_status_arrives_as_bad_quality(tmp_path: Path) -> None:
    port = free_port()
    machines = {"press": [{"name": "temp"}]}
    nodes = [{"machine": "press", "signal": "temp", "node_id": "ns=2;s=temp"}]
    store = tmp_path / "timeseries.sqlite"
    async with plc(port, {"temp": -1.0}) as server, \
            running(config(port, tmp_path, nodes, machines)) as gateway:
        await subscribed(gateway, 1)
        await server.write("temp", 20.0, BASE_TS)
        await server.write("temp", 999.0, BASE_TS + STEP, ua.StatusCodes.BadSensorFailure)
        await server.write("temp", 21.0, BASE_TS + 2 * STEP,
                           ua.StatusCodes.UncertainLastUsableValue)
        await server.write("temp", 22.0, None, server_ts=BASE_TS + 10 * STEP)
        await server.write("temp", 23.0, None)  # no timestamp at all: the receive time
        await wait_until(lambda: counter(store, "press", "temp", 0)() == 6, what="6 readings")
    with open_store(store) as db:
        _, values, quality = db.read("press", "temp", ns(BASE_TS), ns(BASE_TS + 3 * STEP))
        _, last_values, last_quality = db.read("press", "temp", ns(BASE_TS + STEP * 5), ALL[1])
    assert values[0] == 20.0
    assert math.isnan(values[1])
    assert values[2] == 21.0
    assert quality.tolist() == [Quality.GOOD, Quality.BAD, Quality.UNCERTAIN]
    assert last_values.tolist() == [22.0, 23.0]
    assert last_quality.tolist() == [Quality.TS_SERVER, Quality.TS_RECEIVED]


@pytest.mark.slow
async def test_server_restart_resumes_and_records_the_gap(tmp_path: Path) -> None:
    port = free_port()
    machines = {"press": [{"name": "temp"}, {"name": "speed"}]}
    nodes = [{"machine": "press", "signal": "temp", "node_id": "ns=2;s=temp"},
             {"machine": "press", "signal": "speed", "node_id": "ns=2;s=speed"}]
    store = tmp_path / "timeseries.sqlite"
    variables = {"temp": -1.0, "speed": -1.0}
    async with running(config(port, tmp_path, nodes, machines)) as gateway:
        async with plc(port, variables) as server:
            await subscribed(gateway, 2)
            for k in range(5):
                await server.write("temp", float(k), BASE_TS + k * STEP)
            await wait_until(lambda: counter(store, "press", "temp")() == 5, what="before")
        await asyncio.sleep(3)  # the PLC is down
        assert gateway.counters.connector("plc", "source").health.name == "DOWN"
        source = gateway.counters.connector("plc", "source")
        before = source.readings
        async with plc(port, variables) as server:
            await subscribed(gateway, before + 3)  # 2 initial values, 1 gap event
            for k in range(5, 10):
                await server.write("temp", float(k), BASE_TS + k * STEP)
            await server.write("speed", 7.0, BASE_TS + 9 * STEP)
            await wait_until(lambda: counter(store, "press", "temp")() == 10, what="after")
            await wait_until(lambda: counter(store, "press", "speed")() == 1, what="speed")

            def gaps() -> list[object]:
                with open_store(store) as db:
                    return [e.value for e in db.read_events("_gateway", *ALL)
                            if e.name == GAP_EVENT]

            await wait_until(lambda: len(gaps()) == 1, what="the gap event")
    [gap] = gaps()
    assert isinstance(gap, str)
    assert gap.startswith("plc: ")
    start, end = (datetime.fromisoformat(t) for t in gap.removeprefix("plc: ").split(" to "))
    assert timedelta(seconds=3) <= end - start < timedelta(seconds=20)


async def test_missing_node_is_reported_and_the_others_flow(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    machines = {"press": [{"name": "temp"}, {"name": "gone"}]}
    nodes = [{"machine": "press", "signal": "temp", "node_id": "ns=2;s=temp"},
             {"machine": "press", "signal": "gone", "node_id": "ns=2;s=not-there"}]
    store = tmp_path / "timeseries.sqlite"
    caplog.set_level(logging.ERROR, logger="connectors.opcua")
    async with plc(port, {"temp": -1.0}) as server, \
            running(config(port, tmp_path, nodes, machines)) as gateway:
        await subscribed(gateway, 2)
        for k in range(5):
            await server.write("temp", float(k), BASE_TS + k * STEP)
        await wait_until(lambda: counter(store, "press", "temp")() == 5, what="temp")
    [(topic, reason)] = quarantine(tmp_path)
    assert topic == "ns=2;s=not-there"
    assert "BadNodeIdUnknown" in reason
    errors = [r.getMessage() for r in caplog.records if r.name == "connectors.opcua"]
    assert len(errors) == 1
    assert "ns=2;s=not-there" in errors[0]
