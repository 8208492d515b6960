"""ISO 22400-2 KPIs of one machine or a group over one window, from the shadow's intervals,
counts, order plans and coverage (docs/kpi.md has every definition). Pure: everything
that shows KPIs gets them from `shadow.report.kpi`, which calls `compute`.

Every produced part counts as inspected (IP = PQ) and only good parts as good at first
pass (GP = GQ): a reworked part is not good at first pass. A ratio whose denominator is
zero is null with a reason naming it, never 0 or 1. Effectiveness counts the planned run
time of the parts laid inside the window's PBT (shadow.effectiveness); it is never
clipped: planned run time that found no running time stays in it, with a reason."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, cast

from shadow.coverage import Coverage
from shadow.effectiveness import lay
from shadow.time_elements import (
    MachineTime,
    Span,
    TimeElements,
    check_disjoint,
    intersect,
    job_span,
    length,
    normalise,
)
from shadow.time_elements import machine_time as _machine_time
from shadow.timeline import BUCKET_NS, NS_PER_S, Category, Count, Interval, OrderPlan, Window

NS_PER_MIN = 60 * NS_PER_S
# Planned stops by machine; the key None applies to every machine. A Mapping is invariant
# in its key, so a plain dict[str, ...] is accepted too.
PlannedStops = Mapping[str | None, Sequence[Window]] | Mapping[str, Sequence[Window]]


@dataclass(frozen=True, slots=True)
class Ratio:
    value: float | None
    reason: str | None = None  # why value is None


def ratio(num: float, den: float, den_name: str) -> Ratio:
    return Ratio(num / den) if den else Ratio(None, f"{den_name} is 0")


@dataclass(frozen=True, slots=True)
class Kpi:
    """num / den over the basis elements (times in minutes), times earlier KPIs' values."""

    name: str
    num: str
    den: str
    unit: str = "1"
    factors: tuple[str, ...] = ()
    needs_pru: bool = False  # null while some parts have no PRU

    @property
    def formula(self) -> str:
        return " * ".join((f"{self.num} / {self.den}", *self.factors))


KPIS: tuple[Kpi, ...] = (
    Kpi("availability", "APT", "PBT"),
    Kpi("effectiveness", "sum(PRU_j*PQ_j)", "APT", needs_pru=True),
    Kpi("quality_ratio", "GQ", "PQ"),
    Kpi("oee", "APT", "PBT", factors=("effectiveness", "quality_ratio")),
    Kpi("nee", "AUPT", "PBT", factors=("effectiveness", "quality_ratio")),
    Kpi("throughput_rate", "PQ", "AOET", unit="parts/min"),
    Kpi("setup_rate", "ASUT", "AUPT"),
    Kpi("scrap_ratio", "SQ", "PQ"),
    Kpi("rework_ratio", "RQ", "PQ"),
    Kpi("actual_to_planned_scrap_ratio", "SQ", "PSQ"),
    Kpi("first_pass_yield", "GP", "IP"),
    Kpi("utilisation_efficiency", "APT", "AUBT"),
    Kpi("allocation_efficiency", "AUBT", "PBT"),
    Kpi("technical_efficiency", "APT", "APT + ADET"),
    Kpi("production_process_ratio", "APT of jobs", "AOET"),
    Kpi("mttr", "sum(TTR)", "FE", unit="min"),
    Kpi("mtbf", "sum(TBF)", "FE + 1", unit="min"),  # sum(TBF) = AUPT
)


@dataclass(frozen=True, slots=True)
class JobKpi:
    job: str | None
    pru_s: float | None  # None: no order plan for this job (or no job)
    pq: int = 0
    gq: int = 0
    sq: int = 0
    rq: int = 0
    apt_ns: int = 0


