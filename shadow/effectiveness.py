"""The planned run time of counted parts, laid onto the running time that made them.

A part counted in the minute starting at `b` was made by running time before that
minute ended. Taking one job's minutes on one machine in time order, each minute's
PRU * PQ is laid onto the latest running time (APT of that job there) before the
minute's end that earlier parts have not taken. Effectiveness then counts, in a window,
only the planned run time laid inside the window's planned busy time: parts count only
where their time counts, so a machine that never runs faster than its PRU cannot show
an effectiveness above 1, however the window cuts its cycles. Planned run time that
finds no running time at all (the machine ran faster than its PRU, or counted parts
while not running) is the overrun: it is kept in the effectiveness, and reported."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shadow.time_elements import Span


@dataclass(frozen=True, slots=True)
class Laid:
    """Where one demand's planned run time went, and what found no running time."""

    spans: tuple[Span, ...]
    overrun_ns: int


def lay(running: Sequence[Span], demands: Sequence[tuple[int, int]]) -> list[Laid]:
    """`demands` as (deadline_ns, planned run time ns), sorted by deadline, laid onto
    `running` (normalised), each as late as it can before its deadline."""
    free: list[list[int]] = []  # running time not yet taken, latest last
    i, pushed = 0, None
    out = []
    for deadline, demand in demands:
        while i < len(running) and running[i][0] < deadline:
            start = running[i][0] if pushed is None else max(running[i][0], pushed)
            end = min(running[i][1], deadline)
            if start < end:
                free.append([start, end])
                pushed = end
            if running[i][1] > deadline:
                break
            i += 1
        taken, need = [], demand
        while need and free:
            start, end = free[-1]
            n = min(need, end - start)
            taken.append((end - n, end))
            need -= n
            if n == end - start:
                free.pop()
            else:
                free[-1][1] = end - n
        out.append(Laid(tuple(reversed(taken)), need))
    return out
