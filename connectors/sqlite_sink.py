"""The SQLite time-series sink: writes the runtime's batches into a TimeSeriesStore and
keeps the file in shape (retention, compaction) between writes."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from connectors.sqlite_config import SqliteSinkConfig
from connectors.sqlite_ts import TimeSeriesStore
from gateway.types import Batch, Event, Int64Array, SignalRegistry

log = logging.getLogger(__name__)

# A block is compacted 5 min after it ends, once no write touched it for 5 min.
COMPACT_GRACE_NS = 300 * 10**9
COMPACT_QUIET_S = 300.0
MAINTENANCE_INTERVAL_S = 30.0
BACKLOG_INTERVAL_S = 0.25  # sooner while retention or compaction has work left


class SqliteSink:
    """Writes batches to a TimeSeriesStore at `config.path` or <data_dir>/timeseries.sqlite;
    Resumable: each write records how far into the outbox it reaches.

    The runtime calls `connect` (again after a failed write), `write` from one task,
    and `aclose` once; each runs the store in a worker thread, one at a time. `write`
    returns after the commit, having run retention and a bounded compaction step if
    MAINTENANCE_INTERVAL_S passed (BACKLOG_INTERVAL_S while work remains); a failing
    step is logged, not raised. After `aclose`, `write` raises RuntimeError."""

    def __init__(self, config: SqliteSinkConfig, data_dir: Path, registry: SignalRegistry,
                 *, maintenance_interval_s: float = MAINTENANCE_INTERVAL_S) -> None:
        self.name = config.name
        self.path = config.path or data_dir / "timeseries.sqlite"
        self._retention_ns = int(config.retention_days * 86_400 * 10**9)
        self._registry = registry
        self._interval_s = maintenance_interval_s
        self._lock = threading.Lock()  # a cancelled call's thread may still be running
        self._store: TimeSeriesStore | None = None
        self._series_of: Int64Array = np.empty(0, np.int64)  # registry id -> series id
        self._next_maintenance = 0.0
        self._maintenance_failed = False

    async def connect(self) -> None:
        await asyncio.to_thread(self._connect)

    def _connect(self) -> None:
        self._close()
        with self._lock:
            store = TimeSeriesStore(self.path)
            try:
                infos = map(self._registry.info, range(len(self._registry)))
                self._series_of = store.series_ids((i.machine, i.signal, i.unit) for i in infos)
            except BaseException:
                store.close()
                raise
            self._store = store

    async def write(self, batch: Batch, events: Sequence[Event]) -> None:
        await asyncio.to_thread(self._write, batch, events, None)

    async def write_upto(self, batch: Batch, events: Sequence[Event], outbox: str,
                         seq: int) -> None:
        await asyncio.to_thread(self._write, batch, events, (f"{outbox}/{self.name}", seq))

    async def applied(self, outbox: str) -> int:
        return await asyncio.to_thread(self._applied, f"{outbox}/{self.name}")

    def _applied(self, key: str) -> int:
        with self._lock:
            return self._connected().applied(key)

    def _connected(self) -> TimeSeriesStore:
        if self._store is None:
            raise RuntimeError(f"sink {self.name} is not connected")
        return self._store

    def _write(self, batch: Batch, events: Sequence[Event],
               applied: tuple[str, int] | None) -> None:
        with self._lock:
            store = self._connected()
            store.write(self._series_of[batch.signal_id], batch.ts_ns, batch.value,
                        batch.quality, events, applied=applied)
            if time.monotonic() >= self._next_maintenance:
                self._maintain(store)

    def _maintain(self, store: TimeSeriesStore) -> None:
        now_ns, more = time.time_ns(), False
        try:
            more = store.delete_before(now_ns - self._retention_ns)
            more = store.compact(now_ns - COMPACT_GRACE_NS, quiet_s=COMPACT_QUIET_S) or more
        except Exception:
            if not self._maintenance_failed:
                log.exception("sink %s: retention/compaction failed; writes go on", self.name)
            self._maintenance_failed = True
        else:
            if self._maintenance_failed:
                log.info("sink %s: retention/compaction works again", self.name)
            self._maintenance_failed = False
        delay = min(BACKLOG_INTERVAL_S, self._interval_s) if more else self._interval_s
        self._next_maintenance = time.monotonic() + delay

    async def aclose(self) -> None:
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None
