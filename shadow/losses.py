"""Where a window's minutes were lost, and why: every lost minute of every machine laid
on the intervals (or the minutes of bad parts) behind it, with its cause, its ISO 22400
loss family and its class among the six big losses (docs/kpi.md, "Losses and their
causes").

The pieces of one machine add up to its KPIs' loss view (`shadow.report.kpi`):
availability PBT - APT, performance APT - sum(PRU_j * PQ_j), quality
sum(PRU_j * (PQ_j - GQ_j)). The API's Pareto and the shift report both call `losses`;
it reads the tables and never the caller's clock."""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from shadow.calendar import from_ns, shifts, to_ns
from shadow.config import ShadowedConfig, ShadowMachineConfig
from shadow.kpi import KpiResult
from shadow.report import kpi
from shadow.store import ShadowStore
from shadow.time_elements import check_disjoint, intersect, machine_time, normalise, subtract
from shadow.timeline import BUCKET_NS, NS_PER_S, Category, Count, Interval, Window

STARTUP_S = 600  # bad parts counted this long after a setup ends are startup rejects


class Family(enum.StrEnum):
    """The ISO 22400 loss a lost minute belongs to (PBT = fully productive time + all)."""

    AVAILABILITY = "availability"  # PBT - APT
    PERFORMANCE = "performance"  # APT - sum(PRU_j * PQ_j)
    QUALITY = "quality"  # sum(PRU_j * (PQ_j - GQ_j))


class BigLoss(enum.StrEnum):
    """The six big losses of TPM, and the time the machine said nothing about."""

    BREAKDOWNS = "breakdowns"  # ADET whose reason (or state) counts as a failure
    SETUP = "setup_adjustments"  # ASUT
    IDLING = "idling_minor_stops"  # ADET that is no failure, ADOT
    SPEED = "reduced_speed"  # the performance loss
    DEFECTS = "process_defects"  # the quality loss of parts made in steady running
    STARTUP = "startup_rejects"  # the quality loss of parts made just after a setup
    UNKNOWN = "unknown_state"  # PBT with no category: the machine said nothing


class Cause(enum.StrEnum):
    """What a bar of the Pareto by reason stands for."""

    REASON = "reason"  # a stop or setup with a reason code (LossPiece.reason)
    UNEXPLAINED = "unexplained"  # downtime (ADET, ADOT, no category) nobody explained yet
    SETUP = "setup"  # a setup with no reason code
    SPEED = "speed"  # running slower than the PRU
    DEFECTS = "defects"  # scrap and rework
    STARTUP = "startup_rejects"  # scrap and rework just after a setup


# (category, failure) of downtime -> its big loss; every one is an availability loss.
DOWNTIME: Mapping[tuple[Category | None, bool], BigLoss] = {
    (Category.ASUT, False): BigLoss.SETUP, (Category.ASUT, True): BigLoss.SETUP,
    (Category.ADET, True): BigLoss.BREAKDOWNS, (Category.ADET, False): BigLoss.IDLING,
    (Category.ADOT, False): BigLoss.IDLING, (Category.ADOT, True): BigLoss.IDLING,
    (None, False): BigLoss.UNKNOWN, (None, True): BigLoss.UNKNOWN,
}


@dataclass(frozen=True, slots=True)
class LossPiece:
    """One interval (or one minute of bad parts) behind a bar, and the seconds it lost:
    a stop's time inside PBT; a running interval's share of the performance loss (by its
    length); a minute's share of the quality loss (by PRU * bad parts). A machine that
    ran faster than its PRU has a negative performance loss: it is kept, not clipped."""

    machine: str
    start_ns: int
    end_ns: int
    lost_s: float
    cause: Cause
    family: Family
    big_loss: BigLoss
    category: Category | None  # of the interval; APT for a minute of bad parts
    failure: bool = False
    reason: str | None = None  # the reason code
    reason_raw: str | None = None  # what the machine gave as its stop reason
    job: str | None = None
    bad_parts: int = 0  # scrap + rework counted in that minute (quality pieces)

    def to_dict(self) -> dict[str, Any]:
        return {"machine": self.machine, "start_ns": self.start_ns, "end_ns": self.end_ns,
                "lost_s": self.lost_s, "cause": self.cause, "family": self.family,
                "big_loss": self.big_loss, "category": self.category,
                "failure": self.failure, "reason": self.reason,
                "reason_raw": self.reason_raw, "job": self.job, "bad_parts": self.bad_parts}


@dataclass(frozen=True, slots=True)
class LossBar:
    """One bar of a Pareto: a cause (with its reason code) or a machine, its lost
    seconds split by family and big loss, and the pieces behind it in time order."""

    cause: Cause | None  # None on the bars by machine
    key: str  # the reason code, the cause's name, or the machine id
    lost_s: float
    by_family: Mapping[Family, float]
    by_big_loss: Mapping[BigLoss, float]
    pieces: tuple[LossPiece, ...]

    def to_dict(self, max_pieces: int) -> dict[str, Any]:
        return {"cause": self.cause, "key": self.key, "lost_s": self.lost_s,
                "by_family": dict(self.by_family), "by_big_loss": dict(self.by_big_loss),
                "pieces_total": len(self.pieces),
                "pieces": [p.to_dict() for p in self.pieces[:max_pieces]]}


