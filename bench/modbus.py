"""`python -m bench.modbus`: Ombre polling DEVICES Modbus TCP devices of REGISTERS
holding registers each (ITEMS items: uint16, int32, float32, float64) every second,
against a bare pymodbus client loop doing the same reads, in the same run.

The devices are pymodbus servers, all in one process of their own (`serve`
subcommand), their registers changing every second. Each run starts it, then either
`ombre run` on a config with one modbus source per device into the SQLite sink (no
shadow), or the baseline (`baseline` subcommand): one asyncio task per device, one
read of all its registers per second, nothing decoded or stored. After WARMUP_S, each
side's CPU (from /proc) is taken over WINDOW_S. For Ombre, the readings and their
timestamps come from its store afterwards; for the baseline, from its own record of
each answer. A poll's timestamp is when its answer arrived, so the cycle jitter is
how far each device's interval between two answers strays from 1 s (p99 over all
devices). RUNS runs of each side alternate; the report gives each run, the median
and spread, and the ratios Ombre / baseline. Results go to bench/results/modbus.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.mosquitto import free_port, wait_for_port
from connectors.sqlite_ts import open_store

DEVICES = 50
REGISTERS = 100
# (address type, how many): 40 + 20 + 20 + 20 registers
KINDS = (("uint16", 40), ("int32", 10), ("float32", 10), ("float64", 5))
ITEMS = sum(n for _, n in KINDS)
PERIOD_S = 1.0
WARMUP_S = 8.0
WINDOW_S = 30.0
RUNS = 3
RESULTS = Path(__file__).parent / "results" / "modbus.json"
TICK = os.sysconf("SC_CLK_TCK")


def addresses() -> list[str]:
    out, start = [], 0
    for kind, n in KINDS:
        width = {"uint16": 1, "int32": 2, "float32": 2, "float64": 4}[kind]
        for _ in range(n):
            out.append(f"hr:{start}:{kind}" if kind != "uint16" else f"hr:{start}")
            start += width
    assert start == REGISTERS
    return out


def cpu_s(pid: int) -> float:
    """User and system CPU seconds of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


async def serve(ports: list[int]) -> None:
    """The devices: one server per port, each register changing every second."""
    from pymodbus.server import ModbusTcpServer  # noqa: PLC0415 - only this process
    from pymodbus.simulator import DataType, SimData, SimDevice  # noqa: PLC0415

    servers = []
    for port in ports:
        device = SimDevice(1, simdata=[SimData(0, count=REGISTERS, values=0,
                                               datatype=DataType.REGISTERS)])
        server = ModbusTcpServer(device, address=("127.0.0.1", port))
        await server.serve_forever(background=True)
        servers.append(server)
    print("ready", flush=True)
    k = 0
    while True:
        k += 1
        for server in servers:
            await server.async_setValues(1, 16, 0, [(k + i) % 65536 for i in range(REGISTERS)])
        await asyncio.sleep(PERIOD_S)


async def baseline(ports: list[int], seconds: float) -> None:
    """The bare client loop: per device, read all registers every PERIOD_S, record when
    each answer arrived; print them as JSON after `seconds`."""
    from pymodbus.client import AsyncModbusTcpClient  # noqa: PLC0415 - only this process

    answers: list[list[int]] = [[] for _ in ports]

    async def poll(index: int, port: int) -> None:
        client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1, retries=1,
                                      reconnect_delay=0)
        await client.connect()
        due = time.monotonic()
        try:
            while True:
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                due = max(due + PERIOD_S, time.monotonic())
                response = await client.read_holding_registers(0, count=REGISTERS, device_id=1)
                assert not response.isError()
                assert len(response.registers) == REGISTERS
                answers[index].append(time.time_ns())
        finally:
            client.close()

    print("ready", flush=True)
    async with asyncio.TaskGroup() as group:
        polls = [group.create_task(poll(i, port), name=f"baseline:{port}")
                 for i, port in enumerate(ports)]
        await asyncio.sleep(seconds)
        for task in polls:
            task.cancel()
    print(json.dumps(answers), flush=True)


def jitter_p99_ms(series: list[list[int]], lo_ns: int, hi_ns: int) -> tuple[float, int]:
    """The p99 of |interval - PERIOD_S| between consecutive answers within the window,
    over all devices, and the number of answers in the window."""
    strays, count = [], 0
    for ts in series:
        inside = np.array([t for t in ts if lo_ns <= t < hi_ns], np.int64)
        count += len(inside)
        strays.append(np.abs(np.diff(inside) - PERIOD_S * 1e9))
    return float(np.percentile(np.concatenate(strays), 99) / 1e6), count


def measure(process: subprocess.Popen[str]) -> tuple[float, int, int]:
    """CPU seconds of `process` over the window, and the window (wall ns)."""
    time.sleep(WARMUP_S)
    lo, cpu0 = time.time_ns(), cpu_s(process.pid)
    time.sleep(WINDOW_S)
    return cpu_s(process.pid) - cpu0, lo, time.time_ns()


