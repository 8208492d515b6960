"""Average run lengths of the drift detectors, measured by Monte Carlo (not a test).

    .venv/bin/python -m bench.drift_arl [--runs 10000] [--seed 20261203]

For CUSUM (k 0.5, h 5) and EWMA (lambda 0.2, L 2.962, asymptotic limits) it runs many
independent streams, each with a detector of its own, and counts the readings to the
first alarm after the baseline (the zero-state run length):

- fixed: mean 0 and sigma 1 configured, independent N(0, 1) readings;
- learned: the baseline learned from the default window (and, for comparison, the
  smaller windows users may configure), then independent readings;
- AR(1) phi 0.5 (a stationary process of sd 1): learned, watching the readings anyway
  (`autocorrelation: ignore`), and watching the AR(1) residuals (the default).

ARL0: no shift; ARL1: the mean shifted by one sigma of the readings from the first
monitored reading on. It prints each ARL with its standard error (sd / sqrt(runs)) and
the run lengths' sd.

The ARL0 averaged over learned baselines is not what a user sees in the long run: each
user has one baseline and raises false alarms at 1 / (the ARL0 of that baseline), and the
mean of those rates is above 1 / (mean ARL0). So it also counts, in control, the false
alarms of many users (each stream with its own baseline, reset after each alarm) over a
long run, per 10,000 monitored readings, with the standard error over users.

Everything goes to bench/results/drift_arl.json."""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from shadow.drift import DEFAULT_BASELINE_POINTS, DetectorBank, DetectorSpec

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
RESULTS = Path(__file__).parent / "results" / "drift_arl.json"
CHUNK = 32  # readings per stream per update() call
CUSUM = DetectorSpec("cusum", k=0.5, h=5.0)
EWMA = DetectorSpec("ewma", lam=0.2, L=2.962, limits="asymptotic")
NOMINAL = {"cusum": 465.0, "ewma": 500.0}  # published ARL0 (Montgomery, Lucas & Saccucci)


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    spec: DetectorSpec
    phi: float  # AR(1) coefficient of the readings; 0: independent
    shift: float  # mean shift, in sd of the readings, from the first monitored reading


def run_lengths(case: Case, runs: int, rng: np.random.Generator) -> I64:
    """Readings from the first monitored one to the first alarm, of `runs` streams."""
    spec = case.spec
    warmup = 0 if spec.mean is not None else spec.baseline_points
    bank = DetectorBank([spec] * runs)
    lengths = np.zeros(runs, dtype=np.int64)
    active = np.arange(runs, dtype=np.int64)
    x = rng.standard_normal(runs)  # stationary start: sd 1
    t0 = 0
    while active.size:
        block = ar1_block(rng, case.phi, x[active], CHUNK)
        x[active] = block[-1]
        ts = np.arange(t0, t0 + CHUNK, dtype=np.int64)
        block += np.where(ts >= warmup, case.shift, 0.0)[:, None]
        first: dict[int, int] = {}
        for alarm in bank.update(np.tile(active, CHUNK), np.repeat(ts, active.size),
                                 block.ravel()):
            first.setdefault(alarm.detector, alarm.ts_ns)
        done = np.fromiter(first, dtype=np.int64, count=len(first))
        lengths[done] = np.fromiter(first.values(), dtype=np.int64, count=len(first)) \
            + 1 - warmup
        active = np.setdiff1d(active, done)
        t0 += CHUNK
    return lengths


def ar1_block(rng: np.random.Generator, phi: float, last: F64, length: int) -> F64:
    """`length` further readings (rows) of the AR(1) streams whose last readings are `last`."""
    innovation_sd = math.sqrt(1.0 - phi**2)
    block = np.empty((length, last.size))
    for r in range(length):
        last = phi * last + innovation_sd * rng.standard_normal(last.size)
        block[r] = last
    return block


def false_alarm_counts(case: Case, streams: int, length: int, rng: np.random.Generator) -> I64:
    """Per stream, the false alarms in `length` readings after its baseline window (for a
    configured baseline too: its first window is watched as readings, not yet as AR(1)
    residuals)."""
    spec = case.spec
    warmup = spec.baseline_points
    bank = DetectorBank([spec] * streams)
    counts = np.zeros(streams, dtype=np.int64)
    ids = np.arange(streams, dtype=np.int64)
    last = rng.standard_normal(streams)
    step = 1000
    for t0 in range(0, warmup + length, step):
        block = ar1_block(rng, case.phi, last, step)
        last = block[-1]
        ts = np.arange(t0, t0 + step, dtype=np.int64)
        for alarm in bank.update(np.tile(ids, step), np.repeat(ts, streams), block.ravel()):
            if warmup <= alarm.ts_ns < warmup + length:
                counts[alarm.detector] += 1
    return counts


