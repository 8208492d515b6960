"""The maturity assessment on small plants replayed through the real shadow: the worked
shift of docs/kpi.md puts the press at each boundary (stage 2 but not 3, 3 but not 4,
and just over into 4), a plant that never sent data is honestly at stage 1, the CLI and
the API give the same JSON, and bad ranges are clear errors."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from ombre.config import load_config
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
            capsys: pytest.CaptureFixture[str], **machine: Any) -> Shop:
    """The worked shift replayed on the press, with its order imported or not, and a
    reason code for idle stops."""
    shop = Shop(tmp_path, database, [], **machine)
    data = json.loads(shop.config.read_text())
    data["shadow"]["reason_codes"].append({"code": "no_order", "text": "no order",
                                           "category": "ADOT"})
    shop.config.write_text(json.dumps(data))
    if orders:
        path = shop.write("orders.csv", WORKED_ORDERS_CSV)
        assert shop.ombre(capsys, "orders import", str(path))[0] == 0
    code, _, err = shop.ombre(capsys, "replay", str(shop.write(
        "shift.jsonl", worked_example_lines(states=STATES))))
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
    for key in ("data_completeness", "readings_lost", "adaptive_actions"):
        assert evidence[(key, "plant")]["value"] is None
        assert evidence[(key, "plant")]["note"].startswith("not measured: ")
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
    assert "  readings_lost: the outbox's counters" in out
    assert "lead_time" not in out  # a figure with no case, not one Ombre cannot measure


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
