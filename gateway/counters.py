"""The runtime's counters and connector health, read by logs, the health page and
/metrics. Only the event-loop thread writes them; readers take a snapshot."""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.types import Batch

log = logging.getLogger(__name__)


class Health(enum.StrEnum):
    CONNECTING = "connecting"
    UP = "up"
    DEGRADED = "degraded"
    DOWN = "down"


@dataclass(slots=True)
class ConnectorCounters:
    """Counters of one source or sink. `readings` counts received (source) or written
    (sink) readings; `dropped` counts telemetry lost to an overflow policy."""

    name: str
    kind: str  # "source" or "sink"
    health: Health = Health.CONNECTING
    last_error: str | None = None
    since_ts: float = field(default_factory=time.time)
    readings: int = 0
    events: int = 0
    quarantined: int = 0
    dropped: int = 0
    deliveries: int = 0
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
    """Per-connector and per-signal counters of one gateway process."""

    def __init__(self, n_signals: int) -> None:
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

    def count_received(self, batch: Batch) -> None:
        if not len(batch):
            return
        self.signal_received += np.bincount(batch.signal_id, minlength=len(self.signal_received))
        np.maximum.at(self.signal_last_seen_ns, batch.signal_id, batch.ts_ns)

    def count_written(self, batch: Batch) -> None:
        if len(batch):
            self.signal_written += np.bincount(batch.signal_id,
                                               minlength=len(self.signal_written))

    def count_signals(self, target: npt.NDArray[np.int64],
                      signal_ids: npt.NDArray[np.integer[Any]]) -> None:
        if len(signal_ids):
            np.add.at(target, signal_ids, 1)

    def prometheus(self, signal_labels: list[tuple[str, str]]) -> Iterator[str]:
        """Lines in the Prometheus text format; signal_labels[i] is (machine, signal)."""
        yield "# TYPE ombre_connector_readings_total counter"
        for c in self.connectors.values():
            base = f'connector="{c.name}",kind="{c.kind}"'
            yield f"ombre_connector_readings_total{{{base}}} {c.readings}"
            yield f"ombre_connector_quarantined_total{{{base}}} {c.quarantined}"
            yield f"ombre_connector_dropped_total{{{base}}} {c.dropped}"
            yield f"ombre_connector_up{{{base}}} {int(c.health is Health.UP)}"
        yield f"ombre_outbox_bytes {self.outbox_bytes}"
        yield f"ombre_outbox_batches {self.outbox_batches}"
        yield f"ombre_queue_depth {self.queue_depth}"
        for i, (machine, signal) in enumerate(signal_labels):
            labels = f'machine="{_esc(machine)}",signal="{_esc(signal)}"'
            yield f"ombre_signal_received_total{{{labels}}} {self.signal_received[i]}"
            yield f"ombre_signal_written_total{{{labels}}} {self.signal_written[i]}"
            yield f"ombre_signal_quarantined_total{{{labels}}} {self.signal_quarantined[i]}"
            yield f"ombre_signal_dropped_total{{{labels}}} {self.signal_dropped[i]}"


def _esc(label: str) -> str:
    return label.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
