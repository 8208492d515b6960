"""shadow.model.ShadowModel without a database: batches and events in, closed state
intervals, count buckets, job records and rejected counter readings out; silence,
planned stops, redelivery, batch boundaries and restarts (snapshot/restore)."""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.types import OFFLINE_EVENT, Batch, Event, EventValue, Quality
from ombre.config import OmbreConfig, validate_config
from shadow.calendar import PlannedSchedule, to_ns
from shadow.model import Changes, JobRecord, Rejected, ShadowModel
from shadow.states import UNKNOWN, State
from shadow.timeline import BUCKET_NS, NS_PER_S, Category, Interval

MIN = 60 * NS_PER_S
T0 = to_ns(datetime(2026, 3, 2, 6, tzinfo=UTC))  # a Monday, 06:00 UTC
P1, P2 = "press-1", "press-2"
STATE_MAP = {"IDLE": "ADOT", "SETUP": "ASUT", "RUNNING": "APT",
             "BREAKDOWN": {"category": "ADET", "failure": True}, "WAITING": "ADET"}
TOTAL_COUNTERS = {"total": "total", "scrap": "scrap", "rework": "rework", "max_step": 50}

Reading = tuple[int, str, str, EventValue, int]  # ts, machine, signal, value, quality
View = tuple[float, float, str | None, str, str | None]  # minutes, category, raw, job


def t(minute: float) -> int:
    """T0 plus `minute` minutes, in ns."""
    return T0 + round(minute * MIN)


def r(minute: float, signal: str, value: EventValue, machine: str = P1,
      quality: int = Quality.GOOD) -> Reading:
    return (t(minute), machine, signal, value, quality)


def machine_config(machine: str, **fields: Any) -> dict[str, Any]:
    signals = [*({"name": n, "type": "string"} for n in ("state", "order", "mode")),
               *({"name": n} for n in ("total", "good", "scrap", "rework", "temp"))]
    return {"id": machine, "signals": signals,
            "state": {"type": "table", "signal": "state", "map": STATE_MAP},
            "counters": TOTAL_COUNTERS, "job_signal": "order", "silence_s": 6 * 3600, **fields}


def plant(*machines: dict[str, Any], stops: Sequence[dict[str, Any]] = ()) -> OmbreConfig:
    return validate_config({
        "sites": [{"id": "plant", "lines": [{"id": "line-1",
                                            "machines": list(machines)}]}],
        "shadow": {"calendar": {"planned_stops": list(stops)}},
    })


def model_of(config: OmbreConfig) -> ShadowModel:
    schedule = PlannedSchedule(config.shadow.calendar)
    return ShadowModel(config.machines(), config.registry(), schedule.inside,
                       schedule.boundaries)


def one_press(**fields: Any) -> tuple[OmbreConfig, ShadowModel]:
    config = plant(machine_config(P1, **fields))
    return config, model_of(config)


def is_number(value: EventValue) -> bool:
    return isinstance(value, float | int) and not isinstance(value, bool)


def batch_of(config: OmbreConfig, readings: Iterable[Reading]) -> tuple[Batch, list[Event]]:
    """Numbers as one Batch, everything else as Events, in the order given."""
    registry = config.registry()
    rows = [x for x in readings if is_number(x[3])]
    ids = [registry.id_of(m, s) for _, m, s, _, _ in rows]
    assert None not in ids
    batch = Batch(np.array([x[0] for x in rows], np.int64), np.array(ids, np.int32),
                  np.array([x[3] for x in rows], np.float64),
                  np.array([x[4] for x in rows], np.uint8))
    events = [Event(ts, m, s, v, q) for ts, m, s, v, q in readings if not is_number(v)]
    return batch, events


def feed(config: OmbreConfig, model: ShadowModel, readings: Sequence[Reading]) -> Changes:
    batch, events = batch_of(config, readings)
    return model.apply(batch, events)


def view(changes: Changes | list[tuple[Interval, str]]) -> list[View]:
    pairs = changes.intervals if isinstance(changes, Changes) else changes
    return [((i.start_ns - T0) / MIN, (i.end_ns - T0) / MIN,
             None if i.category is None else i.category.value, raw, i.job)
            for i, raw in pairs]


def counts_view(changes: Changes) -> dict[tuple[str, float, str | None], list[int]]:
    return {(m, (b - T0) / MIN, job): v for (m, b, job), v in changes.counts.items()}


def totals(counts: dict[Any, list[int]]) -> list[int]:
    return [sum(v[i] for v in counts.values()) for i in range(4)]


def merged(all_changes: Iterable[Changes]) -> Changes:
    out = Changes()
    for c in all_changes:
        out.intervals += c.intervals
        out.jobs += c.jobs
        out.rejected += c.rejected
        out.readings += c.readings
        for key, v in c.counts.items():
            bucket = out.counts.setdefault(key, [0, 0, 0, 0])
            for i, x in enumerate(v):
                bucket[i] += x
    out.counts = {k: v for k, v in out.counts.items() if any(v)}
    return out


def assert_contiguous(intervals: list[tuple[Interval, str]], machine: str = P1) -> None:
    """Closed, non-empty, non-overlapping and without holes, in time order."""
    mine = [i for i, _ in intervals if i.machine == machine]
    assert mine == sorted(mine, key=lambda i: i.start_ns)
    assert all(i.start_ns < i.end_ns for i in mine)
    assert all(a.end_ns == b.start_ns for a, b in itertools.pairwise(mine))


# --- states and intervals -------------------------------------------------------------


def test_state_changes_close_contiguous_intervals() -> None:
    config, model = one_press()
    changes = feed(config, model, [
        r(0, "state", "IDLE"), r(15, "state", "SETUP"), r(35, "state", "RUNNING"),
        r(50, "temp", 61.0), r(60, "state", "BREAKDOWN"), r(75, "state", "RUNNING"),
        r(80, "state", "RUNNING"), r(100, "state", "IDLE"), r(101, "temp", 60.0)])
    assert view(changes) == [(0, 15, "ADOT", "IDLE", None), (15, 35, "ASUT", "SETUP", None),
                             (35, 60, "APT", "RUNNING", None),
                             (60, 75, "ADET", "BREAKDOWN", None),
                             (75, 100, "APT", "RUNNING", None)]
    assert [i.failure for i, _ in changes.intervals] == [False, False, False, True, False]
    assert_contiguous(changes.intervals)
    press = model.machines[P1]
    assert press.state == State("IDLE", Category.ADOT)
    assert press.category == Category.ADOT
    assert press.since_ns == t(100)
    assert press.clock_ns == t(101)
    assert press.last_seen_ns == t(101)
    assert changes.touched == {P1}


