"""The types every part of Ombre shares: batches, events, the signal registry, and the
source and sink protocols. Nothing here does I/O."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

Int64Array = npt.NDArray[np.int64]
Int32Array = npt.NDArray[np.int32]
Float64Array = npt.NDArray[np.float64]
UInt8Array = npt.NDArray[np.uint8]


class Quality(enum.IntFlag):
    """Bit flags of a reading's quality column. GOOD is no flag set."""

    GOOD = 0
    BAD = 1  # the source said the value is bad: stored, never used as a number
    UNCERTAIN = 2
    TS_RECEIVED = 4  # the payload had no timestamp: the receive time was used
    TS_SERVER = 8  # OPC UA: the server timestamp was used, the source had none
    HISTORICAL = 16  # replayed as history (ombre replay --historical): raises no alert


@dataclass(frozen=True, slots=True)
class Batch:
    """Columnar readings: four arrays of equal length, in arrival order."""

    ts_ns: Int64Array  # int64 nanoseconds since the epoch, UTC
    signal_id: Int32Array  # ids from the SignalRegistry
    value: Float64Array
    quality: UInt8Array  # Quality flags

    def __post_init__(self) -> None:
        n = len(self.ts_ns)
        if not len(self.signal_id) == len(self.value) == len(self.quality) == n:
            raise ValueError("Batch columns differ in length")

    def __len__(self) -> int:
        return len(self.ts_ns)

    def rows(self, keep: npt.NDArray[np.bool_] | Int64Array) -> Batch:
        """The rows `keep` selects (a mask, or indices)."""
        return Batch(self.ts_ns[keep], self.signal_id[keep], self.value[keep],
                     self.quality[keep])

    @classmethod
    def empty(cls) -> Batch:
        return cls(
            np.empty(0, np.int64), np.empty(0, np.int32), np.empty(0, np.float64),
            np.empty(0, np.uint8),
        )

    @classmethod
    def concat(cls, batches: Sequence[Batch]) -> Batch:
        if not batches:
            return cls.empty()
        if len(batches) == 1:
            return batches[0]
        return cls(
            np.concatenate([b.ts_ns for b in batches]),
            np.concatenate([b.signal_id for b in batches]),
            np.concatenate([b.value for b in batches]),
            np.concatenate([b.quality for b in batches]),
        )


EventValue = str | float | int | bool | None
# Event.name of a source's word that a machine went offline (a Sparkplug B NDEATH or
# DDEATH), its value saying why: the shadow marks the machine unknown from then, as
# after `silence_s` without data, and a reading brings it back.
OFFLINE_EVENT = "_offline"


@dataclass(frozen=True, slots=True)
class Event:
    """A low-rate, non-numeric fact: a state string, an order number, a reason code."""

    ts_ns: int
    machine: str
    name: str  # the signal or fact name, e.g. "state", "order"
    value: EventValue
    quality: int = Quality.GOOD


@dataclass(frozen=True, slots=True)
class QuarantineRecord:
    """A payload that could not be decoded or mapped, kept for a person to look at."""

    ts_ns: int  # when it was received
    source: str
    topic: str  # MQTT topic, OPC UA node id, Modbus address...
    head: bytes  # the first bytes of the payload
    reason: str
    signal_id: int | None = None  # set when the payload mapped to a known signal


@dataclass(slots=True)
class Delivery:
    """What a source hands the runtime in one go. Each of `acks` tells the upstream
    that this content is durably accepted; the runtime calls them once, after the
    outbox commit, from the event loop."""

    batch: Batch
    events: list[Event] = field(default_factory=list)
    quarantined: list[QuarantineRecord] = field(default_factory=list)
    acks: list[Callable[[], None]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SignalInfo:
    id: int
    machine: str
    signal: str
    unit: str | None


class SignalRegistry:
    """Maps signal ids to (machine, signal, unit) and back. Built once at start-up
    from the config and read-only afterwards, so any thread may read it."""

    def __init__(self, signals: Iterable[tuple[str, str, str | None]]) -> None:
        self._infos: list[SignalInfo] = []
        self._ids: dict[tuple[str, str], int] = {}
        for machine, signal, unit in signals:
            key = (machine, signal)
            if key in self._ids:
                raise ValueError(f"signal {machine}/{signal} is declared twice")
            self._ids[key] = len(self._infos)
            self._infos.append(SignalInfo(len(self._infos), machine, signal, unit))

    def __len__(self) -> int:
        return len(self._infos)

    def __iter__(self) -> Iterator[SignalInfo]:
        return iter(self._infos)

    def id_of(self, machine: str, signal: str) -> int | None:
        return self._ids.get((machine, signal))

    def info(self, signal_id: int) -> SignalInfo:
        return self._infos[signal_id]


class Source(Protocol):
    """A protocol client that turns what arrives into deliveries.

    The runtime calls `connect` once per (re)connection, then `read` in a loop from one
    task; `read` returns whatever arrived since the last call (waiting at most about
    the source's flush interval) and raises ConnectionError when the link is lost, so
    the runtime reconnects with backoff. `aclose` is called once at shutdown, after
    which the source is not used again."""

    name: str

    async def connect(self) -> None: ...

    async def read(self) -> Delivery: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Written:
    """What a sink's `write` reports besides success. `refused` holds what its upstream
    refused for good (an HTTP 4xx naming bad lines): the runtime commits the records to
    the quarantine table with the sink's cursor and counts them; a refused reading's
    record carries its signal_id, a refused event's none. `valueless` counts readings
    and events stored without their value (NaN, infinity, none: the upstream cannot
    carry it)."""

    refused: Sequence[QuarantineRecord] = ()
    valueless: int = 0


class Sink(Protocol):
    """A storage or northbound client. The runtime calls `connect`, then `write` from
    one task, in outbox order; `write` returns once the data is durably stored (None,
    or a Written report) and raises on failure, after which the runtime reconnects and
    writes the same data again, so a write must be idempotent on (signal, ts).
    `aclose` is called once."""

    name: str

    async def connect(self) -> None: ...

    async def write(self, batch: Batch, events: Sequence[Event]) -> Written | None: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class Resumable(Protocol):
    """A sink that stores, in the transaction of each write, how far into the outbox the
    write reaches. A crash between that commit and the outbox's cursor move would have the
    runtime write the same rows again; instead it asks the sink where it got to after each
    connect and moves the cursor there, so each outbox row is stored once."""

    async def applied(self, outbox: str) -> int:
        """The last seq of outbox `outbox` this sink stored (0: none)."""
        ...

    async def write_upto(self, batch: Batch, events: Sequence[Event], outbox: str,
                         seq: int) -> Written | None:
        """`write`, recording (outbox, seq) in the same transaction."""
        ...
