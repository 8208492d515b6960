"""Coverage: which time the data can speak for. Time before a machine's first reading,
and time when the gateway was not running (outside every run of the shadow, in data
time), is *no data*: it is reported as such and is not planned busy time, so it counts
as no loss. Time when the gateway ran but a machine was silent stays unclassified
(unknown), inside planned busy time. docs/kpi.md explains the rule."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from shadow.time_elements import Span, normalise
from shadow.timeline import Window


@dataclass(frozen=True, slots=True)
class Run:
    """One run of the gateway's shadow: the wall clock it began at (its key), and the
    data time it covered, from its oldest reading to its newest (the heartbeat)."""

    started_ns: int
    start_ns: int
    end_ns: int
    lost: int | None = None  # readings its queue and outbox dropped so far, if known


@dataclass(frozen=True, slots=True)
class Coverage:
    """The data time the gateway's runs covered, and each machine's first reading (a
    machine that has none was never seen)."""

    runs: Sequence[Window]
    first_ns: Mapping[str, int]

    def covered(self, machine: str) -> list[Span]:
        """The time that has data for `machine`: inside a run, from its first reading."""
        first = self.first_ns.get(machine)
        if first is None:
            return []
        runs = normalise((w.start_ns, w.end_ns) for w in self.runs)
        return [(max(start, first), end) for start, end in runs if end > first]