def test_unmapped_state_is_an_unclassified_interval() -> None:
    config, model = one_press()
    changes = feed(config, model, [r(0, "state", "RUNNING"), r(5, "state", "EXPLODED"),
                                   r(7, "state", "RUNNING")])
    assert view(changes) == [(0, 5, "APT", "RUNNING", None), (5, 7, None, "EXPLODED", None)]
    assert model.machines[P1].state.category == Category.APT


def test_same_state_again_does_not_split_the_interval() -> None:
    config, model = one_press()
    first = feed(config, model, [r(0, "state", "RUNNING"), r(1, "state", "RUNNING")])
    second = feed(config, model, [r(2, "state", "RUNNING"), r(3, "temp", 1.0)])
    assert first.intervals == second.intervals == []
    assert model.machines[P1].since_ns == t(0)


def test_a_reading_before_the_open_interval_does_not_go_back_in_time() -> None:
    config, model = one_press()
    feed(config, model, [r(10, "state", "RUNNING"), r(20, "temp", 1.0)])
    # A state reading newer than the last state reading but older than the clock.
    changes = feed(config, model, [r(15, "state", "IDLE")])
    assert view(changes) == [(10, 20, "APT", "RUNNING", None)]
    assert model.machines[P1].since_ns == t(20)


def test_older_reading_of_a_signal_is_a_duplicate() -> None:
    config, model = one_press()
    feed(config, model, [r(0, "state", "RUNNING"), r(10, "state", "IDLE")])
    changes = feed(config, model, [r(5, "state", "BREAKDOWN")])
    assert changes.intervals == []
    assert changes.readings == {}  # not counted
    assert model.machines[P1].state.raw == "IDLE"


def test_events_of_unknown_signals_are_ignored() -> None:
    _, model = one_press()
    changes = model.apply(Batch.empty(), [Event(t(0), P1, "nonsense", "RUNNING"),
                                          Event(t(0), "press-9", "state", "RUNNING")])
    assert changes.intervals == []
    assert changes.touched == set()
    assert model.machines[P1].since_ns is None


# --- jobs -----------------------------------------------------------------------------


def test_job_start_and_end_split_the_interval() -> None:
    config, model = one_press()
    changes = feed(config, model, [
        r(0, "state", "RUNNING"), r(10, "order", "4711"), r(30, "order", "4712"),
        r(50, "order", ""), r(60, "state", "IDLE")])
    assert changes.jobs == [
        JobRecord(P1, "4711", t(10), None),
        JobRecord(P1, "4711", t(10), t(30), "signal", "job signal changed to 4712"),
        JobRecord(P1, "4712", t(30), None),
        JobRecord(P1, "4712", t(30), t(50), "signal", "job signal cleared")]
    assert view(changes) == [(0, 10, "APT", "RUNNING", None), (10, 30, "APT", "RUNNING", "4711"),
                             (30, 50, "APT", "RUNNING", "4712"), (50, 60, "APT", "RUNNING", None)]
    assert_contiguous(changes.intervals)
    press = model.machines[P1]
    assert (press.job, press.job_since_ns, press.interval_job) == (None, None, None)


def test_job_loaded_changes_the_category_of_a_job_dependent_state() -> None:
    config, model = one_press(state={"type": "packml", "state": "state", "mode": "mode"})
    changes = feed(config, model, [r(0, "mode", "Production"), r(0, "state", "Suspended"),
                                   r(5, "order", "A"), r(9, "order", ""),
                                   r(12, "state", "Execute")])
    assert view(changes) == [(0, 5, "ADOT", "Suspended/Production", None),
                             (5, 9, "ADET", "Suspended/Production", "A"),
                             (9, 12, "ADOT", "Suspended/Production", None)]
    assert model.machines[P1].state == State("Execute/Production", Category.APT)


def test_same_job_again_is_not_a_new_job() -> None:
    config, model = one_press()
    changes = feed(config, model, [r(0, "state", "RUNNING"), r(1, "order", "A"),
                                   r(2, "order", "A")])
    assert changes.jobs == [JobRecord(P1, "A", t(1), None)]
    assert model.machines[P1].job == "A"


def test_a_job_completes_at_its_planned_quantity_where_the_machine_says_so() -> None:
    """With `complete_at_planned_qty`, the part that makes the order's planned quantity
    ends the job (counted to it); the job signal still naming the order starts nothing,
    and only its change to another order starts that one. Off, the job goes on."""
    plans = {"A": 5, "B": 100}
    readings = [r(0, "state", "RUNNING"), r(0, "total", 0), r(1, "order", "A"),
                *(r(1 + i, "total", 2 * i) for i in range(1, 5)),  # 2, 4, 6, 8 parts
                r(7, "order", "A"), r(8, "order", "B"), r(9, "total", 9)]
    config = plant(machine_config(P1, complete_at_planned_qty=True))
    schedule = PlannedSchedule(config.shadow.calendar)
    model = ShadowModel(config.machines(), config.registry(), schedule.inside,
                        schedule.boundaries, plans.get)
    changes = feed(config, model, readings)
    assert changes.jobs == [
        JobRecord(P1, "A", t(1), None),
        JobRecord(P1, "A", t(1), t(4), "quantity", "planned quantity 5 produced"),
        JobRecord(P1, "B", t(8), None)]
    assert {job: totals({k: v for k, v in changes.counts.items() if k[2] == job})[0]
            for job in ("A", None, "B")} == {"A": 6, None: 2, "B": 1}
    assert view(changes)[1:] == [(1, 4, "APT", "RUNNING", "A"), (4, 8, "APT", "RUNNING", None)]
    # Restored from its snapshot, the machine still knows the signal named A.
    restored = model_of(config)
    restored.machines[P1].restore(model.machines[P1].snapshot())
    assert restored.machines[P1].job_input == "B"

    config, model = one_press()
    assert [j.end_ns for j in feed(config, model, readings).jobs] == [None, t(8), None]


