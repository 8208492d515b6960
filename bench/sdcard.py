"""Bytes written to the disk per reading in each storage profile (not a test).

Run: .venv/bin/python -m bench.sdcard [--seconds 20] [--runs 3] [--rate 1000]

Each run is a process of its own: a gateway with a steady source (RATE readings/s over
50 signals of 5 machines, one delivery per 50 ms flush, as a live MQTT or OPC UA
source hands them over), the SQLite time-series sink and the shadow, in a fresh data
directory on the disk under bench/ (not a tmpfs, which counts no writes). It reads
`write_bytes` from /proc/self/io (what the process sent to the block layer: the three
SQLite files and their WALs) once the shadow's schema is in place, and again after the
gateway stopped and closed its files, whose last checkpoints are counted too. The
parent runs the profiles alternately, RUNS times each, and prints bytes per reading
(median, min-max) and the ratio of the medians."""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from gateway.types import Batch, Delivery
from ombre.app import build_gateway
from ombre.config import validate_config
from shadow.schema import database_url, open_engine, upgrade

MACHINES, SIGNALS_PER_MACHINE = 5, 10
FLUSH_S = 0.05
PROFILES = ("default", "sd-card")


def written_bytes() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    raise RuntimeError("/proc/self/io has no write_bytes")


class SteadySource:
    """`rate` readings/s spread over `signals` signal ids, one delivery per FLUSH_S."""

    name = "steady"

    def __init__(self, rate: int, signals: int) -> None:
        self._per_flush = max(1, round(rate * FLUSH_S))
        self._signals = signals
        self._next = time.monotonic()
        self.sent = 0

    async def connect(self) -> None:
        self._next = time.monotonic()

    async def read(self) -> Delivery:
        self._next += FLUSH_S
        await asyncio.sleep(max(0.0, self._next - time.monotonic()))
        n, now = self._per_flush, time.time_ns()
        sid = (np.arange(self.sent, self.sent + n) % self._signals).astype(np.int32)
        ts = now - (n - 1 - np.arange(n, dtype=np.int64)) * 1000  # distinct per signal
        self.sent += n
        return Delivery(Batch(ts, sid, np.sin(ts / 1e9), np.zeros(n, np.uint8)))

    async def aclose(self) -> None:
        pass


def child(profile: str, seconds: float, rate: int, data_dir: Path) -> dict[str, float]:
    machines = [{"id": f"m{i}", "signals": [{"name": f"s{j}"}
                                            for j in range(SIGNALS_PER_MACHINE)]}
                for i in range(MACHINES)]
    config = validate_config({
        "data_dir": str(data_dir),
        "sites": [{"id": "bench", "lines": [{"id": "line", "machines": machines}]}],
        "sinks": [{"type": "sqlite", "name": "timeseries"}],
        "storage": {"profile": profile},
    })
    engine = open_engine(database_url(config.shadow.database, config.data_dir))
    upgrade(engine)
    engine.dispose()
    source = SteadySource(rate, MACHINES * SIGNALS_PER_MACHINE)
    gateway, outbox = build_gateway(config, sources=[source])

    async def run() -> None:
        stop, force = asyncio.Event(), asyncio.Event()
        asyncio.get_running_loop().call_later(seconds, stop.set)
        await gateway.run(stop, force)

    before = written_bytes()
    try:
        asyncio.run(run())
    finally:
        outbox.close()
    written = written_bytes() - before
    stored = gateway.counters.connector("timeseries", "sink").readings
    return {"readings": source.sent, "stored": stored, "bytes": written,
            "bytes_per_reading": written / source.sent}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--child", choices=PROFILES)
    args = parser.parse_args()
    if args.child:
        with tempfile.TemporaryDirectory(dir=Path(__file__).parent) as tmp:
            print(json.dumps(child(args.child, args.seconds, args.rate, Path(tmp))))
        return
    results: dict[str, list[float]] = {p: [] for p in PROFILES}
    for _ in range(args.runs):
        for profile in PROFILES:
            out = subprocess.run(
                [sys.executable, "-m", "bench.sdcard", "--child", profile, "--seconds",
                 str(args.seconds), "--rate", str(args.rate)],
                check=True, capture_output=True, text=True).stdout
            run = json.loads(out.strip().splitlines()[-1])
            assert run["stored"] == run["readings"], run
            results[profile].append(run["bytes_per_reading"])
            print(f"{profile:8} {run['readings']:>7} readings, {run['bytes']:>10} bytes: "
                  f"{run['bytes_per_reading']:.1f} B/reading", flush=True)
    medians = {p: statistics.median(v) for p, v in results.items()}
    print(f"\n{args.rate} readings/s for {args.seconds:.0f} s, {args.runs} runs each:")
    for profile, values in results.items():
        print(f"  {profile:8} {medians[profile]:6.1f} B/reading "
              f"(min {min(values):.1f}, max {max(values):.1f})")
    print(f"  default / sd-card: {medians['default'] / medians['sd-card']:.1f}x")


if __name__ == "__main__":
    main()
