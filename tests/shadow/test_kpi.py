"""shadow.kpi against the worked example of docs/kpi.md, edge cases at
window and planned-stop edges, and properties of the time model over random timelines."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shadow.kpi import KPIS, KpiResult, compute
from shadow.timeline import NS_PER_S, Category, Count, Interval, OrderPlan, Window

MIN = 60 * NS_PER_S
DAY = int(datetime(2024, 3, 4, tzinfo=UTC).timestamp()) * NS_PER_S
M = "press-3"


def at(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return DAY + (int(hours) * 60 + int(minutes)) * MIN


def iv(
    start: str, end: str, cat: Category | None, job: str | None = None, *, failure: bool = False
) -> Interval:
    return Interval(M, at(start), at(end), cat, failure=failure, job=job)


SHIFT = Window(at("06:00"), at("14:00"))
MAINTENANCE = {M: [Window(at("13:30"), at("14:00"))]}
EXAMPLE_INTERVALS = [
    iv("06:00", "06:15", Category.ADOT),
    iv("06:15", "06:35", Category.ASUT, "A"),
    iv("06:35", "08:35", Category.APT, "A"),
    iv("08:35", "08:50", Category.ADET, "A", failure=True),
    iv("08:50", "11:20", Category.APT, "A"),
    iv("11:20", "11:30", Category.ADET, "A", failure=True),
    iv("11:30", "13:30", Category.APT, "A"),
    iv("13:30", "14:00", Category.ADOT),  # the machine says idle; the planned stop wins
]
EXAMPLE_ORDERS = {"A": OrderPlan(pru_s=45.0, planned_qty=480, planned_scrap_qty=10)}


def example_counts() -> list[Count]:
    """480 parts over the 390 running minutes; 12 scrapped and 8 reworked among them."""
    running = [
        m
        for iv_ in EXAMPLE_INTERVALS
        if iv_.category == Category.APT
        for m in range(iv_.start_ns, iv_.end_ns, MIN)
    ]
    counts = []
    for i, bucket in enumerate(running):
        pq = (i + 1) * 480 // len(running) - i * 480 // len(running)
        sq = int(i % 32 == 0 and i < 12 * 32)
        rq = int(i % 48 == 5 and i < 8 * 48)
        counts.append(Count(M, bucket, "A", pq, pq - sq - rq, sq, rq))
    return counts


def example(*, exclude_idle: bool = False, job: str | None = None) -> KpiResult:
    return compute(
        SHIFT, [M], EXAMPLE_INTERVALS, example_counts(), EXAMPLE_ORDERS,
        planned_stops=MAINTENANCE, exclude_idle=exclude_idle, job=job,
    )  # fmt: skip


REFERENCE_KPIS = {
    "availability": 0.866667,
    "effectiveness": 0.923077,
    "quality_ratio": 0.958333,
    "oee": 0.766667,
    "nee": 0.805983,
    "throughput_rate": 1.103448,
    "setup_rate": 0.048780,
    "scrap_ratio": 0.025,
    "rework_ratio": 0.016667,
    "actual_to_planned_scrap_ratio": 1.2,
    "first_pass_yield": 0.958333,
    "utilisation_efficiency": 0.896552,
    "allocation_efficiency": 0.966667,
    "technical_efficiency": 0.939759,
    "production_process_ratio": 0.896552,
    "mttr": 12.5,
}


def test_worked_example_time_elements_and_quantities() -> None:
    result = example()
    minutes = {"POT": 480, "PDOT": 30, "PBT": 450, "APT": 390, "ASUT": 20, "ADET": 25}
    minutes |= {"ADOT": 15, "UNCL": 0, "AUPT": 410, "AUBT": 435, "AOET": 435, "NODATA": 0}
    assert result.time_s() == pytest.approx({k: v * 60 for k, v in minutes.items()}, abs=1e-6)
    q = result.to_dict()["quantities"]
    assert (q["PQ"], q["GQ"], q["SQ"], q["RQ"], q["IP"], q["GP"]) == (480, 460, 12, 8, 480, 460)
    assert q["PSQ"] == pytest.approx(10, abs=1e-6)
    assert (q["FE"], q["TTR_s"], q["TBF_sum_s"]) == (2, [900.0, 600.0], 410 * 60.0)
    assert q["pq_without_pru"] == 0
    assert result.unclassified_share.value == 0
    assert not result.idle_excluded


def test_worked_example_kpis() -> None:
    kpis = example().kpis
    assert list(kpis) == [kpi.name for kpi in KPIS]
    assert {name: kpis[name].value for name in REFERENCE_KPIS} == pytest.approx(
        REFERENCE_KPIS, abs=1e-6
    )
    assert kpis["mtbf"].value == 410 / 3
    assert round(kpis["mtbf"].value, 3) == 136.667
    assert all(r.reason is None for r in kpis.values())


def test_worked_example_losses_add_up_to_pbt() -> None:
    losses = example().to_dict()["losses"]
    expected = {"availability_s": 60, "performance_s": 30, "quality_s": 15}
    expected |= {"fully_productive_s": 345}
    assert losses == pytest.approx({k: v * 60 for k, v in expected.items()}, abs=1e-6)


def test_to_dict_is_plain_json() -> None:
    data = example().to_dict()
    assert json.loads(json.dumps(data)) == data
    assert set(data) == {
        "window", "machines", "job", "idle_excluded", "time_s", "quantities", "jobs",
        "kpis", "losses", "unclassified_share", "coverage",
    }  # fmt: skip
    assert data["jobs"] == [
        {"job": "A", "pru_s": 45.0, "PQ": 480, "GQ": 460, "SQ": 12, "RQ": 8, "APT_s": 390 * 60.0}
    ]
    assert data["kpis"]["oee"]["unit"] == "1"
    assert data["kpis"]["mttr"] == {
        "value": 12.5, "reason": None, "unit": "min", "formula": "sum(TTR) / FE",
    }  # fmt: skip


def test_exclude_idle_takes_adot_out_of_pbt_and_says_so() -> None:
    result = example(exclude_idle=True)
    assert result.idle_excluded
    assert result.to_dict()["idle_excluded"] is True
    assert result.time_s()["PBT"] == 435 * 60
    assert result.time_s()["POT"] == 465 * 60
    assert result.time_s()["ADOT"] == 15 * 60
    assert result.kpis["availability"].value == pytest.approx(390 / 435)


def test_job_filter_uses_the_jobs_own_span() -> None:
    result = example(job="A")
    assert result.window == Window(at("06:15"), at("13:30"))
    t = result.time_s()
    assert (t["POT"], t["PBT"], t["PDOT"], t["ADOT"]) == (435 * 60, 435 * 60, 0, 0)
    assert result.kpis["availability"].value == pytest.approx(390 / 435)
    assert result.quantities.pq == 480
    unknown = example(job="Z")
    assert unknown.time.pot_ns == 0
    assert unknown.kpis["availability"].reason == "PBT is 0"


def test_zero_denominators_are_null_with_a_reason() -> None:
    empty = compute(SHIFT, [M], [], [], {})
    reasons = {name: r.reason for name, r in empty.kpis.items() if r.value is None}
    assert reasons == {
        "effectiveness": "APT is 0",
        "quality_ratio": "PQ is 0",
        "oee": "APT is 0",
        "nee": "APT is 0",
        "throughput_rate": "AOET is 0",
        "setup_rate": "AUPT is 0",
        "scrap_ratio": "PQ is 0",
        "rework_ratio": "PQ is 0",
        "actual_to_planned_scrap_ratio": "PSQ is 0",
        "first_pass_yield": "IP is 0",
        "utilisation_efficiency": "AUBT is 0",
        "technical_efficiency": "APT + ADET is 0",
        "production_process_ratio": "AOET is 0",
        "mttr": "FE is 0",
    }
    assert empty.kpis["availability"].value == 0.0  # PBT is 8 h, APT is 0: a real 0
    assert empty.kpis["allocation_efficiency"].value == 0.0
    assert empty.unclassified_share.value == 1.0
    assert empty.kpis["mtbf"].value == 0.0
    nothing = compute(Window(SHIFT.start_ns, SHIFT.start_ns), [M], [], [], {})
    assert nothing.kpis["availability"].reason == "PBT is 0"
    assert nothing.unclassified_share.reason == "PBT is 0"


def test_missing_pru_makes_effectiveness_null_not_zero() -> None:
    counts = [*example_counts(), Count(M, at("07:00"), "B", 5, 5, 0, 0)]
    counts.append(Count(M, at("07:01"), None, 2, 2, 0, 0))
    result = compute(SHIFT, [M], EXAMPLE_INTERVALS, counts, EXAMPLE_ORDERS)
    assert result.quantities.pq_without_pru == 7
    assert result.kpis["effectiveness"].value is None
    assert "PRU" in (result.kpis["effectiveness"].reason or "")
    assert result.kpis["oee"].reason == result.kpis["effectiveness"].reason
    assert result.losses.performance_s is None
    rows = [(j.job, j.pru_s, j.pq) for j in result.jobs]
    assert rows == [("A", 45.0, 480), ("B", None, 5), (None, None, 2)]


def test_a_job_spanning_the_window_edge_is_split_to_the_ns() -> None:
    start = SHIFT.start_ns + 123_456_789
    window = Window(start, start + 10 * NS_PER_S)
    running = Interval(M, start - 987_654_321, start + 1_000_000_007, Category.APT, job="A")
    setup = Interval(M, running.end_ns, window.end_ns + 5, Category.ASUT, job="A")
    whole = compute(window, [M], [running, setup], [], {})
    assert whole.time.apt_ns == 1_000_000_007
    assert whole.time.asut_ns == 10 * NS_PER_S - 1_000_000_007
    assert whole.time.aoet_ns == 10 * NS_PER_S
    mid = start + 333_333_333
    left = compute(Window(start, mid), [M], [running, setup], [], {})
    right = compute(Window(mid, window.end_ns), [M], [running, setup], [], {})
    assert (left.time.apt_ns, right.time.apt_ns) == (333_333_333, 666_666_674)


def test_a_planned_stop_cuts_a_breakdown() -> None:
    intervals = [
        iv("06:00", "10:00", Category.APT, "A"),
        iv("10:00", "10:20", Category.ADET, "A", failure=True),  # stop from 10:10
        iv("10:20", "11:00", Category.APT, "A"),
        iv("11:00", "11:10", Category.ADET, "A", failure=True),  # wholly inside a stop
        iv("11:10", "14:00", Category.APT, "A"),
    ]
    stops: dict[str | None, list[Window]] = {
        None: [Window(at("10:10"), at("10:30")), Window(at("10:55"), at("11:15"))]
    }
    result = compute(SHIFT, [M], intervals, [], EXAMPLE_ORDERS, planned_stops=stops)
    assert result.time_s()["ADET"] == 10 * 60
    assert result.time_s()["PDOT"] == 40 * 60
    assert result.quantities.fe == 1
    assert result.quantities.ttr_ns == (10 * MIN,)
    assert result.kpis["mttr"].value == 10.0


def test_touching_failure_intervals_are_one_event() -> None:
    intervals = [
        iv("06:00", "07:00", Category.APT, "A"),
        iv("07:00", "07:05", Category.ADET, "A", failure=True),
        iv("07:05", "07:12", Category.ADET, "A", failure=True),
        iv("07:12", "07:20", Category.ADET, "A"),  # not a failure: waiting
        iv("07:20", "07:30", Category.ADET, "A", failure=True),
    ]
    result = compute(SHIFT, [M], intervals, [], {})
    assert result.quantities.ttr_ns == (12 * MIN, 10 * MIN)


def test_two_jobs_with_different_pru_weight_effectiveness() -> None:
    intervals = [iv("06:00", "07:00", Category.APT, "A"), iv("07:00", "08:00", Category.APT, "B")]
    counts = [Count(M, at("06:30"), "A", 100, 90, 10, 0), Count(M, at("07:30"), "B", 50, 50, 0, 0)]
    orders = {"A": OrderPlan(pru_s=30.0), "B": OrderPlan(pru_s=60.0)}
    result = compute(Window(at("06:00"), at("08:00")), [M], intervals, counts, orders)
    assert result.kpis["effectiveness"].value == pytest.approx((100 * 30 + 50 * 60) / 7200)
    assert result.kpis["quality_ratio"].value == pytest.approx(140 / 150)
    assert result.losses.fully_productive_s == pytest.approx(90 * 30 + 50 * 60)
    assert result.losses.quality_s == pytest.approx(10 * 30)
    assert [(j.job, j.apt_ns) for j in result.jobs] == [("A", 60 * MIN), ("B", 60 * MIN)]
    assert result.quantities.psq == 0
    assert result.kpis["actual_to_planned_scrap_ratio"].reason == "PSQ is 0"


def test_unclassified_time_is_reported() -> None:
    intervals = [
        iv("06:00", "07:00", Category.APT, "A"),
        iv("07:00", "07:30", None, "A"),  # state unknown
        iv("08:00", "14:00", Category.ADOT),  # 07:30-08:00: no interval at all
    ]
    result = compute(SHIFT, [M], intervals, [], {})
    assert result.time_s()["UNCL"] == 60 * 60
    assert result.unclassified_share.value == pytest.approx(1 / 8)
    assert result.to_dict()["unclassified_share"] == {"value": 0.125, "reason": None}


def test_shifts_cut_pot_and_groups_sum_per_machine() -> None:
    other = [replace(i, machine="lathe-1") for i in EXAMPLE_INTERVALS]
    shifts = [Window(at("06:00"), at("10:00")), Window(at("09:00"), at("12:00"))]
    result = compute(SHIFT, [M, "lathe-1"], EXAMPLE_INTERVALS + other, [], {}, shifts=shifts)
    assert result.time_s()["POT"] == 2 * 6 * 3600
    assert result.time_s()["APT"] == 2 * (120 + 150 + 30) * 60
    assert result.machines == (M, "lathe-1")
    alone = compute(SHIFT, ["lathe-1"], EXAMPLE_INTERVALS + other, example_counts(), {})
    assert alone.time_s()["POT"] == 8 * 3600
    assert alone.quantities.pq == 0  # the counts are press-3's


def test_overlapping_intervals_are_refused() -> None:
    intervals = [iv("06:00", "07:00", Category.APT, "A"), iv("06:59", "08:00", Category.ADOT)]
    with pytest.raises(ValueError, match="overlapping"):
        compute(SHIFT, [M], intervals, [], {})


# Properties over random timelines: small integer "ns" so that edges collide often.

MACHINES = ("m1", "m2")
JOBS = ("A", "B", None)
ORDERS = {"A": OrderPlan(pru_s=3.0, planned_qty=100, planned_scrap_qty=3), "B": OrderPlan(0.5)}
ADDITIVE = ("POT", "PDOT", "NODATA", "PBT", "APT", "ASUT", "ADET", "ADOT", "UNCL", "AUPT", "AUBT")
windows = st.builds(lambda s, n: Window(s, s + n), st.integers(-100, 1100), st.integers(0, 600))


@st.composite
def timelines(draw: st.DrawFn) -> list[Interval]:
    out = []
    for machine in MACHINES:
        cursor = draw(st.integers(-200, 300))
        for _ in range(draw(st.integers(0, 10))):
            cursor += draw(st.sampled_from((0, 0, 1, 7, 50)))
            length = draw(st.integers(1, 250))
            category = draw(st.sampled_from((*Category, None)))
            failure, job = draw(st.booleans()), draw(st.sampled_from(JOBS))
            out.append(Interval(machine, cursor, cursor + length, category, failure, job))
            cursor += length
    return out


counts = st.lists(
    st.builds(
        lambda m, b, j, g, s, r: Count(m, b, j, g + s + r, g, s, r),
        st.sampled_from((*MACHINES, "other")), st.integers(-50, 1050), st.sampled_from(JOBS),
        st.integers(0, 9), st.integers(0, 3), st.integers(0, 2),
    ),
    max_size=8,
)
options = st.fixed_dictionaries(
    {
        "shifts": st.none() | st.lists(windows, max_size=3),
        "planned_stops": st.fixed_dictionaries(
            {}, optional={"m1": st.lists(windows, max_size=3), None: st.lists(windows, max_size=2)}
        ),
    }
)
WINDOW = Window(0, 1000)


@settings(deadline=None, max_examples=200)
@given(intervals=timelines(), opts=options)
def test_time_elements_partition_pbt_and_pot(
    intervals: list[Interval], opts: dict[str, Any]
) -> None:
    t = compute(WINDOW, MACHINES, intervals, [], ORDERS, **opts).time
    assert t.pbt_ns == t.apt_ns + t.asut_ns + t.adet_ns + t.adot_ns + t.uncl_ns
    assert t.pot_ns == t.pbt_ns + t.pdot_ns
    assert min(t.named().values()) >= 0


def split_some(intervals: Sequence[Interval], data: st.DataObject) -> list[Interval]:
    out = []
    for i in intervals:
        if i.end_ns - i.start_ns > 1 and data.draw(st.booleans()):
            cut = data.draw(st.integers(i.start_ns + 1, i.end_ns - 1))
            out += [replace(i, end_ns=cut), replace(i, start_ns=cut)]
        else:
            out.append(i)
    return out


@settings(deadline=None, max_examples=200)
@given(intervals=timelines(), parts=counts, opts=options, data=st.data())
def test_kpis_do_not_depend_on_splitting_or_order(
    intervals: list[Interval], parts: list[Count], opts: dict[str, Any], data: st.DataObject
) -> None:
    opts |= {"exclude_idle": data.draw(st.booleans()), "job": data.draw(st.sampled_from(JOBS))}
    expected = compute(WINDOW, MACHINES, intervals, parts, ORDERS, **opts).to_dict()
    pieces = data.draw(st.permutations(split_some(intervals, data)))
    shuffled = data.draw(st.permutations(parts))
    assert compute(WINDOW, MACHINES, pieces, shuffled, ORDERS, **opts).to_dict() == expected


@settings(deadline=None, max_examples=200)
@given(intervals=timelines(), opts=options, mid=st.integers(0, 1000))
def test_time_elements_add_up_over_two_halves(
    intervals: list[Interval], opts: dict[str, Any], mid: int
) -> None:
    def named(window: Window) -> dict[str, int]:
        return compute(window, MACHINES, intervals, [], ORDERS, **opts).time.named()

    whole, left, right = named(WINDOW), named(Window(0, mid)), named(Window(mid, 1000))
    assert {k: left[k] + right[k] for k in ADDITIVE} == {k: whole[k] for k in ADDITIVE}