def test_a_job_commanded_by_hand_takes_effect_within_the_data_time() -> None:
    """A person's job start or completion (the API's job commands) is applied at its
    request time held between the machine's clock and the plant's newest reading."""
    config, model = one_press(job_signal=None)
    feed(config, model, [r(0, "state", "RUNNING"), r(20, "total", 0)])
    changes = Changes()
    # Asked for at 10 (before the machine's clock): it starts at 20, never going back.
    assert model.command_job(P1, "4711", t(10), changes) is None
    # Asked for at 90 (a wall clock ahead of the data): it happens at 40, the newest
    # reading; the first job ends there.
    feed(config, model, [r(40, "total", 5)])
    assert model.command_job(P1, "4712", t(90), changes) == "4711"
    assert model.command_job(P1, None, t(90), changes) == "4712"
    assert model.command_job(P1, None, t(90), changes) is None  # nothing ran
    assert changes.jobs == [
        JobRecord(P1, "4711", t(20), None),
        JobRecord(P1, "4711", t(20), t(40), "command", "4712 started by hand"),
        JobRecord(P1, "4712", t(40), None),
        JobRecord(P1, "4712", t(40), t(40), "command", "completed by hand")]
    assert view(changes) == [(0, 20, "APT", "RUNNING", None),
                             (20, 40, "APT", "RUNNING", "4711")]
    assert model.machines[P1].job is None
    assert model.machines[P1].clock_ns == t(40)


# --- counts ---------------------------------------------------------------------------


def test_total_scrap_rework_counts_per_minute_and_job() -> None:
    config, model = one_press()
    changes = feed(config, model, [
        r(0, "state", "RUNNING"), r(0, "order", "A"),
        r(0.1, "total", 1000.0), r(0.1, "scrap", 7.0), r(0.1, "rework", 3.0),  # baselines
        r(1.5, "total", 1010.0), r(1.6, "scrap", 9.0), r(2.2, "rework", 4.0),
        r(2.5, "total", 1015.0), r(3, "order", "B"), r(3.5, "total", 1020.0)])
    assert counts_view(changes) == {(P1, 1, "A"): [10, 8, 2, 0], (P1, 2, "A"): [5, 4, 0, 1],
                                    (P1, 3, "B"): [5, 5, 0, 0]}
    pq, gq, sq, rq = totals(changes.counts)
    assert (pq, gq, sq, rq) == (20, 17, 2, 1)
    assert gq == pq - sq - rq
    assert model.machines[P1].job_counts == [5, 5, 0, 0]  # job B's so far
    assert all(b % BUCKET_NS == 0 for _, b, _ in changes.counts)


def test_good_counter_mode_produced_is_good_plus_scrap_plus_rework() -> None:
    config, model = one_press(counters={"good": "good", "scrap": "scrap", "rework": "rework"})
    changes = feed(config, model, [
        r(0, "state", "RUNNING"), r(0, "good", 0.0), r(0, "scrap", 0.0), r(0, "rework", 0.0),
        r(0.5, "good", 10.0), r(0.6, "scrap", 2.0), r(0.7, "rework", 1.0),
        r(1.5, "good", 14.0)])
    assert counts_view(changes) == {(P1, 0, None): [13, 10, 2, 1], (P1, 1, None): [4, 4, 0, 0]}
    pq, gq, sq, rq = totals(changes.counts)
    assert pq == gq + sq + rq == 17


def test_counter_reset_counts_from_the_new_value() -> None:
    config, model = one_press()
    changes = feed(config, model, [r(0, "total", 100.0), r(0.2, "total", 120.0),
                                   r(0.4, "total", 5.0), r(0.6, "total", 8.0)])
    assert totals(changes.counts)[:2] == [20 + 5 + 3, 28]
    assert changes.rejected == []


def test_implausible_jump_is_rejected_and_not_counted() -> None:
    config, model = one_press()  # max_step 50
    changes = feed(config, model, [r(0, "total", 100.0), r(0.2, "total", 110.0),
                                   r(0.4, "total", 5000.0), r(0.6, "total", 115.0)])
    assert totals(changes.counts)[0] == 10 + 5  # the glitch is not counted, 115 follows 110
    (rejected,) = changes.rejected
    assert rejected == Rejected(P1, "total", t(0.4), 5000.0, rejected.reason)
    assert "max_step 50" in rejected.reason
    assert "4890" in rejected.reason


def test_confirmed_jump_resumes_counting_without_the_jump() -> None:
    config, model = one_press()
    changes = feed(config, model, [r(0, "total", 100.0), r(0.2, "total", 5000.0),
                                   r(0.4, "total", 5010.0), r(0.6, "total", 5030.0)])
    assert totals(changes.counts)[0] == 10 + 20
    assert [x.value for x in changes.rejected] == [5000.0]
    assert model.machines[P1].counters["total"].last == 5030.0
    assert model.machines[P1].counters["total"].pending is None


def test_two_implausible_readings_in_a_row_are_both_rejected() -> None:
    config, model = one_press()
    changes = feed(config, model, [r(0, "total", 100.0), r(0.2, "total", 5000.0),
                                   r(0.4, "total", 9000.0), r(0.6, "total", 120.0)])
    assert [x.value for x in changes.rejected] == [5000.0, 9000.0]
    assert totals(changes.counts)[0] == 20


def test_bad_counter_reading_is_not_counted() -> None:
    config, model = one_press()
    changes = feed(config, model, [r(0, "total", 100.0),
                                   r(0.2, "total", 5000.0, quality=Quality.BAD),
                                   r(0.4, "total", 3.0, quality=Quality.BAD),
                                   r(0.6, "total", 110.0)])
    assert totals(changes.counts)[0] == 10
    assert changes.rejected == []
    assert model.machines[P1].counters["total"].last == 110.0


def test_bad_job_reading_does_not_change_the_job() -> None:
    config, model = one_press()
    changes = feed(config, model, [r(0, "state", "RUNNING"), r(1, "order", "A"),
                                   r(2, "order", "B", quality=Quality.BAD), r(3, "temp", 1.0)])
    assert changes.jobs == [JobRecord(P1, "A", t(1), None)]
    assert model.machines[P1].job == "A"


