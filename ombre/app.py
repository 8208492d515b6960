"""Builds a gateway from a validated config, its connectors through their plug-ins
(ombre/plugins.py), and runs it until SIGTERM/SIGINT.

The first signal starts the ordered shutdown; a second one exits at once."""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import functools
import logging
import os
import signal
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from gateway.config import ConnectorConfig, RuntimeConfig, SinkConfig, SourceConfig
from gateway.counters import Counters
from gateway.metrics import MetricsListenError, serve_metrics
from gateway.outbox import Outbox
from gateway.plugins import Audit, BuildContext, Plugin
from gateway.runtime import CLOSE_TIMEOUT_S, Gateway
from gateway.storage import PROFILES
from gateway.types import SignalRegistry, Sink, Source
from ombre import plugins, systemd
from ombre.config import OmbreConfig

if TYPE_CHECKING:
    from shadow.fleet import Fleet

log = logging.getLogger(__name__)

EXIT_FORCED = 3  # a second signal ended the process without waiting for the drain
EXIT_STOP_TIMEOUT = 4  # the stop outlasted its deadline (a thread stuck in a call)


def build_context(config: OmbreConfig, registry: SignalRegistry | None = None) -> BuildContext:
    """What the plug-ins get: the config, its signal registry, and the audit log's
    writer when the shadow, which keeps the log, runs."""
    audit: Audit | None = None
    if config.shadow.enabled:
        def audit(actor: str | None, action: str, target: str, details: dict[str, Any]) -> None:
            # SQLAlchemy loads only when something is audited.
            from shadow.audit import as_action, cli_actor, record_in  # noqa: PLC0415

            record_in(config, actor or cli_actor(), as_action(action), target, details)
    return BuildContext(config, registry or config.registry(), audit)


def build_source(config: SourceConfig, context: BuildContext) -> Source:
    """The source of one validated block, through its plug-in."""
    plugin = plugins.registry().sources[config.type]
    _require(plugin, config)
    return plugin.build(config, context)


def build_sink(config: SinkConfig, context: BuildContext) -> Sink:
    """The sink of one validated block, through its plug-in."""
    plugin = plugins.registry().sinks[config.type]
    _require(plugin, config)
    return plugin.build(config, context)


def _require(plugin: Plugin[Any, Any], config: ConnectorConfig) -> None:
    """Raises PluginError if the plug-in's modules are missing (load_config reports
    that before anything is built)."""
    if missing := plugins.missing_modules(plugin):
        raise plugins.PluginError(f"{config.type} {config.name!r} needs {', '.join(missing)}: "
                                  f"{plugins.install_hint(plugin)}")


def build_sinks(config: OmbreConfig, registry: SignalRegistry,
                lost: Callable[[], int] | None = None, fleet: Fleet | None = None) -> list[Sink]:
    """The configured sinks, and the shadow unless `shadow.enabled` is false; the shadow
    hands its live model to the sinks that take it (shadow/live.py LiveObserver: the
    MQTT sink publishes it retained). `lost` counts the readings the runtime dropped,
    which the shadow records with its run. At each shift's end the shadow writes the
    shift reports (api/shift_report.py) unless `shadow.reports.at_shift_end` is false.
    `fleet`: the shadow keeps the sites this central member holds (ombre/fleet.py)."""
    context = build_context(config, registry)
    sinks = [build_sink(c, context) for c in config.sinks]
    if config.shadow.enabled:
        # SQLAlchemy and Alembic cost ~20 MB of RSS: loaded only when the shadow runs.
        from shadow.live import LiveObserver  # noqa: PLC0415
        from shadow.sink import ShadowSink  # noqa: PLC0415

        observers = [s for s in sinks if isinstance(s, LiveObserver)]
        ended = None
        if config.shadow.reports.at_shift_end:
            from api.shift_report import at_shift_end  # noqa: PLC0415

            ended = functools.partial(at_shift_end, config)
        sinks.append(ShadowSink(config, registry, observers, lost, ended, fleet=fleet))
    return sinks


