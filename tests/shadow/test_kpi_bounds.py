"""Every ratio Ombre computes stays in [0, 1] by construction, over random timelines:
intervals with gaps, an open interval cut at the shadow's clock, planned stops,
shifts, runs of the gateway, and windows cut anywhere, with parts produced only while
running and never faster than the PRU. And a machine that is faster than its PRU is
reported as measured, with the reason."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from shadow.coverage import Coverage
from shadow.effectiveness import lay
from shadow.kpi import compute
from shadow.timeline import BUCKET_NS, NS_PER_S, Category, Count, Interval, OrderPlan, Window

S = NS_PER_S
MACHINES = ("m1", "m2")
ORDERS = {"A": OrderPlan(pru_s=30.0, planned_qty=100, planned_scrap_qty=3),
          "B": OrderPlan(pru_s=45.5, planned_qty=10)}
JOBS = ("A", "B", None)
RATIOS = ("availability", "effectiveness", "quality_ratio", "oee", "nee", "setup_rate",
          "scrap_ratio", "rework_ratio", "first_pass_yield", "utilisation_efficiency",
          "allocation_efficiency", "technical_efficiency", "production_process_ratio")
HOURS = 4 * 3600 * S


def seconds(low: int, high: int) -> st.SearchStrategy[int]:
    return st.integers(low, high).map(lambda n: n * S // 10)  # tenths of a second


@st.composite
def machine_day(draw: st.DrawFn, machine: str, clock: int) -> tuple[list[Interval], list[Count]]:
    """One machine's intervals from a random start, with gaps, up to the shadow's clock
    (the last one, the open interval, cut there); and the parts it counted: in each
    running interval of a job, one part per cycle of at least the PRU, counted in the
    minute it was finished, none after the clock."""
    intervals: list[Interval] = []
    parts: dict[tuple[int, str | None], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    cursor = draw(seconds(-7200, 20000)) * 10
    for _ in range(draw(st.integers(0, 8))):
        cursor += draw(st.sampled_from((0, 0, 0, 10 * S, 300 * S)))
        end = min(cursor + draw(seconds(10, 36000)), clock)
        if end <= cursor:
            break
        category = draw(st.sampled_from((*Category, None, Category.APT, Category.APT)))
        job = draw(st.sampled_from(JOBS))
        intervals.append(Interval(machine, cursor, end, category, draw(st.booleans()), job))
        if category is Category.APT and job is not None:
            pru = round(ORDERS[job].pru_s * S)
            done = cursor
            while True:
                done += pru + draw(st.sampled_from((0, 0, 1, S, 20 * S)))
                if done > end:
                    break
                counted = parts[done - done % BUCKET_NS, job]
                kind = draw(st.sampled_from((1, 1, 1, 2, 3)))
                counted[0] += 1
                counted[kind] += 1
        cursor = end
    counts = [Count(machine, bucket, job, *n) for (bucket, job), n in parts.items()]
    return intervals, counts


Plant = tuple[Window, list[Interval], list[Count], dict[str, Any]]


@st.composite
def plants(draw: st.DrawFn) -> Plant:
    """Two machines up to the shadow's clock, a window cut anywhere, and random shifts,
    planned stops, runs of the gateway, idle exclusion and job filter."""
    clock = draw(seconds(0, 150000)) * 10
    intervals: list[Interval] = []
    counts: list[Count] = []
    for machine in MACHINES:
        ivs, cs = draw(machine_day(machine, clock))
        intervals += ivs
        counts += cs
    windows = st.builds(lambda start, n: Window(start, start + n),
                        seconds(-10000, 150000).map(lambda n: n * 10), seconds(0, 30000))
    first = {iv.machine: iv.start_ns for iv in reversed(intervals)}
    options = {
        "shifts": draw(st.none() | st.lists(windows, max_size=3)),
        "planned_stops": draw(st.fixed_dictionaries(
            {}, optional={"m1": st.lists(windows, max_size=2), None: st.lists(windows,
                                                                              max_size=2)})),
        "coverage": draw(st.none() | st.lists(windows, max_size=3).map(
            lambda runs: Coverage(runs, first))),
        "exclude_idle": draw(st.booleans()),
        "job": draw(st.sampled_from(JOBS)),
    }
    return draw(windows), intervals, counts, options


@settings(deadline=None, max_examples=200)
@given(plant=plants())
def test_every_ratio_is_in_0_1_when_no_machine_is_faster_than_its_pru(plant: Plant) -> None:
    window, intervals, counts, options = plant
    result = compute(window, MACHINES, intervals, counts, ORDERS, **options)
    ratios = {name: result.kpis[name].value for name in RATIOS}
    ratios |= {"unclassified_share": result.unclassified_share.value,
               "coverage": result.coverage.value}
    assert {k: v for k, v in ratios.items() if v is not None and not 0 <= v <= 1} == {}
    assert result.quantities.overrun_s == 0
    effectiveness = result.kpis["effectiveness"]
    assert effectiveness.value is None or effectiveness.reason is None
    t = result.time
    assert t.pot_ns == t.pdot_ns + t.nodata_ns + t.pbt_ns
    assert t.pbt_ns == t.apt_ns + t.asut_ns + t.adet_ns + t.adot_ns * (not result.idle_excluded) \
        + t.uncl_ns
    assert min(t.named().values()) >= 0


def test_a_window_cutting_a_cycle_counts_only_the_planned_run_time_inside_it() -> None:
    """A 60 s cycle of PRU 60 s finished at 10:00:30 (counted in the 10:00 minute) ran
    from 09:59:30: a window from 10:00 holds half of it, so 30 s of 30 s running is an
    effectiveness of 1, not 2."""
    ten = 36000 * S
    intervals = [Interval("m1", ten - 3600 * S, ten + 30 * S, Category.APT, job="J")]
    counts = [Count("m1", ten, "J", 1, 1, 0, 0)]
    orders = {"J": OrderPlan(pru_s=60.0)}
    result = compute(Window(ten, ten + 30 * S), ["m1"], intervals, counts, orders)
    assert result.quantities.pq == 1
    assert result.kpis["effectiveness"].value == 1.0
    whole = compute(Window(ten - 3600 * S, ten + 30 * S), ["m1"], intervals, counts, orders)
    assert whole.quantities.pru_pq_s == 60.0


def test_faster_than_the_pru_is_reported_as_measured_with_the_reason() -> None:
    """Two parts of PRU 60 s in 60 s of running: effectiveness 2, not clipped, and the
    result says 60 s of planned run time found no running time."""
    intervals = [Interval("m1", 0, 60 * S, Category.APT, job="J")]
    counts = [Count("m1", 0, "J", 2, 2, 0, 0)]
    result = compute(Window(0, 60 * S), ["m1"], intervals, counts, {"J": OrderPlan(60.0)})
    effectiveness = result.kpis["effectiveness"]
    assert effectiveness.value == 2.0
    assert effectiveness.reason is not None
    assert "faster than its PRU" in effectiveness.reason
    assert result.quantities.overrun_s == 60.0
    assert result.to_dict()["quantities"]["overrun_s"] == 60.0


def test_planned_run_time_is_laid_as_late_as_it_can_before_each_deadline() -> None:
    laid = lay([(0, 100), (200, 300)], [(250, 80), (300, 60), (400, 200)])
    assert [(d.spans, d.overrun_ns) for d in laid] == [
        (((70, 100), (200, 250)), 0), (((60, 70), (250, 300)), 0), (((0, 60),), 140)]
