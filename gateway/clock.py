"""Notices steps of the system clock: NTP correcting a badly set clock, an operator's
`date -s`, a virtual machine resumed. Timers and reconnects run on the monotonic clock
and do not care; the timestamps Ombre gives what arrives without one are wall-clock
time, and those jump with the step. Health shows the step for `hold_s`, so an
operator sees why readings received around then look an hour off."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.counters import ConnectorCounters, Health

log = logging.getLogger(__name__)


@dataclass
class ClockWatch:
    """Compares the wall clock's progress with the monotonic clock's at each `check`;
    a difference of more than `tolerance_s` is a step. Called from the event loop only.
    `health` is a ConnectorCounters of kind "clock": degraded for `hold_s` after the
    last step, with the step in its error, up otherwise."""

    health: ConnectorCounters
    tolerance_s: float = 2.0
    hold_s: float = 600.0
    wall_s: Callable[[], float] = time.time
    monotonic_s: Callable[[], float] = time.monotonic
    steps: int = 0
    _offset_s: float = field(init=False)
    _stepped_at_s: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self._offset_s = self.wall_s() - self.monotonic_s()
        self.health.set_health(Health.UP)

    def check(self) -> float | None:
        """The step seen since the last check in seconds (positive: forward), or None."""
        now = self.monotonic_s()
        offset = self.wall_s() - now
        step = offset - self._offset_s
        self._offset_s = offset
        if abs(step) > self.tolerance_s:
            self.steps += 1
            self._stepped_at_s = now
            reason = f"the system clock stepped {step:+.1f} s (wall clock against monotonic)"
            if self.health.health is Health.DEGRADED:  # a second step while flagged
                self.health.last_error = reason
                log.warning("clock %s: %s", self.health.name, reason)
            else:
                self.health.set_health(Health.DEGRADED, reason)
            return step
        if self._stepped_at_s is not None and now - self._stepped_at_s >= self.hold_s:
            self._stepped_at_s = None
            self.health.set_health(Health.UP)
        return None

    async def run(self, interval_s: float = 1.0) -> None:
        """Check every `interval_s` until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            self.check()
