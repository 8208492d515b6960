"""The clock-step detector against a wall clock and a monotonic clock the test moves:
a real step of the system clock is what tests/faults/test_clock_step.py does."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from gateway.clock import ClockWatch
from gateway.counters import ConnectorCounters, Counters, Health
from gateway.metrics import up_family
from tests.conftest import plant_config


class Clocks:
    def __init__(self) -> None:
        self.wall, self.mono = 1_800_000_000.0, 100.0

    def tick(self, seconds: float, wall_step: float = 0.0) -> None:
        self.mono += seconds
        self.wall += seconds + wall_step


def watch(clocks: Clocks, hold_s: float = 600.0) -> ClockWatch:
    return ClockWatch(ConnectorCounters("system", "clock"), hold_s=hold_s,
                      wall_s=lambda: clocks.wall, monotonic_s=lambda: clocks.mono)


def test_steady_clocks_and_small_drift_are_not_steps() -> None:
    clocks = Clocks()
    w = watch(clocks)
    for _ in range(100):
        clocks.tick(1.0, wall_step=0.01)  # NTP slewing: 10 ms/s
        assert w.check() is None
    assert w.health.health is Health.UP
    assert w.steps == 0


@pytest.mark.parametrize("step", [3600.0, -3600.0])
def test_a_step_is_flagged_once_then_cleared_after_the_hold(
        step: float, caplog: pytest.LogCaptureFixture) -> None:
    clocks = Clocks()
    w = watch(clocks, hold_s=60)
    clocks.tick(1.0, wall_step=step)
    with caplog.at_level(logging.WARNING):
        assert w.check() == pytest.approx(step)
        for _ in range(30):
            clocks.tick(1.0)
            assert w.check() is None
    assert w.health.health is Health.DEGRADED
    assert f"stepped {step:+.1f} s" in (w.health.last_error or "")
    assert len(caplog.records) == 1  # logged once, not at every check
    for _ in range(30):
        clocks.tick(1.0)
        w.check()
    assert w.health.health is Health.UP
    assert w.steps == 1


def test_a_second_step_while_flagged_is_logged_and_extends_the_hold(
        caplog: pytest.LogCaptureFixture) -> None:
    clocks = Clocks()
    w = watch(clocks, hold_s=60)
    clocks.tick(1.0, wall_step=3600)
    w.check()
    clocks.tick(50.0, wall_step=-3600)
    with caplog.at_level(logging.WARNING):
        assert w.check() == pytest.approx(-3600)
    assert "stepped -3600.0 s" in caplog.text
    clocks.tick(30.0)
    w.check()
    assert w.health.health is Health.DEGRADED  # 80 s after the first step, 30 after this
    assert w.steps == 2


def test_the_clock_is_a_part_that_readyz_and_the_up_gauge_report(tmp_path: Path) -> None:
    counters = Counters(plant_config(1883, tmp_path).registry())
    clocks = Clocks()
    w = ClockWatch(counters.connector("system", "clock"), wall_s=lambda: clocks.wall,
                   monotonic_s=lambda: clocks.mono)
    clocks.tick(1.0, wall_step=-3600.0)
    w.check()
    assert [(p.name, p.kind, p.health) for p in counters.parts()] == [
        ("system", "clock", Health.DEGRADED)]
    assert [(s.labels, s.value) for s in up_family(counters.parts()).samples] == [
        ({"connector": "system", "kind": "clock"}, 0)]