def test_bad_state_reading_does_not_change_the_state() -> None:
    """A state reading of bad quality must not be used: the machine keeps the state of
    its last good reading, and no interval is closed."""
    config, model = one_press()
    feed(config, model, [r(0, "state", "RUNNING")])
    changes = feed(config, model, [r(10, "state", "IDLE", quality=Quality.BAD),
                                   r(11, "temp", 60.0)])
    assert view(changes) == []
    assert model.machines[P1].state == State("RUNNING", Category.APT)


def test_rules_state_from_numbers_ignores_bad_readings() -> None:
    config, model = one_press(state={"type": "rules", "default": "ADOT", "rules": [
        {"when": [{"signal": "temp", "op": ">", "value": 50}], "category": "APT"}]})
    changes = feed(config, model, [r(0, "temp", 60.0), r(5, "temp", 10.0),
                                   r(7, "temp", 70.0, quality=Quality.BAD), r(9, "temp", 80.0),
                                   r(10, "temp", 90.0)])
    assert view(changes) == [(0, 5, "APT", "rule 1", None), (5, 9, "ADOT", "no rule", None)]
    assert model.machines[P1].state == State("rule 1", Category.APT)


# --- silence --------------------------------------------------------------------------


def test_gap_inside_one_batch_is_unknown_from_the_end_of_the_tolerated_silence() -> None:
    config, model = one_press(silence_s=60)
    changes = feed(config, model, [r(0, "state", "RUNNING"), r(0.5, "temp", 1.0),
                                   r(5, "temp", 1.0), r(5.5, "temp", 1.0)])
    assert view(changes) == [(0, 1.5, "APT", "RUNNING", None), (1.5, 5, None, "unknown", None)]
    assert_contiguous(changes.intervals)
    press = model.machines[P1]
    assert press.state == State("RUNNING", Category.APT)
    assert not press.silent
    assert press.since_ns == t(5)


def test_gap_of_exactly_the_silence_is_not_silence() -> None:
    config, model = one_press(silence_s=60)
    changes = feed(config, model, [r(0, "state", "RUNNING"), r(1, "temp", 1.0),
                                   r(2, "temp", 1.0)])
    assert changes.intervals == []


def test_advance_marks_a_silent_machine_unknown() -> None:
    config, model = one_press(silence_s=60)
    feed(config, model, [r(0, "state", "RUNNING"), r(0.5, "temp", 1.0)])
    assert model.advance(t(1.5)).intervals == []  # exactly the tolerated silence
    assert model.machines[P1].online(t(1.5))
    changes = model.advance(t(3))
    assert view(changes) == [(0, 1.5, "APT", "RUNNING", None)]
    assert changes.touched == {P1}
    press = model.machines[P1]
    assert press.silent
    assert press.state == UNKNOWN
    assert press.category is None
    assert not press.online(t(3))
    assert model.advance(t(10)).intervals == []  # silent already
    back = feed(config, model, [r(12, "temp", 1.0)])
    assert view(back) == [(1.5, 12, None, "unknown", None)]
    assert model.machines[P1].state == State("RUNNING", Category.APT)
    assert model.machines[P1].online(t(12))


def test_a_sources_offline_word_makes_the_machine_unknown_from_its_time() -> None:
    """A Sparkplug B death (OFFLINE_EVENT) in the middle of a batch: the readings before
    it are applied first, the machine is unknown from it, a later reading brings it
    back; the same word delivered again changes nothing."""
    config, model = one_press(silence_s=3600)
    death = Event(t(2), P1, OFFLINE_EVENT, "spBv1.0/g/NDEATH/n: the edge node died")
    batch, events = batch_of(config, [r(0, "state", "RUNNING"), r(1, "temp", 1.0),
                                      r(6, "temp", 2.0)])
    changes = model.apply(batch, [*events, death])
    assert view(changes) == [(0, 2, "APT", "RUNNING", None), (2, 6, None, "unknown", None)]
    assert model.machines[P1].state == State("RUNNING", Category.APT)
    assert model.apply(Batch.empty(), [death]).intervals == []
    alone = model.apply(Batch.empty(), [Event(t(7), P1, OFFLINE_EVENT, "died")])
    assert view(alone) == [(6, 7, "APT", "RUNNING", None)]
    assert not model.machines[P1].online(t(7))


def test_gap_across_batches_is_unknown() -> None:
    config, model = one_press(silence_s=60)
    feed(config, model, [r(0, "state", "RUNNING"), r(0.5, "temp", 1.0)])
    changes = feed(config, model, [r(4, "state", "IDLE")])
    assert view(changes) == [(0, 1.5, "APT", "RUNNING", None), (1.5, 4, None, "unknown", None)]


def test_other_machines_readings_make_a_silent_machine_unknown() -> None:
    config = plant(machine_config(P1, silence_s=60), machine_config(P2, silence_s=60))
    model = model_of(config)
    changes = feed(config, model, [r(0, "state", "RUNNING"), r(4, "state", "IDLE", P2),
                                   r(5, "temp", 1.0, P2)])
    assert view(changes) == [(0, 1, "APT", "RUNNING", None)]
    assert [i.machine for i, _ in changes.intervals] == [P1]
    assert model.machines[P1].state == UNKNOWN
    assert model.machines[P2].state == State("IDLE", Category.ADOT)


def test_a_late_backlog_is_applied_at_its_own_times() -> None:
    """P1's link is down for two hours while P2's data flows: P1 goes silent, then its
    backlog arrives. The backlog's states and the planned stop in between land at their
    own times; only P1's tolerated silence folds into one instant (minute 15)."""
    config = plant(machine_config(P1, silence_s=600), machine_config(P2, silence_s=600),
                   stops=[STOP])
    model = model_of(config)
    before = feed(config, model, [r(0, "state", "RUNNING"),
                                  *(r(m, "temp", 1.0) for m in range(6))])
    during = feed(config, model, [r(0, "state", "RUNNING", P2),
                                  *(r(m, "temp", 1.0, P2) for m in range(121))])
    assert model.machines[P1].silent
    backlog = feed(config, model, [*(r(m, "temp", 1.0) for m in range(6, 121)),
                                   r(100, "state", "IDLE")])
    p1 = [(i, raw) for i, raw in merged([before, during, backlog]).intervals if i.machine == P1]
    assert view(p1) == [(0, 15, "APT", "RUNNING", None), (15, 60, "APT", "RUNNING", None),
                        (60, 90, "PDOT", "RUNNING", None), (90, 100, "APT", "RUNNING", None)]
    assert model.machines[P1].state == State("IDLE", Category.ADOT)


