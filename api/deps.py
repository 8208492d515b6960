"""What the routes share: the store and config of the running app, the clock, and
time ranges checked against the configured bound. The dependencies that do no I/O are
coroutines: FastAPI runs a plain function's dependency in its thread pool, a hop to a
thread and back that costs more than the work, and under load a wait for the GIL."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Query, Request

from api.auth import Authenticated, require
from api.config import ServedConfig
from api.tokens import Role, Token
from gateway.config import LineConfig, SiteConfig
from shadow.calendar import to_ns
from shadow.config import ShadowMachineConfig
from shadow.report import select_machines
from shadow.store import ShadowStore
from shadow.tables import TEXT
from shadow.timeline import Window

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


async def store(request: Request) -> ShadowStore:
    found: ShadowStore = request.app.state.store
    return found


async def config(request: Request) -> ServedConfig:
    found: ServedConfig = request.app.state.config
    return found


async def now_ns(request: Request) -> int:
    return int(request.app.state.clock())


def bounded(name: str, ts: datetime) -> datetime:
    """`ts` (UTC without a zone) if within the range of int64 nanoseconds, else 400."""
    ts = ts if ts.tzinfo else ts.replace(tzinfo=UTC)
    if not EARLIEST <= ts < LATEST:  # int64 nanoseconds end in 2262
        raise HTTPException(400, f"`{name}` must be from {EARLIEST.date()} to before "
                                 f"{LATEST.date()}, found {ts.isoformat()}")
    return ts


def window_of(default: timedelta) -> Callable[..., Awaitable[Window]]:
    """The dependency reading `from` and `to` (RFC 3339; without a zone, UTC); by default
    the `default` span up to now. A range longer than api.max_range_days is refused with
    400."""

    async def window(request: Request,
                     from_: Annotated[datetime | None, Query(alias="from")] = None,
                     to: Annotated[datetime | None, Query()] = None) -> Window:
        end = bounded("to", to or datetime.fromtimestamp(await now_ns(request) / 1e9, UTC))
        start = bounded("from", from_) if from_ else end - default
        if start > end:
            raise HTTPException(400, f"`from` ({start.isoformat()}) is after `to` "
                                     f"({end.isoformat()})")
        limit = (await config(request)).api.max_range_days
        if end - start > timedelta(days=limit):
            raise HTTPException(400, f"the range from {start.isoformat()} to "
                                     f"{end.isoformat()} is longer than api.max_range_days "
                                     f"({limit:g} days)")
        return Window(to_ns(start), to_ns(end))

    return window


window = window_of(timedelta(hours=24))


MachineFilter = Annotated[str | None, Query(max_length=400, pattern=TEXT)]
RowId = Annotated[int, Path(ge=1, le=2**31 - 1)]  # a database row id (SQL INTEGER)
Store = Annotated[ShadowStore, Depends(store)]
Config = Annotated[ServedConfig, Depends(config)]
Now = Annotated[int, Depends(now_ns)]
Range = Annotated[Window, Depends(window)]


@dataclass(frozen=True, slots=True)
class Scope:
    """What a request may see: the one site its token is scoped to, or the whole plant
    (`site` None). What lies outside is answered as unknown (404), never as forbidden:
    a site's token learns nothing of the others."""

    site: str | None
    sites: list[SiteConfig[ShadowMachineConfig]]
    where: str  # "in the config", or "at site 'lyon'"

    def machines(self, machine: str | None = None, line: str | None = None,
                 site: str | None = None) -> list[ShadowMachineConfig]:
        """The machines of one machine, line or site of the scope (all of them if none
        is given); 404 naming what is unknown."""
        try:
            return select_machines(self.sites, machine, line, site, where=self.where)
        except KeyError as exc:
            raise HTTPException(404, exc.args[0]) from None

    def ids(self) -> list[str] | None:
        """The machine ids a query is to keep, or None when it may keep every row."""
        return None if self.site is None else [m.id for m in self.machines()]

    def lines(self) -> list[LineConfig[ShadowMachineConfig]]:
        return [line for site in self.sites for line in site.all_lines()]


async def scope(token: Authenticated, config: Config) -> Scope:
    if token.site is None:
        return Scope(None, config.sites, "in the config")
    return Scope(token.site, [s for s in config.sites if s.id == token.site],
                 f"at site {token.site!r}")


Visible = Annotated[Scope, Depends(scope)]


async def plant_wide(token: Authenticated) -> None:
    """403 for a token scoped to a site: what the route serves is the whole plant's."""
    if token.site is not None:
        raise HTTPException(403, f"token {token.name!r} sees site {token.site!r} only; this "
                                 "covers the whole plant")


PlantWide = Depends(plant_wide)


async def selected_machines(scope: Visible, machine: MachineFilter = None,
                            line: MachineFilter = None,
                            site: MachineFilter = None) -> list[ShadowMachineConfig]:
    """The machines of one machine id, line id or site id, or every machine the token
    sees."""
    if sum(x is not None for x in (machine, line, site)) > 1:
        raise HTTPException(400, "give one of `machine`, `line` or `site`, not two")
    return scope.machines(machine, line, site)


async def selected_ids(scope: Visible, machines: Annotated[
        list[ShadowMachineConfig], Depends(selected_machines)]) -> list[str] | None:
    """The ids of the selected machines, or None for every machine of the plant: the
    filter a query of the tables needs."""
    everything = scope.site is None and len(machines) == len(scope.machines())
    return None if everything else [m.id for m in machines]


Machines = Annotated[list[ShadowMachineConfig], Depends(selected_machines)]
MachineIds = Annotated[list[str] | None, Depends(selected_ids)]
AsViewer = Annotated[Token, Depends(require(Role.VIEWER))]
AsOperator = Annotated[Token, Depends(require(Role.OPERATOR))]
AsAdmin = Annotated[Token, Depends(require(Role.ADMIN))]
