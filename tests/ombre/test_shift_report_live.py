"""The shift report written by `ombre run` at the end of a shift in wall-clock time: a
machine fed over MQTT (a real Mosquitto) through a shift that ends a few seconds after
the gateway starts. One reading arrives at a time, so each write of the shadow holds a
single reading (the shadow once never ended a shift then)."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pypdf import PdfReader

from bench.mosquitto import Mosquitto
from tests.conftest import Publisher

SHIFT_LEFT_S = 15  # the shift ends this long after the test starts (`ombre run` starts first)


async def test_ombre_run_writes_the_reports_when_the_shift_ends(
        broker: Mosquitto, publisher: Publisher, tmp_path: Path) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    end = now + timedelta(seconds=SHIFT_LEFT_S)
    config = tmp_path / "plant.yaml"
    config.write_text(json.dumps({
        "data_dir": str(tmp_path / "data"),
        "sites": [{"id": "plant", "lines": [{"id": "line-1", "name": "Presses", "machines": [
            {"id": "press-1", "signals": [{"name": "temp"}]}]}]}],
        "sources": [{"type": "mqtt", "name": "broker", "port": broker.port,
                     "subscriptions": [{"topic": "plant/{machine}/{signal}",
                                        "format": "number"}]}],
        "runtime": {"flush_interval_ms": 20},
        "shadow": {"calendar": {"timezone": "UTC", "shifts": [
            {"name": "live", "start": (now - timedelta(minutes=2)).time().isoformat(),
             "end": end.time().isoformat(),
             "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]}]},
            "reports": {"language": "fr"}},
    }))
    run = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ombre", "run", str(config), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    reports = tmp_path / "data" / "reports"
    try:
        deadline = time.monotonic() + SHIFT_LEFT_S + 60
        while not list(reports.glob("*.json")):
            publisher.publish("plant/press-1/temp", b"41.5")
            assert run.returncode is None, "ombre run ended"
            assert time.monotonic() < deadline, "no report after the shift's end"
            await asyncio.sleep(0.5)
    finally:
        if run.returncode is None:
            run.send_signal(signal.SIGTERM)
        log = (await asyncio.wait_for(run.communicate(), 60))[0].decode()
    assert run.returncode == 0, log
    assert "Traceback" not in log
    [meta_file] = reports.glob("*.json")
    meta = json.loads(meta_file.read_text())
    assert (meta["line"], meta["shift"], meta["lang"], meta["complete"]) == \
        ("line-1", "live", "fr", True)
    assert meta["end_ns"] == int(end.timestamp()) * 10**9
    assert sorted(meta["files"]) == [f"{meta_file.stem}.html", f"{meta_file.stem}.pdf"]
    assert "<h1>Rapport de poste · Presses</h1>" in (reports / meta["files"][0]).read_text()
    assert len(PdfReader(reports / f"{meta_file.stem}.pdf").pages) == 1
