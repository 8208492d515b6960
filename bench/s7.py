"""`python -m bench.s7`: the S7 source against a bare python-snap7 client, both reading
N REAL addresses (every other double word of DB1, so ranges bridge the gaps) from
python-snap7's server in a process of its own (`server` subcommand).

- items/s: rounds back to back for SECONDS. Baseline: AsyncClient.read_area of the
  whole range, then struct-decoding each item. Ombre: S7Source.read() (its plan, its
  multi-variable reads, its buffer and Batch) with a poll interval of 0, below the
  config's 10 ms minimum (set with model_copy, which does not validate), so its rounds
  too run back to back.
- jitter: rounds every 100 ms for SECONDS; p99 of |gap between rounds - 100 ms|, the
  gap taken from each round's response time. Baseline: the bare client on the same
  sleep-to-the-next-tick schedule.

Each figure is measured REPEATS times, alternating baseline and Ombre; the report
gives min/median/max and the ratio of the medians. Results go to bench/results/s7.json.
The server is Python too: it, not the client, bounds items/s, as the baseline shows.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.mosquitto import free_port, wait_for_port

N_ITEMS = (100, 1000)
SECONDS = 5.0
JITTER_ITEMS = 100
JITTER_PERIOD_S = 0.1
REPEATS = 5
RESULTS = Path(__file__).parent / "results" / "s7.json"


def serve(port: int) -> None:
    """The server process: DB1 of 8 kB holding REALs, until killed."""
    from snap7.server import Server  # noqa: PLC0415 - only the server process needs it
    from snap7.type import SrvArea  # noqa: PLC0415

    db = bytearray(8192)
    for i in range(len(db) // 8):
        struct.pack_into(">f", db, 8 * i, float(i))
    server = Server(log=False)
    server.register_area(SrvArea.DB, 1, db)
    server.start_to("127.0.0.1", port)
    threading.Event().wait()


def _plant(port: int, n: int, interval_ms: float) -> Any:
    from ombre.config import validate_config  # noqa: PLC0415

    plant = validate_config({
        "data_dir": tempfile.mkdtemp(),
        "sites": [{"id": "s", "lines": [{"id": "l", "machines": [
            {"id": "m", "signals": [{"name": f"v{i}"} for i in range(n)]}]}]}],
        "sources": [{"type": "s7", "name": "plc", "host": "127.0.0.1", "port": port,
                     "slot": 1, "poll_interval_ms": max(interval_ms, 10),
                     "cpu_state_interval_s": None,
                     "items": [{"machine": "m", "signal": f"v{i}", "address": f"DB1.DBD{8 * i}"}
                               for i in range(n)]}]})
    source = plant.sources[0].model_copy(update={"poll_interval_ms": interval_ms})
    return plant.model_copy(update={"sources": [source]})


async def ombre_rounds(port: int, n: int, interval_ms: float, seconds: float) -> list[int]:
    """The response time (ns) of each round S7Source read in `seconds`."""
    from connectors.s7 import S7Source  # noqa: PLC0415

    plant = _plant(port, n, interval_ms)
    source = S7Source(plant.sources[0], plant, plant.registry(), plant.runtime)
    await source.connect()
    stamps: list[int] = []
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            delivery = await source.read()
            assert len(delivery.batch) == n
            stamps.append(int(delivery.batch.ts_ns[0]))
    finally:
        await source.aclose()
    return stamps


async def bare_rounds(port: int, n: int, interval_s: float, seconds: float) -> list[int]:
    """The same with a bare AsyncClient: one read_area of the range, struct per item."""
    from snap7 import AsyncClient  # noqa: PLC0415
    from snap7.type import Area  # noqa: PLC0415

    client = AsyncClient()
    await client.connect("127.0.0.1", 0, 1, port)
    stamps: list[int] = []
    size = 8 * (n - 1) + 4
    deadline, next_s = time.monotonic() + seconds, time.monotonic()
    try:
        while time.monotonic() < deadline:
            now = time.monotonic()
            if next_s > now:
                await asyncio.sleep(next_s - now)
            next_s = max(next_s + interval_s, time.monotonic())
            data = await client.read_area(Area.DB, 1, 0, size)
            stamps.append(time.time_ns())
            values = [struct.unpack_from(">f", data, 8 * i)[0] for i in range(n)]
            assert len(values) == n
    finally:
        await client.disconnect()
    return stamps


def _rate(stamps: list[int], n: int) -> float:
    return (len(stamps) - 1) * n / ((stamps[-1] - stamps[0]) / 1e9)


def _jitter_p99_ms(stamps: list[int], period_s: float) -> float:
    gaps = sorted(abs((b - a) / 1e6 - period_s * 1000) for a, b in itertools.pairwise(stamps))
    return gaps[min(len(gaps) - 1, int(0.99 * len(gaps)))]


def _spread(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def main() -> None:
    if sys.argv[1:2] == ["server"]:
        serve(int(sys.argv[2]))
        return
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "bench.s7", "server", str(port)])
    try:
        wait_for_port(port)
        report: dict[str, Any] = {"repeats": REPEATS, "seconds": SECONDS}
        for n in N_ITEMS:
            bare, ombre = [], []
            for _ in range(REPEATS):
                bare.append(_rate(asyncio.run(bare_rounds(port, n, 0, SECONDS)), n))
                ombre.append(_rate(asyncio.run(ombre_rounds(port, n, 0, SECONDS)), n))
            report[f"items_per_s_{n}"] = {"bare_snap7": _spread(bare), "ombre": _spread(ombre),
                                          "ratio": statistics.median(ombre)
                                          / statistics.median(bare)}
        bare, ombre = [], []
        for _ in range(REPEATS):
            bare.append(_jitter_p99_ms(asyncio.run(bare_rounds(
                port, JITTER_ITEMS, JITTER_PERIOD_S, SECONDS)), JITTER_PERIOD_S))
            ombre.append(_jitter_p99_ms(asyncio.run(ombre_rounds(
                port, JITTER_ITEMS, JITTER_PERIOD_S * 1000, SECONDS)), JITTER_PERIOD_S))
        report[f"jitter_p99_ms_{JITTER_ITEMS}_items_every_100_ms"] = {
            "bare_snap7": _spread(bare), "ombre": _spread(ombre)}
    finally:
        server.kill()
        server.wait()
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