@dataclass(frozen=True, slots=True)
class Quantities:
    pq: int
    gq: int
    sq: int
    rq: int
    psq: float  # sum over jobs of planned_scrap_qty * PQ_j / planned_qty
    pq_without_pru: int  # parts of jobs with no order plan, or with no job
    pru_pq_ns: int  # sum of PRU_j * PQ_j laid inside PBT, plus the overrun
    pru_gq_s: float  # the good parts' share of it: sum of pru_pq_j * GQ_j / PQ_j
    overrun_s: float  # PRU * PQ that found no running time before it was counted
    ttr_ns: tuple[int, ...]  # time to restore of each failure event (inside PBT)
    tbf_sum_ns: int  # = AUPT

    @property
    def pru_pq_s(self) -> float:
        return self.pru_pq_ns / NS_PER_S

    @property
    def ip(self) -> int:
        return self.pq

    @property
    def gp(self) -> int:
        return self.gq

    @property
    def fe(self) -> int:
        return len(self.ttr_ns)

    @property
    def ttr_sum_ns(self) -> int:
        return sum(self.ttr_ns)

    def named(self) -> dict[str, float]:
        """PQ, GQ, SQ, RQ, PSQ, IP, GP, FE."""
        names = ("pq", "gq", "sq", "rq", "psq", "ip", "gp", "fe")
        return {name.upper(): getattr(self, name) for name in names}


@dataclass(frozen=True, slots=True)
class Losses:
    """The loss view in seconds; the PRU-based ones are None while some parts lack a PRU."""

    availability_s: float  # PBT - APT
    performance_s: float | None  # APT - sum(PRU_j * PQ_j)
    quality_s: float | None  # sum(PRU_j * (PQ_j - GQ_j))
    fully_productive_s: float | None  # sum(PRU_j * GQ_j)


def _s(ns: int) -> float:
    return ns / NS_PER_S