@dataclass(frozen=True, slots=True)
class LossReport:
    """The losses of `machines` over `window`. `by_reason` and `by_machine` are sorted
    by lost time, largest first. `unpriced` names the machines whose performance and
    quality losses are unknown (parts with no PRU), with the reason; their downtime is
    still in. `kpis` is each machine's KpiResult the pieces add up to."""

    window: Window
    machines: tuple[str, ...]
    pieces: tuple[LossPiece, ...]  # by machine, then start
    by_reason: tuple[LossBar, ...]
    by_machine: tuple[LossBar, ...]
    by_family: Mapping[Family, float]
    by_big_loss: Mapping[BigLoss, float]
    lost_s: float
    unexplained_s: float
    unpriced: Mapping[str, str]
    reason_texts: Mapping[str, str]  # code -> text, of the codes in the bars
    kpis: Mapping[str, KpiResult]

    def to_dict(self, max_pieces: int = 1000) -> dict[str, Any]:
        """Plain JSON-able data, times in seconds; each bar lists at most `max_pieces`
        pieces (and says how many it has)."""
        return {"window": {"start_ns": self.window.start_ns, "end_ns": self.window.end_ns},
                "machines": list(self.machines), "lost_s": self.lost_s,
                "unexplained_s": self.unexplained_s,
                "by_family": dict(self.by_family), "by_big_loss": dict(self.by_big_loss),
                "by_reason": [b.to_dict(max_pieces) for b in self.by_reason],
                "by_machine": [b.to_dict(max_pieces) for b in self.by_machine],
                "unpriced": dict(self.unpriced), "reason_texts": dict(self.reason_texts),
                "kpi_losses_s": {m: _kpi_lost_s(r) for m, r in self.kpis.items()}}


def _kpi_lost_s(result: KpiResult) -> float | None:
    """PBT minus the fully productive time, as the KPIs say (None without every PRU)."""
    loss = result.losses
    if loss.performance_s is None or loss.quality_s is None:
        return None
    return loss.availability_s + loss.performance_s + loss.quality_s


def _downtime(machine: str, ordered: Sequence[Interval], pbt: Sequence[tuple[int, int]],
              idle_excluded: bool) -> list[LossPiece]:
    """The availability pieces: each non-APT interval's time in PBT, and PBT no interval
    covers (no category, unexplained)."""
    pieces = []
    for iv in ordered:
        if iv.category in (Category.APT, Category.PDOT) or (
                idle_excluded and iv.category is Category.ADOT):
            continue
        if iv.reason is not None:
            cause = Cause.REASON
        else:
            cause = Cause.SETUP if iv.category is Category.ASUT else Cause.UNEXPLAINED
        for start, end in intersect([(iv.start_ns, iv.end_ns)], pbt):
            pieces.append(LossPiece(machine, start, end, (end - start) / NS_PER_S, cause,
                                    Family.AVAILABILITY, DOWNTIME[iv.category, iv.failure],
                                    iv.category, iv.failure, iv.reason, iv.reason_raw,
                                    iv.job))
    covered = normalise((iv.start_ns, iv.end_ns) for iv in ordered)
    for start, end in subtract(list(pbt), covered):
        pieces.append(LossPiece(machine, start, end, (end - start) / NS_PER_S,
                                Cause.UNEXPLAINED, Family.AVAILABILITY, BigLoss.UNKNOWN, None))
    return pieces


def _speed(machine: str, ordered: Sequence[Interval], pbt: Sequence[tuple[int, int]],
           lost_s: float) -> list[LossPiece]:
    """The performance loss shared among the running intervals by their time in PBT."""
    running = [(iv, span) for iv in ordered if iv.category is Category.APT
               for span in intersect([(iv.start_ns, iv.end_ns)], pbt)]
    total = sum(end - start for _, (start, end) in running)
    return [LossPiece(machine, start, end, lost_s * (end - start) / total, Cause.SPEED,
                      Family.PERFORMANCE, BigLoss.SPEED, Category.APT, job=iv.job)
            for iv, (start, end) in running] if total and lost_s else []


def _quality(machine: str, ordered: Sequence[Interval], counts: Iterable[Count],
             prus: Mapping[str | None, float], window: Window, *,
             lost_s: float) -> list[LossPiece]:
    """The quality loss shared among the minutes with bad parts in `window` by PRU *
    bad parts; a minute that starts within STARTUP_S of a setup's end holds startup
    rejects."""
    setups = [iv.end_ns for iv in ordered if iv.category is Category.ASUT]
    bad = [(c, (c.pq - c.gq) * prus[c.job]) for c in counts
           if c.machine == machine and c.job in prus and c.pq > c.gq
           and window.start_ns <= c.bucket_ns < window.end_ns]
    weight = sum(w for _, w in bad)
    pieces = []
    for c, w in sorted(bad, key=lambda cw: cw[0].bucket_ns) if weight and lost_s else []:
        startup = any(0 <= c.bucket_ns - end < STARTUP_S * NS_PER_S for end in setups)
        pieces.append(LossPiece(
            machine, c.bucket_ns, c.bucket_ns + BUCKET_NS, lost_s * w / weight,
            Cause.STARTUP if startup else Cause.DEFECTS, Family.QUALITY,
            BigLoss.STARTUP if startup else BigLoss.DEFECTS, Category.APT, job=c.job,
            bad_parts=c.pq - c.gq))
    return pieces


