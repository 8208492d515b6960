"""The shadow's live model as documents, handed to observers (a northbound sink: the
MQTT sink publishes them retained, so a late subscriber sees the present at once).

The shadow knows no protocol: the composition root (ombre/app.py) hands ShadowSink the
sinks that implement LiveObserver. ShadowSink calls `LiveFeed.publish` after each
commit, from its worker thread; the feed builds the documents of the machines touched
since the last time, at most once per the observers' shortest interval."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from shadow.config import ShadowedConfig
from shadow.model import Machine, ShadowModel
from shadow.report import current_shift, live_kpis
from shadow.store import ShadowStore

MAX_ALERTS = 100  # open alerts listed per machine, newest first
# The KPIs (a query of the shift's intervals and counts, tens of ms per machine) are
# rebuilt every this many model intervals, like the API's live stream does.
KPI_EVERY = 10


@runtime_checkable
class LiveObserver(Protocol):
    """A sink that takes the live model: `model_interval_s` is the shortest time
    between two documents of a machine (None: it takes none), `publish_model` gets a
    machine's parts (state, job, counts, kpi, alerts). Called from the shadow's worker
    thread; it must not block."""

    model_interval_s: float | None

    def publish_model(self, machine: str, parts: Mapping[str, Any]) -> None: ...


def machine_parts(config: ShadowedConfig, store: ShadowStore, machine: Machine, *,
                  kpi: bool = True) -> dict[str, Any]:
    """The documents of one machine's live model, times as int nanoseconds (UTC); the
    KPIs only if `kpi`."""
    now = machine.clock_ns
    category = machine.category
    pq, gq, sq, rq = machine.job_counts
    alerts = [r for status in ("open", "acknowledged")
              for r in store.alerts(status=status, machines=[machine.config.id], limit=MAX_ALERTS)]
    parts: dict[str, Any] = {
        "state": {"state": machine.state.raw, "category": category.value if category else None,
                  "failure": machine.state.failure, "planned": machine.planned,
                  "since_ns": machine.since_ns, "reason": machine.reason,
                  "online": machine.online(now), "last_seen_ns": machine.last_seen_ns},
        "job": {"job": machine.job, "since_ns": machine.job_since_ns},
        "counts": {"job": machine.job, "produced": pq, "good": gq, "scrap": sq, "rework": rq},
        "alerts": [{"id": r.id, "signal": r.signal, "detector": r.detector,
                    "status": r.status, "direction": r.direction,
                    "shift_sigma": r.shift_sigma, "start_ns": r.start_ns,
                    "detected_ns": r.detected_ns}
                   for r in sorted(alerts, key=lambda r: -r.detected_ns)[:MAX_ALERTS]],
    }
    if kpi:
        window = current_shift(config, now)
        parts["kpi"] = {"from_ns": window.start_ns, "to_ns": window.end_ns,
                        **live_kpis(store, config, window, [machine.config])}
    return parts


class LiveFeed:
    """Which machines changed since the observers last got their model, and when they
    may get it again. Used under the ShadowSink's lock."""

    def __init__(self, config: ShadowedConfig, observers: Sequence[LiveObserver]) -> None:
        self._config = config
        self._observers = [o for o in observers if o.model_interval_s is not None]
        self._interval_s = min((o.model_interval_s or 0 for o in self._observers), default=0)
        self._touched: set[str] = set()  # bounded by the plant's machines
        self._next = 0.0
        self._next_kpi = 0.0

    def everything(self, model: ShadowModel) -> None:
        """Every machine is sent next time (after a (re)connect of the shadow)."""
        self._touched |= set(model.machines)

    def publish(self, store: ShadowStore, model: ShadowModel, touched: set[str]) -> None:
        if not self._observers:
            return
        self._touched |= touched
        if not self._touched or time.monotonic() < self._next:
            return
        now = time.monotonic()
        self._next = now + self._interval_s
        kpi = now >= self._next_kpi
        if kpi:
            self._next_kpi = now + KPI_EVERY * self._interval_s
        for name in sorted(self._touched):
            parts = machine_parts(self._config, store, model.machines[name], kpi=kpi)
            for observer in self._observers:
                observer.publish_model(name, parts)
        self._touched.clear()
