"""The demo's clock: simulated time that runs `speed` times faster than the wall clock
from a start it is given (where the previous demo stopped, or now)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class SimClock:
    start_ns: int  # simulated time at the wall-clock instant the clock was made
    speed: float = 1.0
    _origin: float = field(default_factory=time.monotonic)

    def now_ns(self) -> int:
        return self.start_ns + int((time.monotonic() - self._origin) * self.speed * 1e9)

    def real_s(self, sim_s: float) -> float:
        """Wall-clock seconds that `sim_s` simulated seconds take."""
        return sim_s / self.speed
