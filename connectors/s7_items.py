"""S7 items: the configured addresses resolved against the plant, and the buffer that
turns the values read into readings and events (scale, offset, deadband).

No I/O and no snap7, so `ombre check` can resolve items without loading the
protocol stack. The buffer is used from one event loop only and emptied by each
`take`, so it holds at most one poll of every item.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from connectors.s7_address import Address, Value
from connectors.s7_config import S7SourceConfig
from gateway.config import Plant, item_signals
from gateway.types import Batch, Event, SignalRegistry


@dataclass(frozen=True, slots=True)
class S7Item:
    """One configured address with its signal and settings resolved."""

    address: Address
    signal_id: int
    machine: str
    signal: str
    is_string: bool  # a STRING into a `type: string` signal: values travel as events
    scale: float
    offset: float
    deadband: float | None
    interval_s: float  # the item's poll interval, else the source's


def resolve_items(config: S7SourceConfig, plant: Plant,
                  registry: SignalRegistry) -> list[S7Item]:
    """The source's items in config order; InvalidKeyError naming the first bad key."""
    addresses = [item.parsed() for item in config.items]
    ids = item_signals(plant, registry, (
        (item.machine, item.signal, a.type.name == "STRING", f"{a.text} ({a.type.name})")
        for item, a in zip(config.items, addresses, strict=True)))
    items = []
    for item, address, signal_id in zip(config.items, addresses, ids, strict=True):
        interval_ms = (item.poll_interval_ms if item.poll_interval_ms is not None
                       else config.poll_interval_ms)
        items.append(S7Item(address, signal_id, item.machine, item.signal,
                            address.type.name == "STRING", item.scale, item.offset,
                            item.deadband, interval_ms / 1000))
    return items


class ValueBuffer:
    """The readings and events of the polls since the last `take`. Remembers the last
    value sent per item with a deadband (bounded by the item count); `forget` clears
    them after a reconnect, so the first poll sends every value."""

    def __init__(self, items: list[S7Item]) -> None:
        self._items = items
        self._last: dict[int, Value] = {}
        self._ts: list[int] = []
        self._ids: list[int] = []
        self._values: list[float] = []
        self.events: list[Event] = []

    def __len__(self) -> int:
        return len(self._ts) + len(self.events)

    def forget(self) -> None:
        self._last.clear()

    def add(self, index: int, value: Value, ts_ns: int) -> None:
        item = self._items[index]
        if isinstance(value, float):
            value = value * item.scale + item.offset
        if item.deadband is not None:
            last = self._last.get(index)
            if last is not None and (
                    value == last if isinstance(value, str) or isinstance(last, str)
                    else abs(value - last) <= item.deadband):
                return
            self._last[index] = value
        if isinstance(value, str):
            self.events.append(Event(ts_ns, item.machine, item.signal, value))
        else:
            self._ts.append(ts_ns)
            self._ids.append(item.signal_id)
            self._values.append(value)

    def take(self) -> tuple[Batch, list[Event]]:
        batch = Batch(np.array(self._ts, np.int64), np.array(self._ids, np.int32),
                      np.array(self._values, np.float64), np.zeros(len(self._ts), np.uint8))
        events, self.events = self.events, []
        self._ts, self._ids, self._values = [], [], []
        return batch, events
