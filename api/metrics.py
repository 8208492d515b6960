"""`/metrics` in the Prometheus text format: request counts and latencies per route,
the health of each part of the data path (as in /readyz), what the shadow knows
(machines online, per category, open drift alerts, stops with a raw reason no code
stands for) and, in the gateway's process, the runtime's counters."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import health
from api.config import ServedConfig
from api.deps import AsViewer, Config, Now, Store
from api.machines import MachineOut, machine_view
from api.ratelimit import RateLimits
from gateway.counters import Counters, Health, label, up_gauge
from shadow.store import ShadowStore

router = APIRouter(tags=["operations"])
BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class RequestStats:
    """Latency histograms keyed by (method, handler, status): bounded by the routes the
    app has, since unknown paths count under the handler "unmatched"."""

    histograms: dict[tuple[str, str, int], list[float]] = field(default_factory=dict)

    def observe(self, key: tuple[str, str, int], seconds: float) -> None:
        # [count per bucket..., +Inf count, sum]
        h = self.histograms.setdefault(key, [0.0] * (len(BUCKETS_S) + 2))
        for i, bound in enumerate(BUCKETS_S):
            if seconds <= bound:
                h[i] += 1
        h[-2] += 1
        h[-1] += seconds

    def lines(self) -> list[str]:
        out = ["# HELP ombre_http_request_seconds API request latency",
               "# TYPE ombre_http_request_seconds histogram"]
        for (method, handler, status), h in sorted(self.histograms.items()):
            labels = f'method="{method}",handler="{handler}",status="{status}"'
            out += [f'ombre_http_request_seconds_bucket{{{labels},le="{b}"}} {h[i]:g}'
                    for i, b in enumerate(BUCKETS_S)]
            out += [f'ombre_http_request_seconds_bucket{{{labels},le="+Inf"}} {h[-2]:g}',
                    f"ombre_http_request_seconds_count{{{labels}}} {h[-2]:g}",
                    f"ombre_http_request_seconds_sum{{{labels}}} {h[-1]:.6f}"]
        return out


class Timed:
    """Middleware: times every request, up to the start of its answer, under its route's
    handler name, in the app's RequestStats. A plain ASGI one: Starlette's
    BaseHTTPMiddleware would start a task and a stream for each request."""

    def __init__(self, app: ASGIApp, stats: RequestStats) -> None:
        self.app = app
        self.stats = stats

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def send_timed(message: Message) -> None:
            if message["type"] == "http.response.start":
                handler = getattr(scope.get("route"), "name", "unmatched")
                self.stats.observe((scope["method"], handler, message["status"]),
                                   time.perf_counter() - started)
            await send(message)

        await self.app(scope, receive, send_timed)


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(request: Request, _: AsViewer, store: Store, config: Config, now: Now) -> str:
    health.check_database(request, store)
    lines = list(up_gauge(health.parts(request)))
    if request.app.state.database.health is Health.UP:  # else only the gauge says why
        lines += _shadow_lines(store, config, now)
    counters: Counters | None = request.app.state.counters
    if counters is not None:
        lines += counters.prometheus([(i.machine, i.signal) for i in config.registry()])
    limits: RateLimits = request.app.state.rate_limits
    lines += ["# HELP ombre_http_rate_limited_total requests refused with 429 (api.rate_limit)",
              "# TYPE ombre_http_rate_limited_total counter"]
    lines += [f'ombre_http_rate_limited_total{{by="{by}"}} {buckets.refused}'
              for by, buckets in (("address", limits.by_address), ("token", limits.by_token),
                                  ("connection", limits.connections))]
    stats: RequestStats = request.app.state.request_stats
    return "\n".join([*lines, *stats.lines()]) + "\n"


def _shadow_lines(store: ShadowStore, config: ServedConfig, now: int) -> list[str]:
    """What the shadow knows: machines online and by category, open drift alerts."""
    snaps = store.snapshots()
    views = [MachineOut(**machine_view(config, m, snaps.get(m.id), now))
             for m in config.machines()]
    lines = ["# HELP ombre_machine_online 1 when the machine reported within its silence_s",
             "# TYPE ombre_machine_online gauge"]
    lines += [f'ombre_machine_online{{machine="{label(v.id)}"}} {int(v.online)}' for v in views]
    lines += ["# HELP ombre_machine_category 1 for the ISO 22400 category the machine is in",
              "# TYPE ombre_machine_category gauge"]
    lines += [f'ombre_machine_category{{machine="{label(v.id)}",category="{v.category}"}} 1'
              for v in views if v.category is not None]
    open_alerts = len(store.alerts(status="open", machine=None, limit=100_000))
    lines += ["# HELP ombre_drift_alerts_open drift alerts not yet acknowledged or closed",
              "# TYPE ombre_drift_alerts_open gauge", f"ombre_drift_alerts_open {open_alerts}"]
    unknown: dict[str, int] = {}
    for machine, _raw, stops, _ns, _first in store.unknown_reasons():
        unknown[machine] = unknown.get(machine, 0) + stops
    lines += ["# HELP ombre_unknown_stop_reasons stops whose raw reason from the machine is "
              "no reason code, not explained by a person since (ombre reasons unknown)",
              "# TYPE ombre_unknown_stop_reasons gauge"]
    lines += [f'ombre_unknown_stop_reasons{{machine="{label(m)}"}} {n}'
              for m, n in sorted(unknown.items())]
    return lines