def cases(points: tuple[int, ...]) -> list[Case]:
    out = []
    for spec in (CUSUM, EWMA):
        fixed = replace(spec, mean=0.0, sigma=1.0)
        out += [Case(f"{spec.kind} fixed", fixed, 0.0, 0.0),
                Case(f"{spec.kind} fixed", fixed, 0.0, 1.0)]
        for n in points:
            learned = replace(spec, baseline_points=n)
            out.append(Case(f"{spec.kind} learned n={n}", learned, 0.0, 0.0))
        learned = replace(spec, baseline_points=DEFAULT_BASELINE_POINTS)
        out += [Case(f"{spec.kind} learned n={DEFAULT_BASELINE_POINTS}", learned, 0.0, 1.0),
                Case(f"{spec.kind} AR(1) 0.5 readings", replace(learned,
                     autocorrelation="ignore"), 0.5, 0.0),
                Case(f"{spec.kind} AR(1) 0.5 residuals", learned, 0.5, 0.0),
                Case(f"{spec.kind} AR(1) 0.5 residuals", learned, 0.5, 1.0)]
    return out


def measure(case: Case, runs: int, seed: int) -> dict[str, object]:
    wall = time.perf_counter()
    lengths = run_lengths(case, runs, np.random.default_rng(seed)).astype(np.float64)
    arl, sd = float(lengths.mean()), float(lengths.std(ddof=1))
    row: dict[str, object] = {
        "case": case.name, "arl": "ARL1" if case.shift else "ARL0", "shift_sigma": case.shift,
        "phi": case.phi, "baseline_points": None if case.spec.mean is not None
        else case.spec.baseline_points, "runs": runs, "mean": round(arl, 2),
        "standard_error": round(sd / math.sqrt(runs), 2), "sd": round(sd, 1),
        "median": float(np.median(lengths)),
    }
    if not case.shift:
        row["vs_nominal"] = round(arl / NOMINAL[case.spec.kind] - 1, 3)
    row["seconds"] = round(time.perf_counter() - wall, 1)
    return row


def rate_cases() -> list[Case]:
    out = []
    for spec in (CUSUM, EWMA):
        fixed = replace(spec, mean=0.0, sigma=1.0)
        out += [Case(f"{spec.kind} fixed", fixed, 0.0, 0.0),
                Case(f"{spec.kind} learned n={spec.baseline_points}", spec, 0.0, 0.0),
                Case(f"{spec.kind} AR(1) 0.5 readings", replace(spec, autocorrelation="ignore"),
                     0.5, 0.0),
                Case(f"{spec.kind} AR(1) 0.5 residuals", spec, 0.5, 0.0),
                Case(f"{spec.kind} AR(1) 0.5 residuals n=2000", replace(spec, baseline_points=2000),
                     0.5, 0.0),
                Case(f"{spec.kind} AR(1) 0.5 residuals, configured", fixed, 0.5, 0.0)]
    return out


def measure_rate(case: Case, streams: int, length: int, seed: int) -> dict[str, object]:
    counts = false_alarm_counts(case, streams, length, np.random.default_rng(seed))
    per_10k = counts * 10_000 / length
    nominal = 10_000 / NOMINAL[case.spec.kind]
    return {"case": case.name, "phi": case.phi, "streams": streams, "readings": length,
            "false_alarms_per_10k": round(float(per_10k.mean()), 2),
            "standard_error": round(float(per_10k.std(ddof=1)) / math.sqrt(streams), 2),
            "nominal_per_10k": round(nominal, 2),
            "vs_nominal": round(float(per_10k.mean()) / nominal - 1, 3)}


def main(argv: list[str] | None = None, report: Callable[[str], None] = print) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=20261203)
    parser.add_argument("--points", type=int, nargs="*", default=[100, 250, 500],
                        help="learned baseline sizes compared with the default")
    parser.add_argument("--streams", type=int, default=200,
                        help="users (streams) in the long-run false alarm count")
    parser.add_argument("--length", type=int, default=20_000,
                        help="readings per stream after its baseline, in that count")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    rows = []
    points = tuple(sorted({*args.points, DEFAULT_BASELINE_POINTS}))
    for i, case in enumerate(cases(points)):
        row = measure(case, args.runs, args.seed + i)
        rows.append(row)
        versus = f"  ({row['vs_nominal']:+.1%} vs nominal)" if "vs_nominal" in row else ""
        report(f"{row['case']:<34} {row['arl']} {row['mean']:>8.1f} +- "
               f"{row['standard_error']:<6} sd {row['sd']:>7.1f}{versus}")
    rates = []
    for i, case in enumerate(rate_cases()):
        rate = measure_rate(case, args.streams, args.length, args.seed + 1000 + i)
        rates.append(rate)
        report(f"{rate['case']:<38} false alarms per 10,000 readings "
               f"{rate['false_alarms_per_10k']:>7.2f} +- {rate['standard_error']:<5} "
               f"({rate['vs_nominal']:+.1%} vs nominal {rate['nominal_per_10k']})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"seed": args.seed, "runs": args.runs,
                                    "nominal_arl0": NOMINAL, "results": rows,
                                    "long_run": rates}, indent=2) + "\n")
    report(f"written to {args.out}")


if __name__ == "__main__":
    main()
