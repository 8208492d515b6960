"""Micro-benchmark of the shadow model (not a test): what the shadow adds per reading.

Run: .venv/bin/python bench/shadow_micro.py

100 machines of 10 number signals each, one of them a part counter and one a
state code (a table), in 20,000-reading batches (W2-like: every signal every tick).
It times ShadowModel.apply over 2M readings and, in the same run for scale, the
SQLite time-series store writing the same batches; it prints both and their ratio."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from connectors.sqlite_ts import TimeSeriesStore
from gateway.config import OmbreConfig
from gateway.types import Batch
from shadow.calendar import PlannedSchedule
from shadow.model import ShadowModel

MACHINES, SIGNALS, TOTAL, BATCH = 100, 10, 2_000_000, 20_000


def _config() -> OmbreConfig:
    signals = [{"name": f"s{i}"} for i in range(SIGNALS)]
    machines = [{"id": f"m{m}", "signals": signals,
                 "state": {"type": "table", "signal": "s0", "map": {"1": "APT", "0": "ADOT"}},
                 "counters": {"total": "s1"}} for m in range(MACHINES)]
    return OmbreConfig.model_validate(
        {"sites": [{"id": "site", "lines": [{"id": "l", "machines": machines}]}]})


def _batches(n_signals: int, t0: int) -> list[Batch]:
    rng = np.random.default_rng(1)
    ticks = BATCH // n_signals
    out = []
    for start in range(0, TOTAL // n_signals, ticks):
        tick = np.repeat(np.arange(start, start + ticks, dtype=np.int64), n_signals)
        sid = np.tile(np.arange(n_signals, dtype=np.int32), ticks)
        value = rng.normal(size=len(sid))
        value[sid % SIGNALS == 0] = (tick[sid % SIGNALS == 0] // 600) % 2  # state every 10 min
        value[sid % SIGNALS == 1] = tick[sid % SIGNALS == 1]  # a counter, +1 per tick
        out.append(Batch(t0 + tick * 10**9, sid, value, np.zeros(len(sid), np.uint8)))
    return out


def main() -> None:
    config = _config()
    registry = config.registry()
    batches = _batches(len(registry), time.time_ns() - 86_400 * 10**9)
    schedule = PlannedSchedule(config.shadow.calendar)
    model = ShadowModel(config.machines(), registry, schedule.inside, schedule.boundaries)
    wall = time.perf_counter()
    intervals = 0
    for batch in batches:
        intervals += len(model.apply(batch, []).intervals)
    shadow_s = time.perf_counter() - wall
    with tempfile.TemporaryDirectory() as tmp, TimeSeriesStore(Path(tmp) / "ts.sqlite") as store:
        series = store.series_ids((i.machine, i.signal, None) for i in registry)
        wall = time.perf_counter()
        for b in batches:
            store.write(series[b.signal_id], b.ts_ns, b.value, b.quality)
        store_s = time.perf_counter() - wall
    print(f"shadow model: {TOTAL / shadow_s:,.0f} readings/s ({intervals} intervals closed)")
    print(f"sqlite time-series store, same batches: {TOTAL / store_s:,.0f} readings/s")
    print(f"ratio shadow/store throughput: {store_s / shadow_s:.2f}")


if __name__ == "__main__":
    main()
