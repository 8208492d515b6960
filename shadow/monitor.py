"""Feeds the drift detectors declared in the config (`machines[].drift`) from the
gateway's batches and the model's derived readings, all detectors together: one
DetectorBank (shadow/drift.py) advances over each batch with numpy.

Only good, live, in-order readings feed a detector: a reading flagged BAD or
HISTORICAL, or not newer than the last one its detector took, is left out. A detector
with `aggregate_s` takes the mean of each window of that many seconds, when the next
window starts. When a detector's baseline window has been checked (learned, or the first
readings of a configured one) it logs what it found: a warning if the readings are
autocorrelated."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gateway.types import Batch, Float64Array, Int64Array, Quality, SignalRegistry
from shadow.config import CYCLE_TIME, DriftConfig, ShadowMachineConfig
from shadow.drift import Alarm, DetectorBank, DetectorSpec
from shadow.model import Derived
from shadow.timeline import NS_PER_S

log = logging.getLogger(__name__)
EXCLUDED = int(Quality.BAD | Quality.HISTORICAL)
NO_TS = np.iinfo(np.int64).min


@dataclass(frozen=True, slots=True)
class Watch:
    """One detector: what it watches and how."""

    machine: str
    signal: str
    unit: str | None
    config: DriftConfig


def _spec(config: DriftConfig) -> DetectorSpec:
    return DetectorSpec(kind=config.detector, k=config.k, h=config.h, lam=config.lam,
                        L=config.width, limits=config.limits, rules=tuple(config.rules),
                        mean=config.mean, sigma=config.sigma,
                        baseline_points=config.baseline_points,
                        autocorrelation=config.autocorrelation)


class DriftMonitor:
    def __init__(self, machines: Sequence[ShadowMachineConfig], registry: SignalRegistry) -> None:
        self.watches: list[Watch] = []
        pairs: list[tuple[int, int]] = []  # (signal id, detector)
        self._cycle: dict[str, list[int]] = {}
        for m in machines:
            for config in m.drift:
                index = len(self.watches)
                if config.signal == CYCLE_TIME:
                    self.watches.append(Watch(m.id, CYCLE_TIME, "s", config))
                    self._cycle.setdefault(m.id, []).append(index)
                    continue
                sid = registry.id_of(m.id, config.signal)
                assert sid is not None  # the config checks drift signals exist
                self.watches.append(Watch(m.id, config.signal, registry.info(sid).unit, config))
                pairs.append((sid, index))
        pairs.sort()
        # CSR: the detectors of signal id s are _dets[_start[s]:_start[s + 1]].
        counts = np.bincount([s for s, _ in pairs], minlength=len(registry)).astype(np.int64)
        self._start = np.r_[0, np.cumsum(counts)].astype(np.int64)
        self._count = counts
        self._dets = np.array([d for _, d in pairs], np.int64)
        n = len(self.watches)
        self.bank = DetectorBank([_spec(w.config) for w in self.watches])
        self._last_ts = np.full(n, NO_TS, np.int64)
        self._window_ns = np.array([int((w.config.aggregate_s or 0) * NS_PER_S)
                                    for w in self.watches], np.int64)
        self._agg_window = np.full(n, -1, np.int64)  # the open window's index, -1: none
        self._agg_sum = np.zeros(n, np.float64)
        self._agg_n = np.zeros(n, np.int64)
        self._fingerprint = hashlib.sha256(json.dumps(
            [[w.machine, w.signal, w.config.model_dump(by_alias=True)] for w in self.watches]
        ).encode()).hexdigest()

    def apply(self, batch: Batch, derived: Sequence[Derived]) -> list[tuple[Watch, Alarm]]:
        """Advances the detectors over a batch and the model's derived readings; returns
        the alarms raised, in no particular order."""
        if not self.watches:
            return []
        det, ts, value = self._rows(batch, derived)
        order = np.lexsort((ts, det))
        det, ts, value = det[order], ts[order], value[order]
        fresh = ts > self._last_ts[det]
        det, ts, value = det[fresh], ts[fresh], value[fresh]
        if not len(det):
            return []
        np.maximum.at(self._last_ts, det, ts)
        det, ts, value = self._aggregate(det, ts, value)
        checked = self.bank.checked.copy()
        alarms = self.bank.update(det, ts, value)
        for i in np.flatnonzero(self.bank.checked & ~checked).tolist():
            self._log_baseline(i)
        return [(self.watches[a.detector], a) for a in alarms]

    def _log_baseline(self, i: int) -> None:
        watch, status = self.watches[i], self.bank.status(i)
        log.log(logging.WARNING if status.autocorrelated else logging.INFO,
                "shadow: drift detector %s on %s/%s: baseline mean %g, sigma %g%s: %s",
                watch.config.detector, watch.machine, watch.signal, status.mean, status.sigma,
                f" {watch.unit}" if watch.unit else "", status.describe())

    def _rows(self, batch: Batch, derived: Sequence[Derived]
              ) -> tuple[Int64Array, Int64Array, Float64Array]:
        """(detector, ts, value) for every good, live reading a detector watches."""
        sid = batch.signal_id.astype(np.int64)
        keep = np.flatnonzero((self._count[sid] > 0) & ((batch.quality & EXCLUDED) == 0))
        per_row = self._count[sid[keep]]
        rows = np.repeat(keep, per_row)
        # the k-th detector of each kept row: its CSR start plus k
        offset = np.arange(len(rows)) - np.repeat(np.cumsum(per_row) - per_row, per_row)
        det = self._dets[self._start[sid[rows]] + offset]
        extra = [(i, d.ts_ns, d.value) for d in derived if not d.quality & EXCLUDED
                 for i in self._cycle.get(d.machine, [])]
        return (np.concatenate([det, np.array([e[0] for e in extra], np.int64)]),
                np.concatenate([batch.ts_ns[rows], np.array([e[1] for e in extra], np.int64)]),
                np.concatenate([batch.value[rows], np.array([e[2] for e in extra], np.float64)]))

    def _aggregate(self, det: Int64Array, ts: Int64Array, value: Float64Array
                   ) -> tuple[Int64Array, Int64Array, Float64Array]:
        """Readings of aggregating detectors replaced by the means of the windows that
        closed: a window closes when a reading of a later window arrives. Rows are in
        (detector, ts) order."""
        width = self._window_ns[det]
        agg = width > 0
        if not agg.any():
            return det, ts, value
        a_det, a_ts, a_val = det[agg], ts[agg], value[agg]
        window = a_ts // width[agg]
        # Segments of equal (detector, window); the carried-over open window joins the
        # first segment of its detector when it is the same window.
        starts = np.flatnonzero(np.r_[True, (a_det[1:] != a_det[:-1])
                                      | (window[1:] != window[:-1])])
        seg_det, seg_win = a_det[starts], window[starts]
        seg_sum = np.add.reduceat(a_val, starts)
        seg_n = np.diff(np.r_[starts, len(a_det)])
        carried = self._agg_window[seg_det] == seg_win
        seg_sum[carried] += self._agg_sum[seg_det[carried]]
        seg_n[carried] += self._agg_n[seg_det[carried]]
        last_of_det = np.r_[seg_det[1:] != seg_det[:-1], True]
        # A carried window that is not continued by this batch closes now.
        first_of_det = np.r_[True, seg_det[1:] != seg_det[:-1]]
        old = seg_det[first_of_det & ~carried]
        old = old[self._agg_window[old] >= 0]
        out_det = np.r_[old, seg_det[~last_of_det]]
        out_ts = np.r_[(self._agg_window[old] + 1) * self._window_ns[old],
                       (seg_win[~last_of_det] + 1) * self._window_ns[seg_det[~last_of_det]]]
        out_val = np.r_[self._agg_sum[old] / np.maximum(self._agg_n[old], 1),
                        seg_sum[~last_of_det] / seg_n[~last_of_det]]
        keep = seg_det[last_of_det]
        self._agg_window[keep] = seg_win[last_of_det]
        self._agg_sum[keep] = seg_sum[last_of_det]
        self._agg_n[keep] = seg_n[last_of_det]
        det = np.r_[det[~agg], out_det]
        ts = np.r_[ts[~agg], out_ts]
        value = np.r_[value[~agg], out_val]
        order = np.lexsort((ts, det))
        return det[order], ts[order], value[order]

    def state(self) -> dict[str, Any]:
        return {"bank": self.bank.state(), "last_ts": self._last_ts.tolist(),
                "agg": [self._agg_window.tolist(), self._agg_sum.tolist(),
                        self._agg_n.tolist()],
                "watches": self._fingerprint}

    def restore(self, state: dict[str, Any]) -> bool:
        """Continues from `state` if it was saved for the same detectors by this version;
        False (and fresh detectors) if the config changed them, or the state's format."""
        same = state.get("watches") == self._fingerprint
        if same:
            try:
                self.bank = DetectorBank.restore([_spec(w.config) for w in self.watches],
                                                 state["bank"])
            except ValueError:
                return False
            self._last_ts = np.array(state["last_ts"], np.int64)
            window, total, count = state["agg"]
            self._agg_window = np.array(window, np.int64)
            self._agg_sum = np.array(total, np.float64)
            self._agg_n = np.array(count, np.int64)
        return same
