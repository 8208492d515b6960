"""Drift detectors (issue 5): two-sided CUSUM, EWMA and Shewhart / Western Electric rules
on standardised readings z = (x - mu0) / sigma0, for many signals at once. Pure numpy, no I/O.

The shadow owns one `DetectorBank` per set of watched signals and calls `update` from one
thread with readings that are already filtered (good quality, live, in time order per
detector). `update` advances every detector together: rows are grouped into rounds (the r-th
reading of each detector) and each round is one numpy step over all detectors in it, so the
Python loop runs once per reading *per detector*, never once per reading.

Baseline: a spec without mean/sigma first collects `baseline_points` readings (they raise
nothing) into running sums; then mu0 = their mean and sigma0 = average moving range / 1.128.
A window whose moving ranges are all 0 (a constant signal) gives no sigma0: it is discarded,
counted (`degenerate_windows`), and a fresh window starts; `degenerate` says so while no
baseline is known. The detector never runs on an invented sigma0.

After an alarm a detector resets (CUSUM C+ = C- = 0; EWMA w = 0, t = 0; the Shewhart window
is cleared); its baseline stays. Memory is O(n_detectors): no reading is kept, except the
last 8 standardised values of a Shewhart detector."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from itertools import pairwise
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

DetectorKind = Literal["cusum", "ewma", "shewhart"]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]

D2 = 1.128  # d2 for moving ranges of 2 consecutive readings
MIN_BASELINE_POINTS = 100
WINDOW = 8  # Shewhart: the last 8 z, enough for rule 4
RULE_SPAN = (1, 3, 5, 8)  # readings looked at by Western Electric rules 1..4
STATE_VERSION = 2
_KINDS: tuple[DetectorKind, ...] = ("cusum", "ewma", "shewhart")


@dataclass(frozen=True, slots=True)
class DetectorSpec:
    kind: DetectorKind
    k: float = 0.5  # CUSUM reference value (in sigma)
    h: float = 5.0  # CUSUM decision interval (in sigma)
    lam: float = 0.2  # EWMA lambda
    L: float = 2.962  # EWMA limit width
    limits: Literal["exact", "asymptotic"] = "exact"  # EWMA: time-varying or asymptotic limits
    rules: tuple[int, ...] = (1, 2, 3, 4)  # Shewhart: Western Electric rules used
    mean: float | None = None  # mu0; None (with sigma None): learn from a baseline window
    sigma: float | None = None
    baseline_points: int = MIN_BASELINE_POINTS  # readings used to learn mu0 / sigma0

    def __post_init__(self) -> None:
        problems = []
        if self.kind not in _KINDS:
            problems.append(f"kind: expected one of {_KINDS}, found {self.kind!r}")
        if not self.k >= 0:
            problems.append(f"k: expected >= 0, found {self.k}")
        if not self.h > 0:
            problems.append(f"h: expected > 0, found {self.h}")
        if not 0 < self.lam <= 1:
            problems.append(f"lam: expected 0 < lam <= 1, found {self.lam}")
        if not self.L > 0:
            problems.append(f"L: expected > 0, found {self.L}")
        if self.limits not in ("exact", "asymptotic"):
            problems.append(f"limits: expected 'exact' or 'asymptotic', found {self.limits!r}")
        if not self.rules or len(set(self.rules)) != len(self.rules) or any(
            r not in (1, 2, 3, 4) for r in self.rules
        ):
            problems.append(f"rules: expected distinct rules among 1..4, found {self.rules}")
        if (self.mean is None) != (self.sigma is None):
            problems.append("mean, sigma: expected both set or both None (learned)")
        if self.sigma is not None and not (0 < self.sigma < np.inf):
            problems.append(f"sigma: expected > 0, found {self.sigma}")
        if self.mean is not None and not np.isfinite(self.mean):
            problems.append(f"mean: expected a finite number, found {self.mean}")
        if self.baseline_points < MIN_BASELINE_POINTS:
            problems.append(
                f"baseline_points: expected >= {MIN_BASELINE_POINTS}, found {self.baseline_points}"
            )
        if problems:
            raise ValueError("; ".join(problems))


@dataclass(frozen=True, slots=True)
class Alarm:
    detector: int  # index of the detector in the bank
    row: int  # index, in the arrays passed to update(), of the reading that raised it
    ts_ns: int  # its timestamp (detection time)
    start_ns: int  # estimated start of the shift (see `DetectorBank.update`)
    direction: int  # +1 up, -1 down
    shift_sigma: float  # estimated shift in sigma
    mean: float  # the baseline used
    sigma: float


@dataclass(frozen=True, slots=True)
class _Step:
    """What one round did for the detectors `d` it advanced (all arrays aligned with d)."""

    alarm: Bool
    direction: I64
    start_ns: I64
    shift: F64


# Mutable per-detector state: name -> (dtype, trailing shape). state() / restore() use it.
_STATE: dict[str, tuple[type[np.generic], tuple[int, ...]]] = {
    "known": (np.bool_, ()), "mu": (np.float64, ()), "sd": (np.float64, ()),
    "b_n": (np.int64, ()), "b_sum": (np.float64, ()), "b_mr": (np.float64, ()),
    "b_last": (np.float64, ()), "b_degenerate": (np.int64, ()),
    "cp": (np.float64, ()), "cm": (np.float64, ()), "cp_n": (np.int64, ()),
    "cm_n": (np.int64, ()), "cp_start": (np.int64, ()), "cm_start": (np.int64, ()),
    "w": (np.float64, ()), "w_t": (np.int64, ()), "w_q": (np.float64, ()),
    "w_start": (np.int64, ()),
    "win": (np.float64, (WINDOW,)), "win_ts": (np.int64, (WINDOW,)), "win_n": (np.int64, ()),
}


def _spec_json(spec: DetectorSpec) -> dict[str, Any]:
    return {**asdict(spec), "rules": list(spec.rules)}


class DetectorBank:
    """A fixed table of detectors, addressed by index. Not thread-safe: one caller at a time."""

    def __init__(self, specs: Sequence[DetectorSpec]) -> None:
        self.specs = tuple(specs)
        self._fingerprint = hashlib.sha256(json.dumps(
            [_spec_json(s) for s in self.specs]).encode()).hexdigest()
        n = len(self.specs)
        self._kind = np.array([_KINDS.index(s.kind) for s in self.specs], dtype=np.int64)
        self._k = np.array([s.k for s in self.specs], dtype=np.float64)
        self._h = np.array([s.h for s in self.specs], dtype=np.float64)
        self._lam = np.array([s.lam for s in self.specs], dtype=np.float64)
        self._r2 = (1.0 - self._lam) ** 2
        self._lim = np.array(
            [s.L * np.sqrt(s.lam / (2.0 - s.lam)) for s in self.specs], dtype=np.float64
        )
        self._exact = np.array([s.limits == "exact" for s in self.specs], dtype=np.bool_)
        self._rules = np.array(
            [[r in s.rules for r in (1, 2, 3, 4)] for s in self.specs], dtype=np.bool_
        ).reshape(n, 4)
        self._b_points = np.array([s.baseline_points for s in self.specs], dtype=np.int64)
        for name, (dtype, shape) in _STATE.items():
            setattr(self, name, np.zeros((n, *shape), dtype=dtype))
        self.w_q[:] = 1.0  # (1 - lam)^(2t) with t = 0
        for i, s in enumerate(self.specs):
            if s.mean is not None and s.sigma is not None:
                self.known[i], self.mu[i], self.sd[i] = True, s.mean, s.sigma
        self._steps: tuple[tuple[int, Callable[[I64, I64, F64], _Step]], ...] = (
            (0, self._cusum), (1, self._ewma), (2, self._shewhart),
        )

    # State arrays, declared for the type checker; created from _STATE in __init__.
    known: Bool
    mu: F64
    sd: F64
    b_n: I64
    b_sum: F64
    b_mr: F64
    b_last: F64
    b_degenerate: I64
    cp: F64
    cm: F64
    cp_n: I64
    cm_n: I64
    cp_start: I64
    cm_start: I64
    w: F64
    w_t: I64
    w_q: F64
    w_start: I64
    win: F64
    win_ts: I64
    win_n: I64

    def baseline(self, i: int) -> tuple[float, float] | None:
        """(mu0, sigma0) once known: configured, or learned from the baseline window."""
        return (float(self.mu[i]), float(self.sd[i])) if self.known[i] else None

    def degenerate(self, i: int) -> bool:
        """True while detector i has no baseline because its last window was constant."""
        return bool(not self.known[i] and self.b_degenerate[i] > 0)

    def degenerate_windows(self, i: int) -> int:
        """How many baseline windows of detector i were discarded as constant."""
        return int(self.b_degenerate[i])

    def update(self, detector: I64, ts_ns: I64, values: F64) -> list[Alarm]:
        """Advance the detectors by one batch of readings; row i is reading values[i] of
        detector detector[i] at ts_ns[i]. One detector's rows must be in time order; rows
        of different detectors may interleave in any way. Non-finite values are skipped:
        they feed nothing. Returns the alarms in row order, at most one per row.

        start_ns: CUSUM: the first reading after the alarming side's statistic was last 0;
        EWMA: the first reading after w last had the opposite sign or was 0; Shewhart: the
        first reading of the rule's window (fewer readings if the window was cleared since).
        shift_sigma: CUSUM: +-(k + C/N), N readings since that side was last 0; EWMA: w;
        Shewhart: the mean z over the rule's window."""
        det = np.asarray(detector, dtype=np.int64)
        ts = np.asarray(ts_ns, dtype=np.int64)
        x = np.asarray(values, dtype=np.float64)
        m = det.shape[0] if det.ndim == 1 else -1
        if det.ndim != 1 or ts.shape != (m,) or x.shape != (m,):
            raise ValueError("detector, ts_ns and values must be 1-D arrays of one length")
        if m == 0:
            return []
        if det.min() < 0 or det.max() >= len(self.specs):
            raise ValueError(f"detector index out of range 0..{len(self.specs) - 1}")
        finite = np.isfinite(x)
        if not finite.all():  # NaN / inf feed nothing; rows keep their indices in the input
            kept = np.flatnonzero(finite)
            alarms = self.update(det[kept], ts[kept], x[kept])
            return [replace(a, row=int(kept[a.row])) for a in alarms]
        order = np.argsort(det, kind="stable")
        sorted_det = det[order]
        first = np.flatnonzero(np.r_[True, sorted_det[1:] != sorted_det[:-1]])
        rank = np.arange(m) - np.repeat(first, np.diff(np.r_[first, m]))
        rows = order[np.argsort(rank, kind="stable")]  # round-major, one row per detector
        bounds = np.r_[0, np.cumsum(np.bincount(rank))]
        found: list[tuple[I64, _Step]] = []
        for lo, hi in pairwise(bounds.tolist()):
            r = rows[lo:hi]
            fed, step = self._round(det[r], ts[r], x[r])
            if step is not None and step.alarm.any():
                found.append((r[fed][step.alarm], step))
        alarms = [
            Alarm(
                detector=int(det[row]), row=int(row), ts_ns=int(ts[row]), start_ns=int(start),
                direction=int(direction), shift_sigma=float(shift),
                mean=float(self.mu[det[row]]), sigma=float(self.sd[det[row]]),
            )
            for alarm_rows, step in found
            for row, start, direction, shift in zip(
                alarm_rows, step.start_ns[step.alarm], step.direction[step.alarm],
                step.shift[step.alarm], strict=True,
            )
        ]
        alarms.sort(key=lambda a: a.row)
        return alarms

    def _round(self, d: I64, ts: I64, x: F64) -> tuple[Bool, _Step | None]:
        """One reading for each of the distinct detectors d. Returns which of them ran a
        detector (the others were learning their baseline) and what it did."""
        fed = self.known[d]
        if not fed.all():
            learning = ~fed
            self._learn(d[learning], x[learning])
            d, ts, x = d[fed], ts[fed], x[fed]
        if d.size == 0:
            return fed, None
        z = (x - self.mu[d]) / self.sd[d]
        kinds = self._kind[d]
        alarm = np.zeros(d.size, dtype=np.bool_)
        direction = np.zeros(d.size, dtype=np.int64)
        start = np.zeros(d.size, dtype=np.int64)
        shift = np.zeros(d.size, dtype=np.float64)
        for code, step_fn in self._steps:
            sel = kinds == code
            if sel.any():
                s = step_fn(d[sel], ts[sel], z[sel])
                alarm[sel], direction[sel], start[sel], shift[sel] = (
                    s.alarm, s.direction, s.start_ns, s.shift,
                )
        return fed, _Step(alarm, direction, start, shift)

    def _learn(self, d: I64, x: F64) -> None:
        n = self.b_n[d]
        self.b_mr[d] += np.where(n > 0, np.abs(x - self.b_last[d]), 0.0)
        self.b_sum[d] += x
        self.b_n[d] = n + 1
        self.b_last[d] = x
        full = d[n + 1 >= self._b_points[d]]
        if full.size == 0:
            return
        count = self.b_n[full]
        mu = self.b_sum[full] / count
        sd = self.b_mr[full] / (count - 1) / D2
        ok = sd > 0
        self.known[full[ok]] = True
        self.mu[full[ok]] = mu[ok]
        self.sd[full[ok]] = sd[ok]
        self.b_degenerate[full[~ok]] += 1
        for arr in (self.b_n, self.b_sum, self.b_mr, self.b_last):
            arr[full] = 0

    def _cusum(self, d: I64, ts: I64, z: F64) -> _Step:
        k, h = self._k[d], self._h[d]
        cp, cm = self.cp[d], self.cm[d]
        n_p = np.where(cp == 0, 1, self.cp_n[d] + 1)
        n_m = np.where(cm == 0, 1, self.cm_n[d] + 1)
        start_p = np.where(cp == 0, ts, self.cp_start[d])
        start_m = np.where(cm == 0, ts, self.cm_start[d])
        cp = np.maximum(0.0, cp + z - k)
        cm = np.maximum(0.0, cm - z - k)
        up = cp > h
        alarm = up | (cm > h)
        step = _Step(
            alarm=alarm,
            direction=np.where(up, 1, -1),
            start_ns=np.where(up, start_p, start_m),
            shift=np.where(up, k + cp / n_p, -(k + cm / n_m)),
        )
        for arr in (cp, cm, n_p, n_m):
            arr[alarm] = 0
        self.cp[d], self.cm[d], self.cp_n[d], self.cm_n[d] = cp, cm, n_p, n_m
        self.cp_start[d], self.cm_start[d] = start_p, start_m
        return step

    def _ewma(self, d: I64, ts: I64, z: F64) -> _Step:
        lam, w_prev = self._lam[d], self.w[d]
        w = lam * z + (1.0 - lam) * w_prev
        t = self.w_t[d] + 1
        q = self.w_q[d] * self._r2[d]  # (1 - lam)^(2t), as a running product
        fresh = (w_prev == 0) | (np.sign(w_prev) != np.sign(w))
        start = np.where(fresh, ts, self.w_start[d])
        limit = np.where(self._exact[d], self._lim[d] * np.sqrt(1.0 - q), self._lim[d])
        alarm = np.abs(w) > limit
        step = _Step(alarm=alarm, direction=np.where(w > 0, 1, -1), start_ns=start, shift=w)
        self.w[d] = np.where(alarm, 0.0, w)
        self.w_t[d] = np.where(alarm, 0, t)
        self.w_q[d] = np.where(alarm, 1.0, q)
        self.w_start[d] = start
        return step

    def _shewhart(self, d: I64, ts: I64, z: F64) -> _Step:
        win = np.concatenate((self.win[d, 1:], z[:, None]), axis=1)
        win_ts = np.concatenate((self.win_ts[d, 1:], ts[:, None]), axis=1)
        valid = np.minimum(self.win_n[d] + 1, WINDOW)
        # Cleared slots hold 0: beyond no limit and on neither side, so they never count.
        up = np.stack(
            (z > 3, (win[:, -3:] > 2).sum(1) >= 2, (win[:, -5:] > 1).sum(1) >= 4,
             (win > 0).all(1)), axis=1,
        )
        down = np.stack(
            (z < -3, (win[:, -3:] < -2).sum(1) >= 2, (win[:, -5:] < -1).sum(1) >= 4,
             (win < 0).all(1)), axis=1,
        )
        fired = (up | down) & self._rules[d]
        alarm = fired.any(1)
        rule = fired.argmax(1)  # the lowest-numbered rule that fired
        rows = np.arange(d.size)
        span = np.minimum(np.array(RULE_SPAN, dtype=np.int64)[rule], valid)
        sums = np.cumsum(win[:, ::-1], axis=1)[rows, span - 1]
        step = _Step(
            alarm=alarm,
            direction=np.where(up[rows, rule], 1, -1),
            start_ns=win_ts[rows, WINDOW - span],
            shift=sums / span,
        )
        win[alarm] = 0.0
        self.win[d], self.win_ts[d] = win, win_ts
        self.win_n[d] = np.where(alarm, 0, valid)
        return step

    def state(self) -> dict[str, Any]:
        """Everything needed to continue, JSON-able and compact (each array as base64 of
        its bytes: a bank of 1,000 detectors is a few hundred kB, built in well under a
        millisecond); restore() takes it back."""
        arrays = {name: base64.b64encode(np.ascontiguousarray(getattr(self, name)).tobytes())
                  .decode("ascii") for name in _STATE}
        return {"version": STATE_VERSION, "specs": self._fingerprint, **arrays}

    @classmethod
    def restore(cls, specs: Sequence[DetectorSpec], state: dict[str, Any]) -> DetectorBank:
        """A bank that continues exactly where `state()` left off. The specs must be the
        ones the state was taken with (ValueError otherwise): a changed spec starts afresh."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"state version: expected {STATE_VERSION}, found "
                             f"{state.get('version')!r}")
        bank = cls(specs)
        if state.get("specs") != bank._fingerprint:
            raise ValueError("state specs: the state was taken with other detector specs")
        for name, (dtype, shape) in _STATE.items():
            raw = base64.b64decode(state[name])
            expected = (len(bank.specs), *shape)
            if len(raw) != np.dtype(dtype).itemsize * int(np.prod(expected)):
                raise ValueError(f"state {name}: expected {expected} values, found "
                                 f"{len(raw) // np.dtype(dtype).itemsize}")
            arr = np.frombuffer(raw, dtype=dtype).reshape(expected).copy()
            setattr(bank, name, arr)
        return bank
