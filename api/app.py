"""The FastAPI application: `create_app(config)` builds it, and its lifespan opens the
shadow's database (migrating it) and closes it. No work happens at import time."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from api import (
    alerts,
    docs,
    downtime,
    health,
    jobs,
    kpis,
    losses,
    machines,
    maturity,
    metrics,
    notifications,
    orders,
    reports,
    signals,
    stream,
    timeline,
)
from api import audit as audit_log
from api.config import ServedConfig
from api.deps import AsViewer, Store
from api.guard import BodyGuard
from api.ratelimit import RateLimit, RateLimits
from gateway.counters import Counters, Health
from shadow.schema import database_url, open_engine, upgrade
from shadow.store import ShadowStore

PREFIX = "/api/v1"
STATIC = Path(__file__).with_name("static")


# The dashboard's pages; each asks for a token, then reads the API.
PAGES = {
    "/": "index.html",  # the shop-floor overview, from the live stream
    # the overview as a wall (andon) display: full screen, large type, no controls; it
    # shows the lines a page at a time when they do not fit (?lines=N&every=S)
    "/wall": "index.html",
    "/machine": "machine.html",  # one machine: its shift band, losses, downtime to explain
    "/line": "line.html",  # the lines' Gantt: every machine's band on one time axis
    "/alerts": "alerts.html",  # every drift alert; an operator acknowledges or closes them
    "/orders": "orders.html",  # the orders and their progress; jobs started by hand
    # where the time went: Pareto charts of lost minutes by cause and by machine
    "/losses": "losses.html",
    # the maturity assessment: stages, evidence, next steps, the self-assessment
    "/maturity": "maturity.html",
    "/reports": "reports.html",  # the shift reports kept, newest first, HTML and PDF
}


def _page(path: Path) -> Callable[[], FileResponse]:
    def page() -> FileResponse:
        return FileResponse(path)
    return page


def create_app(config: ServedConfig, clock: Callable[[], int] = time.time_ns,
               counters: Counters | None = None) -> FastAPI:
    """The API over the shadow's tables of `config`; `clock` gives now in ns (tests
    pass a fixed one). `counters` are the gateway's when the API runs in its process
    (`ombre demo`): /readyz then reports every source, sink and the outbox too, /metrics
    the runtime."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = open_engine(database_url(config.shadow.database, config.data_dir))
        try:
            upgrade(engine)
            app.state.store = ShadowStore(engine)
            yield
        finally:
            engine.dispose()

    app = FastAPI(title="Ombre", version="1", lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url=None,  # api.docs decides: see api/docs.py
                  description="Machines, ISO 22400 KPIs, drift alerts and downtime of the "
                              "shop floor, from Ombre's digital shadow.")
    app.state.config = config
    app.state.clock = clock
    app.state.counters = counters
    app.state.database = health.database_part()
    if config.api.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=config.api.cors_origins,
                           allow_methods=["GET", "POST"], allow_headers=["Authorization"])

    app.add_middleware(BodyGuard, max_body_bytes=config.api.max_body_bytes)

    @app.get("/healthz", tags=["operations"])
    def healthz() -> dict[str, str]:
        """The process is alive. The only endpoint without a token."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    def readyz(request: Request, _: AsViewer, store: Store) -> JSONResponse:
        """Ready when every part of the data path is up: the shadow's database and, in
        the gateway's process, every source, every sink and the outbox; 503 otherwise.
        `parts` has each one's health, last error and since when."""
        health.check_database(request, store)
        found = health.parts(request)
        ready = all(part.health is Health.UP for part in found)
        return JSONResponse({"status": "ready" if ready else "not ready",
                             "parts": {p.name: health.describe_part(p) for p in found}},
                            200 if ready else 503)

    for path, page in PAGES.items():
        app.add_api_route(path, _page(STATIC / page), include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for module in (machines, signals, kpis, losses, alerts, downtime, orders, jobs, stream,
                   audit_log, maturity, notifications, reports, timeline):
        app.include_router(module.router, prefix=PREFIX)
    app.include_router(metrics.router)
    app.include_router(docs.router(config.api.docs, STATIC))
    app.state.request_stats = metrics.request_histogram()
    app.add_middleware(metrics.Timed, stats=app.state.request_stats)
    app.state.rate_limits = RateLimits.of(config.api.rate_limit)
    app.add_middleware(RateLimit, limits=app.state.rate_limits)  # outermost: refusals are cheap
    return app
