"""Part counts from counter readings: deltas that survive resets and reject glitches."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class CounterTrack:
    """One counter signal. `last` is the value counted from; `pending` an implausible
    value waiting for a second reading to confirm the new level."""

    last: float | None = None
    pending: float | None = None

    def step(self, value: float, max_step: int) -> tuple[int, str | None]:
        """The parts counted by `value`, and why it was rejected (None if it was not).

        The first reading is a baseline. A value below the last one means the counter
        was reset: the count starts again from the new value. A step above `max_step`
        is counted as nothing and rejected; if the next reading continues plausibly
        from it, the counter really jumped (a preset, a replaced PLC) and counting goes
        on from the new level, still without counting the jump."""
        last = self.last
        if last is None:
            self.last = value
            return 0, None
        delta = value - last if value >= last else value
        if delta <= max_step:
            self.last, self.pending = value, None
            return round(delta), None
        pending = self.pending
        if pending is not None and 0 <= value - pending <= max_step:
            self.last, self.pending = value, None
            return round(value - pending), None
        self.pending = value
        return 0, f"counter step {delta:g} from {last:g} exceeds max_step {max_step}"
