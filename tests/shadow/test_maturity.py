"""The maturity assessment on small plants replayed through the real shadow: the worked
shift of docs/kpi.md puts the press at each boundary (stage 2 but not 3, 3 but not 4,
and just over into 4; resources exactly at visibility's threshold, and one minute
under), a plant that never sent data is honestly at stage 1, the CLI and
the API give the same JSON, and bad ranges are clear errors."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from ombre.config import load_config
from shadow import tables as t
from shadow.maturity import CRITERIA, STAGES
from shadow.schema import open_engine
from shadow.store import ShadowStore
from tests.shadow.scenarios import WORKED_ORDERS_CSV, WORKED_STATES, worked_example_lines
from tests.shadow.test_replay import Shop

SHIFT = ("--from", "2026-03-02T06:00:00Z", "--to", "2026-03-02T14:00:00Z")
README = Path(__file__).parents[2] / "README.md"
# The worked shift's downtime: (start, minutes, category) of its four stops, 70 min.
STOPS = {"06:00": (15, "ADOT"), "08:35": (15, "ADET"), "11:20": (10, "ADET"),
         "13:30": (30, "ADOT")}
# The worked shift, then a setup at 14:00 that closes the last idle stop.
STATES = [*WORKED_STATES[:-1], ("14:00", "SETUP", "")]
WATCHED = {"drift": [{"signal": "temp", "mean": 60.0, "sigma": 1.0}]}


def shop_of(tmp_path: Path, database: str | None, *, orders: bool,
            capsys: pytest.CaptureFixture[str], states: list[tuple[str, str, str]] = STATES,
            **machine: Any) -> Shop:
    """The worked shift (or these `states` of the press in it) replayed on the press,
    with its order imported or not, and a reason code for idle stops."""
    shop = Shop(tmp_path, database, [], **machine)
    data = json.loads(shop.config.read_text())
    data["shadow"]["reason_codes"].append({"code": "no_order", "text": "no order",
                                           "category": "ADOT"})
    shop.config.write_text(json.dumps(data))
    if orders:
        path = shop.write("orders.csv", WORKED_ORDERS_CSV)
        assert shop.ombre(capsys, "orders import", str(path))[0] == 0
    code, _, err = shop.ombre(capsys, "replay", str(shop.write(
        "shift.jsonl", worked_example_lines(states=states))))
    assert code == 0, err
    return shop


def assess(shop: Shop, capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    code, out, err = shop.ombre(capsys, "assess", *SHIFT, "--json", *args)
    assert code == 0, err
    result: dict[str, Any] = json.loads(out)
    return result


def stages(result: dict[str, Any]) -> tuple[int, int | None, int | None]:
    areas = result["areas"]
    return result["stage"], areas["resources"]["stage"], areas["information_systems"]["stage"]


def status(result: dict[str, Any], key: str) -> tuple[str, float | None]:
    area, _ = key.split(".")
    found = next(c for c in result["areas"][area]["criteria"] if c["key"] == key)
    return found["status"], found["value"]


def give_reasons(shop: Shop, capsys: pytest.CaptureFixture[str], starts: list[str]) -> None:
    """An operator gives the stops starting at `starts` (HH:MM) a reason."""
    engine = open_engine(shop.engine_url())
    try:
        found = ShadowStore(engine).unexplained_downtime(None, None, 100)
    finally:
        engine.dispose()
    by_start = {f"{(start // 60_000_000_000) // 60 % 24:02d}:"
                f"{(start // 60_000_000_000) % 60:02d}": (i, category)
                for i, _, start, _, _, category, _ in found}
    for hhmm in starts:
        interval, category = by_start[hhmm]
        code = "no_order" if category == "ADOT" else "tool"
        assert shop.ombre(capsys, "downtime", "assign", str(interval), code)[0] == 0


def test_without_orders_the_press_is_at_stage_2_but_not_3(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shop = shop_of(tmp_path, None, orders=False, capsys=capsys)
    result = assess(shop, capsys)
    assert stages(result) == (2, 3, 2)  # resources see everything; no order is linked
    assert status(result, "information_systems.orders_linked_share") == ("not met", 0.0)
    assert status(result, "information_systems.shift_kpis_share") == ("met", 1.0)
    assert status(result, "information_systems.link_availability") == ("met", 1.0)
    assert status(result, "resources.classified_share") == ("met", 1.0)
    [first, *_] = result["next_steps"]
    assert first["criterion"] == "information_systems.orders_linked_share"
    assert first["machine"] == "press-1"
    assert first["history"] == {"downtime_min": 70.0, "scrap": 12, "drift_alerts": 0}
    evidence = {(e["key"], e["scope"]): e for e in result["evidence"]}
    line = evidence[("orders_linked_share", "line:plant/line-1")]
    assert (line["numerator"], line["denominator"]) == (0, 390 * 60)
    assert line["threshold"] == 0.8
    assert "production_order" in line["source"]
    for key in ("data_completeness", "adaptive_actions"):
        assert evidence[(key, "plant")]["value"] is None
        assert evidence[(key, "plant")]["note"].startswith("not measured: ")
    assert evidence[("data_completeness", "plant")]["note"] == (
        "not measured: not measured for press-1/state, press-1/order, press-1/total, "
        "press-1/scrap, press-1/rework, press-1/temp: no expected period or steady poll")
    assert evidence[("readings_lost", "plant")]["value"] == 0  # the replay dropped nothing
    assert result["areas"]["culture"]["status"] == "not assessed"


def test_orders_and_reasons_move_the_press_across_stage_4_exactly_at_the_threshold(
        tmp_path: Path, database: str | None, capsys: pytest.CaptureFixture[str]) -> None:
    shop = shop_of(tmp_path, database, orders=True, capsys=capsys, **WATCHED)
    result = assess(shop, capsys)
    assert stages(result) == (3, 4, 3)  # the downtime has no reason yet
    assert status(result, "information_systems.downtime_reason_share") == ("not met", 0.0)
    assert status(result, "information_systems.alerts_cause_share") == \
        ("nothing to judge", None)
    # Resources are at 4 and their 5th stage is not measured: no step; IS needs its 4th.
    assert [s["criterion"] for s in result["next_steps"]] == [
        "information_systems.downtime_reason_share"]
    give_reasons(shop, capsys, ["06:00", "11:20", "13:30"])  # 55 of 70 min: 0.786
    result = assess(shop, capsys)
    assert stages(result) == (3, 4, 3)
    assert status(result, "information_systems.downtime_reason_share") == \
        ("not met", pytest.approx(55 / 70))
    give_reasons(shop, capsys, ["08:35"])  # 70 of 70 min
    result = assess(shop, capsys)
    assert stages(result) == (4, 4, 4)
    assert status(result, "information_systems.failures_anticipated_share") == ("not met", 0.0)


def test_just_over_the_reason_threshold_is_stage_4(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shop = shop_of(tmp_path, None, orders=True, capsys=capsys, **WATCHED)
    give_reasons(shop, capsys, ["06:00", "08:35", "13:30"])  # 60 of 70 min: 0.857
    result = assess(shop, capsys)
    assert stages(result) == (4, 4, 4)
    assert status(result, "information_systems.downtime_reason_share") == \
        ("met", pytest.approx(60 / 70))
    code, out, _ = shop.ombre(capsys, "assess", *SHIFT)  # in words
    assert code == 0
    assert "Overall stage: 4 transparency" in out
    assert "Culture: not assessed" in out
    assert "  data_completeness: not measured for press-1/state" in out
    assert "lead_time" not in out  # a figure with no case, not one Ombre cannot measure


@pytest.mark.parametrize(("unknown_from", "expected"), [
    ("13:12", (3, 4, 3)),  # 48 unknown minutes of 480 planned: 0.9, exactly the threshold
    ("13:11", (2, 2, 3)),  # 49 minutes: 0.898, and resources fall back to connectivity
])
def test_unknown_time_puts_resources_on_either_side_of_visibility(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], unknown_from: str,
        expected: tuple[int, int, int]) -> None:
    """From `unknown_from` to the shift's end the press reports a state its map does not
    know: unclassified time, which visibility (classified_share >= 0.9) does not count."""
    running_until_1130 = WORKED_STATES[:7]
    states = [*running_until_1130, (unknown_from, "PANEL_OFF", ""), ("14:00", "SETUP", "")]
    shop = shop_of(tmp_path, None, orders=True, capsys=capsys, states=states, **WATCHED)
    result = assess(shop, capsys)
    assert stages(result) == expected
    minutes = (14 * 60) - (int(unknown_from[:2]) * 60 + int(unknown_from[3:]))
    assert status(result, "resources.classified_share") == (
        "met" if expected[1] > 2 else "not met", pytest.approx(1 - minutes / 480))
    # Resources at 2: the step to 3 is the press's unknown time; at 4, their 5th stage is
    # not measured, and only information systems' next stage is left.
    assert [s["criterion"] for s in result["next_steps"]] == (
        ["information_systems.downtime_reason_share"] if expected[1] == 4 else
        ["resources.classified_share", "information_systems.downtime_reason_share"])


def test_a_month_asked_of_a_gateway_that_ran_one_shift_judges_that_shift(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The gateway's first reading is at 06:00 on the worked shift: the 30 days before
    are not unclassified time nor shifts without KPIs, so the default-length window
    earns what the shift alone earns (3, 4, 3), and says where it starts."""
    shop = shop_of(tmp_path, None, orders=True, capsys=capsys, **WATCHED)
    code, out, err = shop.ombre(capsys, "assess", "--to", SHIFT[3], "--json")
    assert code == 0, err
    month = json.loads(out)
    assert stages(month) == stages(assess(shop, capsys)) == (3, 4, 3)
    assert month["window"]["from"] == SHIFT[1]
    assert month["window"]["note"].startswith("asked from 2026-01-31T14:00:00Z; starts at "
                                              "the gateway's first run")
    assert status(month, "information_systems.shift_kpis_share") == ("met", 1.0)
    assert status(month, "resources.classified_share") == ("met", 1.0)
    code, out, _ = shop.ombre(capsys, "assess", "--to", SHIFT[3])
    assert "(asked from 2026-01-31T14:00:00Z; starts at the gateway's first run" in out


