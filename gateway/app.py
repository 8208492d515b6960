"""Builds a gateway from a validated config and runs it until SIGTERM/SIGINT.

The first signal starts the ordered shutdown; a second one exits at once."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence

from connectors.modbus_config import ModbusSourceConfig
from connectors.mqtt import MqttSource
from connectors.sqlite_sink import SqliteSink
from gateway.config import (
    InfluxSinkConfig,
    MqttSourceConfig,
    OmbreConfig,
    OpcUaSourceConfig,
    RuntimeConfig,
    SinkConfig,
    SourceConfig,
)
from gateway.counters import Counters
from gateway.outbox import Outbox
from gateway.runtime import CLOSE_TIMEOUT_S, Gateway
from gateway.types import SignalRegistry, Sink, Source

log = logging.getLogger(__name__)

EXIT_FORCED = 3  # a second signal ended the process without waiting for the drain
EXIT_STOP_TIMEOUT = 4  # the stop outlasted its deadline (a thread stuck in a call)


def build_source(config: SourceConfig, plant: OmbreConfig, registry: SignalRegistry) -> Source:
    if isinstance(config, MqttSourceConfig):
        return MqttSource(config, plant, registry, plant.runtime)
    if isinstance(config, OpcUaSourceConfig):
        # asyncua and its crypto stack cost ~20 MB of RSS: loaded only when configured.
        from connectors.opcua import OpcUaSource  # noqa: PLC0415

        on_rejected = None
        if plant.shadow.enabled:  # the audit log is a table of the shadow's database
            from shadow.audit import certificate_rejected  # noqa: PLC0415

            on_rejected = functools.partial(certificate_rejected, plant)
        return OpcUaSource(config, plant, registry, plant.runtime, on_rejected)
    if isinstance(config, ModbusSourceConfig):
        # pymodbus costs ~7 MB of RSS and 0.25 s: loaded only when configured.
        from connectors.modbus import ModbusSource  # noqa: PLC0415

        return ModbusSource(config, plant, registry, plant.runtime)
    raise ValueError(f"no source type {config.type!r}")  # unreachable: the config is validated


def build_sink(config: SinkConfig, plant: OmbreConfig, registry: SignalRegistry) -> Sink:
    if isinstance(config, InfluxSinkConfig):
        # influxdb-client costs ~25 MB of RSS and 0.6 s: loaded only when configured.
        from connectors.influx import InfluxSink  # noqa: PLC0415

        return InfluxSink(config, plant, registry)
    return SqliteSink(config, plant.data_dir, registry)


def build_sinks(config: OmbreConfig, registry: SignalRegistry) -> list[Sink]:
    """The configured sinks, and the shadow unless `shadow.enabled` is false."""
    sinks = [build_sink(c, config, registry) for c in config.sinks]
    if config.shadow.enabled:
        # SQLAlchemy and Alembic cost ~20 MB of RSS: loaded only when the shadow runs.
        from shadow.sink import ShadowSink  # noqa: PLC0415

        sinks.append(ShadowSink(config, registry))
    return sinks


def build_gateway(config: OmbreConfig, sinks: Sequence[Sink] | None = None,
                  sources: Sequence[Source] | None = None,
                  outbox_name: str = "gateway.sqlite") -> tuple[Gateway, Outbox]:
    """The gateway and its outbox (<data_dir>/<outbox_name>); the caller closes the
    outbox after `run`. `sinks` and `sources` replace the configured ones (tests inject
    failing sinks, benchmarks timed ones, `ombre replay` a file)."""
    registry = config.registry()
    if sinks is None:
        sinks = build_sinks(config, registry)
    if sources is None:
        sources = [build_source(c, config, registry) for c in config.sources]
    outbox = Outbox(config.data_dir / outbox_name, [s.name for s in sinks],
                    [(info.machine, info.signal) for info in registry],
                    config.runtime.outbox_max_bytes, config.runtime.quarantine_max_rows)
    counters = Counters(registry)
    return Gateway(config.runtime, sources, sinks, outbox, counters), outbox


def stop_timeout_s(config: RuntimeConfig) -> float:
    """The longest a stop may take: the drain, then closing the sources and the sinks."""
    return config.drain_timeout_s + 2 * CLOSE_TIMEOUT_S


def _exit_now(code: int, message: str, *args: object) -> None:
    """End the process without waiting for any thread. What the outbox committed is
    safe (SQLite in WAL mode, like a kill -9); deliveries not yet committed were not
    acked, so their sources send them again."""
    log.warning(message, *args)
    logging.shutdown()  # flush the log
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
            EXIT_STOP_TIMEOUT, "the stop did not end within %.0f s: exiting", timeout_s))
        watchdog.daemon = True
        watchdog.start()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        yield
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


Runner = Callable[[Gateway, asyncio.Event, asyncio.Event], Awaitable[None]]


async def serve(config: OmbreConfig, gateway: Gateway | None = None,
                outbox: Outbox | None = None, stop: asyncio.Event | None = None,
                run: Runner = Gateway.run) -> None:
    """Run the gateway (by default, the configured one) until the process gets SIGTERM
    or SIGINT, or `stop` is set; `run(gateway, stop, force)` runs it (`ombre run --api`
    runs the API beside it)."""
    if gateway is None or outbox is None:
        gateway, outbox = build_gateway(config)
    # `force` stays unset: here a second signal ends the process (stop_on_signals).
    stop, force = stop or asyncio.Event(), asyncio.Event()
    try:
        with stop_on_signals(stop, stop_timeout_s(config.runtime)):
            await run(gateway, stop, force)
    finally:
        outbox.close()
    log.info("stopped")
