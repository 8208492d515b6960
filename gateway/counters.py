"""The runtime's counters and connector health, read by logs, the health page and
/metrics (gateway/metrics.py). Only the event-loop thread writes them; readers take a snapshot."""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.types import Batch, Event, SignalRegistry

log = logging.getLogger(__name__)

# The kinds of the parts of the data path: each has a health, in /readyz and in the
# ombre_connector_up gauge ("store": the outbox, the shadow's database).
PART_KINDS = ("source", "sink", "store", "clock")


def describe(exc: BaseException) -> str:
    """One line for health and the log: a database driver's message goes on with the
    statement, its parameters and a link (SQLAlchemy), which say nothing to an operator."""
    first = str(exc).strip().split("\n", 1)[0]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


class Health(enum.StrEnum):
    CONNECTING = "connecting"
    UP = "up"
    DEGRADED = "degraded"
    DOWN = "down"


@dataclass(slots=True)
class ConnectorCounters:
    """Counters of one source, sink or store (or of the runtime's queue, kind "runtime",
    which has no health). `readings` and `events` count what was received
    (source) or written (sink); `quarantined` what was refused: payloads a source could
    not decode, lines a sink's upstream rejected for good; `dropped` telemetry lost to
    an overflow policy; `retries` failed connects and sink writes, each retried after a
    backoff; `valueless` readings and events a sink stored without their value (NaN,
    infinity)."""

    name: str
    kind: str  # one of PART_KINDS, or "runtime"
    health: Health = Health.CONNECTING
    last_error: str | None = None
    since_ts: float = field(default_factory=time.time)
    readings: int = 0
    events: int = 0
    quarantined: int = 0
    dropped: int = 0
    deliveries: int = 0
    retries: int = 0
    valueless: int = 0
    last_seen_ns: int = 0

    def set_health(self, health: Health, error: str | None = None) -> None:
        """Record a health change and log it once: staying in a state is silent, even
        when the error text changes from one retry to the next."""
        if error is not None:
            self.last_error = error
        if health == self.health:
            return
        previous, self.health, self.since_ts = self.health, health, time.time()
        if health is Health.UP:
            log.info("%s %s is up (was %s)", self.kind, self.name, previous)
        elif health in (Health.DOWN, Health.DEGRADED):
            log.warning("%s %s is %s: %s", self.kind, self.name, health, self.last_error)


class Counters:
    """Per-connector and per-signal counters of one gateway process. A signal's events
    (a string signal's values: states, orders) count like its readings."""

    def __init__(self, registry: SignalRegistry) -> None:
        n_signals = len(registry)
        self._id_of = registry.id_of
        self.connectors: dict[str, ConnectorCounters] = {}
        self.signal_received = np.zeros(n_signals, np.int64)
        self.signal_written = np.zeros(n_signals, np.int64)
        self.signal_quarantined = np.zeros(n_signals, np.int64)
        self.signal_dropped = np.zeros(n_signals, np.int64)
        self.signal_last_seen_ns = np.zeros(n_signals, np.int64)
        self.outbox_bytes = 0
        self.outbox_batches = 0
        self.queue_depth = 0

    def connector(self, name: str, kind: str) -> ConnectorCounters:
        if name not in self.connectors:
            self.connectors[name] = ConnectorCounters(name, kind)
        return self.connectors[name]

    def lost(self) -> int:
        """Readings this process dropped: to the queue's and the outbox's overflow."""
        return self.connector("queue", "runtime").dropped + self.connector(
            "outbox", "store").dropped

    def parts(self) -> list[ConnectorCounters]:
        """The sources, the sinks and the outbox."""
        return [c for c in self.connectors.values() if c.kind in PART_KINDS]

    def count_received(self, batch: Batch, events: Sequence[Event] = ()) -> None:
        if len(batch):
            self.signal_received += np.bincount(batch.signal_id,
                                                minlength=len(self.signal_received))
            np.maximum.at(self.signal_last_seen_ns, batch.signal_id, batch.ts_ns)
        if events:
            ids, ts = self._event_signals(events)
            self.count_signals(self.signal_received, ids)
            np.maximum.at(self.signal_last_seen_ns, ids, ts)

    def count_written(self, batch: Batch, events: Sequence[Event] = ()) -> None:
        if len(batch):
            self.signal_written += np.bincount(batch.signal_id,
                                               minlength=len(self.signal_written))
        if events:
            self.count_signals(self.signal_written, self._event_signals(events)[0])

    def _event_signals(self, events: Sequence[Event]) -> tuple[npt.NDArray[np.intp],
                                                                npt.NDArray[np.int64]]:
        """The signal ids and times of the events of configured signals (not the
        gateway's own, such as an outbox overflow)."""
        found = [(sid, e.ts_ns) for e in events
                 if (sid := self._id_of(e.machine, e.name)) is not None]
        if not found:
            return np.empty(0, np.intp), np.empty(0, np.int64)
        ids, ts = zip(*found, strict=True)
        return np.array(ids, np.intp), np.array(ts, np.int64)

    def count_refused(self, signal_ids: npt.NDArray[np.integer[Any]]) -> None:
        """Readings a sink was handed but its upstream refused: quarantined, not written."""
        if len(signal_ids):
            np.subtract.at(self.signal_written, signal_ids, 1)
            self.count_signals(self.signal_quarantined, signal_ids)

    def count_signals(self, target: npt.NDArray[np.int64],
                      signal_ids: npt.NDArray[np.integer[Any]]) -> None:
        if len(signal_ids):
            np.add.at(target, signal_ids, 1)