def test_readings_are_counted_against_each_signal_s_expected_period(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """temp is declared every 60 s: the worked shift sends it every minute (480 of 480),
    then the same shift on the next day without its 10:00-11:00 readings (420 of 480),
    and its 12:00-13:00 ones sent twice, as a QoS 1 redelivery does: counted once.
    The other signals declare no period and are named as not measured; the file
    replayed again adds no reading."""
    signals = [{"name": "state", "type": "string"}, {"name": "order", "type": "string"},
               *({"name": n} for n in ("total", "scrap", "rework")),
               {"name": "temp", "expected_period_s": 60}]
    shop = shop_of(tmp_path, None, orders=False, capsys=capsys, signals=signals)

    def completeness(day: str) -> dict[str, Any]:
        code, out, err = shop.ombre(capsys, "assess", "--from", f"{day}T06:00:00Z",
                                    "--to", f"{day}T14:00:00Z", "--json")
        assert code == 0, err
        found: dict[str, Any] = next(e for e in json.loads(out)["evidence"]
                                     if e["key"] == "data_completeness"
                                     and e["scope"] == "machine:press-1")
        return found

    first = completeness("2026-03-02")
    assert (first["value"], first["numerator"], first["denominator"]) == (1.0, 480, 480)
    assert first["note"] == ("not measured for state, order, total, scrap, rework: no "
                             "expected period or steady poll")
    again = shop.write("again.jsonl", worked_example_lines(states=STATES))
    assert shop.ombre(capsys, "replay", str(again))[0] == 0
    assert completeness("2026-03-02")["numerator"] == 480
    next_day = [line for line in worked_example_lines(
        day=datetime(2026, 3, 3, tzinfo=UTC), states=STATES)
        if not ('"temp"' in line and '"2026-03-03T10:' in line)]
    twice = [line for line in next_day if '"temp"' in line and '"2026-03-03T12:' in line]
    assert len(twice) == 60
    next_day += twice
    assert shop.ombre(capsys, "replay", str(shop.write("gap.jsonl", next_day)))[0] == 0
    gap = completeness("2026-03-03")
    assert (gap["numerator"], gap["denominator"]) == (420, 480)


POLLED = {
    "modbus": {"type": "modbus", "name": "plc", "host": "127.0.0.1", "items": [
        {"machine": "press-1", "signal": "temp", "address": "hr:0:float32",
         "poll_interval_ms": 60_000},
        {"machine": "press-1", "signal": "total", "address": "hr:2:uint32", "deadband": 0}]},
    "s7": {"type": "s7", "name": "plc", "host": "127.0.0.1", "slot": 1,
           "poll_interval_ms": 60_000, "items": [
               {"machine": "press-1", "signal": "temp", "address": "DB1.DBD0"},
               {"machine": "press-1", "signal": "total", "address": "DB1.DBD4",
                "deadband": 0}]},
}


@pytest.mark.parametrize("source", sorted(POLLED))
def test_a_polled_signal_is_counted_against_its_poll_interval(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], source: str) -> None:
    """A Modbus device or S7 PLC polls temp every minute with no deadband (every poll
    sends it), and total with a deadband (sent on change only: no rate to count
    against); the worked shift replayed: temp 480 of 480, total named as not measured."""
    shop = shop_of(tmp_path, None, orders=False, capsys=capsys)
    data = json.loads(shop.config.read_text())
    data["sources"] = [POLLED[source]]
    shop.config.write_text(json.dumps(data))
    result = assess(shop, capsys)
    [found] = [e for e in result["evidence"] if e["key"] == "data_completeness"
               and e["scope"] == "machine:press-1"]
    assert (found["value"], found["numerator"], found["denominator"]) == (1.0, 480, 480)
    assert found["note"] == ("not measured for state, order, total, scrap, rework: no "
                             "expected period or steady poll")


