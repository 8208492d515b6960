"""Micro-benchmark of the shadow (not a test): what the model and the drift detectors
add per reading.

Run: .venv/bin/python bench/shadow_micro.py

100 machines of 10 number signals each, one of them a part counter and one a
state code (a table), in 20,000-reading batches (W2-like: every signal every tick).
In one run it times, over 2M readings: the SQLite time-series store writing the
batches (for scale), ShadowModel.apply, and the DriftMonitor with one CUSUM detector
on each of the 1,000 signals; it prints each and their ratios."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from connectors.sqlite_ts import TimeSeriesStore
from gateway.types import Batch
from ombre.config import OmbreConfig, validate_config
from shadow.calendar import PlannedSchedule
from shadow.model import ShadowModel
from shadow.monitor import DriftMonitor

MACHINES, SIGNALS, TOTAL, BATCH = 100, 10, 2_000_000, 20_000


def _config(drift: bool = False) -> OmbreConfig:
    signals = [{"name": f"s{i}"} for i in range(SIGNALS)]
    detectors = [{"signal": f"s{i}", "mean": 0.0, "sigma": 1.0} for i in range(SIGNALS)]
    machines = [{"id": f"m{m}", "signals": signals,
                 "state": {"type": "table", "signal": "s0", "map": {"1": "APT", "0": "ADOT"}},
                 "counters": {"total": "s1"}, "drift": detectors if drift else []}
                for m in range(MACHINES)]
    return validate_config(
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
    drift_config = _config(drift=True)
    monitor = DriftMonitor(drift_config.machines(), drift_config.registry())
    rng = np.random.default_rng(2)  # in control: every signal N(0, 1), as W2's values
    noise = [Batch(b.ts_ns, b.signal_id, rng.normal(size=len(b)), b.quality) for b in batches]
    wall = time.perf_counter()
    alarms = sum(len(monitor.apply(batch, [])) for batch in noise)
    drift_s = time.perf_counter() - wall
    print(f"sqlite time-series store: {TOTAL / store_s:,.0f} readings/s")
    print(f"shadow model: {TOTAL / shadow_s:,.0f} readings/s ({intervals} intervals closed)")
    print(f"drift monitor, {len(monitor.watches)} CUSUM detectors: {TOTAL / drift_s:,.0f} "
          f"readings/s ({alarms} alarms)")
    print(f"ratio shadow/store throughput: {store_s / shadow_s:.2f}")
    print(f"shadow throughput with detectors / without: "
          f"{shadow_s / (shadow_s + drift_s):.2f}")


if __name__ == "__main__":
    main()
