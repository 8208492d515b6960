"""The Modbus TCP source against real pymodbus servers on free ports: read directly
through the source, or through the whole gateway into the SQLite sink."""

from __future__ import annotations

import asyncio
import logging
import struct
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bench.mosquitto import free_port
from connectors.modbus import GAP_EVENT, ModbusSource
from connectors.modbus_config import ModbusSourceConfig
from connectors.sqlite_ts import open_store
from gateway.counters import Health
from gateway.outbox import GATEWAY_MACHINE
from gateway.types import Delivery, Quality
from ombre.cli import main
from ombre.config import OmbreConfig
from tests.conftest import running, wait_until
from tests.connectors.modbus_device import UNIT, config, device, frozen_device, source

ALL = (-(2**63), 2**63 - 1)
ORDERS = [("big", "big"), ("big", "little"), ("little", "big"), ("little", "little")]
# type -> (struct format, value): every byte of each value differs from its neighbours
NUMBERS: dict[str, tuple[str, float]] = {
    "int16": ("h", -12345), "uint16": ("H", 54321), "int32": ("i", -123456789),
    "uint32": ("I", 3_000_000_001), "int64": ("q", -1234567890123), "uint64": ("Q", 2**63 + 5),
    "float32": ("f", 1500.25), "float64": ("d", -2.718281828459045),
}


def registers(fmt: str, value: float, byte_order: str, word_order: str) -> list[int]:
    """The registers a device with these orders holds for `value`: the big-endian
    bytes AB CD EF GH..., pairs swapped by byte order, pairs reversed by word order."""
    raw = struct.pack(">" + fmt, value)
    pairs = [raw[i:i + 2] for i in range(0, len(raw), 2)]
    if word_order == "little":
        pairs.reverse()
    return [pair[1] << 8 | pair[0] if byte_order == "little" else pair[0] << 8 | pair[1]
            for pair in pairs]


def modbus_source(cfg: OmbreConfig, index: int = 0) -> ModbusSource:
    settings = cfg.sources[index]
    assert isinstance(settings, ModbusSourceConfig)
    return ModbusSource(settings, cfg, cfg.registry(), cfg.runtime)


async def poll(cfg: OmbreConfig, reads: int, index: int = 0) -> list[Delivery]:
    """Connect the source `index` of `cfg`, then `reads` deliveries (the first is the
    connect's own poll)."""
    src = modbus_source(cfg, index)
    await src.connect()
    try:
        return [await src.read() for _ in range(reads)]
    finally:
        await src.aclose()


def by_signal(cfg: OmbreConfig, deliveries: list[Delivery]) -> dict[str, list[Any]]:
    """Each signal's values in order, readings and events alike."""
    registry, values = cfg.registry(), {}
    for d in deliveries:
        for sid, value in zip(d.batch.signal_id.tolist(), d.batch.value.tolist(), strict=True):
            values.setdefault(registry.info(sid).signal, []).append(value)
        for event in d.events:
            values.setdefault(event.name, []).append(event.value)
    return values