def outage(reorder_s: float) -> tuple[OmbreConfig, ShadowModel, list[Changes]]:
    """P1 runs job A with its counter, its link drops from minute 5 to 120 while P2's
    data flows, and P1 goes silent; what each later step feeds is up to the test."""
    config = plant(machine_config(P1, silence_s=600, reorder_s=reorder_s),
                   machine_config(P2, silence_s=600))
    model = model_of(config)
    before = feed(config, model, [r(0, "state", "RUNNING"), r(0, "order", "A"),
                                  *(r(m, "total", float(m)) for m in range(6))])
    during = feed(config, model, [r(0, "state", "RUNNING", P2),
                                  *(r(m, "temp", 1.0, P2) for m in range(121))])
    assert model.machines[P1].silent
    return config, model, [before, during]


BACKLOG = [*(r(m, "total", float(m)) for m in range(6, 121)), r(60, "state", "BREAKDOWN"),
           r(70, "state", "RUNNING")]
AHEAD = [r(m, "total", float(m)) for m in (121, 122)]  # sent while reconnecting
LIVE = [r(m, "total", float(m)) for m in (123, 124)]


def p1_view(all_changes: list[Changes]) -> tuple[list[View], list[int]]:
    """P1's intervals and its count per minute bucket with parts."""
    done = merged(all_changes)
    p1 = [(i, raw) for i, raw in done.intervals if i.machine == P1]
    assert_contiguous(p1)
    return view(p1), [int((b - T0) // MIN) for (m, b, _), v in done.counts.items()
                      if m == P1 for _ in range(v[0])]


def test_a_backlog_sent_after_newer_readings_lands_at_its_own_times() -> None:
    """P1's device, reconnecting, sends two new readings before its backlog (as paho
    does). With reorder_s, P1's readings since it came back wait for the backlog, and
    P1's timeline and counts are those of the same data in time order."""
    config, model, changes = outage(reorder_s=600)
    changes.append(feed(config, model, AHEAD))
    assert model.machines[P1].silent
    assert len(model.machines[P1].held) == 2
    for part in (BACKLOG[:50], BACKLOG[50:]):  # the backlog in two batches
        changes.append(feed(config, model, part))
    changes.append(feed(config, model, LIVE))
    assert model.machines[P1].held == []
    config, in_order, expected = outage(reorder_s=600)
    for part in (BACKLOG[:50], BACKLOG[50:], AHEAD, LIVE):
        expected.append(feed(config, in_order, part))
    intervals, parts = p1_view(changes)
    assert (intervals, parts) == p1_view(expected)
    assert intervals == [(0, 15, "APT", "RUNNING", "A"), (15, 60, "APT", "RUNNING", "A"),
                         (60, 70, "ADET", "BREAKDOWN", "A")]
    # A part a minute, each in its own minute but those of the tolerated silence (6-15),
    # which fold into its end, as in any backlog (test_a_late_backlog_...).
    assert parts == [*range(1, 6), *[15] * 10, *range(16, 125)]


def test_a_backlog_slower_than_reorder_s_still_lands_while_it_keeps_coming() -> None:
    """The backlog comes in four parts, the plant's data time 6 minutes on at each: 24
    minutes in all, more than P1's reorder_s of 10. Each part moves the backlog on, so
    the wait goes on, and P1's timeline and parts are those of the data in time order."""
    config, model, changes = outage(reorder_s=600)
    changes.append(feed(config, model, AHEAD))
    backlog = sorted(BACKLOG)
    for i in range(4):
        part = backlog[i * len(backlog) // 4:(i + 1) * len(backlog) // 4]
        changes.append(feed(config, model, [*part, r(121 + 6 * (i + 1), "temp", 1.0, P2)]))
        assert (model.machines[P1].held != []) == (i < 3)
    changes.append(feed(config, model, LIVE))
    intervals, parts = p1_view(changes)
    assert intervals == [(0, 15, "APT", "RUNNING", "A"), (15, 60, "APT", "RUNNING", "A"),
                         (60, 70, "ADET", "BREAKDOWN", "A")]
    assert parts == [*range(1, 6), *[15] * 10, *range(16, 125)]
    assert (model.machines[P1].held_front_ns, model.machines[P1].held_moved_ns) == (0, 0)


def test_without_reorder_s_the_backlog_folds_into_the_return() -> None:
    """The same data without reorder_s: the backlog comes after P1's return at minute 121.
    Its states fold into that moment, and its counter readings, older than the one at
    121, are skipped as a redelivery: P1 is unknown for 106 minutes, its parts lost."""
    config, model, changes = outage(reorder_s=0)
    for part in (AHEAD, BACKLOG, LIVE):
        changes.append(feed(config, model, part))
    intervals, parts = p1_view(changes)
    assert intervals == [(0, 15, "APT", "RUNNING", "A"), (15, 121, None, "unknown", "A"),
                         (121, 122, "APT", "RUNNING", "A")]
    assert parts == [1, 2, 3, 4, 5, 122, 123, 124]


def test_a_backlog_among_live_readings_keeps_its_machine_heard() -> None:
    """The gateway interleaves P1's backlog with P2's live readings, some of each in
    every batch. P1 is not made silent again between two parts of its backlog (each
    batch would fold up to 10 minutes of it), so its timeline is the backlog's own."""
    config, model, changes = outage(reorder_s=0)
    backlog = sorted(BACKLOG)  # in time order, as its device sends it
    for i in range(0, len(backlog), 10):
        changes.append(feed(config, model, [*backlog[i:i + 10],
                                             r(121 + i / 100, "temp", 1.0, P2)]))
    intervals, parts = p1_view(changes)
    assert intervals == [(0, 15, "APT", "RUNNING", "A"), (15, 60, "APT", "RUNNING", "A"),
                         (60, 70, "ADET", "BREAKDOWN", "A")]
    assert parts == [*range(1, 6), *[15] * 10, *range(16, 121)]


def test_a_return_without_backlog_waits_reorder_s_of_plant_time() -> None:
    """P1 comes back with no backlog to come: its readings are applied at their own
    times once the plant's data time is reorder_s past its return, and a restart in
    between keeps what waits."""
    config, model, _ = outage(reorder_s=600)
    assert feed(config, model, [r(121, "state", "IDLE")]).touched == {P1}
    restored = model_of(config)
    for name, m in model.machines.items():
        restored.machines[name].restore(json.loads(json.dumps(m.snapshot())))
    assert restored.machines[P1].held == model.machines[P1].held != []
    for m in (model, restored):
        assert feed(config, m, [r(130, "temp", 1.0, P2)]).intervals == []  # 9 minutes on
        back = feed(config, m, [r(131, "temp", 1.0, P2)])
        assert [x for x in view(back) if x[3] != "RUNNING"] == [(15, 121, None, "unknown", "A")]
        assert m.machines[P1].state == State("IDLE", Category.ADOT)
        assert m.machines[P1].held == []


# --- planned stops --------------------------------------------------------------------

STOP = {"reason": "maintenance", "from": "2026-03-02T07:00:00Z", "to": "2026-03-02T07:30:00Z"}


def test_planned_stop_splits_the_running_interval() -> None:
    config = plant(machine_config(P1), stops=[STOP])
    model = model_of(config)
    changes = feed(config, model, [r(0, "state", "RUNNING"), r(0, "order", "A"),
                                   r(45, "temp", 1.0), r(120, "state", "IDLE")])
    assert view(changes) == [(0, 60, "APT", "RUNNING", "A"), (60, 90, "PDOT", "RUNNING", "A"),
                             (90, 120, "APT", "RUNNING", "A")]
    assert_contiguous(changes.intervals)


def test_state_change_inside_a_planned_stop_stays_planned() -> None:
    config = plant(machine_config(P1), stops=[STOP])
    model = model_of(config)
    changes = feed(config, model, [r(0, "state", "RUNNING"), r(70, "state", "BREAKDOWN"),
                                   r(100, "state", "RUNNING"), r(110, "temp", 1.0)])
    assert view(changes) == [(0, 60, "APT", "RUNNING", None), (60, 70, "PDOT", "RUNNING", None),
                             (70, 90, "PDOT", "BREAKDOWN", None),
                             (90, 100, "ADET", "BREAKDOWN", None)]


def test_advance_applies_planned_stop_edges() -> None:
    config = plant(machine_config(P1), stops=[STOP])
    model = model_of(config)
    feed(config, model, [r(0, "state", "RUNNING")])
    changes = model.advance(t(70))
    assert view(changes) == [(0, 60, "APT", "RUNNING", None)]
    press = model.machines[P1]
    assert press.planned
    assert press.category == Category.PDOT
    assert press.state.raw == "RUNNING"
    assert view(model.advance(t(95))) == [(60, 90, "PDOT", "RUNNING", None)]
    assert model.machines[P1].category == Category.APT


def test_planned_stop_of_another_machine_does_not_split() -> None:
    config = plant(machine_config(P1), machine_config(P2),
                   stops=[{**STOP, "machines": [P2]}])
    model = model_of(config)
    changes = feed(config, model, [r(0, "state", "RUNNING"), r(0, "state", "RUNNING", P2),
                                   r(120, "state", "IDLE"), r(120, "state", "IDLE", P2)])
    assert [v for i, v in zip(changes.intervals, view(changes), strict=True)
            if i[0].machine == P1] == [(0, 120, "APT", "RUNNING", None)]
    assert [v for i, v in zip(changes.intervals, view(changes), strict=True)
            if i[0].machine == P2] == [(0, 60, "APT", "RUNNING", None),
                                       (60, 90, "PDOT", "RUNNING", None),
                                       (90, 120, "APT", "RUNNING", None)]


# --- redelivery, batch boundaries, restarts -------------------------------------------


def shift_readings() -> list[Reading]:
    """A small shift: states, a job, counters with a reset and a glitch, temperature."""
    rows: list[Reading] = [r(0, "state", "IDLE"), r(0, "total", 1000.0), r(0, "scrap", 5.0),
                           r(0, "rework", 0.0), r(10, "order", "A"), r(10, "state", "SETUP"),
                           r(20, "state", "RUNNING"), r(50, "state", "BREAKDOWN"),
                           r(58, "state", "RUNNING"), r(85, "state", "IDLE"), r(85, "order", "")]
    total, scrap, rework = 1000.0, 5.0, 0.0
    for minute in range(1, 90):
        rows.append(r(minute + 0.1, "temp", 60.0 + minute % 3))
        if 20 <= minute < 50 or 58 <= minute < 85:
            total = 3.0 if minute == 60 else total + 2  # a counter reset at minute 60
            rows.append(r(minute + 0.9, "total", total))
        if minute in (25, 40, 70):
            scrap += 1
            rows.append(r(minute + 0.95, "scrap", scrap))
        if minute == 30:
            rows.append(r(minute + 0.5, "total", total + 700))  # a glitch, rejected
        if minute == 66:
            rework += 1
            rows.append(r(minute + 0.95, "rework", rework))
    return sorted(rows, key=lambda x: x[0])


def test_shift_intervals_and_counts() -> None:
    config, model = one_press()
    changes = feed(config, model, shift_readings())
    assert view(changes) == [(0, 10, "ADOT", "IDLE", None), (10, 20, "ASUT", "SETUP", "A"),
                             (20, 50, "APT", "RUNNING", "A"), (50, 58, "ADET", "BREAKDOWN", "A"),
                             (58, 85, "APT", "RUNNING", "A")]
    # 30 + 27 running minutes of 2 parts; the reset minute counts its 3 instead of 2.
    pq, gq, sq, rq = totals(changes.counts)
    assert (pq, sq, rq) == (57 * 2 + 1, 3, 1)
    assert gq == pq - sq - rq
    assert len(changes.rejected) == 1
    assert changes.jobs == [JobRecord(P1, "A", t(10), None),
                            JobRecord(P1, "A", t(10), t(85), "signal", "job signal cleared")]


def test_same_batch_twice_changes_nothing_the_second_time() -> None:
    config, model = one_press()
    batch, events = batch_of(config, shift_readings())
    first = model.apply(batch, events)
    assert first.intervals
    before = json.dumps(model.machines[P1].snapshot())
    second = model.apply(batch, events)
    assert second.intervals == []
    assert second.counts == {}
    assert second.jobs == []
    assert second.rejected == []
    assert first.readings.total() == len(batch) + len(events)
    assert second.readings == {}
    assert json.dumps(model.machines[P1].snapshot()) == before


def test_same_batch_with_a_silence_gap_twice_changes_nothing_the_second_time() -> None:
    """Redelivering a batch that holds a silence gap must not close the open interval
    again: the second apply may only count duplicates."""
    config, model = one_press(silence_s=60)
    batch, events = batch_of(config, [r(0, "state", "RUNNING"), r(0.5, "temp", 1.0),
                                      r(5, "temp", 1.0), r(5.5, "temp", 1.0)])
    first = model.apply(batch, events)
    assert view(first) == [(0, 1.5, "APT", "RUNNING", None), (1.5, 5, None, "unknown", None)]
    second = model.apply(batch, events)
    assert view(second) == []
    assert first.readings.total() == 4
    assert second.readings == {}
    assert model.machines[P1].since_ns == t(5)


def result_of(changes: Changes) -> tuple[list[tuple[str, View]], dict[Any, list[int]],
                                          list[JobRecord], list[Rejected]]:
    """What a call changed, machine by machine (in each machine's own order)."""
    intervals = sorted(zip((i.machine for i, _ in changes.intervals), view(changes),
                           strict=True), key=lambda x: x[0])
    return (intervals, changes.counts, sorted(changes.jobs, key=lambda j: j.machine),
            sorted(changes.rejected, key=lambda x: x.machine))


def feed_in_parts(config: OmbreConfig, readings: Sequence[Reading],
                  cuts: Iterable[int]) -> tuple[ShadowModel, Changes]:
    model = model_of(config)
    bounds = [0, *sorted(set(cuts)), len(readings)]
    parts = [feed(config, model, readings[a:b]) for a, b in itertools.pairwise(bounds)
             if b > a]
    return model, merged(parts)


def test_shift_in_one_batch_or_many_gives_the_same_result() -> None:
    config, model = one_press(silence_s=300)
    readings = shift_readings()
    whole = merged([feed(config, model, readings)])
    rng = random.Random(22400)
    for _ in range(5):
        cuts = rng.sample(range(1, len(readings)), 25)
        split_model, parts = feed_in_parts(config, readings, cuts)
        assert result_of(parts) == result_of(whole)
        assert split_model.machines[P1].snapshot() == model.machines[P1].snapshot()
    _, one_by_one = feed_in_parts(config, readings, range(1, len(readings)))
    assert result_of(one_by_one) == result_of(whole)


SIGNAL_VALUES: dict[str, st.SearchStrategy[EventValue]] = {
    "state": st.sampled_from(["IDLE", "SETUP", "RUNNING", "BREAKDOWN", "WAITING", "???"]),
    "order": st.sampled_from(["", "A", "B"]),
    "total": st.integers(0, 200).map(float),
    "scrap": st.integers(0, 20).map(float),
    "temp": st.floats(0, 100),
}


@st.composite
def timelines(draw: st.DrawFn) -> list[Reading]:
    """Readings of two presses in strictly increasing time, some of bad quality; gaps
    up to 4 minutes (a press is silent after 2) over the planned stops of TWO_PRESSES."""
    readings: list[Reading] = []
    ts = t(0)
    for _ in range(draw(st.integers(1, 60))):
        ts += draw(st.integers(1, 4 * 60)) * NS_PER_S
        signal = draw(st.sampled_from(sorted(SIGNAL_VALUES)))
        machine = draw(st.sampled_from([P1, P2]))
        bad = draw(st.integers(0, 9)) == 0
        readings.append((ts, machine, signal, draw(SIGNAL_VALUES[signal]),
                         Quality.BAD if bad else Quality.GOOD))
    return readings


TWO_PRESSES = plant(
    machine_config(P1, silence_s=120, counters={"total": "total", "scrap": "scrap",
                                                 "max_step": 60}),
    machine_config(P2, silence_s=120),
    stops=[{"reason": "break", "start": "06:30", "end": "06:40", "machines": [P1]},
           {"reason": "meeting", "start": "06:50", "end": "07:00"}])


@settings(max_examples=100, deadline=None)
@given(timelines(), st.lists(st.integers(1, 61), max_size=20))
def test_batch_boundaries_do_not_change_the_result(readings: list[Reading],
                                                   cuts: list[int]) -> None:
    cuts = [c for c in cuts if c < len(readings)]
    whole_model, whole = feed_in_parts(TWO_PRESSES, readings, [])
    split_model, parts = feed_in_parts(TWO_PRESSES, readings, cuts)
    assert result_of(parts) == result_of(whole)
    for machine in (P1, P2):
        assert_contiguous(whole.intervals, machine)
        assert (split_model.machines[machine].state, split_model.machines[machine].since_ns) == (
            whole_model.machines[machine].state, whole_model.machines[machine].since_ns)


@settings(max_examples=100, deadline=None)
@given(timelines(), st.lists(st.integers(1, 61), max_size=10))
def test_redelivered_batches_change_nothing(readings: list[Reading], cuts: list[int]) -> None:
    _, whole = feed_in_parts(TWO_PRESSES, readings, [])
    model = model_of(TWO_PRESSES)
    bounds = [0, *sorted({c for c in cuts if c < len(readings)}), len(readings)]
    parts = []
    for a, b in itertools.pairwise(bounds):
        batch, events = batch_of(TWO_PRESSES, readings[a:b])
        parts.append(model.apply(batch, events))
        again = model.apply(batch, events)
        assert (again.intervals, again.counts, again.jobs, again.rejected,
                again.readings) == ([], {}, [], [], {})
    assert result_of(merged(parts)) == result_of(whole)
    assert merged(parts).readings == whole.readings
    assert whole.readings.total() == len(readings)  # strictly increasing: none twice


@settings(max_examples=60, deadline=None)
@given(timelines(), st.lists(st.integers(1, 61), max_size=10), st.data())
def test_advance_between_batches_does_not_change_the_result(
        readings: list[Reading], cuts: list[int], data: st.DataObject) -> None:
    """The clock moved on while nothing arrived, but not past the next reading."""
    _, whole = feed_in_parts(TWO_PRESSES, readings, [])
    model = model_of(TWO_PRESSES)
    bounds = [0, *sorted({c for c in cuts if c < len(readings)}), len(readings)]
    parts = []
    for a, b in itertools.pairwise(bounds):
        parts.append(feed(TWO_PRESSES, model, readings[a:b]))
        if b < len(readings):
            now = data.draw(st.integers(readings[b - 1][0], readings[b][0] - 1))
            parts.append(model.advance(now))
    assert result_of(merged(parts)) == result_of(whole)


def test_first_reading_that_is_not_a_state_does_not_depend_on_batches() -> None:
    """The temperature arrives before the first state reading: whether they come in one
    batch or two must not change the intervals."""
    config, _ = one_press()
    readings = [r(0, "temp", 60.0), r(10, "state", "RUNNING"), r(20, "state", "IDLE")]
    _, whole = feed_in_parts(config, readings, [])
    _, split = feed_in_parts(config, readings, [1])
    assert view(split) == view(whole)


def test_snapshot_and_restore_continue_as_if_never_stopped() -> None:
    config = plant(machine_config(P1, silence_s=300), stops=[
        {"reason": "break", "start": "06:30", "end": "06:40"}])
    readings = shift_readings()
    cut = next(i for i, x in enumerate(readings) if x[0] > t(30.6))  # a glitch is pending
    kept = model_of(config)
    feed(config, kept, readings[:cut])
    assert kept.machines[P1].counters["total"].pending is not None
    assert kept.machines[P1].job == "A"
    saved = json.loads(json.dumps({name: m.snapshot() for name, m in kept.machines.items()}))
    restored = model_of(config)
    for name, snap in saved.items():
        restored.machines[name].restore(snap)
    assert restored.machines[P1].snapshot() == kept.machines[P1].snapshot()
    after_kept = feed(config, kept, readings[cut:])
    after_restored = feed(config, restored, readings[cut:])
    assert result_of(after_restored) == result_of(after_kept)
    assert after_kept.intervals  # the rest of the shift did close intervals
    assert restored.machines[P1].snapshot() == kept.machines[P1].snapshot()
    later = t(200)
    assert result_of(restored.advance(later)) == result_of(kept.advance(later))


def test_restore_keeps_silence_and_planned_state() -> None:
    config = plant(machine_config(P1, silence_s=60), stops=[STOP])
    kept = model_of(config)
    feed(config, kept, [r(0, "state", "BREAKDOWN"), r(0, "order", "A")])
    kept.advance(t(65))
    assert kept.machines[P1].silent
    assert not kept.machines[P1].planned  # its clock waits where its silence began
    restored = model_of(config)
    restored.machines[P1].restore(json.loads(json.dumps(kept.machines[P1].snapshot())))
    assert restored.machines[P1].state == UNKNOWN
    assert restored.machines[P1].category is None
    readings = [r(100, "state", "RUNNING"), r(110, "total", 5.0)]
    result = feed(config, kept, readings)
    assert result_of(feed(config, restored, readings)) == result_of(result)
    assert view(result)[:3] == [(1, 60, None, "unknown", "A"), (60, 90, "PDOT", "unknown", "A"),
                                (90, 100, None, "unknown", "A")]


# --- stop reasons from the machine ----------------------------------------------------


def reason_press() -> tuple[OmbreConfig, ShadowModel]:
    fields = machine_config(P1, reason={"signal": "fault", "grace_s": 5,
                                        "map": {12: "SPINDLE", 0: None}})
    fields["signals"].append({"name": "fault"})
    fields["state"]["map"] = {**STATE_MAP, "STOPPED": "ADET"}
    config = plant(fields)
    return config, model_of(config)


def reasons(changes: Changes) -> list[tuple[float, str, str | None, str | None]]:
    return [((i.start_ns - T0) / MIN, raw, i.reason, i.reason_raw) for i, raw in changes.intervals]


def test_the_reason_in_force_when_a_stop_opens_or_within_grace_is_the_stops() -> None:
    config, model = reason_press()
    changes = feed(config, model, [
        r(0, "order", "J1"), r(0, "state", "RUNNING"), r(0, "fault", 0.0),
        r(10, "state", "STOPPED"), r(10 + 4 / 60, "fault", 12.0),  # 4 s late: within grace
        r(20, "state", "RUNNING"), r(20.5, "fault", 0.0),
        r(29, "fault", 7.0), r(30, "state", "STOPPED"),  # in force when the stop opens
        r(40, "state", "RUNNING"), r(41, "fault", 0.0),
        r(50, "state", "STOPPED"), r(50 + 6 / 60, "fault", 12.0),  # 6 s late: not this stop's
        r(60, "state", "RUNNING"), r(70, "state", "IDLE"),
    ])
    assert reasons(changes) == [
        (0, "RUNNING", None, None), (10, "STOPPED", "SPINDLE", "12"),
        (20, "RUNNING", None, None), (30, "STOPPED", "7", "7"),  # unmapped: its own text
        (40, "RUNNING", None, None), (50, "STOPPED", None, None),
        (60, "RUNNING", None, None),  # a reason never explains production
    ]


def test_the_reason_of_an_open_stop_survives_a_restart() -> None:
    config, model = reason_press()
    feed(config, model, [r(0, "order", "J1"), r(0, "state", "STOPPED"), r(0, "fault", 12.0)])
    snap = json.loads(json.dumps(model.machines[P1].snapshot()))
    assert snap["interval_reason_code"] == "SPINDLE"
    restored = model_of(config)
    restored.machines[P1].restore(snap)
    changes = feed(config, restored, [r(5, "state", "RUNNING")])
    assert reasons(changes) == [(0, "STOPPED", "SPINDLE", "12")]