def _bar(cause: Cause | None, key: str, pieces: Sequence[LossPiece]) -> LossBar:
    family: dict[Family, float] = defaultdict(float)
    big: dict[BigLoss, float] = defaultdict(float)
    for p in pieces:
        family[p.family] += p.lost_s
        big[p.big_loss] += p.lost_s
    return LossBar(cause, key, sum(p.lost_s for p in pieces), dict(family), dict(big),
                   tuple(sorted(pieces, key=lambda p: (p.start_ns, p.machine))))


def _pareto(bars: Iterable[LossBar]) -> tuple[LossBar, ...]:
    return tuple(sorted(bars, key=lambda b: (-b.lost_s, b.key)))


def losses(store: ShadowStore, config: ShadowedConfig, window: Window,
           machines: Sequence[ShadowMachineConfig]) -> LossReport:
    """The lost time of `machines` over `window`, by cause and by machine, with the
    pieces behind each. Each machine's KPIs come from `shadow.report.kpi`, so its pieces
    add up to the loss view those KPIs report (to float rounding)."""
    ids = tuple(dict.fromkeys(m.id for m in machines))
    results = {m.id: kpi(store, config, window, [m]) for m in machines}
    timeline = store.timeline(window, list(ids))
    shift_spans = None if timeline.shifts is None else [
        (w.start_ns, w.end_ns) for w in timeline.shifts]
    pieces: list[LossPiece] = []
    unpriced: dict[str, str] = {}
    for machine in ids:
        result = results[machine]
        ordered = check_disjoint([iv for iv in timeline.intervals if iv.machine == machine])
        stops = [(w.start_ns, w.end_ns) for key in (machine, None)
                 for w in timeline.planned_stops.get(key, ())]
        pbt = machine_time(ordered, (window.start_ns, window.end_ns), shift_spans, stops,
                           timeline.coverage.covered(machine)).pbt
        pieces += _downtime(machine, ordered, pbt, result.idle_excluded)
        loss = result.losses
        if loss.performance_s is None or loss.quality_s is None:
            unpriced[machine] = result.kpis["effectiveness"].reason or "no PRU"
            continue
        prus: dict[str | None, float] = {j.job: j.pru_s for j in result.jobs
                                         if j.job is not None and j.pru_s}
        pieces += _speed(machine, ordered, pbt, loss.performance_s)
        pieces += _quality(machine, ordered, timeline.counts, prus, window,
                           lost_s=loss.quality_s)
    rank = {machine: i for i, machine in enumerate(ids)}
    pieces.sort(key=lambda p: (rank[p.machine], p.start_ns))
    grouped: dict[tuple[Cause, str], list[LossPiece]] = defaultdict(list)
    for p in pieces:
        grouped[p.cause, p.reason if p.cause is Cause.REASON and p.reason else p.cause].append(p)
    by_reason = _pareto(_bar(cause, key, found) for (cause, key), found in grouped.items())
    by_machine = _pareto(_bar(None, m, [p for p in pieces if p.machine == m]) for m in ids)
    whole = _bar(None, "all", pieces)
    codes = {p.reason for p in pieces if p.reason}
    texts = {r["code"]: r["text"] for r in store.reason_codes() if r["code"] in codes}
    return LossReport(window, ids, tuple(pieces), by_reason, by_machine, whole.by_family,
                      whole.by_big_loss, whole.lost_s,
                      sum(p.lost_s for p in pieces if p.cause is Cause.UNEXPLAINED),
                      unpriced, texts, results)


WindowKind = Literal["shift", "day", "week"]


def loss_window(config: ShadowedConfig, kind: WindowKind, at_ns: int) -> Window:
    """The shift, local day or local week (Monday to Monday) holding `at_ns`; a shift
    window raises ValueError naming the time when no shift of the calendar holds it."""
    calendar = config.shadow.calendar
    if kind == "shift":
        found = [s.window for s in shifts(calendar, Window(at_ns, at_ns + 1))
                 if s.window.start_ns <= at_ns < s.window.end_ns]
        if not found:
            raise ValueError(f"no shift of the calendar holds {from_ns(at_ns).isoformat()}")
        return found[0]
    zone = ZoneInfo(calendar.timezone)
    local = from_ns(at_ns).astimezone(zone).date()
    first, length = (local, 1) if kind == "day" else (local - timedelta(days=local.weekday()), 7)
    return Window(to_ns(datetime.combine(first, time(0), zone)),
                  to_ns(datetime.combine(first + timedelta(days=length), time(0), zone)))
