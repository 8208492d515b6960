"""A central member of a fleet (docs/fleet.md): the fleet source (connectors/), the
leases that share the sites among the members (shadow/fleet.py), and what ties them:
a site given back is first stopped, then waited for until the shadow has applied what
was received for it, so that its next holder goes on from exactly there."""

from __future__ import annotations

import asyncio
import logging
import time

from connectors.fleet_source import FleetSource
from gateway.outbox import Outbox
from gateway.types import SignalRegistry
from ombre.config import OmbreConfig
from shadow.config import SHADOW_SINK
from shadow.fleet import Fleet, Leases
from shadow.schema import database_url, open_engine

log = logging.getLogger(__name__)

APPLY_WAIT_S = 10.0  # how long a site given back waits for the shadow to apply its data
APPLY_POLL_S = 0.05


class Central:
    """The parts of a central member; `outbox` is set once the gateway has one."""

    def __init__(self, config: OmbreConfig, registry: SignalRegistry) -> None:
        assert config.fleet is not None
        fleet = config.fleet
        self.source = FleetSource(fleet, config, registry)
        engine = open_engine(database_url(config.shadow.database, config.data_dir))
        self.fleet = Fleet(Leases(engine, fleet.member, fleet.lease_s),
                           [site.id for site in config.sites], fleet.lease_s,
                           taken=self.source.start, giving=self._giving,
                           dropped=self._dropped)
        self.outbox: Outbox | None = None

    async def _dropped(self, site: str) -> None:
        await self.source.stop(site, wait_s=0)

    async def _giving(self, site: str) -> None:
        await self.source.stop(site)
        outbox = self.outbox
        if outbox is None:
            return
        mark = await asyncio.to_thread(outbox.last_seq)
        deadline = time.monotonic() + APPLY_WAIT_S
        while not await asyncio.to_thread(outbox.received, SHADOW_SINK, mark):
            if time.monotonic() > deadline:
                log.warning("fleet: site %s is given back before the shadow applied what "
                            "was received for it (it is down or slow): that data is left "
                            "out of its shadow", site)
                return
            await asyncio.sleep(APPLY_POLL_S)