def build_gateway(config: OmbreConfig, sinks: Sequence[Sink] | None = None,
                  sources: Sequence[Source] | None = None,
                  outbox_name: str = "gateway.sqlite") -> tuple[Gateway, Outbox]:
    """The gateway and its outbox (<data_dir>/<outbox_name>); the caller closes the
    outbox after `run`. `sinks` and `sources` replace the configured ones (tests inject
    failing sinks, benchmarks timed ones, `ombre replay` a file). With `fleet:`, the
    fleet source joins the configured ones (ombre/fleet.py)."""
    registry = config.registry()
    counters = Counters(registry)
    central = None
    if config.fleet is not None and sinks is None and sources is None:
        from ombre.fleet import Central  # noqa: PLC0415 - with the shadow's SQLAlchemy

        central = Central(config, registry)
    if sinks is None:
        sinks = build_sinks(config, registry, counters.lost,
                            None if central is None else central.fleet)
    if sources is None:
        context = build_context(config, registry)
        sources = [build_source(c, context) for c in config.sources]
        if central is not None:
            sources.append(central.source)
    outbox = Outbox(config.data_dir / outbox_name, [s.name for s in sinks],
                    [(info.machine, info.signal) for info in registry],
                    config.runtime.outbox_max_bytes, config.runtime.quarantine_max_rows,
                    profile=PROFILES[config.storage.profile])
    if central is not None:
        central.outbox = outbox
    return Gateway(config.runtime, sources, sinks, outbox, counters), outbox


def stop_timeout_s(config: RuntimeConfig) -> float:
    """The longest a stop may take: the drain, then closing the sources and the sinks."""
    return config.drain_timeout_s + 2 * CLOSE_TIMEOUT_S


def _exit_now(code: int, message: str, *args: object, stacks: bool = False) -> None:
    """End the process without waiting for any thread. What the outbox committed is
    safe (SQLite in WAL mode, like a kill -9); deliveries not yet committed were not
    acked, so their sources send them again. `stacks`: first print every thread's stack
    to stderr, to show what the stop was waiting for."""
    log.warning(message, *args)
    logging.shutdown()  # flush the log
    if stacks:
        faulthandler.dump_traceback(all_threads=True)
    os._exit(code)


@contextlib.contextmanager
def stop_on_signals(stop: asyncio.Event, timeout_s: float) -> Iterator[None]:
    """While inside, the first SIGTERM or SIGINT sets `stop`; the process then exits
    by itself if it is still running `timeout_s` later. A second signal exits at once."""
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            _exit_now(EXIT_FORCED, "second %s: exiting at once, without draining", name)
        log.info("%s: shutting down", name)
        stop.set()
        watchdog = threading.Timer(timeout_s, _exit_now, (
            EXIT_STOP_TIMEOUT, "the stop did not end within %.0f s: exiting; the stacks of "
            "its threads follow", timeout_s), {"stacks": True})
        watchdog.daemon = True
        watchdog.start()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        yield
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


async def notified(config: OmbreConfig, gateway: Gateway, running: Awaitable[None]) -> None:
    """Awaits `running` (the gateway) with the notifications (shadow/notifier.py) beside
    it when rules are configured; they stop when it ends, after its drain."""
    if not config.notifications.rules:
        await running
        return
    from shadow.notifier import Notifier  # noqa: PLC0415 - with the shadow's SQLAlchemy

    notifier = Notifier(config, gateway.counters.parts,
                        gateway.counters.connector("notifications", "runtime"))
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(notifier.run(), name="notifications")
        try:
            await running
        finally:
            task.cancel()


Runner = Callable[[Gateway, asyncio.Event, asyncio.Event], Awaitable[None]]


async def serve(config: OmbreConfig, gateway: Gateway | None = None,
                outbox: Outbox | None = None, stop: asyncio.Event | None = None,
                run: Runner = Gateway.run, *, notify: bool = True) -> None:
    """Run the gateway (by default, the configured one) until the process gets SIGTERM
    or SIGINT, or `stop` is set; `run(gateway, stop, force)` runs it (`ombre run --api`
    runs the API beside it). `notify`: with the configured notifications beside it
    (`ombre replay` feeds history, which is nobody's news)."""
    if gateway is None or outbox is None:
        gateway, outbox = build_gateway(config)
    # `force` stays unset: here a second signal ends the process (stop_on_signals).
    stop, force = stop or asyncio.Event(), asyncio.Event()
    try:
        metrics = serve_metrics(config.runtime.metrics, gateway.counters,
                                [(i.machine, i.signal) for i in config.registry()])
    except MetricsListenError:
        outbox.close()
        raise
    try:
        with stop_on_signals(stop, stop_timeout_s(config.runtime)):
            running = run(gateway, stop, force)
            watchdog = asyncio.create_task(systemd.supervised(gateway.outbox_busy_s, stop),
                                           name="systemd")
            try:
                await (notified(config, gateway, running) if notify else running)
            finally:
                watchdog.cancel()
                await asyncio.gather(watchdog, return_exceptions=True)
    finally:
        if metrics is not None:
            metrics.shutdown()
            metrics.server_close()
        outbox.close()
    log.info("stopped")