def run_ombre(ports: list[int], workdir: Path, server_pid: int) -> dict[str, Any]:
    items = addresses()
    config = workdir / "modbus.json"
    data_dir = workdir / "data"
    config.write_text(json.dumps({
        "data_dir": str(data_dir),
        "sites": [{"id": "bench", "lines": [{"id": "l", "machines": [
            {"id": f"d{d}", "signals": [{"name": f"v{i}"} for i in range(ITEMS)]}
            for d in range(DEVICES)]}]}],
        "sources": [{"type": "modbus", "name": f"d{d}", "host": "127.0.0.1", "port": port,
                     "poll_interval_ms": PERIOD_S * 1000,
                     "items": [{"machine": f"d{d}", "signal": f"v{i}", "address": a}
                               for i, a in enumerate(items)]}
                    for d, port in enumerate(ports)],
        "sinks": [{"type": "sqlite", "name": "timeseries"}],
        "shadow": {"enabled": False},
    }))
    ombre = subprocess.Popen([sys.executable, "-m", "ombre", "run", str(config),
                              "--log-level", "warning"], text=True)
    server0 = cpu_s(server_pid)
    cpu, lo, hi = measure(ombre)
    server_cpu = cpu_s(server_pid) - server0
    ombre.send_signal(signal.SIGTERM)
    ombre.wait(60)
    with open_store(data_dir / "timeseries.sqlite") as store:
        series = [store.read(f"d{d}", "v0", 0, 2**62)[0].tolist() for d in range(DEVICES)]
        readings = sum(store.count(f"d{d}", f"v{i}", lo, hi)
                       for d in range(DEVICES) for i in range(ITEMS))
    jitter, polls = jitter_p99_ms(series, lo, hi)
    return _row("ombre", cpu=cpu, server_cpu=server_cpu, window_ns=hi - lo, polls=polls,
                readings=readings, jitter_ms=jitter, exit_code=ombre.returncode)


def run_baseline(ports: list[int], server_pid: int) -> dict[str, Any]:
    child = subprocess.Popen([sys.executable, "-m", "bench.modbus", "baseline",
                              str(WARMUP_S + WINDOW_S + 2), *map(str, ports)],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    server0 = cpu_s(server_pid)
    cpu, lo, hi = measure(child)
    server_cpu = cpu_s(server_pid) - server0
    answers = json.loads(child.stdout.readline())
    child.wait(60)
    jitter, polls = jitter_p99_ms(answers, lo, hi)
    return _row("baseline", cpu=cpu, server_cpu=server_cpu, window_ns=hi - lo, polls=polls,
                readings=polls * ITEMS, jitter_ms=jitter, exit_code=child.returncode)


def _row(side: str, *, cpu: float, server_cpu: float, window_ns: int, polls: int,
         readings: int, jitter_ms: float, exit_code: int | None) -> dict[str, Any]:
    seconds = window_ns / 1e9
    return {"side": side, "window_s": round(seconds, 1),
            "registers_per_s": round(polls * REGISTERS / seconds),
            "readings_per_s": round(readings / seconds),
            "expected_readings_per_s": round(DEVICES * ITEMS / PERIOD_S),
            "cpu_percent": round(100 * cpu / seconds, 1),
            "server_cpu_percent": round(100 * server_cpu / seconds, 1),
            "jitter_p99_ms": round(jitter_ms, 1), "exit": exit_code,
            "load_1m": round(os.getloadavg()[0], 2)}


def _spread(rows: list[dict[str, Any]], key: str) -> dict[str, float]:
    values = [r[key] for r in rows]
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    if sys.argv[1:2] == ["serve"]:
        asyncio.run(serve([int(p) for p in sys.argv[2:]]))
        return
    if sys.argv[1:2] == ["baseline"]:
        asyncio.run(baseline([int(p) for p in sys.argv[3:]], float(sys.argv[2])))
        return
    ports = [free_port() for _ in range(DEVICES)]
    server = subprocess.Popen([sys.executable, "-m", "bench.modbus", "serve", *map(str, ports)],
                              stdout=subprocess.PIPE, text=True)
    rows: list[dict[str, Any]] = []
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "ready"
        wait_for_port(ports[-1])
        for k in range(RUNS):
            rows.append(run_baseline(ports, server.pid))
            print(json.dumps(rows[-1]), flush=True)
            with tempfile.TemporaryDirectory(prefix=f"ombre-modbus-bench-{k}-") as tmp:
                rows.append(run_ombre(ports, Path(tmp), server.pid))
            print(json.dumps(rows[-1]), flush=True)
    finally:
        server.terminate()
        server.wait(10)
    sides = {side: [r for r in rows if r["side"] == side] for side in ("baseline", "ombre")}
    keys = ("registers_per_s", "readings_per_s", "cpu_percent", "jitter_p99_ms")
    summary = {side: {key: _spread(side_rows, key) for key in keys}
               for side, side_rows in sides.items()}
    ratios = {key: [round(o[key] / b[key], 2) if b[key] else None
                    for b, o in zip(sides["baseline"], sides["ombre"], strict=True)]
              for key in ("cpu_percent", "jitter_p99_ms")}
    report = {"devices": DEVICES, "registers_per_device": REGISTERS, "items_per_device": ITEMS,
              "period_s": PERIOD_S, "window_s": WINDOW_S, "runs": rows, "summary": summary,
              "ombre_over_baseline": ratios, "cpus": os.cpu_count()}
    print(json.dumps({"summary": summary, "ombre_over_baseline": ratios}, indent=2))
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
