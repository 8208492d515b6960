"""The shadow's shared vocabulary: ISO 22400 categories, state intervals, count buckets
and order plans. Pure data; the model produces it, the tables store it, the KPIs read
it. Times are int64 nanoseconds since the epoch, UTC."""

from __future__ import annotations

import enum
from dataclasses import dataclass

NS_PER_S = 10**9
HOUR_NS = 3600 * NS_PER_S  # readings are counted per signal and hour (reading_count)
BUCKET_NS = 60 * NS_PER_S  # production counts are kept per minute


class Category(enum.StrEnum):
    """ISO 22400-2 time categories a machine's state maps to. Time with no category
    (the machine is silent, or no state is known) is unclassified: `None`."""

    APT = "APT"  # actual production time
    ASUT = "ASUT"  # actual setup time
    ADET = "ADET"  # actual unit delay time: unplanned stop with a job loaded
    ADOT = "ADOT"  # actual unit down time: no job loaded
    PDOT = "PDOT"  # planned down time


@dataclass(frozen=True, slots=True)
class Interval:
    """[start_ns, end_ns) of one machine in one state. `failure` marks a downtime whose
    reason counts as a failure (MTBF/MTTR); `job` is the job's order key, or None;
    `reason_raw` is what the machine gave as the reason of a stop, and `reason` the
    code that stands for it (its map's, or the raw text itself)."""

    machine: str
    start_ns: int
    end_ns: int
    category: Category | None
    failure: bool = False
    job: str | None = None
    reason: str | None = None
    reason_raw: str | None = None


@dataclass(frozen=True, slots=True)
class Count:
    """Parts counted on one machine for one job in the minute starting at bucket_ns."""

    machine: str
    bucket_ns: int
    job: str | None
    pq: int  # produced: good + scrap + rework
    gq: int  # good
    sq: int  # scrap
    rq: int  # rework


@dataclass(frozen=True, slots=True)
class OrderPlan:
    """What the production order planned, looked up by job key."""

    pru_s: float  # planned run time per unit, seconds
    planned_qty: int = 0
    planned_scrap_qty: int = 0


@dataclass(frozen=True, slots=True)
class Window:
    start_ns: int
    end_ns: int

    def __post_init__(self) -> None:
        if self.end_ns < self.start_ns:
            raise ValueError(f"window ends before it starts: {self.start_ns} > {self.end_ns}")
