"""Modbus TCP source: pymodbus's asyncio client, one connection to one device (host,
port, unit id), polled in the gateway's event loop.

Each `read` waits for the next due poll interval, reads its requests one after the
other (connectors/modbus_map.py groups them) and returns what they gave, every value
stamped with the time its answer arrived: Modbus carries no timestamp, so the quality
says TS_RECEIVED. `connect` reads everything once, so a source is up only once the
device answers: a device that accepts TCP but never replies stays down.

What can go wrong, and what happens:
- no answer within `timeout_s` after `retries` more tries, the connection closed, or
  a gateway's exception 10/11 (it cannot reach the device): the device is gone. `read`
  raises ConnectionError naming the device and the request, which the runtime logs
  as the source going down before it reconnects with backoff. Once the device answers
  again, the stretch between its last answer and the first new one is recorded as a
  `modbus_gap` event.
- an exception response (illegal address, busy, ...): the request's items are
  quarantined with the exception and logged once; the other requests keep flowing and
  the request is tried again at its next interval. A request of several items
  refused as illegal (exceptions 1-3) is first split into one request per item, so
  only the bad item is reported and the good ones keep flowing; the split lasts until
  the next connect.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import numpy as np
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusIOException
from pymodbus.pdu import ModbusPDU

from connectors.modbus_address import BIT_TABLES, decode
from connectors.modbus_config import ModbusSourceConfig
from connectors.modbus_map import Item, Read, Tick, plan_ticks, resolve_items
from gateway.config import Plant, RuntimeConfig
from gateway.outbox import GATEWAY_MACHINE
from gateway.types import (
    Batch,
    Delivery,
    Event,
    Quality,
    QuarantineRecord,
    SignalRegistry,
)

log = logging.getLogger(__name__)

GAP_EVENT = "modbus_gap"
# Modbus Application Protocol v1.1b3, section 7.
EXCEPTIONS = {1: "illegal function", 2: "illegal data address", 3: "illegal data value",
              4: "server device failure", 5: "acknowledge", 6: "server device busy",
              8: "memory parity error", 10: "gateway path unavailable",
              11: "gateway target device failed to respond"}
ITEM_ERRORS = frozenset({1, 2, 3})  # the request names something the device does not have
GONE = frozenset({10, 11})  # a gateway in front of the device cannot reach it
_TS_RECEIVED = int(Quality.TS_RECEIVED)


def exception_text(code: int) -> str:
    return f"exception {code} ({EXCEPTIONS.get(code, 'unknown')})"


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="milliseconds")


async def request(client: AsyncModbusTcpClient, read: Read, unit_id: int) -> ModbusPDU:
    """Send `read` and return the device's answer (which may be an exception response);
    pymodbus raises ModbusIOException when none came, ConnectionException when the
    link is down."""
    calls = {"co": client.read_coils, "di": client.read_discrete_inputs,
             "hr": client.read_holding_registers, "ir": client.read_input_registers}
    return await calls[read.table](read.start, count=read.count, device_id=unit_id)


def values_of(read: Read, response: ModbusPDU) -> Sequence[int] | Sequence[bool] | None:
    """The registers or bits of a good answer; None when it holds fewer than asked."""
    data = response.bits if read.table in BIT_TABLES else response.registers
    return data if len(data) >= read.count else None


class ModbusSource:
    """Polls one Modbus TCP device and yields one delivery per poll interval with data.

    Called by the runtime from one task: `connect` (re)opens the connection and reads
    every item once, `read` waits for the next due interval, reads it and returns
    what it gave, and raises ConnectionError once the device is gone; `aclose` closes
    the connection. Not used after `aclose`. `now_ns` is the clock readings are
    stamped with (the demo passes its simulated one); `runtime` is unused, taken as
    every source takes it."""

    def __init__(self, config: ModbusSourceConfig, plant: Plant, registry: SignalRegistry,
                 runtime: RuntimeConfig, now_ns: Callable[[], int] = time.time_ns) -> None:
        self.name = config.name
        self._config = config
        self._device = f"{config.host}:{config.port} unit {config.unit_id}"
        self._items = resolve_items(config, plant, registry)
        self._now_ns = now_ns
        self._client: AsyncModbusTcpClient | None = None
        self._ticks: list[Tick] = []
        self._last: dict[int, float | str] = {}  # item index -> value last sent (deadband)
        self._errors: dict[str, str] = {}  # request -> exception last reported
        self._ts: list[int] = []
        self._ids: list[int] = []
        self._values: list[float] = []
        self._events: list[Event] = []
        self._quarantined: list[QuarantineRecord] = []
        self._answered_ns = 0  # when the device last answered
        self._gap_start_ns: int | None = None

    # -- connect and close ------------------------------------------------------------

    async def connect(self) -> None:
        await self.aclose()
        cfg = self._config
        client = AsyncModbusTcpClient(cfg.host, port=cfg.port, timeout=cfg.timeout_s,
                                      retries=cfg.retries, reconnect_delay=0, name=self.name)
        if not await client.connect():
            client.close()
            raise ConnectionError(f"cannot connect to {cfg.host}:{cfg.port}")
        self._client = client
        self._ticks = plan_ticks(self._items, cfg)
        self._last.clear()
        now = time.monotonic()
        for tick in self._ticks:
            tick.due_s = now
        try:
            await self._poll()
        except ConnectionError:
            await self.aclose()
            raise
        if self._gap_start_ns is not None:
            self._events.append(Event(
                self._answered_ns, GATEWAY_MACHINE, GAP_EVENT,
                f"{self.name}: {_iso(self._gap_start_ns)} to {_iso(self._answered_ns)}"))
            self._gap_start_ns = None
        log.info("modbus %s: reading %d items in %d requests from %s", self.name,
                 len(self._items), sum(len(t.reads) for t in self._ticks), self._device)

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    # -- read -------------------------------------------------------------------------

    async def read(self) -> Delivery:
        while True:
            delivery = self._take()
            if delivery is not None:
                return delivery
            if self._client is None:
                raise ConnectionError("not connected")
            delay = min(t.due_s for t in self._ticks) - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await self._poll()

    async def _poll(self) -> None:
        """Read every tick that is due; a tick missed while busy is skipped, not caught
        up."""
        for tick in self._ticks:
            if tick.due_s > time.monotonic():
                continue
            for read in list(tick.reads):
                await self._read(tick, read)
            tick.due_s = max(tick.due_s + tick.interval_s, time.monotonic())

    async def _read(self, tick: Tick, read: Read) -> None:
        client = self._client
        if client is None or not client.connected:
            raise self._gone(f"lost the connection to {self._device}")
        try:
            response = await request(client, read, self._config.unit_id)
        except ModbusIOException:
            tries = self._config.retries + 1
            raise self._gone(f"no answer from {self._device} to {read} within "
                             f"{self._config.timeout_s:g} s ({tries} "
                             f"{'try' if tries == 1 else 'tries'})") from None
        except (ConnectionException, OSError) as exc:
            raise self._gone(f"lost the connection to {self._device} reading {read}: "
                             f"{exc}") from None
        ts = self._now_ns()
        if response.isError():
            code = response.exception_code
            if code in GONE:
                raise self._gone(f"{self._device} answered {read} with "
                                 f"{exception_text(code)}")
            self._answered_ns = ts
            if code in ITEM_ERRORS and len(read.items) > 1:
                parts = read.split()
                at = tick.reads.index(read)
                tick.reads[at:at + 1] = parts
                log.info("modbus %s: %s refused %s with %s: reading its %d items one by one",
                         self.name, self._device, read, exception_text(code), len(parts))
                for part in parts:
                    await self._read(tick, part)
                return
            self._report(read, exception_text(code), ts)
            return
        self._answered_ns = ts
        data = values_of(read, response)
        if data is None:
            self._report(read, f"a short answer: {len(response.registers or response.bits)} "
                         f"of {read.count} values", ts)
            return
        self._report(read, None, ts)
        for item in read.items:
            self._add(item, decode(item.address, data, item.address.start - read.start,
                                   item.byte_order, item.word_order), ts)

    def _add(self, item: Item, value: float | str, ts: int) -> None:
        if isinstance(value, float):
            value = value * item.scale + item.offset
        if item.deadband is not None:
            if not _changed(self._last.get(item.index), value, item.deadband):
                return
            self._last[item.index] = value
        if item.is_string:
            self._events.append(Event(ts, item.machine, item.signal, value, _TS_RECEIVED))
        else:
            assert isinstance(value, float)  # a number address maps to a number signal
            self._ts.append(ts)
            self._ids.append(item.signal_id)
            self._values.append(value)

    def _report(self, read: Read, error: str | None, ts: int) -> None:
        """Log and quarantine a request's items when its error first appears or
        changes; log once when it answers again. A repeat stays silent."""
        key = str(read)
        if self._errors.get(key) == error:
            return
        if error is None:
            del self._errors[key]
            log.info("modbus %s: %s answers %s again", self.name, self._device, read)
            return
        self._errors[key] = error
        log.warning("modbus %s: %s answered %s (%s) with %s; the other requests keep "
                    "flowing", self.name, self._device, read,
                    ", ".join(f"{i.machine}/{i.signal}" for i in read.items), error)
        self._quarantined += [QuarantineRecord(
            ts, self.name, f"unit {self._config.unit_id} {item.address}", b"",
            f"{error} reading {read}", item.signal_id) for item in read.items]

    def _gone(self, reason: str) -> ConnectionError:
        """The error `read` raises for a device that is gone; the gap starts at its
        last answer."""
        if self._gap_start_ns is None and self._answered_ns:
            self._gap_start_ns = self._answered_ns
        return ConnectionError(reason)

    def _take(self) -> Delivery | None:
        if not self._ts and not self._events and not self._quarantined:
            return None
        n = len(self._ts)
        batch = Batch(np.array(self._ts, np.int64), np.array(self._ids, np.int32),
                      np.array(self._values, np.float64), np.full(n, _TS_RECEIVED, np.uint8))
        delivery = Delivery(batch, self._events, self._quarantined)
        self._ts, self._ids, self._values = [], [], []
        self._events, self._quarantined = [], []
        return delivery


def _changed(last: float | str | None, value: float | str, deadband: float) -> bool:
    """Whether `value` moved by more than `deadband` from `last` (a string: changed)."""
    if last is None or isinstance(value, str) or isinstance(last, str):
        return value != last
    if math.isnan(value) or math.isnan(last):
        return math.isnan(value) != math.isnan(last)
    return abs(value - last) > deadband
