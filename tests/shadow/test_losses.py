"""The losses of a window by cause and by machine (shadow.losses), on the worked example
of docs/kpi.md replayed into the tables: the Pareto's minutes add up to what the KPIs
say is lost, and every lost minute has the intervals behind it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pytest

from ombre.config import load_config
from shadow.calendar import to_ns
from shadow.losses import BigLoss, Cause, Family, LossReport, loss_window, losses
from shadow.schema import open_engine
from shadow.store import ShadowStore
from shadow.timeline import Category, Window
from tests.shadow.scenarios import (
    B_DAY,
    B_ORDERS_CSV,
    B_STOP,
    WORKED_ORDERS_CSV,
    at,
    plant,
    scenario_b_lines,
    worked_example_lines,
)
from tests.shadow.test_reasons import replayed
from tests.shadow.test_replay import WORKED_STOP, Shop, replay_worked_example

SHIFT = Window(to_ns(at("06:00")), to_ns(at("14:00")))
DOCS = (Path(__file__).parents[2] / "docs" / "kpi.md").read_text()


@contextmanager
def report_of(shop: Shop, window: Window = SHIFT) -> Iterator[LossReport]:
    config = load_config(shop.config, {})
    engine = open_engine(shop.engine_url())
    try:
        yield losses(ShadowStore(engine), config, window, config.machines())
    finally:
        engine.dispose()


def minutes(values: dict[str, float] | dict[Family, float] | dict[BigLoss, float]
            ) -> dict[str, float]:
    return {str(k): round(v / 60, 9) for k, v in values.items()}


def test_the_worked_examples_lost_minutes_by_cause_family_and_big_loss(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shop = Shop(tmp_path, None, [WORKED_STOP])
    replay_worked_example(shop, capsys)
    with report_of(shop) as report:
        pass
    # PBT 450 - fully productive 0.75 * 460 = 105 min: 60 availability (ADOT 15, setup
    # 20, two breakdowns 25), 30 performance (390 - 0.75 * 480), 15 quality (0.75 * 20).
    assert report.kpis["press-1"].losses.fully_productive_s == 345 * 60
    assert report.lost_s == pytest.approx(105 * 60, abs=1e-6)
    assert minutes(dict(report.by_family)) == {"availability": 60, "performance": 30,
                                              "quality": 15}
    # Scrap at 06:40 and rework at 06:42 are within 10 min of the setup's end (06:35).
    assert minutes(dict(report.by_big_loss)) == {
        "breakdowns": 25, "setup_adjustments": 20, "idling_minor_stops": 15,
        "reduced_speed": 30, "process_defects": 13.5, "startup_rejects": 1.5}
    assert [(b.cause, b.key, round(b.lost_s / 60, 9)) for b in report.by_reason] == [
        (Cause.UNEXPLAINED, "unexplained", 40), (Cause.SPEED, "speed", 30),
        (Cause.SETUP, "setup", 20), (Cause.DEFECTS, "defects", 13.5),
        (Cause.STARTUP, "startup_rejects", 1.5)]
    assert report.unexplained_s == 40 * 60
    unexplained = report.by_reason[0]
    assert [(p.start_ns, p.end_ns, p.category, p.failure, p.big_loss)
            for p in unexplained.pieces] == [
        (to_ns(at("06:00")), to_ns(at("06:15")), Category.ADOT, False, BigLoss.IDLING),
        (to_ns(at("08:35")), to_ns(at("08:50")), Category.ADET, True, BigLoss.BREAKDOWNS),
        (to_ns(at("11:20")), to_ns(at("11:30")), Category.ADET, True, BigLoss.BREAKDOWNS)]
    speed = report.by_reason[1]
    assert [(p.start_ns, round(p.lost_s / 60, 9), p.job) for p in speed.pieces] == [
        (to_ns(at(start)), round(length * 30 / 390, 9), "4711")
        for start, length in (("06:35", 120), ("08:50", 150), ("11:30", 120))]
    defects = report.by_reason[3]
    assert sum(p.bad_parts for p in defects.pieces) == 18
    assert [(m.key, round(m.lost_s / 60, 9)) for m in report.by_machine] == [("press-1", 105)]
    assert report.unpriced == {}
    # Every bar lists every piece, the pieces add up to the bar, the bars to the whole.
    assert sum(len(b.pieces) for b in report.by_reason) == len(report.pieces)
    for bar in report.by_reason:
        assert bar.lost_s == pytest.approx(sum(p.lost_s for p in bar.pieces), abs=1e-9)
    # docs/kpi.md says the same.
    page = " ".join(DOCS[DOCS.index("In the worked example below"):].split("\n\n")[0].split())
    lost = {b.key: f"{b.lost_s / 60:g}" for b in report.by_reason}
    big = {str(k): f"{v / 60:g}" for k, v in report.by_big_loss.items()}
    assert (f"the {report.lost_s / 60:g} lost minutes (450 \u2212 345) are {lost['unexplained']} "
            f"unexplained (idle 15, two breakdowns with no reason code 25), {lost['speed']} "
            f"speed, {lost['setup']} setup, {lost['defects']} defects and "
            f"{lost['startup_rejects']} startup rejects") in page
    assert (f"By big loss: breakdowns {big['breakdowns']}, setup and adjustments "
            f"{big['setup_adjustments']}, idling and minor stops {big['idling_minor_stops']}, "
            f"reduced speed {big['reduced_speed']}, process defects {big['process_defects']}, "
            f"startup rejects {big['startup_rejects']}.") in page
    data = report.to_dict(max_pieces=1)
    assert data["kpi_losses_s"] == {"press-1": pytest.approx(105 * 60, abs=1e-6)}
    assert [(b["pieces_total"], len(b["pieces"])) for b in data["by_reason"]][:2] == \
        [(3, 1), (3, 1)]


def test_the_stops_the_machine_gave_a_reason_have_their_own_bar(
        tmp_path: Path, database: str | None, capsys: pytest.CaptureFixture[str]) -> None:
    shop = replayed(tmp_path, database, capsys, signal="stop_reason", grace_s=5)
    assert shop.ombre(capsys, "orders import", str(shop.write("orders.csv",
                                                              WORKED_ORDERS_CSV)))[0] == 0
    with report_of(shop) as report:
        pass
    # APT 393: performance 393 - 360 = 33 min; availability 450 - 393 = 57 min.
    assert [(b.key, round(b.lost_s / 60, 9)) for b in report.by_reason] == [
        ("speed", 33), ("unexplained", 22), ("setup", 20), ("SPINDLE_FAULT", 15),
        ("defects", 13.5), ("startup_rejects", 1.5)]
    assert report.lost_s == pytest.approx(report.to_dict()["kpi_losses_s"]["press-1"], abs=1e-6)
    spindle = report.by_reason[3]
    assert spindle.cause is Cause.REASON
    assert [(p.reason, p.reason_raw, p.failure, p.big_loss) for p in spindle.pieces] == \
        [("SPINDLE_FAULT", "SPINDLE_FAULT", True, BigLoss.BREAKDOWNS)]
    assert report.reason_texts == {"SPINDLE_FAULT": "spindle drive fault"}
    # The 11:20 stop's raw reason E917 is no code: it waits for an operator's reason.
    assert [(p.reason, p.reason_raw, p.big_loss) for p in report.by_reason[1].pieces] == \
        [(None, None, BigLoss.IDLING), (None, "E917", BigLoss.IDLING)]


def test_the_shift_day_or_week_that_holds_a_time(tmp_path: Path) -> None:
    path = tmp_path / "plant.yaml"
    path.write_text(json.dumps(plant(tmp_path / "data")))
    config = load_config(path, {})
    noon = to_ns(at("12:00"))
    assert loss_window(config, "shift", noon) == SHIFT
    assert loss_window(config, "day", noon) == Window(to_ns(at("00:00")),
                                                      to_ns(at("00:00")) + 86_400 * 10**9)
    monday = to_ns(datetime.fromisoformat("2026-03-02T00:00:00+00:00"))
    sunday_night = to_ns(datetime.fromisoformat("2026-03-08T23:59:00+00:00"))
    assert loss_window(config, "week", sunday_night) == Window(monday,
                                                               monday + 7 * 86_400 * 10**9)
    with pytest.raises(ValueError, match="no shift of the calendar holds 2026-03-02T23:00"):
        loss_window(config, "shift", to_ns(at("23:00")))


def test_a_breakdown_cut_by_a_planned_stop_two_prus_and_a_silent_machine(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shop = Shop(tmp_path, None, [B_STOP])
    assert shop.ombre(capsys, "orders import", str(shop.write("o.csv", B_ORDERS_CSV)))[0] == 0
    assert shop.ombre(capsys, "replay", str(shop.write("b.jsonl", scenario_b_lines())))[0] == 0
    early = Window(to_ns(at("06:00", B_DAY)), to_ns(at("14:00", B_DAY)))
    with report_of(shop, early) as report:
        pass
    lost = report.to_dict()["kpi_losses_s"]["press-1"]
    assert report.lost_s == pytest.approx(lost, abs=1e-6)
    # The breakdown 11:50-12:40 loses only its 20 minutes outside the stop 12:00-12:30.
    [breakdown] = [b for b in report.by_reason if b.key == "unexplained"]
    assert [(p.start_ns, p.end_ns) for p in breakdown.pieces if p.category is Category.ADET] \
        == [(to_ns(at("11:50", B_DAY)), to_ns(at("12:00", B_DAY))),
            (to_ns(at("12:30", B_DAY)), to_ns(at("12:40", B_DAY)))]
    # Four A100 parts scrapped at a PRU of 30 s; none just after a setup.
    assert minutes(dict(report.by_family))["quality"] == 2
    assert "startup_rejects" not in minutes(dict(report.by_big_loss))
    late = Window(to_ns(at("14:00", B_DAY)), to_ns(at("22:00", B_DAY)))
    with report_of(shop, late) as report:
        pass
    assert report.lost_s == pytest.approx(report.to_dict()["kpi_losses_s"]["press-1"],
                                          abs=1e-6)
    # Silent from 15:02 (the last reading and its tolerated silence) to 15:30: unknown,
    # and unexplained; the 6 hours with no data after 16:00 are no loss.
    assert minutes(dict(report.by_big_loss))["unknown_state"] == 28
    unknown = [p for p in report.pieces if p.big_loss is BigLoss.UNKNOWN]
    assert {p.cause for p in unknown} == {Cause.UNEXPLAINED}
    assert max(p.end_ns for p in report.pieces) <= to_ns(at("16:00", B_DAY))


def test_idle_time_left_out_and_parts_with_no_prus(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shop = Shop(tmp_path, None, [WORKED_STOP], exclude_idle=True)
    replay_worked_example(shop, capsys)
    with report_of(shop) as report:
        pass
    assert report.lost_s == pytest.approx(90 * 60, abs=1e-6)  # the 15 idle minutes are out
    assert Category.ADOT not in {p.category for p in report.pieces}
    (tmp_path / "no-orders").mkdir()
    no_orders = Shop(tmp_path / "no-orders", None, [WORKED_STOP])
    code, _, err = no_orders.ombre(capsys, "replay", str(no_orders.write(
        "shift.jsonl", worked_example_lines())))
    assert code == 0, err
    with report_of(no_orders) as report:
        pass
    # Without a PRU only the downtime is priced, and the machine is named.
    assert report.unpriced == {"press-1": "480 parts have no PRU (no order plan or no job)"}
    assert minutes(dict(report.by_family)) == {"availability": 60}
