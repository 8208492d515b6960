"""A recorded JSON Lines file of readings and events as a source, so that a replay goes
through the same pipeline as live data. One reading per line:

    {"ts": "2026-11-23T06:00:00Z", "machine": "cnc-1", "signal": "state", "value": "RUNNING"}

`value` is a number, string or bool. A number signal takes numbers and bools (true is
1); a string signal keeps any of them as an event. A line that is not such an object,
or names an unknown machine or signal, is quarantined with its line number; the other
lines go on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import numpy as np
import orjson

from connectors.payload_values import event_value, number_value
from connectors.reject import Reject, clip, describe
from connectors.timestamps import parse_rfc3339
from gateway.config import Plant
from gateway.types import Batch, Delivery, Event, Quality, QuarantineRecord, SignalRegistry

CHUNK_LINES = 5_000  # lines per delivery
HEAD_BYTES = 256  # of a bad line, kept in the quarantine


class ReplaySource:
    """Reads `path` once, from the first line to the last, then calls `on_done` and
    waits to be stopped. `speed` None replays as fast as the pipeline takes it; a
    number X paces the lines so that data time runs X times as fast as wall time.
    `historical` flags every reading HISTORICAL: a backfill, which raises no alert."""

    def __init__(self, path: Path, plant: Plant, registry: SignalRegistry, *,
                 speed: float | None, on_done: Callable[[], None],
                 historical: bool = False) -> None:
        self.name = "replay"
        self.path = path
        self._registry = registry
        self._strings = {(m.id, s.name) for m in plant.machines() for s in m.signals
                         if s.type == "string"}
        self._speed = speed
        self._on_done = on_done
        self._file: IO[bytes] | None = None
        self._line_no = 0
        self._start: tuple[int, float] | None = None  # (first data ts, its wall time)
        self._held: bytes | None = None  # a line read ahead of its time when paced
        self._done = False
        self._quality = int(Quality.HISTORICAL) if historical else int(Quality.GOOD)
        self.lines = 0

    async def connect(self) -> None:
        if self._file is None:
            self._file = await asyncio.to_thread(self.path.open, "rb")

    async def read(self) -> Delivery:
        if self._done:
            await asyncio.Event().wait()  # the file is read: wait for the runtime's cancel
        if self._file is None:
            raise ConnectionError("replay file is not open")
        delivery, more = await asyncio.to_thread(self._read_chunk, self._file)
        if not more:
            self._file.close()
            self._done = True
            self._on_done()
        return delivery

    def _read_chunk(self, file: IO[bytes]) -> tuple[Delivery, bool]:
        ts: list[int] = []
        ids: list[int] = []
        values: list[float] = []
        delivery = Delivery(Batch.empty())
        for _ in range(CHUNK_LINES):
            line = self._held if self._held is not None else file.readline()
            self._held = None
            if not line:
                self._finish(delivery, ts, ids, values)
                return delivery, False
            if not line.strip():
                self._line_no += 1
                continue
            if self._speed is not None and self._wait(line):
                self._held = line  # not due yet: deliver what is due first
                break
            self._line_no += 1
            self.lines += 1
            try:
                self._parse(line, ts, ids, values, delivery.events)
            except Reject as exc:
                delivery.quarantined.append(QuarantineRecord(
                    time.time_ns(), self.name, f"{self.path}:{self._line_no}",
                    line[:HEAD_BYTES], f"line {self._line_no}: {exc.reason}"))
        self._finish(delivery, ts, ids, values)
        return delivery, True

    def _wait(self, line: bytes) -> bool:
        """Sleeps (at most 50 ms) until the line is due; True if it still is not."""
        try:
            stamp = orjson.loads(line).get("ts")
            data_ns = parse_rfc3339(stamp) if isinstance(stamp, str) else None
        except (orjson.JSONDecodeError, AttributeError, ValueError):
            data_ns = None
        if data_ns is None:
            return False  # quarantined right away
        assert self._speed is not None
        if self._start is None:
            self._start = (data_ns, time.monotonic())
        due = self._start[1] + (data_ns - self._start[0]) / 1e9 / self._speed
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(min(delay, 0.05))
            return delay > 0.05
        return False

    def _parse(self, line: bytes, ts: list[int], ids: list[int], values: list[float],
               events: list[Event]) -> None:
        try:
            item = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise Reject(f"not JSON: {exc}") from None
        if not isinstance(item, dict):
            raise Reject(f"expected an object, found {describe(item)}")
        missing = [k for k in ("ts", "machine", "signal", "value") if k not in item]
        if missing:
            raise Reject(f"missing key {', '.join(missing)}")
        machine, signal, stamp = item["machine"], item["signal"], item["ts"]
        if not isinstance(stamp, str):
            raise Reject(f"ts: expected an RFC 3339 string, found {describe(stamp)}")
        try:
            ns = parse_rfc3339(stamp)
        except ValueError as exc:
            raise Reject(f"ts: {exc}") from None
        sid = (self._registry.id_of(machine, signal)
               if isinstance(machine, str) and isinstance(signal, str) else None)
        if sid is None:
            raise Reject(f"no signal {clip(str(signal))!r} on machine {clip(str(machine))!r} "
                         "in the config")
        if (machine, signal) in self._strings:
            events.append(Event(ns, machine, signal, event_value(item["value"]), self._quality))
        else:
            values.append(number_value(item["value"]))
            ts.append(ns)
            ids.append(sid)

    def _finish(self, delivery: Delivery, ts: list[int], ids: list[int],
                values: list[float]) -> None:
        delivery.batch = Batch(np.array(ts, np.int64), np.array(ids, np.int32),
                               np.array(values, np.float64),
                               np.full(len(ts), self._quality, np.uint8))

    async def aclose(self) -> None:
        if self._file is not None:
            self._file.close()