@dataclass(frozen=True, slots=True)
class KpiResult:
    window: Window  # with `job`: the job's span inside the window asked for
    machines: tuple[str, ...]
    job: str | None
    time: TimeElements  # ns, summed over machines; idle_excluded: ADOT is out of POT, PBT
    quantities: Quantities
    jobs: tuple[JobKpi, ...]  # sorted by job key, None last
    kpis: Mapping[str, Ratio]  # in the order of KPIS
    losses: Losses
    unclassified_share: Ratio  # UNCL / PBT: the gateway ran, the machine said nothing
    coverage: Ratio  # PBT / (POT - PDOT): the planned busy time that has data
    idle_excluded: bool

    def time_s(self) -> dict[str, float]:
        """POT, PDOT, NODATA, PBT, APT, ASUT, ADET, ADOT, UNCL, AUPT, AUBT, AOET in
        seconds."""
        return {name: _s(ns) for name, ns in self.time.named().items()}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data; times in seconds."""
        q, kpis = self.quantities, {kpi.name: kpi for kpi in KPIS}
        return {
            "window": {"start_ns": self.window.start_ns, "end_ns": self.window.end_ns},
            "machines": list(self.machines),
            "job": self.job,
            "idle_excluded": self.idle_excluded,
            "time_s": self.time_s(),
            "quantities": {
                **q.named(),
                "TTR_s": [_s(ns) for ns in q.ttr_ns],
                "TTR_sum_s": _s(q.ttr_sum_ns),
                "TBF_sum_s": _s(q.tbf_sum_ns),
                "pq_without_pru": q.pq_without_pru,
                "PRU_PQ_s": q.pru_pq_s,
                "PRU_GQ_s": q.pru_gq_s,
                "overrun_s": q.overrun_s,
            },
            "jobs": [
                {
                    "job": j.job,
                    "pru_s": j.pru_s,
                    **{k.upper(): getattr(j, k) for k in ("pq", "gq", "sq", "rq")},
                    "APT_s": _s(j.apt_ns),
                }
                for j in self.jobs
            ],
            "kpis": {
                name: asdict(r) | {"unit": kpis[name].unit, "formula": kpis[name].formula}
                for name, r in self.kpis.items()
            },
            "losses": asdict(self.losses),
            "unclassified_share": asdict(self.unclassified_share),
            "coverage": asdict(self.coverage) | {"no_data_s": _s(self.time.nodata_ns),
                                                 "unknown_s": _s(self.time.uncl_ns)},
        }


def _kpis(t: TimeElements, q: Quantities, jobs: Sequence[JobKpi]) -> dict[str, Ratio]:
    mins = {name: ns / NS_PER_MIN for name, ns in t.named().items()}
    basis = mins | {"APT + ADET": mins["APT"] + mins["ADET"],
                    "sum(PRU_j*PQ_j)": q.pru_pq_ns / NS_PER_MIN,
                    "APT of jobs": sum(j.apt_ns for j in jobs if j.job is not None) / NS_PER_MIN}
    basis |= q.named() | {"FE + 1": q.fe + 1, "sum(TTR)": q.ttr_sum_ns / NS_PER_MIN}
    basis |= {"sum(TBF)": q.tbf_sum_ns / NS_PER_MIN}
    out: dict[str, Ratio] = {}
    for kpi in KPIS:
        r = ratio(basis[kpi.num], basis[kpi.den], kpi.den)
        if kpi.needs_pru and q.pq_without_pru:
            r = Ratio(None, f"{q.pq_without_pru} parts have no PRU (no order plan or no job)")
        elif kpi.needs_pru and q.overrun_s and r.value is not None:
            r = Ratio(r.value, f"{q.overrun_s:g} s of PRU * PQ found no running time before "
                               "the minute the parts were counted in: the machine ran faster "
                               "than its PRU (is the PRU too long?) or counted parts while "
                               "not running")
        for factor in (out[name] for name in kpi.factors):
            if r.value is not None:
                r = factor if factor.value is None else Ratio(r.value * factor.value)
        out[kpi.name] = r
    return out


def _jobs(
    results: Sequence[MachineTime], counts: Iterable[Count], orders: Mapping[str, OrderPlan]
) -> tuple[JobKpi, ...]:
    tally: dict[str | None, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])  # JobKpi order
    for r in results:
        for key, apt_ns in r.apt_by_job_ns.items():
            tally[key][4] += apt_ns
    for c in counts:
        for i, n in enumerate((c.pq, c.gq, c.sq, c.rq)):
            tally[c.job][i] += n
    return tuple(
        JobKpi(key, orders[key].pru_s if key is not None and key in orders else None, *x)
        for key, x in sorted(tally.items(), key=lambda kv: (kv[0] is None, kv[0] or ""))
    )


def _laid(
    machines: Mapping[str, tuple[Sequence[Interval], MachineTime]],
    counts: Sequence[Count],
    orders: Mapping[str, OrderPlan],
    window: Window,
) -> tuple[dict[str, int], int]:
    """Per job with a PRU, the planned run time of the parts counted in `window` that
    lies in its PBT, plus what found no running time (shadow.effectiveness); and that
    overrun alone. `counts` may reach back before the window: the job's earlier parts
    take their running time first."""
    laid: dict[str, int] = defaultdict(int)
    overrun = 0
    for machine, (intervals, result) in machines.items():
        for job in sorted({c.job for c in counts if c.machine == machine
                           if c.job is not None and c.job in orders}):
            running = normalise((iv.start_ns, iv.end_ns) for iv in intervals
                                if iv.category is Category.APT and iv.job == job)
            mine = sorted((c for c in counts if c.machine == machine and c.job == job
                           and c.pq > 0), key=lambda c: c.bucket_ns)
            pru_ns = round(orders[job].pru_s * NS_PER_S)
            inside: list[Span] = []
            for c, done in zip(mine, lay(running, [(c.bucket_ns + BUCKET_NS, pru_ns * c.pq)
                                                   for c in mine]), strict=True):
                if window.start_ns <= c.bucket_ns < window.end_ns:
                    inside += done.spans
                    laid[job] += done.overrun_ns
                    overrun += done.overrun_ns
            laid[job] += length(intersect(normalise(inside), result.pbt))
    return laid, overrun


def _quantities(
    jobs: Sequence[JobKpi], orders: Mapping[str, OrderPlan], ttr_ns: tuple[int, ...],
    aupt_ns: int, laid: tuple[Mapping[str, int], int],
) -> Quantities:
    plans = [(j, j.job, orders[j.job]) for j in jobs if j.job is not None and j.job in orders]
    by_job, overrun = laid
    return Quantities(
        pq=sum(j.pq for j in jobs),
        gq=sum(j.gq for j in jobs),
        sq=sum(j.sq for j in jobs),
        rq=sum(j.rq for j in jobs),
        psq=sum(p.planned_scrap_qty * j.pq / p.planned_qty for j, _, p in plans if p.planned_qty),
        pq_without_pru=sum(j.pq for j in jobs if j.pru_s is None),
        pru_pq_ns=sum(by_job.get(key, 0) for _, key, _ in plans),
        pru_gq_s=sum(by_job.get(key, 0) * j.gq / j.pq for j, key, _ in plans if j.pq) / NS_PER_S,
        overrun_s=overrun / NS_PER_S,
        ttr_ns=ttr_ns,
        tbf_sum_ns=aupt_ns,
    )


def compute(
    window: Window,
    machines: Sequence[str],
    intervals: Iterable[Interval],
    counts: Iterable[Count],
    orders: Mapping[str, OrderPlan],
    *,
    shifts: Sequence[Window] | None = None,
    planned_stops: PlannedStops | None = None,
    exclude_idle: bool = False,
    job: str | None = None,
    coverage: Coverage | None = None,
) -> KpiResult:
    """KPIs of `machines` (time summed, POT once per machine) over `window`. With `job`:
    only that job's intervals and counts, each machine's window cut to the job's span.
    Without `coverage`, all time has data. Intervals and counts may reach outside the
    window (the parts' planned run time is laid onto running time before the window
    too). ValueError if one machine's intervals overlap."""
    counts = list(counts)
    names = tuple(dict.fromkeys(machines))
    by_machine: dict[str, list[Interval]] = {m: [] for m in names}
    for iv in intervals:
        if iv.machine in by_machine and (job is None or iv.job == job):
            by_machine[iv.machine].append(iv)
    stops = cast(Mapping[str | None, Sequence[Window]], planned_stops or {})
    shift_spans = None if shifts is None else [(w.start_ns, w.end_ns) for w in shifts]
    whole: Span = (window.start_ns, window.end_ns)
    timed: dict[str, tuple[Sequence[Interval], MachineTime]] = {}
    spans: list[Span] = []
    for machine in names:
        ordered = check_disjoint(by_machine[machine])
        span = whole if job is None else job_span(ordered, whole)
        if span is not None:
            spans.append(span)
            own = [*stops.get(machine, ()), *stops.get(None, ())]
            stop_spans = [(w.start_ns, w.end_ns) for w in own]
            covered = None if coverage is None else coverage.covered(machine)
            timed[machine] = (ordered, _machine_time(ordered, span, shift_spans, stop_spans,
                                                     covered))
    results = [r for _, r in timed.values()]
    t = sum((r.elements for r in results), TimeElements())
    if exclude_idle:  # ADOT stays reported, but out of POT and PBT
        t = replace(t, pot_ns=t.pot_ns - t.adot_ns, pbt_ns=t.pbt_ns - t.adot_ns)
    wanted = [
        c
        for c in counts
        if c.machine in by_machine and window.start_ns <= c.bucket_ns < window.end_ns
        if job is None or c.job == job
    ]
    jobs = _jobs(results, wanted, orders)
    mine = [c for c in counts if job is None or c.job == job]
    q = _quantities(jobs, orders, tuple(ns for r in results for ns in r.ttr_ns), t.aupt_ns,
                    _laid(timed, mine, orders, window))
    known = not q.pq_without_pru
    losses = Losses(
        availability_s=_s(t.pbt_ns - t.apt_ns),
        performance_s=_s(t.apt_ns) - q.pru_pq_s if known else None,
        quality_s=q.pru_pq_s - q.pru_gq_s if known else None,
        fully_productive_s=q.pru_gq_s if known else None,
    )
    if job is not None:  # the job's span: its first start to its last end, on any machine
        start = min((s for s, _ in spans), default=window.start_ns)
        window = Window(start, max((e for _, e in spans), default=start))
    return KpiResult(
        window=window,
        machines=names,
        job=job,
        time=t,
        quantities=q,
        jobs=jobs,
        kpis=_kpis(t, q, jobs),
        losses=losses,
        unclassified_share=ratio(t.uncl_ns, t.pbt_ns, "PBT"),
        coverage=ratio(t.pbt_ns, t.pbt_ns + t.nodata_ns, "POT - PDOT"),
        idle_excluded=exclude_idle,
    )
