"""What the routes share: the store and config of the running app, the clock, and
time ranges checked against the configured bound. The dependencies that do no I/O are
coroutines: FastAPI runs a plain function's dependency in its thread pool, a hop to a
thread and back that costs more than the work, and under load a wait for the GIL."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Query, Request

from api.auth import require
from api.config import ServedConfig
from api.tokens import Role, Token
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


async def selected_machines(request: Request, machine: MachineFilter = None,
                            line: MachineFilter = None) -> list[ShadowMachineConfig]:
    """The machines of one machine id or one line id, or every machine."""
    if machine is not None and line is not None:
        raise HTTPException(400, "give `machine` or `line`, not both")
    try:
        return select_machines(await config(request), machine, line)
    except KeyError as exc:
        raise HTTPException(404, exc.args[0]) from None


Machines = Annotated[list[ShadowMachineConfig], Depends(selected_machines)]
AsViewer = Annotated[Token, Depends(require(Role.VIEWER))]
AsOperator = Annotated[Token, Depends(require(Role.OPERATOR))]
AsAdmin = Annotated[Token, Depends(require(Role.ADMIN))]
