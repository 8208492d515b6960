"""A Modbus source's register map resolved against the plant, and grouped into reads.

No I/O. Items of the same table and poll interval whose addresses are neighbours (at
most `max_gap` unmapped registers or bits apart) share one read of at most
`max_registers_per_read` registers (`max_bits_per_read` bits). A read the device refuses
(an exception response) can be split into one read per item, so that one bad address
costs only its own value.
"""

from __future__ import annotations

from dataclasses import dataclass

from connectors.modbus_address import BIT_TABLES, Address, ByteOrder, Table, parse_address
from connectors.modbus_config import ModbusSourceConfig
from gateway.config import Plant, item_signals
from gateway.types import SignalRegistry


@dataclass(frozen=True, slots=True)
class Item:
    """One configured item with its settings resolved (item override, else source)."""

    index: int  # position in the source's items: the key of its last value
    address: Address
    signal_id: int
    machine: str
    signal: str
    is_string: bool
    byte_order: ByteOrder
    word_order: ByteOrder
    scale: float
    offset: float
    interval_s: float
    deadband: float | None


@dataclass(frozen=True, slots=True)
class Read:
    """One request: `count` registers or bits of `table` from `start`, and the items
    it holds."""

    table: Table
    start: int
    count: int
    items: tuple[Item, ...]

    def __str__(self) -> str:
        last = self.start + self.count - 1
        return f"{self.table}:{self.start}" + (f"-{last}" if last > self.start else "")

    def split(self) -> list[Read]:
        """One read per item."""
        return [Read(i.address.table, i.address.start, i.address.count, (i,))
                for i in self.items]


@dataclass(slots=True)
class Tick:
    """The reads due every `interval_s`; `due_s` is the next time, on the monotonic
    clock."""

    interval_s: float
    reads: list[Read]
    due_s: float = 0.0


def resolve_items(config: ModbusSourceConfig, plant: Plant,
                  registry: SignalRegistry) -> list[Item]:
    """The source's items in config order; InvalidKeyError naming the first bad key."""
    addresses = [parse_address(c.address) for c in config.items]
    ids = item_signals(plant, registry, ((c.machine, c.signal, a.type == "string", str(a))
                                         for c, a in zip(config.items, addresses, strict=True)))
    return [Item(i, a, signal_id, c.machine, c.signal, a.type == "string",
                 c.byte_order or config.byte_order, c.word_order or config.word_order,
                 c.scale, c.offset, (c.poll_interval_ms or config.poll_interval_ms) / 1000,
                 c.deadband if c.deadband is not None else config.deadband)
            for i, (c, a, signal_id) in enumerate(zip(config.items, addresses, ids, strict=True))]


def plan_ticks(items: list[Item], config: ModbusSourceConfig) -> list[Tick]:
    """The items' reads, one tick per poll interval, fastest first."""
    intervals = sorted({item.interval_s for item in items})
    return [Tick(interval, _group([i for i in items if i.interval_s == interval], config))
            for interval in intervals]


def _group(items: list[Item], config: ModbusSourceConfig) -> list[Read]:
    reads: list[Read] = []
    table: Table | None = None
    start = end = 0  # the current read's first address and one past its last
    members: list[Item] = []
    for item in sorted(items, key=lambda i: (i.address.table, i.address.start)):
        a = item.address
        limit = config.max_bits_per_read if a.table in BIT_TABLES else \
            config.max_registers_per_read
        if a.table == table and a.start - end <= config.max_gap and \
                max(end, a.start + a.count) - start <= limit:
            end = max(end, a.start + a.count)
            members.append(item)
            continue
        if table is not None:
            reads.append(Read(table, start, end - start, tuple(members)))
        table, start, end, members = a.table, a.start, a.start + a.count, [item]
    if table is not None:
        reads.append(Read(table, start, end - start, tuple(members)))
    return reads