async def test_every_type_in_every_byte_and_word_order(tmp_path: Path) -> None:
    port, items, expected, signals = free_port(), [], {}, []
    async with device(port) as dev:
        address = 0
        for byte_order, word_order in ORDERS:
            order = {"byte_order": byte_order, "word_order": word_order}
            for kind, (fmt, value) in NUMBERS.items():
                name = f"{kind}_{byte_order}_{word_order}"
                words = registers(fmt, value, byte_order, word_order)
                await dev.set("hr", address, words)
                items.append({"machine": "m", "signal": name,
                              "address": f"hr:{address}:{kind}", **order})
                signals.append({"name": name})
                expected[name] = [float(value)]
                address += len(words)
            # a string keeps its words in order: only the bytes within them swap
            name = f"string_{byte_order}"
            if name not in expected:
                raw = b"LATHE\x00\x00\x00\x00\x00"
                words = [int.from_bytes(raw[i:i + 2], byte_order) for i in range(0, 10, 2)]
                await dev.set("hr", address, words)
                items.append({"machine": "m", "signal": name,
                              "address": f"hr:{address}:string:10", **order})
                signals.append({"name": name, "type": "string"})
                expected[name] = ["LATHE"]
                address += 5
        await dev.set("hr", 150, [0b1000_0000_0000_1000, 1234])
        await dev.set("co", 9, [True])
        await dev.set("di", 4, [True, False])
        items += [{"machine": "m", "signal": "bit3", "address": "hr:150.3"},
                  {"machine": "m", "signal": "bit15", "address": "hr:150.15"},
                  {"machine": "m", "signal": "bit4", "address": "hr:150.4"},
                  {"machine": "m", "signal": "coil", "address": "co:9"},
                  {"machine": "m", "signal": "di_on", "address": "di:4"},
                  {"machine": "m", "signal": "di_off", "address": "di:5"},
                  {"machine": "m", "signal": "scaled", "address": "40152", "scale": 0.1,
                   "offset": -10, "byte_order": "big"}]
        signals += [{"name": s} for s in ("bit3", "bit15", "bit4", "coil", "di_on", "di_off",
                                          "scaled")]
        expected |= {"bit3": [1.0], "bit15": [1.0], "bit4": [0.0], "coil": [1.0],
                     "di_on": [1.0], "di_off": [0.0], "scaled": [pytest.approx(113.4)]}
        # The source's own orders apply where an item sets none.
        await dev.set("ir", 0, registers("f", 1500.25, "little", "little"))
        items.append({"machine": "m", "signal": "source_orders", "address": "ir:0:float32"})
        signals.append({"name": "source_orders"})
        expected["source_orders"] = [1500.25]
        cfg = config(tmp_path, {"m": signals}, [source("plc", port, items, byte_order="little",
                                                      word_order="little")])
        before = time.time_ns()
        [delivery] = await poll(cfg, 1)
        after = time.time_ns()
    assert by_signal(cfg, [delivery]) == expected
    stamps = [*delivery.batch.ts_ns.tolist(), *(e.ts_ns for e in delivery.events)]
    assert all(before <= ts <= after for ts in stamps)
    assert set(delivery.batch.quality.tolist()) == {Quality.TS_RECEIVED}
    assert delivery.quarantined == []


GROUPED = [{"machine": "m", "signal": f"s{i}", "address": a} for i, a in enumerate(
    ["hr:0", "hr:1:int16", "hr:2:float32", "hr:4.0", "hr:10", "ir:5", "ir:6:uint32",
     "co:0", "co:1", "co:7", "di:3"])]
SIGNALS = [{"name": f"s{i}"} for i in range(len(GROUPED))]


@pytest.mark.parametrize(("settings", "requests"), [
    ({}, {(1, 0, 2), (1, 7, 1), (2, 3, 1), (3, 0, 5), (3, 10, 1), (4, 5, 3)}),
    ({"max_gap": 5}, {(1, 0, 8), (2, 3, 1), (3, 0, 11), (4, 5, 3)}),
    ({"max_registers_per_read": 3, "max_bits_per_read": 1},
     {(1, 0, 1), (1, 1, 1), (1, 7, 1), (2, 3, 1), (3, 0, 2), (3, 2, 3), (3, 10, 1),
      (4, 5, 3)}),
])
async def test_neighbouring_addresses_are_read_together(
        tmp_path: Path, settings: dict[str, int], requests: set[tuple[int, int, int]]) -> None:
    port = free_port()
    slow = {"machine": "m", "signal": "slow", "address": "hr:11", "poll_interval_ms": 60_000}
    cfg = config(tmp_path, {"m": [*SIGNALS, {"name": "slow"}]},
                 [source("plc", port, [*GROUPED, slow], **settings)])
    async with device(port) as dev:
        deliveries = await poll(cfg, 4)
    # Each poll sends the same requests; the slow item has its own, sent once.
    assert sorted(dev.requests) == sorted([(3, 11, 1), *list(requests) * 4])
    assert [len(d.batch) for d in deliveries] == [len(GROUPED) + 1] + [len(GROUPED)] * 3


async def test_an_illegal_address_costs_only_its_own_value(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    items = [{"machine": "m", "signal": f"s{i}", "address": f"hr:{i}"} for i in range(3)]
    cfg = config(tmp_path, {"m": [{"name": f"s{i}"} for i in range(3)]},
                 [source("plc", port, items)])
    caplog.set_level(logging.INFO, logger="connectors.modbus")
    async with device(port, holes=[1]) as dev:
        await dev.set("hr", 0, [10])
        await dev.set("hr", 2, [12])
        deliveries = await poll(cfg, 3)
    # The coalesced read is refused once, then each item is read on its own.
    assert dev.requests == [(3, 0, 3), *[(3, 0, 1), (3, 1, 1), (3, 2, 1)] * 3]
    assert by_signal(cfg, deliveries) == {"s0": [10.0] * 3, "s2": [12.0] * 3}
    quarantined = [r for d in deliveries for r in d.quarantined]
    assert [(r.topic, r.reason, r.signal_id) for r in quarantined] == [
        (f"unit {UNIT} hr:1", "exception 2 (illegal data address) reading hr:1",
         cfg.registry().id_of("m", "s1"))]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"modbus plc: 127.0.0.1:{port} unit {UNIT} answered hr:1 (m/s1) with "
                        "exception 2 (illegal data address); the other requests keep flowing"]


