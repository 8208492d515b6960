"""ISO 22400 time elements of one machine over one window, from its state intervals.

Pure arithmetic on int64-nanosecond spans, exact to the ns. `shadow.kpi.compute` calls
`machine_time` once per machine and adds the results; nothing here keeps state."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import astuple, dataclass

from shadow.timeline import Category, Interval

Span = tuple[int, int]  # [start_ns, end_ns)

CLASSIFIED = (Category.APT, Category.ASUT, Category.ADET, Category.ADOT)


def normalise(spans: Iterable[Span]) -> list[Span]:
    """Sorted, disjoint spans covering the same time; touching spans are joined."""
    out: list[Span] = []
    for start, end in sorted(span for span in spans if span[0] < span[1]):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def intersect(a: Sequence[Span], b: Sequence[Span]) -> list[Span]:
    """Time in both; `a` and `b` are normalised."""
    out: list[Span] = []
    i = j = 0
    while i < len(a) and j < len(b):
        start, end = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if start < end:
            out.append((start, end))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def subtract(a: Sequence[Span], b: Sequence[Span]) -> list[Span]:
    """Time in `a` but not in `b`; both normalised."""
    out: list[Span] = []
    j = 0
    for start, end in a:
        cursor = start
        while j < len(b) and b[j][1] <= cursor:
            j += 1
        k = j
        while k < len(b) and b[k][0] < end:
            if b[k][0] > cursor:
                out.append((cursor, b[k][0]))
            cursor = max(cursor, b[k][1])
            k += 1
        if cursor < end:
            out.append((cursor, end))
    return out


def length(spans: Iterable[Span]) -> int:
    return sum(end - start for start, end in spans)


@dataclass(frozen=True, slots=True)
class TimeElements:
    """ISO 22400-2 time elements in ns, for one machine or summed over several."""

    pot_ns: int = 0
    pdot_ns: int = 0
    pbt_ns: int = 0
    apt_ns: int = 0
    asut_ns: int = 0
    adet_ns: int = 0
    adot_ns: int = 0
    uncl_ns: int = 0
    aoet_ns: int = 0
    nodata_ns: int = 0  # POT - PDOT with no data: out of PBT (shadow.coverage)

    @property
    def aupt_ns(self) -> int:
        return self.apt_ns + self.asut_ns

    @property
    def aubt_ns(self) -> int:
        return self.aupt_ns + self.adet_ns

    def named(self) -> dict[str, int]:
        """POT, PDOT, NODATA, PBT, APT, ASUT, ADET, ADOT, UNCL, AUPT, AUBT, AOET in ns."""
        names = ("pot", "pdot", "nodata", "pbt", "apt", "asut", "adet", "adot", "uncl", "aupt",
                 "aubt")
        return {n.upper(): getattr(self, f"{n}_ns") for n in (*names, "aoet")}

    def __add__(self, other: TimeElements) -> TimeElements:
        return TimeElements(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))


@dataclass(frozen=True, slots=True)
class MachineTime:
    elements: TimeElements
    apt_by_job_ns: Mapping[str | None, int]  # every job seen in the window; None if it ran
    ttr_ns: tuple[int, ...]  # per failure run, its time inside PBT, in time order
    pbt: Sequence[Span]  # normalised


def check_disjoint(intervals: Sequence[Interval]) -> list[Interval]:
    """One machine's non-empty intervals sorted by start; ValueError if any is reversed or
    two overlap."""
    for iv in intervals:
        if iv.end_ns < iv.start_ns:
            raise ValueError(f"interval ends before it starts: {iv}")
    ordered = sorted(
        (iv for iv in intervals if iv.start_ns < iv.end_ns), key=lambda iv: iv.start_ns
    )
    for prev, cur in itertools.pairwise(ordered):
        if cur.start_ns < prev.end_ns:
            raise ValueError(f"overlapping intervals on {cur.machine!r}: {prev} and {cur}")
    return ordered


def job_span(intervals: Iterable[Interval], window: Span) -> Span | None:
    """First start to last end of the intervals with a job, clipped to `window`."""
    clipped = [
        (max(iv.start_ns, window[0]), min(iv.end_ns, window[1]))
        for iv in intervals
        if iv.job is not None
    ]
    clipped = [span for span in clipped if span[0] < span[1]]
    if not clipped:
        return None
    return min(s for s, _ in clipped), max(e for _, e in clipped)


def failure_ttr(intervals: Iterable[Interval], pbt: Sequence[Span]) -> tuple[int, ...]:
    """Per failure event, its time inside `pbt` (normalised). An event is a maximal run of
    touching intervals marked as failures, ADET or (a breakdown that went on into a
    planned stop) PDOT; one wholly outside PBT is no event."""
    runs = normalise(
        (iv.start_ns, iv.end_ns) for iv in intervals
        if iv.failure and iv.category in (Category.ADET, Category.PDOT)
    )
    pieces = intersect(runs, pbt)  # each piece lies inside exactly one run
    ttr: list[int] = []
    k = 0
    for _, end in runs:
        inside = 0
        while k < len(pieces) and pieces[k][0] < end:
            inside += pieces[k][1] - pieces[k][0]
            k += 1
        if inside:
            ttr.append(inside)
    return tuple(ttr)


def machine_time(
    intervals: Sequence[Interval],
    window: Span,
    shifts: Sequence[Span] | None,
    stops: Sequence[Span],
    covered: Sequence[Span] | None = None,
) -> MachineTime:
    """Time elements of one machine's sorted, disjoint intervals. POT is `window` inside
    `shifts` (all of it if None); time in POT and in a stop, or in a PDOT interval, is
    PDOT; of the rest, time outside `covered` (normalised; None: all of it) is NODATA and
    the remainder PBT, split by category; PBT time with no category is UNCL."""
    pot = [window] if shifts is None else intersect([window], normalise(shifts))
    in_stops = intersect(pot, normalise(stops))
    planned = subtract(pot, in_stops)

    groups: dict[tuple[Category | None, str | None], list[Span]] = defaultdict(list)
    for iv in intervals:
        groups[iv.category, iv.job].append((iv.start_ns, iv.end_ns))

    def of(category: Category, jobs: Iterable[str | None] | None = None) -> list[Span]:
        return normalise(
            span
            for (cat, job), spans in groups.items()
            if cat == category and (jobs is None or job in jobs)
            for span in spans
        )

    busy = subtract(planned, of(Category.PDOT))
    pbt = busy if covered is None else intersect(busy, covered)
    by_category = {cat: length(intersect(of(cat), pbt)) for cat in CLASSIFIED}
    seen = {iv.job for iv in intervals if iv.start_ns < window[1] and window[0] < iv.end_ns}
    apt_by_job: dict[str | None, int] = {
        job: length(intersect(of(Category.APT, (job,)), pbt)) for job in seen if job is not None
    }
    apt_without_job = length(intersect(of(Category.APT, (None,)), pbt))
    if apt_without_job:
        apt_by_job[None] = apt_without_job

    span = job_span(intervals, window)
    pbt_ns = length(pbt)
    elements = TimeElements(
        pot_ns=length(pot),
        pdot_ns=length(pot) - length(busy),
        nodata_ns=length(busy) - pbt_ns,
        pbt_ns=pbt_ns,
        apt_ns=by_category[Category.APT],
        asut_ns=by_category[Category.ASUT],
        adet_ns=by_category[Category.ADET],
        adot_ns=by_category[Category.ADOT],
        uncl_ns=pbt_ns - sum(by_category.values()),
        aoet_ns=0 if span is None else span[1] - span[0],
    )
    return MachineTime(elements, apt_by_job, failure_ttr(intervals, pbt), pbt)
