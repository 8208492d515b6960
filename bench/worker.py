"""Ombre under load, a process of its own: runs the gateway on a benchmark config until
its sink (the config's first) has committed `--expect` readings, then prints one JSON
line: readings/s from the first reading received to the last one committed, the
reading-to-commit latency percentiles (of the readings stamped `--warmup-s` or more
after the first: the first seconds pay for imports, caches and the SQLite file's
growth), and the peak RSS. It prints "ready" once its MQTT source is subscribed.

With `--outage`, the sink's server is down at the start: the worker prints "backlog"
once every reading is in the outbox, and its parent then starts the server; readings/s
are then the outbox's drain rate, from the sink's first write to its last."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from gateway.counters import Health
from gateway.types import Batch, Event, Sink, Written
from ombre.app import build_context, build_gateway, build_sink
from ombre.config import OmbreConfig, load_config


class TimedSink:
    """Wraps a sink and records, per reading, its timestamp and the time from it to
    commit."""

    def __init__(self, inner: Sink) -> None:
        self.name = inner.name
        self._inner = inner
        self.stamps_ns: list[np.ndarray] = []
        self.latencies_ms: list[np.ndarray] = []

    async def connect(self) -> None:
        await self._inner.connect()

    async def write(self, batch: Batch, events: Sequence[Event]) -> Written | None:
        written = await self._inner.write(batch, events)
        self.stamps_ns.append(batch.ts_ns)
        self.latencies_ms.append((time.time_ns() - batch.ts_ns) / 1e6)
        return written

    async def aclose(self) -> None:
        await self._inner.aclose()


async def until(condition: Callable[[], bool]) -> None:
    """Poll the gateway's counters every millisecond, as a metrics scrape would."""
    while not condition():  # noqa: ASYNC110 - the counters have no event to wait on
        await asyncio.sleep(0.001)


async def run(config: OmbreConfig, expect: int, shadow: bool,
              outage: bool = False, warmup_s: float = 0) -> dict[str, float]:
    """Runs until every sink wrote `expect` readings; with `shadow`, the shadow (and the
    drift detectors its config declares) is a second sink beside the timed one."""
    registry = config.registry()
    sink = TimedSink(build_sink(config.sinks[0], build_context(config, registry)))
    sinks: list[Sink] = [sink]
    if shadow:
        from shadow.sink import ShadowSink  # noqa: PLC0415 - the plain runs stay without it

        sinks.append(ShadowSink(config, registry))
    gateway, outbox = build_gateway(config, sinks)
    stop, force = asyncio.Event(), asyncio.Event()
    source = config.sources[0].name

    async def watch() -> tuple[float, float, int]:
        counters = gateway.counters.connector(source, "source")
        written = [gateway.counters.connector(s.name, "sink") for s in sinks]
        await until(lambda: counters.health is Health.UP)
        print("ready", flush=True)
        await until(lambda: counters.readings > 0)
        first, start = time.perf_counter(), 0
        if outage:
            await until(lambda: counters.readings >= expect and gateway.counters.queue_depth == 0)
            print("backlog", flush=True)
            await until(lambda: written[0].deliveries > 0)
            first, start = time.perf_counter(), written[0].readings
        await until(lambda: all(w.readings >= expect for w in written))
        last = time.perf_counter()
        stop.set()
        return first, last, start

    async with asyncio.TaskGroup() as tg:
        watcher = tg.create_task(watch(), name="bench:watch")
        tg.create_task(gateway.run(stop, force), name="bench:gateway")
    outbox.close()
    first, last, start = watcher.result()
    stamps = np.concatenate(sink.stamps_ns)
    latency = np.concatenate(sink.latencies_ms)[stamps >= stamps.min() + warmup_s * 1e9]
    return {
        "readings": float(gateway.counters.connector(sink.name, "sink").readings),
        "readings_per_s": (expect - start) / (last - first),
        "p50_ms": float(np.percentile(latency, 50)),
        "p99_ms": float(np.percentile(latency, 99)),
        "latency_readings": float(latency.size),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--shadow", action="store_true", help="run the shadow as a second sink")
    parser.add_argument("--outage", action="store_true", help="time the drain after an outage")
    parser.add_argument("--warmup-s", type=float, default=0,
                        help="leave the first seconds of readings out of the latency")
    args = parser.parse_args()
    config = load_config(args.config, os.environ)  # JSON is YAML; secrets are ${...}
    print(json.dumps(asyncio.run(run(config, args.expect, args.shadow, args.outage,
                                     args.warmup_s))), flush=True)


if __name__ == "__main__":
    main()
