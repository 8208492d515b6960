"""Drift alerts end to end: a temperature ramp replayed through the pipeline raises one
alert, at a measured delay, that closes once the signal is back in control; history,
bad readings and repeated input raise nothing more; a person acknowledges and closes."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.types import Batch, Quality
from ombre.config import validate_config
from shadow.monitor import DriftMonitor
from tests.shadow.scenarios import D_DAY, D_RAMP, at, plant, reading, scenario_d_lines
from tests.shadow.test_replay import Shop

CUSUM = {"signal": "temp", "detector": "cusum", "in_control_s": 600}
# Scenario D's temperature as an engineer would watch it: one-minute means (6 readings
# of sd 0.5: sd 0.204), and h = 8 for an in-control ARL of thousands of minutes.
RAMP_WATCH = {**CUSUM, "h": 8.0, "aggregate_s": 60, "mean": 60.0, "sigma": 0.5 / 6**0.5}


def drift_shop(tmp_path: Path, database: str | None = None,
               drift: dict[str, Any] | None = None) -> Shop:
    return Shop(tmp_path, database, [], drift=[drift or CUSUM])


def alerts(shop: Shop, capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, str]]:
    code, out, err = shop.ombre(capsys, "alerts", "list", *args)
    assert code == 0, err
    return list(csv.DictReader(io.StringIO(out), delimiter="\t"))


def test_a_temperature_ramp_raises_one_alert_that_closes_when_back_in_control(
        tmp_path: Path, database: str | None, capsys: pytest.CaptureFixture[str]) -> None:
    shop = drift_shop(tmp_path, database, RAMP_WATCH)
    code, _, err = shop.ombre(capsys, "replay", str(shop.write("d.jsonl", scenario_d_lines())))
    assert code == 0, err
    [alert] = alerts(shop, capsys)
    assert (alert["machine"], alert["signal"], alert["detector"]) == ("press-1", "temp", "cusum")
    assert alert["direction"] == "up"
    assert float(alert["shift_sigma"]) > 0
    detected = at(alert["detected"][11:16], D_DAY)
    delay_min = (detected - D_RAMP[0]).total_seconds() / 60
    print(f"CUSUM detection delay of a 0.12 degC/min ramp (sd 0.5): {delay_min:.1f} min")
    assert 0 < delay_min < 20  # caught while the ramp is still going
    assert D_RAMP[0] <= at(alert["start"][11:16], D_DAY) <= detected
    # No alarm after the ramp: closed 10 min (in_control_s) after the last one.
    assert (alert["status"], alert["end"] != "") == ("closed", True)
    assert at(alert["end"][11:16], D_DAY) <= D_RAMP[1] + (D_RAMP[1] - D_RAMP[0])
    # The same file again raises nothing new.
    assert shop.ombre(capsys, "replay", str(tmp_path / "d.jsonl"))[0] == 0
    assert len(alerts(shop, capsys)) == 1


def test_history_raises_no_alert(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shop = drift_shop(tmp_path, drift=RAMP_WATCH)
    code, _, err = shop.ombre(capsys, "replay", str(shop.write("d.jsonl", scenario_d_lines())),
                              "--historical")
    assert code == 0, err
    assert alerts(shop, capsys) == []


def test_a_person_acknowledges_then_closes_with_a_cause(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shop = drift_shop(tmp_path, drift={**RAMP_WATCH, "in_control_s": 86_400})
    assert shop.ombre(capsys, "replay", str(shop.write("d.jsonl", scenario_d_lines())))[0] == 0
    [alert] = alerts(shop, capsys, "--status", "open")
    assert shop.ombre(capsys, "alerts", "ack", alert["id"])[0] == 1  # who?
    assert shop.ombre(capsys, "alerts", "ack", alert["id"], "--by", "ana")[0] == 0
    assert alerts(shop, capsys)[0]["acknowledged_by"] == "ana"
    code, _, err = shop.ombre(capsys, "alerts", "close", alert["id"], "--by", "ana",
                              "--cause", "gremlins")
    assert code == 1
    assert "'tool wear'" in err
    assert shop.ombre(capsys, "alerts", "close", alert["id"], "--by", "ana", "--cause",
                      "tool wear", "--note", "spindle bearing replaced")[0] == 0
    [closed] = alerts(shop, capsys)
    assert (closed["status"], closed["cause"], closed["note"]) == (
        "closed", "tool wear", "spindle bearing replaced")
    assert shop.ombre(capsys, "alerts", "close", alert["id"], "--by", "ana", "--cause",
                      "other")[0] == 1  # already closed


def monitor_for(drift: dict[str, Any]) -> tuple[DriftMonitor, int]:
    config = validate_config(plant(Path("data"), drift=[drift]))
    registry = config.registry()
    sid = registry.id_of("press-1", "temp")
    assert sid is not None
    return DriftMonitor(config.machines(), registry), sid


def shifted_batch(sid: int, quality: int, n: int = 400) -> Batch:
    """n readings, 1 s apart, of a signal 4 sigma above its declared mean."""
    return Batch(np.arange(n, dtype=np.int64) * 10**9 + 1, np.full(n, sid, np.int32),
                 np.full(n, 4.0), np.full(n, quality, np.uint8))


@pytest.mark.parametrize("flag", [Quality.BAD, Quality.HISTORICAL])
def test_flagged_readings_feed_no_detector(flag: Quality) -> None:
    monitor, sid = monitor_for({**CUSUM, "mean": 0.0, "sigma": 1.0})
    assert monitor.apply(shifted_batch(sid, int(flag)), []) == []
    assert monitor.apply(shifted_batch(sid, int(Quality.GOOD)), []) != []


def test_readings_older_than_the_last_taken_feed_no_detector() -> None:
    monitor, sid = monitor_for({**CUSUM, "mean": 0.0, "sigma": 1.0})
    first = monitor.apply(shifted_batch(sid, 0), [])
    assert first  # a 4 sigma shift: CUSUM alarms every few readings
    assert monitor.apply(shifted_batch(sid, 0), []) == []  # the same timestamps again


def test_aggregated_detectors_watch_window_means() -> None:
    """With aggregate_s 10, 400 readings a second apart are 40 windows: the detector
    takes 39 means (the last window is still open), so its alarms fall on window ends."""
    monitor, sid = monitor_for({**CUSUM, "mean": 0.0, "sigma": 1.0, "aggregate_s": 10})
    found = monitor.apply(shifted_batch(sid, 0), [])
    assert found
    assert all(alarm.ts_ns % (10 * 10**9) == 0 for _, alarm in found)
    state = json.loads(json.dumps(monitor.state()))
    again, _ = monitor_for({**CUSUM, "mean": 0.0, "sigma": 1.0, "aggregate_s": 10})
    assert again.restore(state)


def test_a_changed_detector_starts_again() -> None:
    monitor, _ = monitor_for(CUSUM)
    other, _ = monitor_for({**CUSUM, "h": 4.0})
    assert not other.restore(json.loads(json.dumps(monitor.state())))


def test_autocorrelated_readings_are_logged_once_when_the_baseline_is_learned(
        caplog: pytest.LogCaptureFixture) -> None:
    monitor, sid = monitor_for(CUSUM)
    rng = np.random.default_rng(8)
    x = np.empty(1200)
    x[0] = 0.0
    for t in range(1, x.size):  # AR(1), phi 0.6
        x[t] = 0.6 * x[t - 1] + rng.standard_normal()
    with caplog.at_level("INFO", logger="shadow.monitor"):
        for lo in range(0, x.size, 100):
            n = 100
            monitor.apply(Batch(np.arange(lo, lo + n, dtype=np.int64) * 10**9 + 1,
                                np.full(n, sid, np.int32), 60.0 + x[lo:lo + n],
                                np.zeros(n, np.uint8)), [])
    [record] = caplog.records
    assert record.levelname == "WARNING"
    assert record.getMessage().startswith("shadow: drift detector cusum on press-1/temp: "
                                          "baseline mean 6")
    assert "autocorrelated (phi=0.6" in record.getMessage()
    assert record.getMessage().endswith("watching AR(1) residuals")


def test_the_config_chooses_how_autocorrelation_is_handled() -> None:
    assert monitor_for(CUSUM)[0].bank.specs[0].autocorrelation == "residuals"
    monitor, _ = monitor_for({**CUSUM, "autocorrelation": "ignore", "baseline_points": 200})
    assert (monitor.bank.specs[0].autocorrelation, monitor.bank.specs[0].baseline_points) == (
        "ignore", 200)


def test_a_state_saved_by_an_older_version_starts_again() -> None:
    monitor, _ = monitor_for(CUSUM)
    state = json.loads(json.dumps(monitor.state()))
    state["bank"]["version"] = 2  # before the autocorrelation check
    again, _ = monitor_for(CUSUM)
    assert not again.restore(state)


def test_cycle_time_is_watched_from_counter_increments(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A running machine making a part every 30 s, then every 36 s (+20%): the derived
    cycle time, with a declared baseline of 30 s +- 1 s, raises an alert."""
    shop = drift_shop(tmp_path, drift={"signal": "cycle_time", "detector": "ewma",
                                       "mean": 30.0, "sigma": 1.0})
    ts = at("06:00", D_DAY)
    lines = [reading(ts, "state", "RUNNING")]
    for part in range(1, 121):
        ts += timedelta(seconds=30 if part <= 60 else 36)
        lines += [reading(ts, "total", part), reading(ts, "temp", 60.0)]
    assert shop.ombre(capsys, "replay", str(shop.write("c.jsonl", lines)))[0] == 0
    found = alerts(shop, capsys)
    assert [(a["signal"], a["direction"], a["unit"]) for a in found] == [("cycle_time", "up",
                                                                          "s")]
    # EWMA's estimate is w at the alarm: it lags a step, so it is below the 6 s change.
    assert 0 < float(found[0]["shift"]) <= 6.0
