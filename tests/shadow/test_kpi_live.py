"""One computation, whoever asks and whenever: while a real gateway process replays a
shift, `ombre kpi --json` in a process of its own and the API (with the demo's kind of
clock, simulated time running ahead of the wall clock) give the same KPIs, field by
field, at several moments. At each moment the gateway is held (SIGSTOP) between two
writes, so both read the same tables however slowly the machine answers; its clock and
the API's go on meanwhile, as they would."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from ombre.config import load_config
from shadow.calendar import to_ns
from sim.clock import SimClock
from tests.shadow.scenarios import WORKED_ORDERS_CSV, at, reading, stamp
from tests.shadow.test_replay import Shop

SPEED = 300  # a 30-minute pause in the data lasts 6 s: time to see a burst and hold it
BURSTS = 4
PAUSE = timedelta(minutes=30)
FIRST = at("06:50")  # the shift began at 06:00, the data at 06:50, as in the demo
WINDOWS = [("05:00", "08:00", "window"), ("06:00", "14:00", "shift")]


def bursts() -> Iterator[str]:
    """From 06:50, every 30 min, 40 s of readings, then nothing: running and waiting
    in turn, 20 parts of the 45 s order counted at the end of each running half hour."""
    total = 1000
    for k in range(BURSTS):
        start = FIRST + k * PAUSE
        total += 20 if k % 2 else 0
        yield reading(start, "total", total)
        yield reading(start, "order", "4711")
        yield reading(start, "state", "RUNNING" if k % 2 == 0 else "WAITING")
        yield reading(start + timedelta(seconds=40), "temp", 60.0)


def last_seen(api: TestClient, headers: dict[str, str]) -> int | None:
    response = api.get("/api/v1/machines/press-1", headers=headers)
    assert response.status_code == 200, response.text
    seen: int | None = response.json()["last_seen_ns"]
    return seen


def hold(replay: subprocess.Popen[bytes], database: Path) -> None:
    """Stops the gateway at a moment it holds no write transaction on `database`."""
    while True:
        replay.send_signal(signal.SIGSTOP)
        db = sqlite3.connect(database, timeout=0.1)
        try:
            db.execute("BEGIN IMMEDIATE")
            db.rollback()
            return
        except sqlite3.OperationalError:  # locked: let it finish its write
            replay.send_signal(signal.SIGCONT)
            time.sleep(0.1)
        finally:
            db.close()


def from_api(api: TestClient, headers: dict[str, str]) -> list[Any]:
    out = []
    for start, end, by in WINDOWS:
        response = api.get("/api/v1/kpis", headers=headers, params={
            "from": stamp(at(start)), "to": stamp(at(end)), "by": by})
        assert response.status_code == 200, response.text
        out.append(response.json())
    return out


def from_cli(shop: Shop) -> list[Any]:
    out = []
    for start, end, by in WINDOWS:
        done = subprocess.run(
            [sys.executable, "-m", "ombre", "kpi", "-c", str(shop.config), "--from",
             stamp(at(start)), "--to", stamp(at(end)), "--by", by, "--json"],
            capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        out.append(json.loads(done.stdout))
    return out


def test_cli_and_api_agree_field_by_field_while_a_replay_runs(tmp_path: Path) -> None:
    shop = Shop(tmp_path, None, [], silence_s=3600)
    orders = shop.write("orders.csv", WORKED_ORDERS_CSV)
    assert subprocess.run([sys.executable, "-m", "ombre", "orders", "import", str(orders),
                           "-c", str(shop.config)], capture_output=True, check=False,
                          timeout=60).returncode == 0
    file = shop.write("bursts.jsonl", bursts())
    config = load_config(shop.config, {})
    headers = shop.viewer_headers()
    clock = SimClock(to_ns(FIRST), SPEED)  # the API's now runs with the data, as in
    log = (tmp_path / "replay.log").open("w")
    replay = subprocess.Popen(  # `ombre demo`; the CLI's is the wall clock
        [sys.executable, "-m", "ombre", "replay", str(file), "--speed", str(SPEED), "-c",
         str(shop.config)], stdout=subprocess.DEVNULL, stderr=log)
    compared = []
    try:
        with TestClient(create_app(config, clock.now_ns)) as api:
            for k in range(BURSTS - 1):
                burst_end = to_ns(FIRST + k * PAUSE + timedelta(seconds=40))
                deadline = time.monotonic() + 120
                while (last_seen(api, headers) or 0) < burst_end:
                    assert replay.poll() is None, (tmp_path / "replay.log").read_text()
                    assert time.monotonic() < deadline, f"burst {k} was not written"
                    time.sleep(0.05)
                hold(replay, tmp_path / "data" / "ombre.sqlite")  # in the pause after it
                try:
                    api_kpis, cli_kpis = from_api(api, headers), from_cli(shop)
                    assert from_api(api, headers) == api_kpis  # nothing depends on the clock
                finally:
                    replay.send_signal(signal.SIGCONT)
                assert cli_kpis == api_kpis
                compared.append(api_kpis)
    finally:
        replay.wait(timeout=120)
        log.close()
    assert replay.returncode == 0, (tmp_path / "replay.log").read_text()
    assert len(compared) == BURSTS - 1
    assert compared[0] != compared[-1]  # the moments saw the shift go on
    for [[window], _] in compared:
        # 06:00-06:50 is before the first reading, and the time after the shadow's clock
        # (the last reading) has no data yet: neither is lost availability.
        times = window["time_s"]
        assert times["NODATA"] >= 50 * 60
        assert times["PBT"] == pytest.approx(times["APT"] + times["ADET"], abs=1e-9)
        assert times["PBT"] == pytest.approx(times["POT"] - times["NODATA"], abs=1e-9)
        assert window["coverage"]["value"] == pytest.approx(times["PBT"] / times["POT"],
                                                           abs=1e-12)
        assert window["kpis"]["availability"]["value"] == pytest.approx(
            times["APT"] / times["PBT"], abs=1e-12)
        effectiveness = window["kpis"]["effectiveness"]["value"]
        assert effectiveness is None or 0 <= effectiveness <= 1
