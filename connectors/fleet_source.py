"""The fleet source: the Unified Namespace of the sites this central process holds, one
MQTT session per site (docs/fleet.md).

A site's messages go to one persistent session, `{client_id}-{site}`, whichever process
holds the site: the broker keeps the session's messages, in order, while nobody holds
it (a process killed, a site moving), and gives them to the next holder. So a machine's
readings reach one process, in the order its edge sent them, and nothing is lost in a
move. Which sites are held is decided outside (shadow/fleet.py, through the composition
root): `start(site)` opens its session, `stop(site)` closes it once every delivery it
gave the runtime is acked (committed to the outbox), so that the broker keeps exactly
what this process did not commit.

For the runtime this is one source: `read` returns the next delivery of any site held,
and raises ConnectionError when a site's link drops (the source is then down, naming
the site); `connect` returns once every site held is connected."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from connectors.fleet_config import FleetConfig
from connectors.mqtt import MqttSource
from connectors.mqtt_config import SubscriptionConfig
from connectors.mqtt_decode import PayloadDecoder
from gateway.config import Plant
from gateway.types import Delivery, SignalRegistry

log = logging.getLogger(__name__)

QUEUED = 4  # deliveries waiting for the runtime; then the sites' sessions wait
CONNECT_WAIT_S = 10.0  # how long `connect` waits for the sites held to be connected
STOP_WAIT_S = 10.0  # how long `stop` waits for the site's deliveries to be committed
RETRY_S = (0.5, 10.0)  # a site's reconnection delay: first, most


@dataclass
class _Site:
    source: MqttSource
    task: asyncio.Task[None] | None = None
    up: bool = False
    unacked: int = 0  # deliveries handed to the runtime, not yet acked
    acked: asyncio.Event = field(default_factory=asyncio.Event)


class FleetSource:
    def __init__(self, config: FleetConfig, plant: Plant, registry: SignalRegistry,
                 name: str = "fleet") -> None:
        self.name = name
        self._config = config
        self._plant = plant
        self._registry = registry
        self._sites: dict[str, _Site] = {}
        # (site, what it sent): deliveries, and a site's lost link to report
        self._out: asyncio.Queue[tuple[str, Delivery | ConnectionError]] = asyncio.Queue(QUEUED)
        self._all_up = asyncio.Event()
        self._all_up.set()

    def _source(self, site: str) -> MqttSource:
        config = self._config.model_copy(update={"client_id": f"{self._config.client_id}-{site}"})
        subscription = SubscriptionConfig(topic=self._config.site_topic(site),
                                          qos=self._config.qos, format="value",
                                          quality_field="quality")
        decoder = PayloadDecoder(self.name, [subscription], self._plant, self._registry)
        return MqttSource(config, f"{self.name}:{site}", decoder, self._plant.runtime)

    @property
    def sites(self) -> list[str]:
        return sorted(self._sites)

    async def start(self, site: str) -> None:
        """Opens the site's session and hands its deliveries to `read`."""
        if site in self._sites:
            return
        s = self._sites[site] = _Site(self._source(site))
        s.acked.set()
        self._all_up.clear()
        s.task = asyncio.create_task(self._pump(site, s), name=f"{self.name}:{site}")

    async def stop(self, site: str, wait_s: float = STOP_WAIT_S) -> None:
        """Stops reading the site, drops what it queued that the runtime has not taken
        (not acked), waits (at most `wait_s`) until what the runtime took is committed
        and acked, then closes its session: the broker keeps the rest for the next
        holder."""
        s = self._sites.get(site)
        if s is None:
            return
        if s.task is not None:
            s.task.cancel()
            await asyncio.gather(s.task, return_exceptions=True)
        queued = [self._out.get_nowait() for _ in range(self._out.qsize())]
        for item in queued:
            if item[0] != site:
                self._out.put_nowait(item)
        try:
            if not s.acked.is_set():
                await asyncio.wait_for(s.acked.wait(), wait_s)
        except TimeoutError:
            log.warning("fleet: site %s stops with %d deliveries not committed: the broker "
                        "gives them to the next holder", site, s.unacked)
        await s.source.aclose()
        del self._sites[site]
        self._update_up()

    async def connect(self) -> None:
        try:
            await asyncio.wait_for(self._all_up.wait(), CONNECT_WAIT_S)
        except TimeoutError:
            down = [site for site, s in self._sites.items() if not s.up]
            raise ConnectionError(f"site(s) {', '.join(down)} not connected to "
                                  f"{self._config.host}:{self._config.port}") from None

    async def read(self) -> Delivery:
        site, item = await self._out.get()
        if isinstance(item, ConnectionError):
            raise item
        s = self._sites.get(site)
        return item if s is None else self._counted(s, item)

    async def aclose(self) -> None:
        for site in list(self._sites):
            await self.stop(site, wait_s=0)

    async def _pump(self, site: str, s: _Site) -> None:
        delay = RETRY_S[0]
        while True:
            try:
                await s.source.connect()
            except Exception as exc:  # noqa: BLE001 - refused, unreachable: retried
                log.debug("fleet: site %s: %s", site, exc)
                await asyncio.sleep(delay)
                delay = min(2 * delay, RETRY_S[1])
                continue
            s.up, delay = True, RETRY_S[0]
            self._update_up()
            try:
                while True:
                    await self._out.put((site, await s.source.read()))
            except ConnectionError as exc:
                s.up = False
                self._update_up()
                with contextlib.suppress(asyncio.QueueFull):
                    self._out.put_nowait((site, ConnectionError(f"site {site}: {exc}")))

    def _counted(self, s: _Site, delivery: Delivery) -> Delivery:
        """The delivery the runtime takes, its acks counted for `stop`."""
        if not delivery.acks:
            return delivery
        s.unacked += 1
        s.acked.clear()
        acks = delivery.acks

        def ack() -> None:
            for a in acks:
                a()
            s.unacked -= 1
            if not s.unacked:
                s.acked.set()

        return Delivery(delivery.batch, delivery.events, delivery.quarantined, [ack])

    def _update_up(self) -> None:
        if all(s.up for s in self._sites.values()):
            self._all_up.set()
        else:
            self._all_up.clear()

