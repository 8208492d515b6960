"""The wall clock of `ombre run` stepped 1 h forward, then 1 h back, under a QoS 1 flow
of 200 readings/s (libfaketime preloaded, its offset read from a file every second;
the monotonic clock is left alone, as a system clock step leaves it): Ombre keeps its
one connection to Mosquitto (no reconnect storm), flags each step in its health, and
loses nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.mosquitto import Mosquitto
from tests.conftest import Publisher
from tests.faults.harness import Driven, Flow, end, rss_kb
from tests.faults.test_sigkill import stored
from tests.gateway.test_process import OmbreProcess, write_config

pytestmark = [pytest.mark.faults, pytest.mark.slow]

RATE = 200  # readings/s: libfaketime slows every clock read of the process
STEP_S = 3600
LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
FLAGGED = "clock system is degraded: the system clock stepped"


class FakeTimeOmbre(OmbreProcess):
    """`ombre run` whose wall clock is offset by what `offset_file` says ("+3600")."""

    def __init__(self, config: Path, log: Path, offset_file: Path) -> None:
        super().__init__(config, log)
        self.offset_file = offset_file

    def start(self) -> None:
        if not LIBFAKETIME.exists():
            pytest.fail(f"{LIBFAKETIME} is missing: `make test` installs the faketime package")
        self.offset_file.write_text("+0\n")
        env = {**os.environ, "LD_PRELOAD": str(LIBFAKETIME),
               "FAKETIME_TIMESTAMP_FILE": str(self.offset_file), "FAKETIME_CACHE_DURATION": "1",
               "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
        with self.log.open("ab") as log:
            self._started_at = log.tell()
            self.process = subprocess.Popen([sys.executable, "-m", "ombre", "run",
                                             str(self.config)], stdout=log, stderr=log, env=env)

    def step(self, offset_s: int) -> None:
        self.offset_file.write_text(f"{offset_s:+d}\n")


def test_clock_stepped_an_hour_each_way_is_flagged_without_reconnects_or_loss(
        broker: Mosquitto, tmp_path: Path) -> None:
    data = tmp_path / "data"
    ombre = FakeTimeOmbre(write_config(tmp_path, broker.port), tmp_path / "ombre.log",
                          tmp_path / "faketime")
    ombre.start()
    assert ombre.process is not None
    flow = Flow(Publisher(broker.port, client_id="clock-publisher"))
    detected_s: list[float] = []
    try:
        ombre.wait_for_log("source broker is up")
        driven = Driven(flow, ombre, RATE)
        driven.publish_for(5.0)
        rss_before = rss_kb(ombre.process.pid)
        for offset in (STEP_S, 0):
            stepped, since = time.monotonic(), driven.mark()
            ombre.step(offset)
            detected_s.append(driven.publish_for(
                30, until=FLAGGED if offset else "the system clock stepped -", since=since))
            driven.publish_for(max(0.0, 10 - (time.monotonic() - stepped)))
        driven.drain(lambda: sum(map(len, stored(data))))
        rss_after = rss_kb(ombre.process.pid)
        assert ombre.signal(signal.SIGTERM) == 0
    finally:
        end(flow, ombre)
    values = stored(data)
    lost = flow.lost(values)
    connects = (broker.workdir / "mosquitto.log").read_text().count("as ombre-test")
    print(f"\nwall clock stepped +{STEP_S} s then -{STEP_S} s at {RATE} readings/s: "
          f"{flow.sent} published, {lost} lost; {connects} connection(s) from Ombre at the "
          f"broker; each step flagged in health after {detected_s[0]:.1f} s and "
          f"{detected_s[1]:.1f} s; RSS {rss_before / 1024:.1f} MB before, "
          f"{rss_after / 1024:.1f} MB after")
    flow.assert_each_stored_once(values)
    assert connects == 1  # no reconnect, let alone a storm
    assert "Traceback" not in ombre.log.read_text()
