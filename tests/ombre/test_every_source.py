"""One plant fed by the four source types at once, as an integrator would run it: an
MQTT broker (Mosquitto), an OPC UA server (asyncua), a Modbus TCP device (pymodbus's
server) and a Siemens S7 PLC (python-snap7's server), each a real server on a free
port. `ombre check` accepts the config, and `ombre run` stores each machine's value."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path

import numpy as np

from bench.mosquitto import Mosquitto, free_port
from tests.conftest import Publisher
from tests.connectors import modbus_device, opcua_plc, s7_plc
from tests.faults.netlink import stored_values

SIGNALS = {"press": "temp", "cnc": "temp", "lathe": "load", "plc": "temp"}


def plant(data: Path, broker: int, opcua: int, modbus: int, s7: int) -> dict[str, object]:
    return {
        "data_dir": str(data),
        "sites": [{"id": "site", "lines": [{"id": "l1", "machines": [
            {"id": machine, "signals": [{"name": signal}]}
            for machine, signal in SIGNALS.items()]}]}],
        "sources": [
            {"type": "mqtt", "name": "broker", "port": broker,
             "subscriptions": [{"topic": "plant/{machine}/{signal}", "format": "number"}]},
            {"type": "opcua", "name": "cnc", "endpoint": f"opc.tcp://127.0.0.1:{opcua}/ombre/",
             "security": {"mode": "None"}, "publishing_interval_ms": 50,
             "nodes": [{"machine": "cnc", "signal": "temp", "node_id": "ns=2;s=temp"}]},
            modbus_device.source("lathe", modbus, [
                {"machine": "lathe", "signal": "load", "address": "hr:0", "scale": 0.1}]),
            s7_plc.source(s7, [{"machine": "plc", "signal": "temp", "address": "DB10.DBD4"}]),
        ],
        "sinks": [{"type": "sqlite", "name": "timeseries"}],
        "shadow": {"enabled": False},
        "runtime": {"flush_interval_ms": 20, "backoff_initial_s": 0.1, "backoff_max_s": 1},
    }


async def ombre(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(sys.executable, "-m", "ombre", *args,
                                                stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)


async def test_mqtt_opcua_modbus_and_s7_sources_pass_check_and_run_together(
        broker: Mosquitto, publisher: Publisher, tmp_path: Path) -> None:
    opcua_port, modbus_port, s7_port = free_port(), free_port(), free_port()
    device = modbus_device.Device(modbus_port)
    await device.start()
    try:
        async with opcua_plc.plc(opcua_port, {"temp": 0.0}) as cnc:
            with s7_plc.plc(s7_port):  # DB10.DBD4 holds 21.5
                await device.set("hr", 0, [425])  # 42.5 once scaled
                config = tmp_path / "plant.yaml"
                config.write_text(json.dumps(plant(tmp_path / "data", broker.port,
                                                   opcua_port, modbus_port, s7_port)))
                check = await ombre("check", str(config))
                out = (await check.communicate())[0].decode()
                assert check.returncode == 0, out
                run = await ombre("run", str(config))
                try:
                    await cnc.write("temp", 71.0, None)
                    counts = {m: opcua_plc.counter(tmp_path / "data" / "timeseries.sqlite",
                                                   m, s, 0) for m, s in SIGNALS.items()}
                    deadline = time.monotonic() + 60
                    while not all(count() for count in counts.values()):
                        publisher.publish("plant/press/temp", b"18.5")
                        assert run.returncode is None, "ombre run ended"
                        assert time.monotonic() < deadline, {
                            m: count() for m, count in counts.items()}
                        await asyncio.sleep(0.2)
                finally:
                    if run.returncode is None:
                        run.send_signal(signal.SIGTERM)
                    log = (await asyncio.wait_for(run.communicate(), 60))[0].decode()
    finally:
        await device.stop()
    assert run.returncode == 0, log
    assert "Traceback" not in log
    last = {m: float(stored_values(tmp_path / "data", m, s)[-1]) for m, s in SIGNALS.items()}
    np.testing.assert_allclose(list(last.values()), [18.5, 71.0, 42.5, 21.5])
