"""Drift detectors (issue 5): two-sided CUSUM, EWMA and Shewhart / Western Electric rules
on standardised readings z = (x - mu0) / sigma0, for many signals at once. Pure numpy, no I/O.

The shadow owns one `DetectorBank` per set of watched signals and calls `update` from one
thread with readings that are already filtered (good quality, live, in time order per
detector). `update` advances every detector together: rows are grouped into rounds (the r-th
reading of each detector) and each round is one numpy step over all detectors in it, so the
Python loop runs once per reading *per detector*, never once per reading.

Baseline: a spec without mean/sigma first collects `baseline_points` readings (they raise
nothing) into running sums; then mu0 = their mean and sigma0 = average moving range / 1.128.
A window whose readings are all equal (a constant signal) gives no sigma0: it is discarded,
counted (`degenerate_windows`), and a fresh window starts; `degenerate` says so while no
baseline is known. The detector never runs on an invented sigma0. A spec with mean/sigma
runs from its first reading, and its first `baseline_points` readings are checked the same
way.

Autocorrelation: the CUSUM, EWMA and Shewhart limits assume independent readings. Real
temperatures and pressures are not: with lag-1 autocorrelation 0.5 a CUSUM on the raw
readings alarms falsely every few dozen readings. So each baseline window also gives the
lag-1 autocorrelation r1 (standard error 1/sqrt(n) for independent readings). When it is
material (|r1| >= 0.2 and more than 2 standard errors from 0) the detector fits an AR(1),
phi = r1, and watches its residuals e_t = x_t - mu0 - phi (x_{t-1} - mu0) in units of
their own sigma (from the window's residual sum of squares; a configured detector keeps its
mean and restarts its statistic in the new mode). A mean shift of d then shows in the
residuals as about d (1 - phi): alarms report the shift converted back to the readings'
mean and sigma (the window's standard deviation, or the configured sigma).

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
Mode = Literal["learning", "readings", "ar1_residuals"]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]

D2 = 1.128  # d2 for moving ranges of 2 consecutive readings
MIN_BASELINE_POINTS = 100
# The learned baseline's default size: measured (python -m bench.drift_arl) so that the
# average in-control ARL over learned baselines stays within 10 % of the nominal one.
DEFAULT_BASELINE_POINTS = 500
PHI_MATERIAL = 0.2  # |lag-1 autocorrelation| from which readings count as dependent
PHI_SIGNIFICANT = 2.0  # ... when also this many standard errors (1/sqrt(n)) from 0
WINDOW = 8  # Shewhart: the last 8 z, enough for rule 4
RULE_SPAN = (1, 3, 5, 8)  # readings looked at by Western Electric rules 1..4
STATE_VERSION = 3
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
    baseline_points: int = DEFAULT_BASELINE_POINTS  # readings to learn mu0, sigma0 and phi
    # "residuals": watch AR(1) residuals when the baseline is autocorrelated; "ignore": the
    # readings anyway (phi is still measured and reported)
    autocorrelation: Literal["residuals", "ignore"] = "residuals"

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
        if self.autocorrelation not in ("residuals", "ignore"):
            problems.append("autocorrelation: expected 'residuals' or 'ignore', found "
                            f"{self.autocorrelation!r}")
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
class DetectorStatus:
    """What a detector watches against, for people: its baseline (None while learning),
    the baseline window's size and how far the current one is, the window's lag-1
    autocorrelation (None until a window was checked) and its standard error, and the mode."""

    mean: float | None
    sigma: float | None  # of the readings (not of the residuals)
    residual_sigma: float | None  # of the AR(1) residuals, in mode ar1_residuals
    points: int
    seen: int  # readings in the window being collected; 0 once checked
    phi: float | None
    phi_se: float
    autocorrelated: bool  # phi is material (see the module's docstring)
    mode: Mode

    def describe(self) -> str:
        """One line for a log or a screen."""
        if self.mode == "learning":
            return f"learning its baseline ({self.seen}/{self.points} readings)"
        if self.phi is None:
            return (f"watching readings, checking autocorrelation ({self.seen}/{self.points} "
                    "readings)")
        measured = f"phi={self.phi:.2f} +-{self.phi_se:.2f} over {self.points} readings"
        if self.mode == "ar1_residuals":
            return f"autocorrelated ({measured}), watching AR(1) residuals"
        if self.autocorrelated:
            return (f"autocorrelated ({measured}), watching readings anyway: expect more "
                    "false alarms")
        return f"independent readings ({measured})"


def material(r1: F64, n: F64) -> Bool:
    """Whether lag-1 autocorrelations r1 of windows of n readings are material."""
    return (np.abs(r1) >= PHI_MATERIAL) & (np.abs(r1) > PHI_SIGNIFICANT / np.sqrt(n))


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
    "checked": (np.bool_, ()), "sx": (np.float64, ()), "phi": (np.float64, ()),
    "r1": (np.float64, ()), "prev": (np.float64, ()),
    "b_n": (np.int64, ()), "b_first": (np.float64, ()), "b_sum": (np.float64, ()),
    "b_sq": (np.float64, ()), "b_lag": (np.float64, ()), "b_mr": (np.float64, ()),
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
        self._ar1 = np.array([s.autocorrelation == "residuals" for s in self.specs],
                             dtype=np.bool_)
        for name, (dtype, shape) in _STATE.items():
            setattr(self, name, np.zeros((n, *shape), dtype=dtype))
        self.w_q[:] = 1.0  # (1 - lam)^(2t) with t = 0
        for i, s in enumerate(self.specs):
            if s.mean is not None and s.sigma is not None:
                self.known[i], self.mu[i], self.sd[i], self.sx[i] = True, s.mean, s.sigma, s.sigma
        self._steps: tuple[tuple[int, Callable[[I64, I64, F64], _Step]], ...] = (
            (0, self._cusum), (1, self._ewma), (2, self._shewhart),
        )

    # State arrays, declared for the type checker; created from _STATE in __init__.
    known: Bool  # mu, sd known: the detector runs
    mu: F64
    sd: F64  # what z is in units of: sigma of the readings, or of the AR(1) residuals
    checked: Bool  # a baseline window was checked for autocorrelation
    sx: F64  # sigma of the readings
    phi: F64  # the AR(1) coefficient watched; 0: the readings themselves
    r1: F64  # the checked window's lag-1 autocorrelation
    prev: F64  # the last reading (for the residual)
    b_n: I64
    b_first: F64  # sums are of x - b_first, for precision
    b_sum: F64
    b_sq: F64
    b_lag: F64  # sum of products of consecutive readings
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
        """(mu0, sigma0 of the readings) once known: configured, or learned from the
        baseline window."""
        return (float(self.mu[i]), float(self.sx[i])) if self.known[i] else None

    def status(self, i: int) -> DetectorStatus:
        known, checked, points = bool(self.known[i]), bool(self.checked[i]), int(self._b_points[i])
        residuals = bool(self.phi[i] != 0)
        n = np.array([points], dtype=np.float64)
        phi_material = checked and bool(material(self.r1[i:i + 1], n)[0])
        return DetectorStatus(
            mean=float(self.mu[i]) if known else None,
            sigma=float(self.sx[i]) if known else None,
            residual_sigma=float(self.sd[i]) if residuals else None,
            points=points, seen=0 if checked else int(self.b_n[i]),
            phi=float(self.r1[i]) if checked else None, phi_se=1.0 / float(np.sqrt(points)),
            autocorrelated=phi_material,
            mode="ar1_residuals" if residuals else "readings" if known else "learning",
        )

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
                mean=float(self.mu[det[row]]), sigma=float(self.sx[det[row]]),
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
        learning = ~self.checked[d]
        if learning.any():
            self._learn(d[learning], x[learning])
        if not fed.all():
            d, ts, x = d[fed], ts[fed], x[fed]
        if d.size == 0:
            return fed, None
        mu, phi = self.mu[d], self.phi[d]
        z = (x - mu - phi * (self.prev[d] - mu)) / self.sd[d]  # phi 0: (x - mu) / sd
        self.prev[d] = x
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
        # A residual shift s (in residual sigma) is a mean shift of s sd / (1 - phi).
        shift = np.where(phi == 0, shift, shift * self.sd[d] / ((1.0 - phi) * self.sx[d]))
        return fed, _Step(alarm, direction, start, shift)

    def _learn(self, d: I64, x: F64) -> None:
        n = self.b_n[d]
        started = n > 0
        first = np.where(started, self.b_first[d], x)
        y, y_last = x - first, self.b_last[d] - first
        self.b_mr[d] += np.where(started, np.abs(x - self.b_last[d]), 0.0)
        self.b_lag[d] += np.where(started, y * y_last, 0.0)
        self.b_sum[d] += y
        self.b_sq[d] += y * y
        self.b_first[d] = first
        self.b_n[d] = n + 1
        self.b_last[d] = x
        full = d[n + 1 >= self._b_points[d]]
        if full.size:
            self._check(full)

    def _check(self, d: I64) -> None:
        """Detectors d have a full window: their baseline and autocorrelation from it."""
        n = self.b_n[d].astype(np.float64)
        mean = self.b_sum[d] / n  # of y = x - first; y_1 = 0
        last = self.b_last[d] - self.b_first[d]  # y_n
        ss = self.b_sq[d] - n * mean * mean  # sums of centred c = y - mean
        lag = self.b_lag[d] - mean * (2.0 * self.b_sum[d] - last) + (n - 1.0) * mean * mean
        c_1, c_n = -mean, last - mean
        ok = (ss > 0) & (self.b_mr[d] > 0)
        r1 = np.where(ok, lag / np.where(ok, ss, 1.0), 0.0)
        phi = np.where(ok & self._ar1[d] & material(r1, n), r1, 0.0)
        residual_ss = (ss - c_1 * c_1) - 2.0 * phi * lag + phi * phi * (ss - c_n * c_n)
        residual_sd = np.sqrt(np.maximum(residual_ss, 0.0) / (n - 2.0))
        residuals = (phi != 0) & (residual_sd > 0)
        phi = np.where(residuals, phi, 0.0)
        known = self.known[d]
        mr_sd = self.b_mr[d] / (n - 1.0) / D2
        sd_window = np.sqrt(np.maximum(ss, 0.0) / (n - 1.0))
        sx = np.where(known, self.sx[d], np.where(residuals, sd_window, mr_sd))
        good, switch = d[ok], d[residuals & known]
        self.mu[good] = np.where(known, self.mu[d], self.b_first[d] + mean)[ok]
        self.sd[good] = np.where(residuals, residual_sd, sx)[ok]
        self.sx[good], self.phi[good], self.r1[good] = sx[ok], phi[ok], r1[ok]
        self.prev[d[ok & ~known]] = self.b_last[d[ok & ~known]]
        self.known[good] = self.checked[good] = True
        # A running detector that now watches residuals starts its statistic afresh.
        self.cp[switch] = self.cm[switch] = self.w[switch] = 0.0
        self.w_t[switch] = self.win_n[switch] = 0
        self.w_q[switch] = 1.0
        self.win[switch] = 0.0
        self.b_degenerate[d[~ok]] += 1
        for arr in (self.b_n, self.b_first, self.b_sum, self.b_sq, self.b_lag, self.b_mr,
                    self.b_last):
            arr[d] = 0

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
