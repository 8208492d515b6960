"""The gateway's counters in the Prometheus format, through prometheus-client: a
collector read at each scrape. The API's /metrics adds it to its own families; with
`runtime.metrics.port`, the gateway serves it on that port too, whether or not the API
runs (`serve_metrics`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.config import MetricsConfig
from gateway.counters import ConnectorCounters, Counters, Health

log = logging.getLogger(__name__)

PART_LABELS = ["connector", "kind"]


def up_family(parts: Iterable[ConnectorCounters]) -> GaugeMetricFamily:
    """`ombre_connector_up`: 1 for each part of the data path that is up, 0 otherwise."""
    family = GaugeMetricFamily("ombre_connector_up",
                               "1 when the part of the data path is up (as in /readyz)",
                               labels=PART_LABELS)
    for part in parts:
        family.add_metric([part.name, part.kind], int(part.health is Health.UP))
    return family


class GatewayCollector(Collector):
    """The runtime's counters: per connector, per signal (`signal_labels[i]` is signal
    i's (machine, signal)), the outbox and the queue. The numbers are read from the
    event loop's counters as they are at the scrape."""

    def __init__(self, counters: Counters, signal_labels: Sequence[tuple[str, str]]) -> None:
        self.counters = counters
        self.signal_labels = signal_labels

    def collect(self) -> Iterator[Metric]:
        connectors = list(self.counters.connectors.values())
        per_connector: list[tuple[str, str, Callable[[ConnectorCounters], int]]] = [
            ("readings", "readings received (source) or written (sink)", lambda c: c.readings),
            ("events", "events received (source) or written (sink)", lambda c: c.events),
            ("quarantined", "payloads or lines refused and kept aside",
             lambda c: c.quarantined),
            ("dropped", "telemetry lost to an overflow policy", lambda c: c.dropped),
            ("retries", "failed connects and writes, each retried", lambda c: c.retries),
            ("valueless", "readings stored without their value (NaN, infinity)",
             lambda c: c.valueless),
        ]
        for name, doc, value in per_connector:
            counter = CounterMetricFamily(f"ombre_connector_{name}", doc, labels=PART_LABELS)
            for c in connectors:
                counter.add_metric([c.name, c.kind], value(c))
            yield counter
        for name, doc, gauge in (
                ("outbox_bytes", "bytes waiting in the outbox", self.counters.outbox_bytes),
                ("outbox_batches", "batches waiting in the outbox",
                 self.counters.outbox_batches),
                ("queue_depth", "messages in the runtime's queue", self.counters.queue_depth)):
            yield GaugeMetricFamily(f"ombre_{name}", doc, value=gauge)
        for name, column in (("received", self.counters.signal_received),
                             ("written", self.counters.signal_written),
                             ("quarantined", self.counters.signal_quarantined),
                             ("dropped", self.counters.signal_dropped)):
            counter = CounterMetricFamily(f"ombre_signal_{name}", f"readings and events "
                                          f"{name}, per signal", labels=["machine", "signal"])
            for (machine, signal), n in zip(self.signal_labels, column.tolist(), strict=True):
                counter.add_metric([machine, signal], n)
            yield counter


class _PartsCollector(Collector):
    def __init__(self, counters: Counters) -> None:
        self.counters = counters

    def collect(self) -> Iterator[Metric]:
        yield up_family(self.counters.parts())


class MetricsListenError(Exception):
    """runtime.metrics names an address the gateway cannot listen on."""


def serve_metrics(config: MetricsConfig, counters: Counters,
                  signal_labels: Sequence[tuple[str, str]]) -> WSGIServer | None:
    """With `config.port`, serves the gateway's families and the health of its sources,
    sinks and outbox on config.host:config.port (prometheus-client's server, in a thread
    of its own); the caller shuts it down. None without a port."""
    if config.port is None:
        return None
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GatewayCollector(counters, signal_labels))
    registry.register(_PartsCollector(counters))
    try:
        server, _thread = start_http_server(config.port, config.host, registry)
    except OSError as exc:
        raise MetricsListenError(f"cannot serve the metrics on {config.host}:{config.port}: "
                                 f"{exc.strerror or exc}") from exc
    log.info("gateway metrics on http://%s:%d/metrics", config.host, config.port)
    return server
