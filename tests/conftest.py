"""Fixtures shared by the whole suite. A missing server binary is a failure, never a
skip: `make test` installs what the suite needs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client.parser import text_string_to_metric_families

from bench.mosquitto import Mosquitto, find_binary
from bench.postgres import pg_schema
from bench.victoria import BINARY as VICTORIA_BINARY
from bench.victoria import VictoriaMetrics
from gateway.runtime import Gateway
from gateway.types import Batch, Event, Sink
from ombre.app import build_gateway
from ombre.config import OmbreConfig, validate_config


def require_binary(name: str) -> str:
    path = find_binary(name)
    if path is None:
        pytest.fail(f"{name} is not installed; `make test` installs it")
    return path


def metric_samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """The samples called `name` in a Prometheus exposition (/metrics), as (labels,
    value)."""
    return [(s.labels, s.value) for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == name]


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of the sample `name` with exactly `labels`, or None."""
    return next((v for found, v in metric_samples(text, name) if found == labels), None)


@contextmanager
def own_broker(workdir: Path) -> Iterator[Mosquitto]:
    """A Mosquitto of the test's own on a free port, with persistence in `workdir`."""
    workdir.mkdir()
    broker = Mosquitto(require_binary("mosquitto"), workdir)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A Mosquitto of the test's own on a free port, with persistence in tmp_path."""
    with own_broker(tmp_path / "mosquitto") as started:
        yield started


def plant_config(port: int, data_dir: Path, **runtime: object) -> OmbreConfig:
    """Three machines on one line, an MQTT source on `port` with the four payload
    formats, and the SQLite sink; `runtime` overrides runtime settings."""
    return validate_config(plant_dict(port, data_dir, **runtime))


def plant_dict(port: int, data_dir: Path, **runtime: object) -> dict[str, Any]:
    signals = [{"name": "temp", "unit": "degC"}, {"name": "speed", "unit": "rpm"},
               {"name": "state", "type": "string"}]
    return {
        "data_dir": str(data_dir),
        "sites": [{"id": "site", "lines": [{"id": "l1", "machines": [
            {"id": m, "signals": signals} for m in ("m1", "m2", "m3")]}]}],
        "sources": [{
            "type": "mqtt", "name": "broker", "port": port, "client_id": "ombre-test",
            "subscriptions": [
                {"topic": "plant/{line}/{machine}/{signal}", "format": "value"},
                {"topic": "plant/{line}/{machine}", "format": "object"},
                {"topic": "batch/{machine}/{signal}", "format": "array"},
                {"topic": "raw/{machine}/{signal}", "format": "number"},
            ],
        }],
        "sinks": [{"type": "sqlite", "name": "timeseries"}],
        "runtime": {"flush_interval_ms": 20, "backoff_initial_s": 0.1, "backoff_max_s": 1,
                    **runtime},
    }


class Publisher:
    """A paho client publishing at QoS 1 with a persistent session, so that messages
    published while the broker is down are sent when it is back."""

    def __init__(self, port: int, client_id: str = "test-publisher",
                 host: str = "127.0.0.1") -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv311, clean_session=False)
        self.client.max_inflight_messages_set(100)
        self.client.reconnect_delay_set(0.05, 0.5)
        # The mids the broker acknowledged. A message published after paho saw the link
        # drop has rc NO_CONN, so its info's is_published() raises, yet paho keeps it
        # and sends it once reconnected: its PUBACK lands here.
        self.acked: set[int] = set()
        self.client.on_publish = lambda _c, _u, mid, _rc, _p: self.acked.add(mid)
        self.client.connect(host, port)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes | str, qos: int = 1) -> mqtt.MQTTMessageInfo:
        return self.client.publish(topic, payload, qos=qos)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def publisher(broker: Mosquitto) -> Iterator[Publisher]:
    pub = Publisher(broker.port)
    yield pub
    pub.close()


async def wait_until(condition: Callable[[], bool], timeout_s: float = 20.0,
                     what: str = "condition") -> None:
    """Poll `condition` until it holds; fail the test naming `what` after the timeout.
    A bound on waiting, not on speed: it only fails when something is lost or stuck."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.02)


@asynccontextmanager
async def running(config: OmbreConfig, sinks: list[Sink] | None = None
                  ) -> AsyncIterator[Gateway]:
    """The gateway running in this event loop; stopped and drained on exit."""
    gateway, outbox = build_gateway(config, sinks)
    stop, force = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(gateway.run(stop, force), name="test:gateway")
    try:
        yield gateway
    finally:
        stop.set()
        await task
        outbox.close()
    left = asyncio.all_tasks() - {asyncio.current_task()}
    assert not left, f"tasks left running after shutdown: {left}"


class RecordingSink:
    """A real sink that also records, per signal id, the values in the order they were
    written: the stored series is sorted by timestamp, so it cannot show arrival order."""

    def __init__(self, inner: Sink) -> None:
        self._inner = inner
        self.name = inner.name
        self.written: dict[int, list[float]] = {}

    async def connect(self) -> None:
        await self._inner.connect()

    async def write(self, batch: Batch, events: Sequence[Event]) -> None:
        await self._inner.write(batch, events)
        for sid, value in zip(batch.signal_id.tolist(), batch.value.tolist(), strict=True):
            self.written.setdefault(sid, []).append(value)

    async def aclose(self) -> None:
        await self._inner.aclose()


# The shadow's databases: SQLite in the test's directory, and a schema of its own on
# the real PostgreSQL at 127.0.0.1:5432 (database `test`), dropped afterwards.
@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """A SQLAlchemy URL, or None for the default SQLite file in the data directory."""
    if request.param == "sqlite":
        yield None
        return
    with pg_schema() as url:
        yield url


@pytest.fixture(scope="session")
def victoria(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetrics]:
    """One VictoriaMetrics for the session, on a free port with its own data directory
    (bench/victoria.py says what it stores). Tests keep apart by writing series of their
    own: a site or line id no other test uses."""
    server = VictoriaMetrics(require_binary(VICTORIA_BINARY), tmp_path_factory.mktemp("victoria"))
    server.start()
    yield server
    server.stop()
