"""A signal's history for charts: read from the SQLite time series, downsampled on the
server to at most `points` buckets (min, mean and max of the good readings in each),
with the baseline its drift detector watches against."""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
import numpy.typing as npt
from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel

from api.config import ServedConfig
from api.deps import AsViewer, Config, Range, Store, Visible
from connectors.sqlite_config import SqliteSinkConfig
from connectors.sqlite_ts import StoreError, open_store
from gateway.types import Quality
from shadow.monitor import DriftMonitor
from shadow.store import ShadowStore

router = APIRouter(tags=["machines"])
MAX_READINGS = 5_000_000  # read at most this many for one chart: ~120 MB of columns


class Baseline(BaseModel):
    """A drift detector's baseline and what its window showed: `phi` is the lag-1
    autocorrelation of the baseline window (null until a window was checked), `points`
    the window's size; `mode` says what the detector watches (`readings`, or
    `ar1_residuals` when the readings are autocorrelated); `status` says it in words."""

    detector: str
    mean: float
    sigma: float  # of what the detector watches: readings, or means over aggregate_s
    points: int
    phi: float | None
    phi_se: float
    autocorrelated: bool
    mode: Literal["readings", "ar1_residuals"]
    residual_sigma: float | None
    status: str


class SeriesOut(BaseModel):
    """Bucket start times and the min, mean and max of each (null where a bucket has no
    good reading); `readings` and `bad` count what the range held."""

    unit: str | None
    ts_ns: list[int]
    min: list[float | None]
    mean: list[float | None]
    max: list[float | None]
    readings: int
    bad: int
    baselines: list[Baseline]


def _baselines(config: ServedConfig, store: ShadowStore, machine: str,
               signal: str) -> list[Baseline]:
    monitor = DriftMonitor(config.machines(), config.registry())
    saved = store.drift_state()
    if saved is not None:
        monitor.restore(saved)
    found = []
    for i, watch in enumerate(monitor.watches):
        s = monitor.bank.status(i)
        if ((watch.machine, watch.signal) == (machine, signal) and s.mean is not None
                and s.sigma is not None and s.mode != "learning"):
            found.append(Baseline(detector=watch.config.detector, mean=s.mean, sigma=s.sigma,
                                  points=s.points, phi=s.phi, phi_se=s.phi_se,
                                  autocorrelated=s.autocorrelated, mode=s.mode,
                                  residual_sigma=s.residual_sigma, status=s.describe()))
    return found


@router.get("/machines/{machine_id}/signals/{signal}")
def signal_history(machine_id: str, signal: str, *, _: AsViewer, store: Store,
                   config: Config, scope: Visible, window: Range,
                   points: Annotated[int, Query(ge=2, le=5000)] = 500) -> SeriesOut:
    scope.machines(machine_id)  # 404 if unknown or out of the token's site
    registry = config.registry()
    sid = registry.id_of(machine_id, signal)
    if sid is None:
        raise HTTPException(404, f"no signal {signal!r} on machine {machine_id!r}")
    sink = next((s for s in config.sinks if isinstance(s, SqliteSinkConfig)), None)
    if sink is None:
        raise HTTPException(404, "no sqlite time-series sink in the config")
    try:
        with open_store(sink.path or config.data_dir / "timeseries.sqlite") as series:
            count = series.count(machine_id, signal, window.start_ns, window.end_ns)
            if count > MAX_READINGS:
                raise HTTPException(400, f"{count} readings in the range, more than "
                                         f"{MAX_READINGS} for one chart: narrow it")
            ts, value, quality = series.read(machine_id, signal, window.start_ns,
                                             window.end_ns)
    except KeyError:
        ts, value, quality = (np.empty(0, np.int64), np.empty(0), np.empty(0, np.uint8))
    except StoreError as exc:
        raise HTTPException(503, f"time series: {exc}") from None
    good = (quality & Quality.BAD) == 0
    edges = np.linspace(window.start_ns, window.end_ns, points + 1).astype(np.int64)
    bucket = np.searchsorted(edges, ts[good], side="right") - 1
    values = value[good]
    n = np.bincount(bucket, minlength=points)[:points]
    total = np.bincount(bucket, weights=values, minlength=points)[:points]
    low, high = np.full(points, np.inf), np.full(points, -np.inf)
    np.minimum.at(low, bucket, values)
    np.maximum.at(high, bucket, values)
    empty = (n == 0).tolist()

    def as_list(column: npt.NDArray[np.float64]) -> list[float | None]:
        return [None if e else v for v, e in zip(column.tolist(), empty, strict=True)]

    return SeriesOut(unit=registry.info(sid).unit, ts_ns=edges[:-1].tolist(),
                     min=as_list(low), mean=as_list(total / np.maximum(n, 1)),
                     max=as_list(high), readings=len(ts), bad=int((~good).sum()),
                     baselines=_baselines(config, store, machine_id, signal))