async def test_a_busy_device_is_reported_once_and_read_again(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    items = [{"machine": "m", "signal": "a", "address": "hr:0"},
             {"machine": "m", "signal": "b", "address": "hr:5"}]
    cfg = config(tmp_path, {"m": [{"name": "a"}, {"name": "b"}]},
                 [source("plc", port, items)])
    caplog.set_level(logging.INFO, logger="connectors.modbus")
    async with device(port) as dev:
        src = modbus_source(cfg)
        await src.connect()
        first = await src.read()
        dev.busy = True
        busy = await src.read()
        served = len(dev.requests)

        async def recover() -> None:
            await dev.set("hr", 0, [42])  # unseen while busy
            # Free the device between two polls (each sends 2 requests), with no request
            # half served, so that one poll finds both addresses answering again.
            while (len(dev.requests) < served + 10 or len(dev.requests) % 2  # noqa: ASYNC110
                   or dev.answers != len(dev.requests)):
                await asyncio.sleep(0.001)
            dev.busy = False

        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(recover())
            back = await src.read()
        await src.aclose()
    assert len(first.batch) == 2
    assert len(busy.batch) == 0
    assert [(r.topic, r.reason) for r in busy.quarantined] == [
        ("unit 1 hr:0", "exception 6 (server device busy) reading hr:0"),
        ("unit 1 hr:5", "exception 6 (server device busy) reading hr:5")]
    assert back.quarantined == []
    assert by_signal(cfg, [back]) == {"a": [42.0], "b": [0.0]}
    messages = [r.getMessage() for r in caplog.records]
    assert sum("server device busy" in m for m in messages) == 2  # hr:0 and hr:5, once each
    assert f"modbus plc: 127.0.0.1:{port} unit 1 answers hr:0 again" in messages


async def test_deadband_sends_only_changes_beyond_it(tmp_path: Path) -> None:
    port = free_port()
    items = [{"machine": "m", "signal": "load", "address": "hr:0", "deadband": 5},
             {"machine": "m", "signal": "count", "address": "hr:1", "deadband": 0},
             {"machine": "m", "signal": "order", "address": "hr:2:string:4", "deadband": 0},
             {"machine": "m", "signal": "every", "address": "hr:4"}]
    cfg = config(tmp_path, {"m": [{"name": "load"}, {"name": "count"},
                                  {"name": "order", "type": "string"}, {"name": "every"}]},
                 [source("plc", port, items)])
    async with device(port) as dev:
        src = modbus_source(cfg)
        await src.connect()
        deliveries = [await src.read()]
        for load, count, order in [(5, 0, b"A1"), (6, 1, b"A1"), (20, 1, b"B2"), (16, 1, b"B2")]:
            await dev.set("hr", 0, [load, count, int.from_bytes(order, "big"), 0])
            deliveries.append(await src.read())
        await src.aclose()
    assert [by_signal(cfg, [d]) for d in deliveries] == [
        {"load": [0.0], "count": [0.0], "order": [""], "every": [0.0]},
        {"every": [0.0], "order": ["A1"]},  # 5 is not more than 5 away from 0
        {"load": [6.0], "count": [1.0], "every": [0.0]},
        {"load": [20.0], "every": [0.0], "order": ["B2"]},
        {"every": [0.0]},
    ]


def gaps(store: Path) -> list[object]:
    with open_store(store) as db:
        return [e.value for e in db.read_events(GATEWAY_MACHINE, *ALL) if e.name == GAP_EVENT]


@pytest.mark.slow
async def test_a_device_restart_is_a_recorded_gap_then_values_flow_again(tmp_path: Path) -> None:
    port = free_port()
    items = [{"machine": "m", "signal": "count", "address": "hr:0:uint32"}]
    cfg = config(tmp_path, {"m": [{"name": "count"}]}, [source("lathe", port, items)])
    store = tmp_path / "timeseries.sqlite"
    async with running(cfg) as gateway:
        counters = gateway.counters.connector("lathe", "source")
        async with device(port) as dev:
            await dev.set("hr", 0, [1, 2])
            await wait_until(lambda: counters.readings >= 5, what="readings")
        await wait_until(lambda: counters.health is Health.DOWN, what="the device down")
        assert f"127.0.0.1:{port} unit 1" in (counters.last_error or "")
        down_at = counters.readings
        await asyncio.sleep(1.5)
        assert counters.readings == down_at
        async with device(port) as dev:
            await dev.set("hr", 0, [3, 4])
            await wait_until(lambda: counters.health is Health.UP, what="the device back")
            await wait_until(lambda: counters.readings >= down_at + 5, what="readings again")
        await wait_until(lambda: len(gaps(store)) == 1, what="the gap event")
    with open_store(store) as db:
        _, values, _ = db.read("m", "count", *ALL)
    assert set(values.tolist()) == {65538.0, 196612.0}
    [gap] = gaps(store)
    assert isinstance(gap, str)
    start, end = (datetime.fromisoformat(t) for t in gap.removeprefix("lathe: ").split(" to "))
    assert timedelta(seconds=1.5) <= end - start < timedelta(seconds=20)


@pytest.mark.slow
async def test_a_frozen_device_does_not_hold_up_another(tmp_path: Path) -> None:
    port = free_port()
    items = [{"machine": "m", "signal": "load", "address": "hr:0"}]
    with frozen_device() as frozen_port:
        cfg = config(tmp_path, {"m": [{"name": "load"}], "old": [{"name": "load"}]}, [
            source("live", port, items),
            source("frozen", frozen_port, [{**items[0], "machine": "old"}])])
        async with device(port), running(cfg) as gateway:
            live = gateway.counters.connector("live", "source")
            frozen = gateway.counters.connector("frozen", "source")
            await wait_until(lambda: frozen.retries >= 2, what="the frozen device's retries")
            before = live.readings
            await asyncio.sleep(1.0)
            assert live.readings >= before + 5
            assert live.health is Health.UP
            assert frozen.health is Health.DOWN
            assert frozen.readings == 0
            assert frozen.last_error in (
                f"ConnectionError: no answer from 127.0.0.1:{frozen_port} unit 1 to hr:0 "
                "within 0.5 s (1 try)",
                f"ConnectionError: cannot connect to 127.0.0.1:{frozen_port}")


def write_config(tmp_path: Path, items: str) -> Path:
    path = tmp_path / "plant.yaml"
    path.write_text(f"""\
sites:
  - id: s
    lines:
      - id: l
        machines:
          - id: lathe
            signals: [{{name: load}}, {{name: count}}]
sources:
  - type: modbus
    name: lathe
    host: 10.0.0.5
    items:
{items}""")
    return path


@pytest.mark.parametrize(("items", "problem"), [
    ('{machine: lathe, signal: count, address: "hr:1:float33"}',
     ":14: sources[0].items[1].address: expected a type (bool, int16, uint16, int32, uint32, "
     "int64, uint64, float32, float64, string), found 'float33' in 'hr:1:float33'"),
    ('{machine: lathe, signal: speed, address: "hr:1"}',
     ":14: sources[0].items[1]: expected a signal declared in the plant, found lathe/speed"),
    ('{machine: lathe, signal: count, address: "hr:1:string:8"}',
     ":14: sources[0].items[1].signal: expected a string signal for hr:1:string:8, found "
     "lathe/count of type number"),
])
def test_check_names_the_key_of_a_bad_item(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           items: str, problem: str) -> None:
    path = write_config(tmp_path, f"""\
      - {{machine: lathe, signal: load, address: "hr:0"}}
      - {items}
""")
    assert main(["check", str(path)]) == 2
    assert capsys.readouterr().err == f"{path}{problem}\n"


async def test_modbus_read_prints_each_address_decoded(tmp_path: Path) -> None:
    port = free_port()
    async with device(port, holes=[7]) as dev:
        await dev.set("hr", 0, registers("f", 1500.25, "big", "little"))
        await dev.set("hr", 2, [0x4142, 0x4300, 0b100])
        await dev.set("co", 5, [True])
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ombre", "modbus", "read", f"127.0.0.1:{port}",
            "--unit", "1", "--word-order", "little", "hr:0:float32", "hr:2:string:3", "40005.2",
            "co:5", "hr:7", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await child.communicate()
    assert out.decode().splitlines() == [
        "hr:0:float32   8800 44bb            1500.25",
        "hr:2:string:3  4142 4300            'ABC'",
        "hr:4.2         0004                 true",
        "co:5           1                    true",
        "hr:7           exception 2 (illegal data address)",
    ]
    assert child.returncode == 1, err.decode()  # one address failed
    done = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ombre", "modbus", "read", f"127.0.0.1:{free_port()}", "hr:0",
        stderr=asyncio.subprocess.PIPE)
    _, err = await done.communicate()
    assert done.returncode == 1
    assert err.decode().startswith("ombre modbus read: cannot connect to 127.0.0.1:")
