"""`/metrics` in the Prometheus text format, through prometheus-client: request
latencies per route, the health of each part of the data path (as in /readyz), what the
shadow knows (machines online, per category, open drift alerts, stops with a raw reason
no code stands for) and, in the gateway's process, the runtime's counters
(gateway/metrics.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import health
from api.config import ServedConfig
from api.deps import AsViewer, Config, Now, PlantWide, Store
from api.machines import MachineOut, machine_view
from api.ratelimit import RateLimits
from gateway.counters import Counters, Health
from gateway.metrics import GatewayCollector, up_family
from shadow.store import ShadowStore

# No `_created` series beside each histogram: they double the lines and no dashboard
# of ours reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]
router = APIRouter(tags=["operations"])
BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def request_histogram() -> Histogram:
    """Latencies keyed by (method, handler, status): bounded by the routes the app has,
    since unknown paths count under the handler "unmatched". Registered in no global
    registry: each app has its own."""
    return Histogram("ombre_http_request_seconds", "API request latency",
                     ["method", "handler", "status"], registry=None, buckets=BUCKETS_S)


class Timed:
    """Middleware: times every request, up to the start of its answer, under its route's
    handler name, in the app's request histogram. A plain ASGI one: Starlette's
    BaseHTTPMiddleware would start a task and a stream for each request."""

    def __init__(self, app: ASGIApp, stats: Histogram) -> None:
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
                self.stats.labels(scope["method"], handler, message["status"]).observe(
                    time.perf_counter() - started)
            await send(message)

        await self.app(scope, receive, send_timed)


class _Families(Collector):
    """Families computed for one scrape."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


@router.get("/metrics", response_class=Response, dependencies=[PlantWide])
def metrics(request: Request, _: AsViewer, store: Store, config: Config, now: Now) -> Response:
    health.check_database(request, store)
    families: list[Metric] = [up_family(health.parts(request))]
    if request.app.state.database.health is Health.UP:  # else only the gauge says why
        families += _shadow_families(store, config, now)
    limits: RateLimits = request.app.state.rate_limits
    refused = CounterMetricFamily("ombre_http_rate_limited",
                                  "requests refused with 429 (api.rate_limit)", labels=["by"])
    for by, buckets in (("address", limits.by_address), ("token", limits.by_token),
                        ("connection", limits.connections)):
        refused.add_metric([by], buckets.refused)
    families.append(refused)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    counters: Counters | None = request.app.state.counters
    if counters is not None:
        registry.register(GatewayCollector(
            counters, [(i.machine, i.signal) for i in config.registry()]))
    registry.register(request.app.state.request_stats)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def _shadow_families(store: ShadowStore, config: ServedConfig, now: int) -> list[Metric]:
    """What the shadow knows: machines online and by category, open drift alerts."""
    snaps, places = store.snapshots(), config.places()
    views = [MachineOut(**machine_view(places[m.id], m, snaps.get(m.id), now))
             for m in config.machines()]
    online = GaugeMetricFamily("ombre_machine_online",
                               "1 when the machine reported within its silence_s",
                               labels=["machine"])
    category = GaugeMetricFamily("ombre_machine_category",
                                 "1 for the ISO 22400 category the machine is in",
                                 labels=["machine", "category"])
    for v in views:
        online.add_metric([v.id], int(v.online))
        if v.category is not None:
            category.add_metric([v.id, v.category], 1)
    alerts = GaugeMetricFamily("ombre_drift_alerts_open",
                               "drift alerts not yet acknowledged or closed",
                               value=len(store.alerts(status="open", machines=None,
                                                     limit=100_000)))
    unknown: dict[str, int] = {}
    for machine, _raw, stops, _ns, _first in store.unknown_reasons():
        unknown[machine] = unknown.get(machine, 0) + stops
    reasons = GaugeMetricFamily("ombre_unknown_stop_reasons",
                                "stops whose raw reason from the machine is no reason code, "
                                "not explained by a person since (ombre reasons unknown)",
                                labels=["machine"])
    for machine, n in sorted(unknown.items()):
        reasons.add_metric([machine], n)
    return [online, category, alerts, reasons]
