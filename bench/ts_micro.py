"""Micro-benchmark of the SQLite time-series store (not a test).

Run: .venv/bin/python bench/ts_micro.py [--dir DIR]

Writes 2M readings over 1,000 series in 20,000-reading batches (W2-like) and 400k
readings over 50 series in 2,000-reading batches, then reads them back, compacts and
reads again. For scale it also measures, in the same run, plain `executemany` of one
row per reading into an unindexed table and into one indexed on (signal, ts)."""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np

from connectors import sqlite_ts
from connectors.sqlite_ts import BLOCK_NS, TimeSeriesStore

DAY_NS = 86_400 * 10**9


def _io_written() -> int:
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _batches(n_series: int, total: int, batch: int, period_ns: int,
             t0: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Readings in arrival order: every series at tick k, then every series at k+1..."""
    rng = np.random.default_rng(1)
    ticks = batch // n_series
    out = []
    for start in range(0, total // n_series, ticks):
        tick = np.repeat(np.arange(start, start + ticks, dtype=np.int64), n_series)
        sid = np.tile(np.arange(1, n_series + 1, dtype=np.int64), ticks)
        out.append((sid, t0 + tick * period_ns, rng.normal(size=len(sid)),
                    np.zeros(len(sid), np.uint8)))
    return out


def _run(label: str, path: Path, *, n_series: int, total: int, batch: int,
         period_ns: int) -> None:
    span_ns = total // n_series * period_ns
    t0 = (time.time_ns() - DAY_NS) // BLOCK_NS * BLOCK_NS - span_ns // 2  # crosses a block
    data = _batches(n_series, total, batch, period_ns, t0)
    with TimeSeriesStore(path) as store:
        store.series_ids((f"m{i // 10}", f"s{i}", None) for i in range(n_series))
        io0, cpu0, wall0 = _io_written(), time.process_time(), time.perf_counter()
        for sid, ts, value, quality in data:
            store.write(sid, ts, value, quality)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        io = _io_written() - io0
        print(f"{label}: write {total / wall:,.0f} readings/s wall, "
              f"{cpu / total * 1e9:,.0f} ns CPU/reading, {len(data)} writes, "
              f"{io / total:.1f} bytes written to disk/reading")
        end = int(data[-1][1][-1]) + 1
        names = [(s.machine, s.signal) for s in store.series()]

        def read_all() -> tuple[float, int]:
            wall0, n = time.perf_counter(), 0
            for machine, signal in names:
                n += len(store.read(machine, signal, t0, end)[0])
            return time.perf_counter() - wall0, n

        dt, n = read_all()
        chunks = store._db.execute("SELECT count(*) FROM chunk").fetchone()[0]
        print(f"{label}: read back all {n:,} readings in {dt * 1e3:,.0f} ms "
              f"({n / dt:,.0f} readings/s, {chunks:,} chunks)")
        io0, cpu0, longest, steps = _io_written(), time.process_time(), 0.0, 0
        more = True
        while more:
            step0 = time.perf_counter()
            more = store.compact(time.time_ns())
            longest, steps = max(longest, time.perf_counter() - step0), steps + 1
        cpu, io = time.process_time() - cpu0, _io_written() - io0
        chunks_after = store._db.execute("SELECT count(*) FROM chunk").fetchone()[0]
        print(f"{label}: compact {cpu / total * 1e9:,.0f} ns CPU/reading, {steps} steps "
              f"(longest {longest * 1e3:,.0f} ms), {chunks:,} -> {chunks_after:,} chunks, "
              f"{io / total:.1f} bytes written to disk/reading")
        dt, n2 = read_all()
        assert n2 == n
        pages, free, size = (store._db.execute(f"PRAGMA {p}").fetchone()[0]
                             for p in ("page_count", "freelist_count", "page_size"))
        print(f"{label}: read back after compaction in {dt * 1e3:,.0f} ms "
              f"({n / dt:,.0f} readings/s); {(pages - free) * size / total:.1f} bytes/reading "
              f"stored (raw arrays: 17)")


def _sustained(path: Path, seconds: int = 20) -> None:
    """W2 in simulated time: 1,000 series at 600 Hz, one 30k-reading write per 50 ms,
    with 5 s blocks (patched) so compaction and its cleanup run while writing, every
    250 ms with the sink's budget, as the sink does while work remains."""
    block_ns, writes = 5 * 10**9, seconds * 20
    rng = np.random.default_rng(2)
    with mock.patch.object(sqlite_ts, "BLOCK_NS", block_ns), TimeSeriesStore(path) as store:
        sid = np.tile(store.series_ids(("m", f"s{i}", None) for i in range(1000)), 30)
        t0, value, quality = 10**18 // block_ns * block_ns, rng.normal(size=30_000), np.zeros(
            30_000, np.uint8)
        cpu0, wall0, longest = time.process_time(), time.perf_counter(), 0.0
        for k in range(writes):
            tick = np.repeat(np.arange(30 * k, 30 * k + 30, dtype=np.int64), 1000)
            store.write(sid, t0 + tick * (10**9 // 600), value, quality)
            if k % 5 == 4:
                step0 = time.perf_counter()
                store.compact(t0 + (k + 1) * 50_000_000 - 10**9)  # 1 s grace
                longest = max(longest, time.perf_counter() - step0)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        backlog = store._db.execute("SELECT count(DISTINCT block) FROM dirty").fetchone()[0]
        hot = store._db.execute("SELECT count(*) FROM write_log WHERE piece IS NULL").fetchone()[0]
    print(f"sustained W2 ({seconds} s simulated, 5 s blocks): {writes * 30_000 / wall:,.0f} "
          f"readings/s wall, {cpu / writes / 30_000 * 1e9:,.0f} ns CPU/reading for write + "
          f"compaction + cleanup, longest step {longest * 1e3:,.0f} ms, "
          f"at the end {backlog} blocks wait and {hot} of {writes} writes are uncompacted")


def _baseline(path: Path, total: int, indexed: bool) -> float:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute("CREATE TABLE r(signal INTEGER, ts INTEGER, value REAL, quality INTEGER)")
    if indexed:
        db.execute("CREATE INDEX r_st ON r(signal, ts)")
    rows = [(i % 1000, i, 0.5, 0) for i in range(total)]
    wall0 = time.perf_counter()
    for i in range(0, total, 1000):
        db.execute("BEGIN")
        db.executemany("INSERT INTO r VALUES (?, ?, ?, ?)", rows[i:i + 1000])
        db.execute("COMMIT")
    db.close()
    return total / (time.perf_counter() - wall0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, default=None, help="where to put the files")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        d = Path(tmp)
        print(f"baseline: executemany 1 row/reading, unindexed "
              f"{_baseline(d / 'b1.sqlite', 500_000, False):,.0f} rows/s, indexed (signal, ts) "
              f"{_baseline(d / 'b2.sqlite', 200_000, True):,.0f} rows/s")
        _sustained(d / "sustained.sqlite")
        _run("1,000 series x 20k batches", d / "w2.sqlite", n_series=1000, total=2_000_000,
             batch=20_000, period_ns=10**6)
        _run("50 series x 2k batches", d / "w50.sqlite", n_series=50, total=400_000,
             batch=2_000, period_ns=25 * 10**6)


if __name__ == "__main__":
    main()
