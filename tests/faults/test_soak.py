"""`ombre run` under twice the nominal rate (2,000 readings/s against the 1,000 of the
other fault tests) with Mosquitto stopped for a while six times, once per period: its
RSS and open file descriptors stay flat (the slopes are printed), and nothing is lost.

OMBRE_SOAK_S sets the duration (default 180 s in `make test`; 1800 s is the full soak:
an outage every 5 minutes). Outages last a sixth of a period, at most 10 s.
OMBRE_SOAK_RATE sets the rate, for a machine whose publisher (this test) cannot keep
up with 2,000 readings/s.

The readings' timestamps step 1 ms per reading of a signal, slower than the wall clock
(4 signals at 1,000 readings/s: 0.25 s of data per second), so after a few minutes they
arrive late, into a time-series block that ended over 5 minutes ago: the store must not
compact such a block while it is still written (it once did, after every write, and the
30-minute soak's RSS grew by 4.3 MB/min)."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from bench.mosquitto import Mosquitto
from tests.conftest import Publisher
from tests.faults.harness import Driven, Flow, end, open_fds, rss_kb
from tests.faults.test_sigkill import stored
from tests.gateway.test_process import OmbreProcess, write_config

SOAK_S = float(os.environ.get("OMBRE_SOAK_S", "180"))
PERIODS = 6
PERIOD_S = SOAK_S / PERIODS
OUTAGE_S = min(10.0, PERIOD_S / 6)
RATE = int(os.environ.get("OMBRE_SOAK_RATE", "2000"))  # twice the nominal 1,000 readings/s
SAMPLE_S = 1.0

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.timeout(SOAK_S + 240)]


@dataclass
class Usage:
    """RSS (kB) and open file descriptors of one process, sampled over time (s)."""

    pid: int
    at: list[float] = field(default_factory=list)
    rss_kb: list[int] = field(default_factory=list)
    fds: list[int] = field(default_factory=list)

    def sample(self, now: float) -> None:
        self.at.append(now)
        self.rss_kb.append(rss_kb(self.pid))
        self.fds.append(open_fds(self.pid))

    def window(self, start: float, end: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        at = np.asarray(self.at)
        keep = (at >= start) & (at < end)
        return at[keep], np.asarray(self.rss_kb)[keep], np.asarray(self.fds)[keep]

    def slopes(self, start: float, end: float) -> tuple[float, float]:
        """Least-squares slopes of RSS (kB/min) and of open fds (per min) in [start, end)."""
        at, rss, fds = self.window(start, end)
        return (float(np.polyfit(at / 60, rss, 1)[0]), float(np.polyfit(at / 60, fds, 1)[0]))


def run_soak(driven: Driven, broker: Mosquitto, usage: Usage) -> list[float]:
    """The flow for SOAK_S, Mosquitto stopped mid-period for OUTAGE_S in each period,
    the process sampled every SAMPLE_S; returns the reconnect times after each restart."""
    reconnect_s: list[float] = []
    next_sample = 0.0
    while (now := time.monotonic() - driven.start) < SOAK_S:
        down_at = (now // PERIOD_S + 0.5) * PERIOD_S
        if down_at <= now < down_at + OUTAGE_S:
            broker.stop()
            driven.publish_for(down_at + OUTAGE_S - now)
            since = driven.mark()  # Ombre may reconnect before broker.start returns
            broker.start()
            reconnect_s.append(driven.publish_for(60, until="source broker is up",
                                                  since=since))
        driven.publish_for(0.05)
        if now >= next_sample:
            usage.sample(now)
            next_sample += SAMPLE_S
    return reconnect_s


def test_soak_at_twice_the_rate_with_broker_outages_stays_flat_and_loses_nothing(
        broker: Mosquitto, tmp_path: Path) -> None:
    data = tmp_path / "data"
    ombre = OmbreProcess(write_config(tmp_path, broker.port), tmp_path / "ombre.log")
    flow = Flow(Publisher(broker.port, client_id="soak-publisher"))
    ombre.start()
    assert ombre.process is not None
    usage = Usage(ombre.process.pid)
    try:
        ombre.wait_for_log("source broker is up")
        driven = Driven(flow, ombre, RATE)
        reconnect_s = run_soak(driven, broker, usage)
        driven.drain(lambda: sum(map(len, stored(data))), timeout_s=120)
        assert ombre.signal(signal.SIGTERM) == 0
    finally:
        end(flow, ombre)
    values = stored(data)
    lost = flow.lost(values)
    extra = sum(len(v) for v in values) - flow.sent + lost
    # Warm-up: the first period (imports, SQLite caches, the first backlog) is excluded.
    rss_slope, fd_slope = usage.slopes(PERIOD_S, SOAK_S)
    _, first_rss, first_fds = usage.window(PERIOD_S, 2 * PERIOD_S)
    _, last_rss, last_fds = usage.window(SOAK_S - PERIOD_S, SOAK_S)
    print(f"\nsoak {SOAK_S:.0f} s at {RATE} readings/s, Mosquitto stopped {OUTAGE_S:.0f} s "
          f"every {PERIOD_S:.0f} s ({len(reconnect_s)} outages): {flow.sent} published, "
          f"{lost} lost, {extra} extra in the stored series; reconnected "
          f"{min(reconnect_s):.1f}-{max(reconnect_s):.1f} s after each restart; RSS "
          f"{usage.rss_kb[0] / 1024:.1f} MB at the start, median "
          f"{np.median(first_rss) / 1024:.1f} MB in period 2 and "
          f"{np.median(last_rss) / 1024:.1f} MB in the last, slope {rss_slope:+.1f} kB/min; "
          f"open fds {usage.fds[0]} at the start, max {first_fds.max()} in period 2 and "
          f"{last_fds.max()} in the last, slope {fd_slope:+.3f}/min")
    assert len(reconnect_s) == PERIODS
    assert lost == 0
    assert extra == 0
    # Flat: no descriptor kept per outage, and memory not growing with time. The
    # period-2 window already holds one outage and its backlog, like the last one.
    assert last_fds.max() <= first_fds.max()
    assert np.median(last_rss) <= 1.1 * np.median(first_rss)
    assert "Traceback" not in ombre.log.read_text()
