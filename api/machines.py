"""The machines and their live state, from the shadow's snapshots."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel

from api.deps import AsViewer, Config, Machines, Now, Range, Store, Visible
from gateway.config import Place
from shadow.config import ShadowMachineConfig
from shadow.model import Machine
from shadow.timeline import Category

router = APIRouter(tags=["machines"])


class CountsOut(BaseModel):
    produced: int
    good: int
    scrap: int
    rework: int


class SignalOut(BaseModel):
    ts_ns: int
    value: float | str | bool | None
    quality: int


class MachineOut(BaseModel):
    """A machine's live state. `category` is its ISO 22400 category now (PDOT inside a
    planned stop; null when unclassified or unknown); `counts` are those of the current
    job; `since_ns` is when it entered its current state (null before its first
    reading); `online` is false once it has been silent longer than its silence_s;
    `job_by_hand` is true when it has no job signal: its jobs are started and completed
    through the API."""

    id: str
    name: str | None
    site: str
    area: str | None  # null for a line directly under its site
    line: str
    type: str | None
    job_by_hand: bool
    state: str
    since_ns: int | None
    category: Category | None
    failure: bool
    job: str | None
    counts: CountsOut
    online: bool
    last_seen_ns: int | None


class MachineDetailOut(MachineOut):
    signals: dict[str, SignalOut]


def machine_view(place: Place, machine: ShadowMachineConfig, snap: dict[str, Any] | None,
                 now_ns: int) -> dict[str, Any]:
    """A MachineOut's fields from the machine's place and config and its snapshot (if
    any)."""
    base = {"id": machine.id, "name": machine.name, "site": place.site, "area": place.area,
            "line": place.line, "type": machine.type, "job_by_hand": machine.job_signal is None}
    if snap is None:
        return {**base, "state": "no data yet", "since_ns": None, "category": None,
                "failure": False, "job": None,
                "counts": CountsOut(produced=0, good=0, scrap=0, rework=0),
                "online": False, "last_seen_ns": None}
    live = Machine(machine)
    live.restore(snap)
    pq, gq, sq, rq = live.job_counts
    return {**base, "state": live.state.raw, "since_ns": live.since_ns,
            "category": live.category,
            "failure": live.state.failure, "job": live.job,
            "counts": CountsOut(produced=pq, good=gq, scrap=sq, rework=rq),
            "online": live.online(now_ns), "last_seen_ns": live.last_seen_ns}


class LineOut(BaseModel):
    id: str
    name: str | None
    area: str | None  # null for a line directly under its site
    machines: list[str]


class SiteOut(BaseModel):
    id: str
    name: str | None
    lines: list[LineOut]


class TokenOut(BaseModel):
    name: str
    role: Literal["viewer", "operator", "admin"]
    site: str | None  # the one site it sees; null: the whole plant


@router.get("/token")
def who_asks(token: AsViewer) -> TokenOut:
    """The token that asks: its name, its role and the one site it sees (null: the
    whole plant). The dashboard leaves out the links a site's token may not open."""
    return TokenOut(name=token.name, role=token.role.name.lower(),
                    site=token.site)


@router.get("/sites")
def list_sites(_: AsViewer, scope: Visible) -> list[SiteOut]:
    """The sites the token sees (one for a token scoped to a site), with their lines
    and each line's machine ids: what the dashboard's site and line filters offer."""
    return [SiteOut(id=site.id, name=site.name, lines=[
        LineOut(id=line.id, name=line.name, area=area, machines=[m.id for m in line.machines])
        for area, line in [*((None, ln) for ln in site.lines),
                           *((a.id, ln) for a in site.areas for ln in a.lines)]])
        for site in scope.sites]


@router.get("/machines")
def list_machines(_: AsViewer, store: Store, config: Config, now: Now,
                  machines: Machines) -> list[MachineOut]:
    """The machines the token sees, or those of one `line` or `site`."""
    snaps, places = store.snapshots(), config.places()
    return [MachineOut(**machine_view(places[m.id], m, snaps.get(m.id), now)) for m in machines]


@router.get("/machines/{machine_id}")
def get_machine(machine_id: str, _: AsViewer, store: Store, config: Config, scope: Visible,
                now: Now) -> MachineDetailOut:
    """One machine with the last value, time and quality of each of its signals that
    the shadow has seen."""
    [machine] = scope.machines(machine_id)
    snap = store.snapshots().get(machine_id)
    signals = {name: SignalOut(ts_ns=ts, value=value, quality=quality)
               for name, (ts, value, quality) in (snap or {}).get("values", {}).items()}
    return MachineDetailOut(**machine_view(config.places()[machine_id], machine, snap, now),
                            signals=signals)


class IntervalOut(BaseModel):
    """One state interval. `reason` is its reason code, given by the machine or an
    operator (`reason_source`); `reason_raw` is what the machine gave as its stop
    reason, kept even when it is no declared code."""

    id: int
    start_ns: int
    end_ns: int
    raw_state: str
    category: Category | None
    job: str | None
    reason: str | None
    reason_source: Literal["machine", "operator"] | None
    reason_raw: str | None


@router.get("/machines/{machine_id}/timeline")
def machine_timeline(machine_id: str, *, _: AsViewer, store: Store, scope: Visible,
                     window: Range) -> list[IntervalOut]:
    """The machine's closed state intervals in the range, each with its category (a
    reason code's, if one was given) and reason: the band of the machine page."""
    scope.machines(machine_id)  # 404 if unknown or out of the token's site
    return [IntervalOut(**row) for row in store.intervals(machine_id, window)]