def test_the_live_model_s_age_is_sampled_every_minute_and_a_silence_raises_its_p95(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The worked shift sends every minute: at each of the 481 minutes from 06:00 to
    14:00 the press's newest reading is at most 59 s old. The same shift the next day,
    silent from 10:00 to 10:30: ages grow to 1801 s at 10:30, and the 95th percentile
    (the 457th of 481) is the age at 10:06."""
    shop = shop_of(tmp_path, None, orders=False, capsys=capsys)
    silent = [line for line in worked_example_lines(
        day=datetime(2026, 3, 3, tzinfo=UTC), states=STATES)
        if not re.search(r'"2026-03-03T10:[0-2]', line)]
    assert shop.ombre(capsys, "replay", str(shop.write("silent.jsonl", silent)))[0] == 0

    def p95(day: str) -> dict[str, Any]:
        code, out, err = shop.ombre(capsys, "assess", "--from", f"{day}T06:00:00Z",
                                    "--to", f"{day}T14:00:01Z", "--json")
        assert code == 0, err
        found: dict[str, Any] = next(e for e in json.loads(out)["evidence"]
                                     if e["key"] == "data_age_p95" and e["scope"] == "plant")
        return found

    steady, gap = p95("2026-03-02"), p95("2026-03-03")
    assert steady["note"] == gap["note"] == "481 samples"
    assert 0 < steady["value"] <= 59
    assert gap["value"] == 361  # 10:06:00 - 09:59:59


def test_counts_and_ages_older_than_35_days_are_pruned(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The worked shift, then the same shift 36 days later: the first one's reading
    counts and ages are gone, the second's are kept, and the completeness of a window
    over both counts only the days kept (481 of 480.02, not of 960.02)."""
    signals = [{"name": "state", "type": "string"}, {"name": "order", "type": "string"},
               *({"name": n} for n in ("total", "scrap", "rework")),
               {"name": "temp", "expected_period_s": 60}]
    shop = shop_of(tmp_path, None, orders=False, capsys=capsys, signals=signals)
    later = worked_example_lines(day=datetime(2026, 4, 7, tzinfo=UTC), states=STATES)
    assert shop.ombre(capsys, "replay", str(shop.write("later.jsonl", later)))[0] == 0
    engine = open_engine(shop.engine_url())
    try:
        with engine.connect() as c:
            hours = sorted({h for (h,) in c.execute(select(t.reading_count.c.hour_ns))})
            minutes = sorted({m for (m,) in c.execute(select(t.model_age.c.minute_ns))})
    finally:
        engine.dispose()
    april = int(datetime(2026, 4, 7, tzinfo=UTC).timestamp()) * 10**9
    assert hours[0] >= april
    assert minutes[0] >= april
    assert len(minutes) == 481  # 06:00 to 14:00 of the later shift
    code, out, err = shop.ombre(capsys, "assess", "--from", "2026-03-01T00:00:00Z",
                                "--to", "2026-04-08T00:00:00Z", "--json")
    assert code == 0, err
    [found] = [e for e in json.loads(out)["evidence"]
               if e["key"] == "data_completeness" and e["scope"] == "machine:press-1"]
    # The shift's temp readings, and the one at 14:00:01 the run covered to.
    assert (found["numerator"], found["denominator"]) == (481, pytest.approx(480 + 1 / 60))


def test_a_plant_that_never_sent_data_is_at_stage_1(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shop = Shop(tmp_path, None, [])
    data = json.loads(shop.config.read_text())
    data["sources"] = [{"type": "mqtt", "name": "floor", "subscriptions": [
        {"topic": "plant/press-1/{signal}", "machine": "press-1"}]}]
    shop.config.write_text(json.dumps(data))
    result = assess(shop, capsys)
    assert stages(result) == (1, 1, 1)
    assert status(result, "resources.connected_share") == ("not met", 0.0)
    assert status(result, "information_systems.link_availability") == ("not measured", None)
    assert result["next_steps"][0]["machine"] == "press-1"
    assert result["next_steps"][0]["history"] is None  # nothing known of it yet
    evidence = {(e["key"], e["scope"]): e for e in result["evidence"]}
    assert evidence[("protocols", "plant")]["note"] == "mqtt: 1 machines"


def test_the_cli_and_the_api_give_the_same_assessment_and_keep_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shop = shop_of(tmp_path, None, orders=True, capsys=capsys)
    cli = assess(shop, capsys)
    headers = shop.viewer_headers()
    with TestClient(create_app(load_config(shop.config, {}))) as api:
        response = api.get("/api/v1/assessment", headers=headers,
                           params={"from": SHIFT[1], "to": SHIFT[3]})
        assert response.status_code == 200, response.text
        assert response.json() == cli
        history = api.get("/api/v1/assessment/history", headers=headers)
        assert history.status_code == 200
        assert [(h["day"], h["stage"], h["areas"]["resources"]) for h in history.json()] == \
            [("2026-03-02", 3, 3)]
        for params, problem in (
                ({"from": SHIFT[3], "to": SHIFT[1]}, "is after"),
                ({"from": "2020-01-01T00:00:00Z", "to": SHIFT[3]}, "max_range_days"),
                ({"from": "not a time"}, None)):
            response = api.get("/api/v1/assessment", headers=headers, params=params)
            assert response.status_code in (400, 422), response.text
            assert problem is None or problem in response.text
        assert api.get("/api/v1/assessment/history", headers=headers,
                       params={"limit": 0}).status_code == 422
        assert api.get("/api/v1/assessment").status_code == 401


def test_a_range_backwards_or_too_long_is_a_clear_cli_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shop = Shop(tmp_path, None, [])
    code, _, err = shop.ombre(capsys, "assess", "--from", SHIFT[3], "--to", SHIFT[1])
    assert code == 1
    assert "is after --to" in err
    code, _, err = shop.ombre(capsys, "assess", "--from", "2020-01-01T00:00:00Z",
                              "--to", SHIFT[3])
    assert code == 1
    assert "longer than api.max_range_days (400 days)" in err


def test_the_readme_lists_every_threshold_with_its_reason() -> None:
    """The README's table and CRITERIA say the same, row for row."""
    text = README.read_text()
    rows = re.findall(r"^\| (\w+) \| (\d) \w[\w ]* \| `(\w+)` \| ([\d.]+) \| (.+) \|$",
                      text, re.MULTILINE)
    assert [(a, int(s), m, float(th), why) for a, s, m, th, why in rows] == [
        (c.area, c.stage, c.measure, c.threshold, c.reason) for c in CRITERIA]
    assert len(STAGES) == 7
