"""Micro-benchmark of building InfluxDB line protocol, on one core. Not a test.

    .venv/bin/python -m bench.influx_micro [--repeat 7]

Times LineLayout.reading_lines on a W2-like batch (100,000 readings over 1,000 signals
of 50 machines), then the join and encode the sink does per request, and, in the same
run for scale, influxdb-client's Point objects on a tenth of the batch. Medians."""

from __future__ import annotations

import argparse
import time

import numpy as np
from influxdb_client.client.write.point import Point
from pydantic import SecretStr

from bench.decode_micro import median_s
from connectors.influx_config import InfluxSinkConfig
from connectors.line_protocol import LineLayout
from gateway.types import Batch
from ombre.config import validate_config

READINGS = 100_000
REQUEST_LINES = 5_000


def w2_batch(n_signals: int) -> Batch:
    rng = np.random.default_rng(1)
    ts = time.time_ns() - 60 * 10**9 + np.arange(READINGS, dtype=np.int64) * 10_000
    return Batch(ts, np.tile(np.arange(n_signals, dtype=np.int32), READINGS // n_signals),
                 rng.normal(20, 5, READINGS).round(3), np.zeros(READINGS, np.uint8))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    machines = [{"id": f"dev-{i:02d}", "type": "bench device",
                 "signals": [{"name": f"s{j:02d}", "unit": "degC"} for j in range(20)]}
                for i in range(50)]
    plant = validate_config(
        {"sites": [{"id": "bench", "lines": [{"id": "line-1", "machines": machines}]}]})
    registry = plant.registry()
    config = InfluxSinkConfig(type="influxdb", url="http://127.0.0.1:8086", org="o",
                              bucket="b", token=SecretStr("unused"))
    layout = LineLayout(config, plant, registry)
    batch = w2_batch(len(registry))
    lines, _ = layout.reading_lines(batch)
    build = median_s(lambda: layout.reading_lines(batch), args.repeat)
    join = median_s(lambda: [("\n".join(lines[i:i + REQUEST_LINES])).encode()
                             for i in range(0, READINGS, REQUEST_LINES)], args.repeat)
    infos = [registry.info(s) for s in batch.signal_id[:READINGS // 10].tolist()]
    points = median_s(lambda: [
        Point("bench device").tag("site", "bench").tag("line", "line-1")
        .tag("machine", info.machine).tag("signal", info.signal).tag("unit", "degC")
        .field("value", v).time(t).to_line_protocol()
        for info, v, t in zip(infos, batch.value.tolist(), batch.ts_ns.tolist(), strict=False)
    ], args.repeat) * 10
    print(f"reading_lines: {READINGS / build:,.0f} readings/s "
          f"({build / READINGS * 1e9:,.0f} ns per reading)")
    print(f"with join + encode per {REQUEST_LINES}-line request: "
          f"{READINGS / (build + join):,.0f} readings/s")
    print(f"influxdb-client Point objects: {READINGS / points:,.0f} readings/s "
          f"(reading_lines is {points / build:.1f}x as fast)")
    print(f"a line: {lines[0]}")


if __name__ == "__main__":
    main()
